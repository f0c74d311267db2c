"""Ball-arithmetic jet transport (the validated integrator, for every kind of field) and the
non-integrability certificate.

Fast tests use a low Taylor order (K = 16..48, 128 bits): their balls are wider but just as
rigorous. The full certificate (K = 56, 160 bits, a few minutes) and the high-order
Hénon–Heiles checks are marked slow. Closed forms are computed in the tests, in balls, from
the exponents; every check has a negative control that the enclosures must exclude."""
import math

import numpy as np
import pytest

flint = pytest.importorskip("flint")

import narrowflow as nf                                       # noqa: E402
from narrowflow.monodromy import certify as ce                # noqa: E402

TEACHER = np.array([1.0, 1.5, 0.5, -0.7])
W0 = 0.21816744450929326          # the float engine's base point (z0 = 0.6 R), w-coordinate
FAST = dict(K=24, kappa=4.0, prec=128)


def nf4(x):
    net = nf.Network(width=2, activation="tanh")
    return nf.GradientFlow(net, nf.Dataset.from_teacher(net, TEACHER, np.asarray(x, float)))


@pytest.fixture(scope="module")
def field():
    flow = nf4([1.0])
    return ce.OnePointTwinField(1.0, float(flow.data.y[0, 0]))


@pytest.fixture(scope="module")
def circle_jet(field):
    return ce.transport_ball_jet(field, ce.polygon_circle(0.0, W0, 16), **FAST)


def _reference_circle(flow, vertices):
    """The same 2-jet by scipy's DOP853 on the w-parametrised VE_1, VE_2 with the package's
    float derivative tensors (no ball code)."""
    from scipy.integrate import solve_ivp
    from narrowflow.monodromy import jets
    system = jets._parse_system(flow, None, None, None, None, None)

    def rhs(s, st, a, b):
        w = a + (b - a) * s
        th = np.array([np.sinh(w), w, np.sinh(w), w], complex)
        F, D1, D2 = system.evaluate(th, order=2)
        A, B = D1 / F[1], D2 / F[1]
        P, Q = st[:16].reshape(4, 4), st[16:].reshape(4, 4, 4)
        dQ = np.einsum("ij,jab->iab", A, Q) + np.einsum("ijk,ja,kb->iab", B, P, P)
        return (b - a) * np.concatenate([(A @ P).ravel(), dQ.ravel()])

    st = np.concatenate([np.eye(4).ravel(), np.zeros(64)]).astype(complex)
    for a, b in zip(vertices[:-1], vertices[1:]):
        st = solve_ivp(rhs, (0, 1), st, args=(a, b), rtol=1e-13, atol=1e-15,
                       method="DOP853").y[:, -1]
    return st[:16].reshape(4, 4), st[16:].reshape(4, 16)


def test_curve_is_an_integral_curve(field):
    # F(Γ(w)) is parallel to Γ'(w) = (cosh w, 1, cosh w, 1): the closed-form curve (premise P2)
    flow = nf4([1.0])
    for w in (0.3, 0.2 + 0.7j, -0.4 + 1.1j):
        th = np.array([np.sinh(w), w, np.sinh(w), w], complex)
        from narrowflow.monodromy import jets
        F = jets._parse_system(flow, None, None, None, None, None).evaluate(th, order=0)[0]
        tangent = np.array([np.cosh(w), 1, np.cosh(w), 1])
        assert np.allclose(F, F[1] * tangent, rtol=1e-13, atol=1e-15)
    pts = field.point(0.25)
    assert abs(complex(pts[0].mid()) - math.sinh(0.25)) < 1e-15
    assert max(float(p.real.rad()) for p in pts) < 1e-30


def test_ball_jet_contains_independent_integration(field, circle_jet):
    flow = nf4([1.0])
    Pref, Qref = _reference_circle(flow, ce.polygon_circle(0.0, W0, 16))
    J = circle_jet
    P, Q = J.numpy()
    rad = J.max_radius()
    assert rad < 1e-9 and J.max_tail < 1e-12
    assert np.max(np.abs(P - Pref)) < rad + 1e-10
    assert np.max(np.abs(Q.reshape(4, 16) - Qref)) < rad + 1e-9
    lo, hi = J.phi2_norm()
    assert lo <= np.linalg.norm(Qref) + 1e-9 and np.linalg.norm(Qref) - 1e-9 <= hi
    assert abs(lo - 4.5008574267476) < 1e-9             # the float engine's circle: 4.50086


