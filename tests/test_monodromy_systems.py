"""Built-in systems: Hénon–Heiles along its invariant plane (Lamé normal VE) and the
hypergeometric system's constructors."""
import math

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

import narrowflow.monodromy as mono
from narrowflow.monodromy.groups import CONSISTENT_ABELIAN, NON_SOLVABLE, MonodromyGroup


def _comm(A, B):
    return A @ B @ np.linalg.inv(A) @ np.linalg.inv(B)


def test_periods_from_the_energy_match_quadrature_and_the_flow():
    hh = mono.henon_heiles(eps=3.0, ratio=1.0, energy=0.1)
    Q1, qa, qb = hh.roots
    E = hh.energy
    V = lambda Q: Q * Q / 2 + Q ** 3 / 3
    assert max(abs(V(r) - E) for r in hh.roots) < 1e-13 and Q1 < -1 < qa < 0 < qb
    TR = 2 * quad(lambda Q: 1 / math.sqrt(2 * (E - V(Q))), qa, qb, epsabs=1e-13, limit=200)[0]
    TI = 2 * quad(lambda Q: 1 / math.sqrt(2 * (V(Q) - E)), Q1, qa, epsabs=1e-13, limit=200)[0]
    assert abs(hh.T_real - TR) < 1e-8 and abs(hh.T_imag - 1j * TI) < 1e-8
    # the real-time orbit of the plane motion returns after T_real (scipy reference)
    sol = solve_ivp(lambda t, y: [y[1], -y[0] - y[0] ** 2], (0, hh.T_real), [qa, 0.0],
                    method="DOP853", rtol=1e-13, atol=1e-14)
    assert abs(sol.y[0, -1] - qa) < 1e-9 and abs(sol.y[1, -1]) < 1e-9
    assert abs(hh.hamiltonian(hh.y0) - E / hh.eps ** 2) < 1e-15


def test_eps1_is_abelian():
    hh = mono.henon_heiles(eps=1.0, ratio=1.0, energy=0.1)
    MR, MI = hh.period_monodromy()
    assert MR.verified and MI.verified
    assert MR.extra["block_coupling"] == 0.0    # the normal block is decoupled
    G = MonodromyGroup([MR, MI])
    c = G.classify()
    assert c.identity_component_abelian is True and c.verdict == CONSISTENT_ABELIAN
    assert abs(G.commutator_trace().value) < 1e-8


def test_eps3_lame_commutator_trace_and_sl2():
    hh = mono.henon_heiles(eps=3.0, ratio=1.0, energy=0.1)
    n = hh.lame_n
    assert abs(n * (n + 1) - 12 / 3) < 1e-12
    MR, MI = hh.period_monodromy()
    for r in (MR, MI):
        assert r.verified and r.liouville_residual < 1e-9
    G = MonodromyGroup([MR, MI], names=["M_R", "M_I"])
    t = G.commutator_trace().value + 2
    assert abs(t - 2 * math.cos(2 * math.pi * n)) < 1e-8
    c = G.classify()
    assert c.kind == "SL2" and c.verdict == NON_SOLVABLE


def test_eps16_quaternion_group_is_not_a_false_positive():
    hh = mono.henon_heiles(eps=16.0, ratio=1 / 16, energy=0.1)
    MR, MI = hh.period_monodromy()
    K = _comm(np.asarray(MR), np.asarray(MI))
    assert np.max(np.abs(K + np.eye(2))) < 1e-8          # [M_R, M_I] = -I
    G = MonodromyGroup([MR, MI])
    assert G.commutator_norm().significance() > 1e3       # clearly non-commuting ...
    c = G.classify()
    assert c.kind == "imprimitive-finite" and c.verdict == CONSISTENT_ABELIAN   # ... yet G0 abelian
    # the same eps with another frequency ratio is not integrable: the classifier says so
    c2 = mono.henon_heiles(eps=16.0, ratio=1.0, energy=0.1).group().classify()
    assert c2.kind == "SL2" and c2.verdict == NON_SOLVABLE


