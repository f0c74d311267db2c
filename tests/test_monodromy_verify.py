"""The one path integrator (monodromy.pathint) and the one verification protocol
(monodromy.verify): closed forms and the rules' boundaries, both ways."""
import math

import numpy as np
import pytest
from numba import njit

import narrowflow as nf
from narrowflow import derivatives as dv
from narrowflow import rhs, tableaus
from narrowflow.monodromy import pathint, verify
from narrowflow.monodromy.paths import circle, lasso, segment


def test_tableau_is_the_packages_dop853():
    tab = tableaus.get("dop853")
    A, B, C, E3, E5 = pathint.TABLEAU
    assert np.array_equal(A, tab.A[:12, :12]) and np.array_equal(B, tab.b[:12])
    assert np.array_equal(C, tab.c[:12]) and np.array_equal(E5, tab.e[:13])
    assert np.array_equal(E3, tab.e3[:13])
    assert abs(B.sum() - 1) < 1e-14            # consistency: an order condition


@njit
def _growth(z, y, data):
    return y * data[0] * z


def test_integrator_against_closed_form_on_every_piece_kind():
    # dy/dz = c z y: y(end) = y0 exp(c (z1² - z0²) / 2), along a segment, an arc and a lasso
    c = 0.7 + 0.1j
    for path in (segment(0.2, 1 + 1j), circle(0.5, 0.3, 0.0) + segment(0.8, 0.1j),
                 lasso(0.0, 1.5, 0.4, turns=2)):
        y, nfev, nacc, _, status = pathint.integrate_path(_growth, np.ones(1), path, [c],
                                                          rtol=1e-12)
        exact = np.exp(c * (path.end ** 2 - path.start ** 2) / 2)
        assert status == pathint.STATUS_OK and nacc > 0 and nfev > 13 * len(path.encode()[0])
        assert abs(y[0] - exact) < 1e-10 * abs(exact)


def test_python_and_compiled_take_the_same_steps():
    path = lasso(0.0, 1.5, 0.4)
    a = pathint.integrate_path(_growth, np.ones(1), path, [0.7 + 0.1j])
    b = pathint.integrate_path(lambda z, y, d: y * d[0] * z, np.ones(1), path, [0.7 + 0.1j])
    assert a[1:] == b[1:] and abs(a[0][0] - b[0][0]) < 1e-13


def test_first_step_does_not_depend_on_the_previous_piece():
    # the second piece alone and after a slow first piece start with the same step sequence
    first, second = segment(0.0, 1e-3), segment(1e-3, 2.0)
    _, nf2, *_ = pathint.integrate_path(_growth, np.ones(1), second, [1.0])
    y1, nf1, *_ = pathint.integrate_path(_growth, np.ones(1), first, [1.0])
    _, nf12, *_ = pathint.integrate_path(_growth, np.ones(1), first + second, [1.0])
    _, nf2b, *_ = pathint.integrate_path(_growth, y1, second, [1.0])
    assert nf12 == nf1 + nf2b and abs(nf2b - nf2) <= 13


@pytest.mark.parametrize("coarse, fine, closed, word", [
    (1e-7, 1e-9, True, "shrinks"),          # x100 with the tolerance
    (2e-9, 1e-9, False, "does not shrink"),   # stays put
    (1e-11, 1e-11, True, "floor"),          # below 100 rtol
    (1e-3, 1e-3, False, "does not return"),
    (math.nan, 1e-12, False, "not finite"),
])
def test_closure_rule(coarse, fine, closed, word):
    c = verify.check_closure(coarse, fine, 1e-12, 100.0)
    assert c.closed is closed and word in c.note and c.fine == fine


def test_closure_defect_is_relative_max_norm():
    assert verify.closure_defect([1 + 1e-9, 3.0], [1.0, 3.0]) == pytest.approx(1e-9 / 3)
    assert verify.closure_defect([1e-9, 0.1], [0.0, 0.1]) == pytest.approx(1e-9)


def test_deformation_rule():
    assert verify.deformation_stable(9e-7, 0.0, 0.5, 1e-12)        # sqrt(rtol) floor
    assert not verify.deformation_stable(1.1e-6, 0.0, 0.5, 1e-12)
    assert verify.deformation_stable(2e-5, 1e-5, 1.0, 1e-12)       # 10 x tolerance difference
    assert not verify.deformation_stable(2e-4, 1e-5, 10.0, 1e-12)


def test_verdicts_are_values():
    v = verify.JetVerdict(3, True)
    assert v.conclusive and v.order == 3 and v == verify.JetVerdict(3, True)
    assert v != verify.JetVerdict(2, True) and v != verify.JetVerdict(3, False)
    assert str(v) == "G⁰(VE_3) non-abelian ⇒ not integrable" and v == str(v)
    assert str(verify.JetVerdict(2, False)) == "no conclusion at order 2"
    assert not verify.JetVerdict(2, False).conclusive
    g = verify.Verdict.NON_SOLVABLE
    assert g.conclusive and f"{g}" == str(g) == "G0 non-solvable (no Liouvillian solutions)"
    assert not verify.Verdict.INCONCLUSIVE.conclusive


def test_network_params_extend_the_rhs_layout():
    net = nf.Network(width=3, input_dim=2, output_dim=1, activation="softplus", bias=True)
    x = np.random.default_rng(1).normal(size=(5, 2))
    flow = nf.GradientFlow(net, nf.Dataset(x, x[:, 0] - x[:, 1]), weight_decay=0.01)
    P = dv.network_params(flow)
    base = rhs.pack_params(flow)
    assert np.array_equal(P[:base.size], base) and P.size == base.size + dv.ARCH
    assert dv.architecture(P) == (2, 3, 1, 1, nf.activations.NAMES.index("softplus"))