def test_crude_bounds_see_the_singular_points(field):
    # the a priori bounds are finite only on discs free of the VE's singular points:
    # w = 0 (the saddle), the zeros of f − y at ±0.5619, the pole of tanh at iπ/2
    assert all(math.isinf(b) for b in field.crude_bounds(0.05, 0.1))
    assert all(math.isinf(b) for b in field.crude_bounds(0.55, 0.05))
    assert all(math.isinf(b) for b in field.crude_bounds(1.5j, 0.1))
    assert all(math.isfinite(b) for b in field.crude_bounds(0.25, 0.05))
    assert all(math.isfinite(b) for b in field.crude_bounds(1.2j, 0.1))
    with pytest.raises(ValueError, match="singular point"):
        ce.transport_ball_jet(field, [0.01, -0.01], K=6)              # straight through w = 0


def test_null_homotopic_polygons_are_not_certified(field, circle_jet):
    # the certifier can say "no": the 16-gon and a homotopic 7-gon around w = 0 have
    # non-trivial jets (‖Φ2‖ ≈ 4.5) and commute, so the enclosure of the commutator's Φ2
    # contains 0 and nothing is certified
    J7 = ce.transport_ball_jet(field, ce.polygon_circle(0.0, W0, 7), **FAST)
    assert J7.phi2_norm()[0] > 4.0
    with ce._prec(FAST["prec"]) as fl:
        g1, g2 = (circle_jet.P, circle_jet.Q), (J7.P, J7.Q)
        C = ce.jet_compose(ce.jet_inverse(g2, fl), ce.jet_compose(
            ce.jet_inverse(g1, fl), ce.jet_compose(g2, g1, fl), fl), fl)
    CJ = ce.BallJet(C[0], C[1], 0, 0.0, 0.0, 0.0, [], FAST["prec"])
    lo, hi = CJ.phi2_norm()
    assert lo == 0.0 and hi < 1e-6
    e1, _ = CJ.phi1_minus_identity()
    assert e1 < 1e-9


def test_refuses_flows_outside_its_class():
    with pytest.raises(ValueError, match="3 data points"):
        ce.certify_integrability(nf4([-1.0, 0.5, 2.0]))
    net = nf.Network(width=2, activation="sigmoid")
    flow = nf.GradientFlow(net, nf.Dataset.from_teacher(nf.Network(width=2, activation="tanh"),
                                                        TEACHER, np.array([1.0])))
    with pytest.raises(ValueError, match="activation sigmoid"):
        ce.certify_integrability(flow)
    with pytest.raises(TypeError):
        ce.certify_integrability(object())


