"""Transport along complex paths (narrowflow.monodromy.transport), checked against closed forms
(hypergeometric local invariants, exp(B t)) and scipy's DOP853 at tight tolerance."""
import numpy as np
import pytest
from numba import njit
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import narrowflow.monodromy as mono
from narrowflow.monodromy import transport as T
from narrowflow.monodromy.paths import circle, segment

ABC = (0.3 + 0.1j, 0.45, 0.7 - 0.05j)


@pytest.fixture(scope="module")
def hyp():
    r0, r1 = mono.hypergeometric_monodromy(*ABC, base=0.5, results=True)
    return r0, r1


def test_hypergeometric_local_invariants(hyp):
    a, b, c = ABC
    r0, r1 = hyp
    M0, M1 = r0.matrix, r1.matrix
    inv = mono.hypergeometric_invariants(a, b, c)
    assert abs(np.trace(M0) - (1 + np.exp(-2j * np.pi * c))) < 1e-9
    assert abs(np.trace(M1) - (1 + np.exp(2j * np.pi * (c - a - b)))) < 1e-9
    assert abs(np.linalg.det(M0) - inv["det_M0"]) < 1e-9
    assert abs(np.linalg.det(M1) - inv["det_M1"]) < 1e-9
    ev = np.linalg.eigvals(M1 @ M0)
    ex = np.array(inv["eig_M1M0"])
    assert min(np.max(np.abs(ev - ex)), np.max(np.abs(ev - ex[::-1]))) < 1e-9
    for r in (r0, r1):
        assert r.verified and r.closed and r.status == "ok"
        assert r.liouville_residual < 1e-9
        assert 0 < r.error < 1e-8                 # two tolerances differ, but little
        assert r.deformation_change < 1e-9
        assert r.inverse_residual < 1e-10           # the loop backwards gives M^-1
    # the error estimate is honest: it bounds the true error of the trace
    assert abs(np.trace(M0) - inv["tr_M0"]) <= 10 * r0.error


def test_hypergeometric_reversal_and_composition(hyp):
    r0, r1 = hyp
    sys_ = mono.hypergeometric(*ABC)
    l0, l1 = mono.systems.hypergeometric_loops(0.5)
    back = sys_.transport(l0.reversed())
    assert np.max(np.abs(back.matrix @ r0.matrix - np.eye(2))) < 1e-9
    both = sys_.transport(l0 + l1)                # first around 0, then around 1
    assert np.max(np.abs(both.matrix - r1.matrix @ r0.matrix)) < 1e-9
    twice = sys_.transport(circle(0.0, 0.5, 0.0, turns=2))
    assert np.max(np.abs(twice.matrix - r0.matrix @ r0.matrix)) < 1e-9


def test_results_behave_as_matrices():
    M0, M1 = mono.hypergeometric_monodromy(*ABC)          # docs/design.md §3 usage
    assert M0.shape == (2, 2) and abs(np.trace(M0) - np.trace(M0.matrix)) == 0
    assert np.allclose(M1 @ M0, M1.matrix @ M0.matrix) and M0[0, 1] == M0.matrix[0, 1]
    plain = mono.hypergeometric_monodromy(*ABC, results=False)
    assert isinstance(plain[0], np.ndarray) and np.allclose(plain[0], M0.matrix)
    one = mono.hypergeometric(*ABC).transport([0.5, 0.5 + 0.2j])   # one polyline
    assert not isinstance(one, list) and not one.closed


