"""Ball-arithmetic 2-jet transport and the non-integrability certificate (issue 15).

Fast tests use a low Taylor order (K = 24, 128 bits): their balls are wider but just as
rigorous. The full certificate (K = 56, 160 bits, a few minutes) is marked slow."""
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