def test_henon_heiles_interface_and_bad_input():
    hh = mono.henon_heiles(eps=2.0, ratio=0.5, energy=0.05)
    assert hh.y0.shape == (4,) and hh.y0.dtype == np.complex128
    assert hh.T_real > 0 and hh.T_imag.real == 0 and hh.T_imag.imag > 0
    y = np.array([0.1, 0.2, 0.3, -0.1], dtype=complex)
    h = 1e-6
    J = np.array([(hh.field(y + h * e) - hh.field(y - h * e)) / (2 * h) for e in np.eye(4)]).T
    assert np.max(np.abs(J - hh.jacobian(y))) < 1e-8
    for kw, exc in [(dict(energy=0.2), ValueError), (dict(eps=0.0), ValueError),
                    (dict(eps=-0.0), ValueError), (dict(eps=math.inf), ValueError),
                    (dict(eps=math.nan), ValueError), (dict(eps=1j), TypeError),
                    (dict(ratio=1j), TypeError)]:
        with pytest.raises(exc):
            mono.henon_heiles(**{**dict(eps=1.0, ratio=1.0, energy=0.1), **kw})


def test_hypergeometric_constructor():
    s = mono.hypergeometric("1/4", "-1/12", "1/2")
    assert s.n == 2 and s.singular_points == [0j, 1 + 0j]
    A = s.matrix(0.3 + 0.1j)
    z = 0.3 + 0.1j
    assert abs(A[1, 0] - 0.25 * (-1 / 12) / (z * (1 - z))) < 1e-15
    with pytest.raises(TypeError, match="a must be a number"):
        mono.hypergeometric([1], 0, 1)
    with pytest.raises(ValueError, match="base"):
        mono.hypergeometric_monodromy(0.1, 0.2, 0.3, base=1.5)


def test_henon_heiles_field_and_jacobian_agree_with_the_jets_kernel():
    # the VE transport (systems) and the jet transport (monodromy.jets) each carry their own
    # compiled Hénon–Heiles field (a cross-module call would let Numba's file-based cache serve
    # stale code): both must agree, and the Jacobian must match central differences
    from narrowflow.monodromy import jets
    from narrowflow.monodromy.systems import _hh_field_d, _hh_jacobian_d
    rng = np.random.default_rng(3)
    A, B, eps = 1.0, 16.0, 3.0
    d = np.array([A, B, eps], dtype=complex)
    for _ in range(3):
        y = rng.normal(size=4) + 1j * rng.normal(size=4)
        F = np.zeros(4, complex)
        D1 = np.zeros((4, 4), complex)
        D2 = np.zeros((4, 4, 4), complex)
        jets.henon_heiles_derivs(y, np.array([A, B, eps]), 1, F, D1, D2, D2, D2)
        assert np.array_equal(_hh_field_d(y, d), F)
        J = _hh_jacobian_d(y, d)
        assert np.array_equal(J, D1)
        h = 1e-3                      # F is quadratic: central differences are exact
        fd = np.array([(_hh_field_d(y + h * e, d) - _hh_field_d(y - h * e, d)) / (2 * h)
                       for e in np.eye(4)]).T
        assert np.max(np.abs(fd - J)) < 1e-10


@pytest.mark.parametrize("eps", [-1.0, -24.0, -96.0])
def test_negative_eps_is_accepted_with_the_lame_exponent(eps):
    # Yoshida's family is every eps != 0: for eps < 0, n(n+1) = 12/eps is negative, n complex
    # (n = -1/2 + iy) for -48 < eps < 0 and real in (-1/2, 0) below -48
    hh = mono.henon_heiles(eps=eps, ratio=1.0, energy=0.1)
    n = hh.lame_n
    assert abs(n * (n + 1) - 12 / eps) < 1e-12
    assert (isinstance(n, complex) and abs(n.imag) > 0) == (-48 < eps < 0)
    assert hh.lame_trace == pytest.approx((2 * np.cos(2 * np.pi * complex(n))).real, rel=1e-14)
    assert hh.y0[1] == hh.roots[1] / eps            # the same scaled plane motion Q = eps q2
    assert abs(hh.hamiltonian(hh.y0) - hh.energy / eps ** 2) < 1e-15


def test_negative_eps_commutator_trace_is_2cos_2pi_n_with_complex_n():
    hh = mono.henon_heiles(eps=-24.0, ratio=1.0, energy=0.1)
    n = hh.lame_n                                   # n(n+1) = -1/2: n = (-1 + i)/2
    assert abs(n - (-0.5 + 0.5j)) < 1e-14
    MR, MI = hh.period_monodromy()
    assert MR.verified and MI.verified
    G = MonodromyGroup([MR, MI], names=["M_R", "M_I"])
    t = G.commutator_trace().value + 2
    expected = 2 * np.cos(2 * np.pi * n)            # = -2 cosh(pi): real, far outside [-2, 2]
    assert abs(expected.imag) < 1e-12 and expected.real < -20
    assert abs(t - expected) < 1e-8 * abs(expected)
    c = G.classify()
    assert c.kind == "SL2" and c.verdict == NON_SOLVABLE, str(c)