def test_cli_certify_not_available_for_three_points(tmp_path, capsys):
    from narrowflow.cli import main
    cfg = tmp_path / "three.toml"
    cfg.write_text('[network]\nwidth = 2\nactivation = "tanh"\n\n[data]\nx = [-1.0, 0.5, 2.0]\n'
                   'teacher = {width = 2, activation = "tanh", theta = [1.0, 1.5, 0.5, -0.7]}\n')
    assert main(["monodromy", str(cfg), "--curve", "twin", "--order", "1", "--no-figure",
                 "--certify", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "CERTIFICATION: not available" in out and "3 data points" in out


@pytest.mark.slow
def test_certificate_one_data_point():
    # the target: ‖Φ2‖ enclosed away from 0, Φ1 = I inside a ball of radius <= 1e-20,
    # and the independent 192-bit value 15.144041515479033642591 inside the enclosure
    cert = ce.certify_integrability(nf4([1.0]), w0=W0)
    assert cert.certified
    lo, hi = cert.phi2
    assert 0 < lo <= 15.144041515479033 <= hi and hi - lo < 1e-13
    e1, r1 = cert.phi1_minus_identity
    assert e1 <= 1e-20
    assert all(ok for ok, _ in cert.unipotent_check.values())
    text = str(cert)
    assert "CERTIFIED" in text and "P4 [proven analytically]" in text


# ---------------------------------------------------------------------------------------
# the general validated integrator against closed forms
# ---------------------------------------------------------------------------------------

ABC = (0.3 + 0.1j, 0.45, 0.7 - 0.05j)          # exact binary numbers, as the float tests'


def _e(z):
    """e^{2πi z} in balls."""
    return (2 * flint.arb.pi() * flint.acb(0, 1) * z).exp()


def _hyp_invariants(a, b, c):
    """The local invariants, in balls, from the exponents (docs/math.md §5.7): traces and
    determinants of M0, M1 and the trace of M1 M0 (eigenvalues e^{-2πia}, e^{-2πib})."""
    a, b, c = (flint.acb(v.real, v.imag) for v in map(complex, (a, b, c)))
    return {"tr M0": 1 + _e(-c), "det M0": _e(-c), "tr M1": 1 + _e(c - a - b),
            "det M1": _e(c - a - b), "tr M1M0": _e(-a) + _e(-b)}


def _hyp_enclosures(abc, K=48, n=32):
    fld = ce.HypergeometricBallField(*abc)
    J0 = ce.transport_ball_jet(fld, ce.polygon_circle(0.0, 0.5, n), K=K, prec=128)
    J1 = ce.transport_ball_jet(fld, ce.polygon_circle(1.0, 0.5, n), K=K, prec=128)
    with ce._prec(128):
        P = J1.P * J0.P                       # first around 0, then around 1
        return {"tr M0": J0.trace(), "det M0": J0.P.det(), "tr M1": J1.trace(),
                "det M1": J1.P.det(), "tr M1M0": P[0, 0] + P[1, 1]}


def test_hypergeometric_invariants_lie_in_narrow_balls():
    with ce._prec(128):
        enc = _hyp_enclosures(ABC)
        exact = _hyp_invariants(*ABC)
        a, b, c = ABC
        wrong = _hyp_invariants(a, b, c + 1e-12)        # a nearby equation's invariants
        for key, ball in enc.items():
            assert ball.contains(exact[key]), (key, ball, exact[key])
            assert ce._rad(ball) < 1e-20, (key, ball)
        # negative control: the balls are narrow enough to tell c from c + 1e-12
        assert not enc["tr M0"].overlaps(wrong["tr M0"])
        assert not enc["tr M1"].overlaps(wrong["tr M1"])


def test_hypergeometric_loop_through_a_singular_point_is_refused():
    fld = ce.HypergeometricBallField(*ABC)
    with pytest.raises(ValueError, match="singular point"):
        ce.transport_ball_jet(fld, [0.5, -0.5], K=8)


def _hh_commutator(eps, K, kappa, rho_max, prec=128, ratio=1.0):
    fld = ce.HenonHeilesBallField(eps, ratio, 0.1, normal=True)
    with ce._prec(prec):
        y0 = fld.base_point()
        TR, TI = fld.periods()
    kw = dict(y0=y0, K=K, kappa=kappa, rho_max=rho_max, prec=prec)
    JR = ce.transport_ball_jet(fld, [0, TR], **kw)
    JI = ce.transport_ball_jet(fld, [0, TI], **kw)
    with ce._prec(prec) as fl:
        C = ce.commutator_jet((JR.P, None), (JI.P, None), fl)[0]
        return fld, y0, JR, JI, C[0, 0] + C[1, 1]


@pytest.mark.parametrize("eps", [3.0, -24.0])
def test_henon_heiles_commutator_trace_is_2cos_2pi_n(eps):
    # n(n+1) = 12/eps: eps = 3 real non-integer n (SL2); eps = -24: n = (-1 + i)/2 complex
    fld, y0, JR, JI, tr = _hh_commutator(eps, K=48, kappa=6.0, rho_max=0.6)
    with ce._prec(128):
        n = (-1 + flint.acb(1 + 48 / flint.arb(eps)).sqrt()) / 2
        assert (n * (n + 1)).contains(12 / flint.arb(eps))
        expected = 2 * (2 * flint.arb.pi() * n).cos()
        other = ce.HenonHeilesBallField(eps + 0.5).lame_trace()
        near = ce.HenonHeilesBallField(eps * (1 + 2.0 ** -30)).lame_trace()
        assert tr.contains(expected), (tr, expected)
        assert ce._rad(tr) < 1e-20
        # negative controls: a different eps's trace, even a very close one, is excluded
        assert not tr.overlaps(other) and not tr.overlaps(near)
        # both period paths close the plane orbit: the end states contain the base point
        for J in (JR, JI):
            assert all(e.contains(b) for e, b in zip(J.y, y0))
        # Liouville: the normal VE is trace-free, so det M = 1 on both loops
        assert JR.P.det().contains(1) and JI.P.det().contains(1)


def test_henon_heiles_integrable_eps6_and_full_variational_equation():
    # eps = 6: n = 2, tr [M_R, M_I] = 2 (integrable); K = 60 gives radius ~1e-35
    fld, y0, JR, JI, tr = _hh_commutator(6.0, K=60, kappa=6.0, rho_max=1.0, prec=160)
    assert tr.contains(2) and ce._rad(tr) < 1e-30
    # the full 4x4 VE (order 2) carries the normal block (rows/columns q1, p1) of the same
    # monodromy: the balls must overlap
    full = ce.HenonHeilesBallField(6.0, normal=False)
    with ce._prec(160):
        yf = full.base_point()
        TR, _ = full.periods()
    JF = ce.transport_ball_jet(full, [0, TR], y0=yf, K=40, kappa=6.0, rho_max=0.6, prec=160)
    for (i, j), (k, l) in zip([(0, 0), (0, 2), (2, 0), (2, 2)], [(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert JF.P[i, j].overlaps(JR.P[k, l])
    assert JF.Q is not None and JF.phi2_norm()[0] > 0


TEACHER3 = np.array([-1.0, 0.5, 2.0])


def _net_flow(act, x):
    net = nf.Network(width=2, activation=act)
    return nf.GradientFlow(net, nf.Dataset.from_teacher(nf.Network(width=2, activation="tanh"),
                                                        TEACHER, np.asarray(x, float)))


@pytest.mark.parametrize("act", nf.activations.NAMES)
def test_network_ball_field_encloses_the_float_derivatives(act):
    from narrowflow.monodromy import jets
    flow = _net_flow(act, TEACHER3)
    fld = ce.NetworkBallField(flow)
    th = np.array([0.5 + 0.25j, 0.25 - 0.125j, -0.375, 0.75 + 0.5j])
    F, D1, D2 = jets._parse_system(flow, None, None, None, None, None).evaluate(th, order=2)
    with ce._prec(128):
        y = [flint.acb(v.real, v.imag) for v in th]
        Fb = fld.vector(y)
        A, B = fld.linear(y)
    for ball, ref in [(Fb[i], F[i]) for i in range(4)] + \
            [(A[i][j], D1[i, j]) for i in range(4) for j in range(4)] + \
            [(B[16 * i + 4 * j + k], D2[i, j, k]) for i in range(4) for j in range(4) for k in range(4)]:
        mid = complex(ce._acb(ball).mid())
        assert abs(mid - ref) <= ce._rad(ce._acb(ball)) + 1e-13 * (1 + abs(ref)), (ball, ref)


def _first_integral_check(flow, I, path, K=20, th0=(0.5, 0.25, -0.375, 0.75)):
    """Transport along a complex-time path; return (I(end) − I(start) balls, ∇I covector
    transport residual balls, jet)."""
    fld = ce.NetworkBallField(flow)
    J = ce.transport_ball_jet(fld, path, y0=list(th0), K=K, kappa=4.0, rho_max=0.4, prec=128)
    with ce._prec(128):
        y0 = [flint.acb(v) for v in th0]
        diffs, cov = [], []
        for j in range(2):
            diffs.append(I(J.y, j) - I(y0, j))
            g0 = _grad(lambda t: I(t, j), y0)
            g1 = _grad(lambda t: I(t, j), J.y)
            for b in range(4):          # (∇I(end)ᵀ P)_b − ∇I(start)_b
                cov.append(sum((g1[i] * J.P[i, b] for i in range(4)), flint.acb(0)) - g0[b])
    return diffs, cov, J


def _grad(f, y):
    """∇f at y (4 acb) by exact differentiation of a degree-1 power series in each slot."""
    out = []
    with ce._cap(2):
        for b in range(4):
            t = [flint.acb_series([v, 1 if i == b else 0], prec=2) for i, v in enumerate(y)]
            out.append(f(t).coeffs()[1] if len(f(t).coeffs()) > 1 else flint.acb(0))
    return out


def test_network_flow_keeps_the_one_point_first_integrals():
    # one data point, tanh: I_j = a_j² − cosh(2 w_j x)/(2x²); sigmoid:
    # I_j = a_j² − 2 w_j/x − 2 e^{w_j x}/x² (a da = σ/(x σ') dw); both must be conserved,
    # and dI must be carried by the 1-jet, along a complex-time path
    x = flint.arb(1.0)
    cosh = lambda z: (z.exp() + (-z).exp()) / 2
    I_tanh = lambda t, j: t[2 * j] * t[2 * j] - cosh(2 * t[2 * j + 1] * x) / (2 * x * x)
    I_sig = lambda t, j: (t[2 * j] * t[2 * j] - 2 * t[2 * j + 1] / x
                          - 2 * (t[2 * j + 1] * x).exp() / (x * x))
    path = [0, 0.25, 0.25 + 0.25j]        # open: a closed one would return to θ0
    for act, I in (("tanh", I_tanh), ("sigmoid", I_sig)):
        diffs, cov, J = _first_integral_check(_net_flow(act, [1.0]), I, path)
        assert all(d.contains(0) for d in diffs + cov), act
        assert max(ce._rad(d) for d in diffs + cov) < 1e-9
    # negative control: a² − w² is conserved for linear networks only; for tanh its
    # enclosure excludes "conserved"
    bal = lambda t, j: t[2 * j] * t[2 * j] - t[2 * j + 1] * t[2 * j + 1]
    diffs, _, _ = _first_integral_check(_net_flow("tanh", [1.0]), bal, path)
    assert not any(d.contains(0) for d in diffs)


def test_linear_network_keeps_balancedness_with_three_points():
    # σ(z) = z: a_j² − w_j² is a first integral for any data
    bal = lambda t, j: t[2 * j] * t[2 * j] - t[2 * j + 1] * t[2 * j + 1]
    diffs, cov, _ = _first_integral_check(_net_flow("linear", TEACHER3), bal,
                                          [0, 0.2j, 0.2 + 0.1j])
    assert all(d.contains(0) for d in diffs + cov)
    assert max(ce._rad(d) for d in diffs + cov) < 1e-9


@pytest.mark.parametrize("act", nf.activations.NAMES)
def test_network_jet_carries_the_field(act):
    # the flow map carries its field: Φ1(t) F(y0) = F(y(t)), for every activation
    flow = _net_flow(act, TEACHER3)
    fld = ce.NetworkBallField(flow)
    th0 = [0.5, 0.25, -0.375, 0.75]
    J = ce.transport_ball_jet(fld, [0, 0.1j, 0.1], y0=th0, K=16, prec=128)
    with ce._prec(128):
        F0 = flint.acb_mat(4, 1, fld.vector([flint.acb(v) for v in th0]))
        F1 = flint.acb_mat(4, 1, fld.vector(J.y))
        D = J.P * F0 - F1
    assert all(D[i, 0].contains(0) for i in range(4))
    assert max(ce._rad(D[i, 0]) for i in range(4)) < 1e-6
    assert J.Q is not None


def test_network_ball_field_refuses_what_it_cannot_enclose():
    from types import SimpleNamespace
    flow = _net_flow("tanh", [1.0])
    fake = SimpleNamespace(network=SimpleNamespace(activation=SimpleNamespace(name="relu"),
                                                   output_dim=1), data=flow.data)
    with pytest.raises(ValueError, match="'relu'"):
        ce.NetworkBallField(fake)
    two = nf.Network(width=2, output_dim=2, activation="tanh")
    with pytest.raises(ValueError, match="one output"):
        ce.NetworkBallField(nf.GradientFlow(two, nf.Dataset(np.array([1.0]), np.array([[1.0, 2.0]]))))
    # softplus is continued on the principal branch only: at u = w x = 1 + iπ,
    # 1 + e^u = 1 − e < 0 lies on the cut, and no Picard box is accepted there
    fld = ce.NetworkBallField(_net_flow("softplus", [1.0]))
    with ce._prec(128):
        y = [flint.acb(0.5), flint.acb(1.0, math.pi), flint.acb(0.5), flint.acb(0.25)]
        assert fld.picard_box(y, 0.01) is None
        assert fld.picard_box([flint.acb(0.5), flint.acb(1.0), flint.acb(0.5), flint.acb(0.25)],
                              0.01) is not None


def test_low_order_enclosures_are_wide_but_still_contain_the_closed_forms():
    # at low Taylor order the truncation remainders dominate the radii: the balls must still
    # contain the exact values (a missing or too small remainder bound fails here)
    with ce._prec(128):
        enc = _hyp_enclosures(ABC, K=12, n=32)
        exact = _hyp_invariants(*ABC)
        for key, ball in enc.items():
            assert ball.contains(exact[key]), (key, ball, exact[key])
            assert 1e-12 < ce._rad(ball) < 1e-2
    fld, _, JR, JI, tr = _hh_commutator(3.0, K=24, kappa=4.0, rho_max=0.5)
    with ce._prec(128):
        assert tr.contains(fld.lame_trace()) and 1e-12 < ce._rad(tr) < 1e-1


# ---------------------------------------------------------------------------------------
# order 3: Φ3 as balls, against the float engine (narrowflow.monodromy.jets)
# ---------------------------------------------------------------------------------------

def _float_jet(system, y0, path):
    """The float engine's jet (order 3) and its own error estimate per order: the difference
    between two tolerances plus a round-off floor."""
    from narrowflow.monodromy import jets
    y0 = np.array([complex(v) for v in y0])
    T, _ = jets.transport_jet(system, y0, path, order=3, rtol=1e-13, atol=1e-15)
    T2, _ = jets.transport_jet(system, y0, path, order=3, rtol=1e-11, atol=1e-13)
    err = [np.abs(a - b) + 1e-13 * (1 + np.max(np.abs(a))) for a, b in zip(T, T2)]
    return T, err


def _assert_contains_float(J, T, err, max_rad):
    B, R = J.tensors(), J.radii()
    for k in (1, 2, 3):
        assert np.all(np.abs(B[k - 1] - T[k]) <= R[k - 1] + err[k]), k
        assert R[k - 1].max() < max_rad, (k, R[k - 1].max())


def test_order3_ball_jets_contain_the_float_engine_jets():
    # Hénon–Heiles (full VE, D³F = 0) and a 3-point tanh network (D³F from σ''''), along
    # complex-time paths: the float engine's Φ1..Φ3 lie in the balls (within its own error
    # estimate); negative control: the float jets of a path 1e-6 longer do not
    from narrowflow.monodromy import jets
    fld = ce.HenonHeilesBallField(2.0, normal=False, order=3)
    with ce._prec(128):
        y0 = fld.base_point()
    path = [0, 0.7, 0.7 + 0.5j]
    J = ce.transport_ball_jet(fld, path, y0=y0, K=24, kappa=4.0, rho_max=0.6, prec=128)
    assert J.order == 3 and J.R.ncols() == 64
    system = jets.henon_heiles_system(2.0, 1.0)
    y0f = [complex(v.mid()) for v in y0]
    T, err = _float_jet(system, y0f, path)
    _assert_contains_float(J, T, err, 1e-9)
    Tx, _ = _float_jet(system, y0f, [0, 0.7, 0.7 + (0.5 + 1e-6) * 1j])
    assert np.any(np.abs(J.tensors()[2] - Tx[3]) > J.radii()[2] + err[3])

    flow = _net_flow("tanh", TEACHER3)
    nfld = ce.NetworkBallField(flow, order=3)
    th0 = [0.5, 0.25, -0.375, 0.75]
    path = [0, 0.25j, 0.25 + 0.25j]
    J = ce.transport_ball_jet(nfld, path, y0=th0, K=16, kappa=4.0, rho_max=0.4, prec=128)
    system = jets._parse_system(flow, None, None, None, None, None)
    T, err = _float_jet(system, th0, path)
    _assert_contains_float(J, T, err, 1e-5)
    Tx, _ = _float_jet(system, th0, [0, 0.25j, 0.25 + 1e-6 + 0.25j])
    assert np.any(np.abs(J.tensors()[2] - Tx[3]) > J.radii()[2] + err[3])


def test_order3_jet_algebra_matches_the_float_engine():
    # composition and inversion of 3-jets in balls (exact inputs) against jets.compose /
    # jets.inverse, and g ∘ g⁻¹ ∋ the identity's jet
    from narrowflow.monodromy import jets
    rng = np.random.default_rng(3)
    n = 3

    def rand_jet():
        T = [np.zeros(n, complex), np.eye(n) + 0.3 * rng.standard_normal((n, n))]
        for k in (2, 3):
            t = rng.standard_normal((n,) * (k + 1)) + 1j * rng.standard_normal((n,) * (k + 1))
            # symmetrise the lower indices
            import itertools
            t = sum(np.transpose(t, (0,) + tuple(1 + np.array(p)))
                    for p in itertools.permutations(range(k))) / math.factorial(k)
            T.append(t)
        return T

    def balls(T):
        return tuple(flint.acb_mat(n, n ** k, [flint.acb(complex(v).real, complex(v).imag)
                                               for v in T[k].reshape(n, n ** k).ravel()])
                     for k in (1, 2, 3))

    G, H = rand_jet(), rand_jet()
    with ce._prec(128) as fl:
        C = ce.jet_compose(balls(G), balls(H), fl)
        I = ce.jet_inverse(balls(G), fl)
        Id = ce.jet_compose(balls(G), I, fl)
    ref_c = jets.compose(G, H)
    ref_i = jets.inverse(G)
    for k in (1, 2, 3):
        c = np.array([[complex(C[k - 1][i, j].mid()) for j in range(n ** k)] for i in range(n)])
        inv = np.array([[complex(I[k - 1][i, j].mid()) for j in range(n ** k)] for i in range(n)])
        assert np.allclose(c, ref_c[k].reshape(n, n ** k), rtol=1e-12, atol=1e-12)
        assert np.allclose(inv, ref_i[k].reshape(n, n ** k), rtol=1e-10, atol=1e-10)
        ident = np.eye(n) if k == 1 else np.zeros((n, n ** k))
        assert all(Id[k - 1][i, j].contains(flint.acb(ident[i, j]))
                   for i in range(n) for j in range(n ** k))


def _hh_commutator3(eps, K=24, kappa=4.0, rho_max=0.6, prec=128):
    fld = ce.HenonHeilesBallField(eps, normal=False, order=3)
    with ce._prec(prec):
        y0 = fld.base_point()
        TR, TI = fld.periods()
    return ce.commutator_enclosure(fld, [0, TR], [0, TI], K=K, kappa=kappa, rho_max=rho_max,
                                   prec=prec, y0=y0)


def test_henon_heiles_eps2_order3_commutator_is_certified_nonzero():
    # ε = 2 (non-integrable; Lamé n = 2, so the normal VE's monodromy commutes): the
    # commutator of the period loops has Φ1 = I and Φ2 = 0 within the balls, and an
    # enclosure of ‖Φ3‖ that excludes 0 (the float engine: 7563.35). Together with ε = 1
    # (below), whose enclosure contains 0, the test comes out both ways. Through the API:
    # certify_integrability(order=3) on the float engine's system object.
    cert = ce.certify_integrability(nf.monodromy.henon_heiles(eps=2.0), order=3, K=24,
                                    kappa=4.0, prec=128)
    JR, JI = cert.jets.values()
    C = cert.commutator
    assert C.order == 3
    lo, hi = C.phi3_norm()
    assert lo > 7000 and hi < 8000 and hi - lo < 1.0
    assert 0 <= 7563.350922231992 - lo and 7563.350922231992 <= hi + 1e-3   # float engine's
    assert C.phi2_norm()[0] == 0.0 and C.phi2_norm()[1] < 1e-4
    assert C.phi1_minus_identity()[0] < 1e-6
    # the single loops: the float engine's ‖Φ3‖ (281.37, 10574.4) lie in the balls
    assert JR.phi3_ball().overlaps(flint.arb(281.37487845670967, 1e-8))
    assert JI.phi3_ball().overlaps(flint.arb(10574.413149537795, 1e-7))
    # the certificate: P4's identities hold inside the balls, decided at order 3
    assert all(cert.self_checks.values()) and len(cert.self_checks) == 6
    assert cert.certified and cert.decided_order == 3
    assert cert.phi[2][0] == 0.0 and cert.phi[3] == (lo, hi)
    text = str(cert)
    assert "CERTIFIED: G⁰(VE_3) is non-abelian" in text and "P4 [proven analytically" in text


def test_certify_integrability_validates_order_and_class():
    hh = nf.monodromy.henon_heiles(eps=2.0)
    for bad in (1, 4, 2.0, True, "3"):
        with pytest.raises(ValueError, match="order must be 2 or 3"):
            ce.certify_integrability(hh, order=bad)
        with pytest.raises(ValueError, match="order must be 2 or 3"):
            ce.certify_integrability(nf4([1.0]), order=bad)
    # order 3 for networks: not implemented, said so (before any work)
    with pytest.raises(ValueError, match="order=3 is not implemented for network flows"):
        ce.certify_integrability(nf4([1.0]), order=3)
    # the flow class is checked first: the 3-point flow names its data points
    with pytest.raises(ValueError, match="3 data points"):
        ce.certify_integrability(nf4([-1.0, 0.5, 2.0]), order=3)
    # Hénon–Heiles: P4 is proven for ratio 1 and ε = 1, 2 only
    with pytest.raises(ValueError, match="ε = 1 or 2"):
        ce.certify_integrability(nf.monodromy.henon_heiles(eps=3.0), order=3)
    with pytest.raises(ValueError, match="ratio = 0.5"):
        ce.certify_integrability(nf.monodromy.henon_heiles(eps=2.0, ratio=0.5), order=3)


def test_cli_certify_at_the_deciding_order_says_why_not_for_the_default(tmp_path, capsys):
    # plain `narrowflow monodromy --certify`: the built-in 3-point example decides at order 2;
    # the certificate is tried at that order and refused with the reason, without a crash
    from narrowflow.cli import main
    out = tmp_path / "o"
    assert main(["monodromy", "--no-figure", "--certify", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "certifying at order 2 (step 2 decided" in text
    line = next(t for t in text.splitlines() if t.startswith("CERTIFICATION"))
    assert line.startswith("CERTIFICATION: not available for this flow at order 2")
    assert "3 data points" in line and "closed-form curve" in line
    assert "float verdict above stands with its error bars" in line
    assert (out / "certificate.txt").read_text().startswith("CERTIFICATION: not available")


@pytest.mark.slow
def test_henon_heiles_order3_certificate_at_default_settings():
    # K = 56, 160 bits (~45 s per certificate on one idle core): ε = 2 is certified at order
    # 3 with a narrow enclosure around the float engine's 7563.350922 ± 2e-7; at order 2 the
    # same loops certify nothing (Φ2 = 0 within the balls); the integrable ε = 1 is not
    # certified at order 3 (its enclosure contains 0)
    cert = ce.certify_integrability(nf.monodromy.henon_heiles(eps=2.0), order=3)
    assert cert.certified and cert.decided_order == 3
    lo, hi = cert.phi[3]
    assert 7563.3509 < lo <= hi < 7563.3510 and hi - lo < 1e-9
    assert abs(7563.350922231992 - lo) < 2e-7
    assert cert.phi[2][0] == 0.0 and cert.phi1_minus_identity[0] < 1e-20
    c2 = ce.certify_integrability(nf.monodromy.henon_heiles(eps=2.0), order=2)
    assert not c2.certified and c2.decided_order is None and "NOT CERTIFIED" in str(c2)
    c1 = ce.certify_integrability(nf.monodromy.henon_heiles(eps=1.0), order=3)
    assert not c1.certified and c1.phi[3][0] == 0.0 and all(c1.self_checks.values())


@pytest.mark.slow
def test_henon_heiles_eps1_order3_commutator_contains_zero():
    # ε = 1 (integrable): single loops with ‖Φ3‖ ≈ 169, 102; their commutator's Φ3 ball
    # contains 0, narrowly (so it is no structural zero and could have excluded it)
    JR, JI, C = _hh_commutator3(1.0)
    assert JR.phi3_norm()[0] > 160 and JI.phi3_norm()[0] > 100
    lo, hi = C.phi3_norm()
    assert lo == 0.0 and hi < 1e-3
    assert C.phi2_norm()[1] < 1e-5 and C.phi1_minus_identity()[0] < 1e-7


@pytest.mark.slow
def test_henon_heiles_eps6_order3_commutator_contains_zero():
    # ε = 6 (integrable): ‖Φ3‖ ≈ 2160 and 1.4e7 on the period loops; composing the
    # commutator amplifies the input radii by ~1e21 (‖Φ1(γ_I)‖ ≈ 271), so K = 48 and 192 bits
    JR, JI, C = _hh_commutator3(6.0, K=48, kappa=6.0, rho_max=0.6, prec=192)
    assert JR.phi3_ball().overlaps(flint.arb(2159.78662732947, 1e-6))
    assert JI.phi3_norm()[0] > 1.3e7
    lo, hi = C.phi3_norm()
    assert lo == 0.0 and hi < 1e-2
    assert C.phi1_minus_identity()[0] < 1e-20