def test_against_scipy_dop853_on_an_open_path():
    a, b, c = ABC
    sys_ = mono.hypergeometric(a, b, c)
    path = segment(0.5, 0.5 + 0.8j) + segment(0.5 + 0.8j, -0.3 + 0.4j)
    res = sys_.transport(path)
    assert not res.closed                         # an open path gives a connection matrix

    def f(s, y):
        z, dz = path.z(s), path.dz(s)
        return (sys_.matrix(z) @ y.reshape(2, 2)).ravel() * dz

    Y = np.eye(2, dtype=complex).ravel()
    for lo, hi in zip(path.breakpoints[:-1], path.breakpoints[1:]):
        Y = solve_ivp(f, (lo, hi), Y, method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    assert np.max(np.abs(res.matrix - Y.reshape(2, 2))) < 1e-9


def test_python_callables_give_the_same_matrix():
    def A(z, d):
        return np.array([[0, 1], [d[0] * d[1] / (z * (1 - z)), -(d[2] - (d[0] + d[1] + 1) * z)
                                                                  / (z * (1 - z))]])
    r_py = T.transport_linear(A, 2, circle(0.0, 0.5), np.array(ABC), deform=0)
    r_nb = mono.hypergeometric(*ABC).transport(circle(0.0, 0.5), deform=0)
    assert np.max(np.abs(r_py.matrix - r_nb.matrix)) < 1e-10


@njit
def _osc_field(y):
    return np.array([y[1], -y[0]], dtype=np.complex128)


@njit
def _osc_jac(y):
    return np.array([[0.0, 1.0], [-1.0, 0.0]], dtype=np.complex128)


def test_field_transport_closure_is_verified_both_ways():
    y0 = np.array([1.0, 0.3], dtype=complex)
    B = np.array([[0.0, 1.0], [-1.0, 0.0]])
    # a closed period of the harmonic oscillator (complex path from 0 to 2 pi)
    closed, short, nearly = mono.variational_monodromy(
        _osc_field, _osc_jac, y0,
        [[0, np.pi + 1j, 2 * np.pi], [0, 3.0], [0, 2 * np.pi * (1 + 1e-7)]])
    assert closed.closed and closed.verified
    assert np.max(np.abs(closed.matrix - np.eye(2))) < 1e-9
    assert closed.closure_defect[1] < closed.closure_defect[0] or closed.closure_defect[1] < 1e-12
    # an open path: the base curve does not come back
    assert not short.closed and not short.verified
    assert np.max(np.abs(short.matrix - expm(3.0 * B))) < 1e-9
    # nearly closed: a small defect that does not shrink with the tolerance is not closure
    d0, d1 = nearly.closure_defect
    assert 1e-7 < d1 < 1e-5 and abs(d0 - d1) < 0.1 * d1
    assert not nearly.closed and "not" in nearly.closure_note


def test_plain_python_field_runs_the_same_algorithm():
    y0 = np.array([1.0, 0.3], dtype=complex)
    path = [[0, np.pi + 1j, 2 * np.pi]]
    py = mono.variational_monodromy(lambda y: np.array([y[1], -y[0]]),
                                    lambda y: np.array([[0.0, 1.0], [-1.0, 0.0]]), y0, path)[0]
    nb = mono.variational_monodromy(_osc_field, _osc_jac, y0, path)[0]
    assert py.verified and np.max(np.abs(py.matrix - nb.matrix)) < 1e-13
    assert py.nfev == nb.nfev                  # the same step sequence


def test_budget_and_singular_paths_are_reported():
    sys_ = mono.hypergeometric(*ABC)
    r = sys_.transport(circle(0.0, 0.5), max_nfev=100)
    assert r.status.startswith("evaluation budget") and not r.verified
    s = sys_.transport(segment(0.5, 1.0))        # runs into the singular point z = 1
    assert s.status != "ok" and not s.verified


def test_bad_arguments():
    with pytest.raises(ValueError, match="y0"):
        mono.variational_monodromy(_osc_field, _osc_jac, np.zeros((2, 2)), [[0, 1]])
    with pytest.raises(TypeError, match="paths"):
        mono.variational_monodromy(_osc_field, _osc_jac, np.zeros(2), 3.0)
    with pytest.raises(TypeError, match="field"):
        mono.variational_monodromy(1.0, _osc_jac, np.zeros(2), [[0, 1]])
    with pytest.raises(ValueError, match="rtol"):
        T.integrate_path(lambda z, y, d: y, np.ones(1), [0, 1], rtol=-1.0)
    with pytest.raises(TypeError, match=r"paths\[1\]"):
        mono.variational_monodromy(_osc_field, _osc_jac, np.ones(2), [[0, 1], "x"])
    with pytest.raises(ValueError, match=r"paths\[0\].*2 points"):
        mono.variational_monodromy(_osc_field, _osc_jac, np.ones(2), [[0]])


def test_a_single_polyline_given_flat_is_one_path():
    y0 = np.array([1.0, 0.3], dtype=complex)
    flat = mono.variational_monodromy(_osc_field, _osc_jac, y0, [0, 2 * np.pi])
    nested = mono.variational_monodromy(_osc_field, _osc_jac, y0, [[0, 2 * np.pi]])
    assert len(flat) == 1 and flat[0].verified
    assert np.array_equal(flat[0].matrix, nested[0].matrix)


def _fake_run(path, rtol, d_coarse=0.0, d_deformed=0.0, d_back=0.0, trace=0.0):
    """A transport stand-in: M = I plus chosen perturbations on the coarse run, the deformed
    loop and the loop backwards; ∮tr = trace (Liouville residual |1 - e^trace|)."""
    def run(pth, tol):
        M = np.eye(2, dtype=complex)
        if tol > rtol:
            M[0, 1] += d_coarse
        elif pth is not path and pth.is_closed and pth.z(0.3) != path.z(0.3):
            back = abs(pth.z(0.3) - path.reversed().z(0.3)) < 1e-14
            M[0, 1] += d_back if back else d_deformed
        return None, M, trace, 10, T.STATUS_OK
    return run


@pytest.mark.parametrize("kw, which", [
    (dict(d_deformed=1e-8), "deformation_change"),
    (dict(trace=1e-7), "liouville_residual"),
    (dict(d_back=1e-9), "inverse_residual"),
])
def test_error_includes_deformation_liouville_and_backwards_residuals(kw, which):
    path = circle(0.0, 0.5)
    rtol = 1e-12
    base = T.verified_transport(_fake_run(path, rtol, d_coarse=1e-13), path, None, rtol=rtol)
    assert base.error == pytest.approx(1e-13) and base.verified   # only the tolerance change
    r = T.verified_transport(_fake_run(path, rtol, d_coarse=1e-13, **kw), path, None, rtol=rtol)
    assert r.verified and getattr(r, which) > 1e-10
    value = getattr(r, which) * (1.0 if which == "deformation_change" else np.max(np.abs(r.matrix)))
    assert r.error >= value > 100 * base.error and r.rel_error == r.error / np.max(np.abs(r.matrix))


def test_cached_integrator_from_generated_module(tmp_path, monkeypatch):
    monkeypatch.setenv("NARROWFLOW_CACHE_DIR", str(tmp_path))
    header = ("@njit(cache=True)\n"
              "def growth(z, y, data):\n"
              "    return y * data[0] * z\n")
    ints = T.cached_integrators("test_growth", header, {"g": "growth"})
    y, nfev, _, _, status = T.integrate_path(ints["g"], np.ones(1, complex),
                                             [0, 1 + 1j], np.array([0.7 + 0.1j]))
    assert status == T.STATUS_OK and abs(y[0] - np.exp((0.7 + 0.1j) * (1 + 1j) ** 2 / 2)) < 1e-11
    assert len(list(tmp_path.glob("mono_test_growth_*.py"))) == 1
    # another rhs body gives another module (the source is hashed into its name)
    T.cached_integrators("test_growth", header.replace("* z", "* z * 2.0"), {"g": "growth"})
    assert len(list(tmp_path.glob("mono_test_growth_*.py"))) == 2
