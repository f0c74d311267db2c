"""check_integrability on NF4's invariant planes (narrowflow.monodromy.network)."""
import numpy as np
import pytest

import narrowflow as nf
import narrowflow.monodromy as mono
from narrowflow.monodromy import network
from narrowflow.monodromy.groups import (CONSISTENT_ABELIAN, INCONCLUSIVE, MonodromyGroup,
                                         UnverifiedLoopError)
from narrowflow.monodromy.network import LoopRecord, check_integrability
from narrowflow.monodromy.paths import circle, segment


@pytest.fixture(scope="module")
def one_point():
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset(np.array([1.0]), np.array([0.5])))
    return flow, check_integrability(flow, "twin", base=(0.8, 0.3))


def _assert_used_loops_closed(rep):
    """The used loops are the twice-around loops and the pair; each one's closure defect
    shrank with the tolerance (by >= sqrt(tol_ratio) = 10) to below 1e-10, and its matrix
    stayed put under deformation; the once-around loops (sheet change) are excluded."""
    assert sorted(r.name.split(" around")[0] for r in rep.used_loops) == \
        ["once", "twice", "twice"]
    for r in rep.used_loops:
        d0, d1 = r.result.closure_defect
        assert d1 < 1e-10 and d1 * 10 <= d0, (r.name, d0, d1)
        assert r.result.deformation_change < 1e-9


def _c_gamma_quadrature(path, a0, w0):
    """∮ dw / (a sinh² w) along path, a² = cosh(2w)/2 + C with the branch followed by continuity."""
    C = a0 ** 2 - np.cosh(2 * w0) / 2
    xg, wg = np.polynomial.legendre.leggauss(120)
    total, cur = 0j, complex(a0)
    for piece in path.pieces:
        s = (xg + 1) / 2
        fine = np.linspace(0, 1, 3001)
        af = np.sqrt(np.cosh(2 * piece.z(fine)) / 2 + C)
        for k in range(fine.size):
            if abs(af[k] - cur) > abs(af[k] + cur):
                af[k] = -af[k]
            cur = af[k]
        zq = piece.z(s)
        aq = np.sqrt(np.cosh(2 * zq) / 2 + C)
        near = af[np.clip(np.searchsorted(fine, s), 0, fine.size - 1)]
        aq = np.where(np.abs(aq - near) < np.abs(aq + near), aq, -aq)
        total += np.sum(wg / 2 * piece.dz(s) / (aq * np.sinh(zq) ** 2))
    return total


def test_one_data_point_closed_loops_abelian_and_c_gamma(one_point):
    flow, rep = one_point
    assert rep.verdict == CONSISTENT_ABELIAN
    assert rep.classification.identity_component_abelian is True
    _assert_used_loops_closed(rep)
    pair = [r for r in rep.loops if "then once" in r.name]
    assert pair and pair[0].used
    M = pair[0].result.matrix
    a0, w0 = 0.8, 0.3
    assert abs(np.trace(M) - 2) < 1e-9 and abs(np.linalg.det(M) - 1) < 1e-9   # unipotent
    s, ds = np.tanh(w0), 1 / np.cosh(w0) ** 2
    c_num = ds * (M - np.eye(2))[0, 1] / s ** 2
    c_quad = _c_gamma_quadrature(pair[0].path, a0, w0)
    assert abs(c_quad) > 0.1                          # a non-trivial loop
    assert abs(c_num - c_quad) < 1e-8
    # M = I + (c/σ') s1 ρ with s1 = (σ, aσ'), ρ = (-aσ', σ): the exact NVE solution
    s1, rho = np.array([s, a0 * ds]), np.array([-a0 * ds, s])
    assert np.max(np.abs(M - np.eye(2) - c_quad / ds * np.outer(s1, rho))) < 1e-8
    assert "VERDICT: consistent with abelian G0" in str(rep)


def test_single_loop_around_a_branch_point_is_not_closed_and_refused(one_point):
    flow, rep = one_point
    once = [r for r in rep.loops if r.name.startswith("once around") and "then" not in r.name]
    assert once
    for r in once:
        assert not r.used and not r.result.closed
        assert r.result.closure_defect[1] > 1e-3
        assert "does not return" in r.reason
    good = [r.result for r in rep.used_loops]
    with pytest.raises(UnverifiedLoopError, match="refusing"):
        MonodromyGroup(good + [once[0].result]).classify()


def test_dead_neuron_plane_and_linear_network_are_abelian():
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset(np.array([1.3]), np.array([0.5])))
    rep = check_integrability(flow, "dead-neuron", base=(0.8, 0.3))
    assert rep.verdict == CONSISTENT_ABELIAN
    _assert_used_loops_closed(rep)
    assert rep.classification.kind in ("abelian", "trivial", "reducible-unipotent")
    lin = nf.GradientFlow(nf.Network(width=2, activation="linear"),
                          nf.Dataset(np.array([1.0, -0.5, 2.0]), np.array([0.5, 0.2, -1.0])))
    rep = check_integrability(lin, "twin", base=(0.8, 0.3))
    assert rep.verdict == CONSISTENT_ABELIAN and rep.used_loops
    assert rep.classification.identity_component_abelian is True


def test_three_data_points_default_loops_do_not_close_so_inconclusive():
    # with three data points the curve's a(w) is no longer two-sheeted near the a = 0 points:
    # none of the default loops brings the base curve back, so there is nothing to classify
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset(np.array([-1.0, 0.5, 1.5]), np.array([-0.6, 0.3, 0.8])))
    for base in [(0.8, 0.3), (0.6, -0.4)]:
        rep = check_integrability(flow, "twin", base=base)
        assert rep.verdict == INCONCLUSIVE
        assert len(rep.loops) == 5 and not rep.used_loops
        assert rep.group is None and rep.classification is None
        assert any("no loop passed verification" in n for n in rep.notes)
        for r in rep.loops:
            d0, d1 = r.result.closure_defect    # a defect that stays put: not a loop
            assert d1 > 1e-3 and abs(d0 - d1) < 1e-3 * d1, (r.name, d0, d1)
            assert "does not return" in r.reason


def test_report_uses_only_verified_results_whatever_the_record_says():
    sys_ = mono.hypergeometric(0.3, 0.45, 0.7)
    good = sys_.transport(circle(0.0, 0.5))
    open_ = sys_.transport(segment(0.5, 0.5 + 0.5j))
    assert good.verified and not open_.verified
    forged = LoopRecord("forged", open_.path, open_, used=True)
    ok = LoopRecord("good", good.path, good, used=True)
    rep = network._finish("points", "time", np.zeros(2, complex), 0j, [], [forged, ok], 100.0, [])
    assert not forged.used and "connection" in forged.reason
    assert rep.used_loops == [ok] and rep.group.results == [good]
    assert rep.classification.kind == "abelian" and rep.verdict == CONSISTENT_ABELIAN
    forged = LoopRecord("forged", open_.path, open_, used=True)
    rep = network._finish("points", "time", np.zeros(2, complex), 0j, [], [forged], 100.0, [])
    assert rep.verdict == INCONCLUSIVE and rep.group is None and not forged.used


def test_points_curve_with_a_time_path_that_does_not_close():
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset(np.array([1.0]), np.array([0.5])))
    rep = check_integrability(flow, "points", base=np.array([0.8, 0.3, 0.5, -0.2]),
                              loops=[[0, 1.0 + 0.5j, 2.0]])
    assert rep.verdict == "inconclusive" and not rep.used_loops
    # the twin plane parametrised by time: an open time path is reported, not used
    rep = check_integrability(flow, "twin", base=(0.8, 0.3), parametrization="time",
                              loops=[[0, 0.5 + 0.5j, 1.0]])
    assert rep.loops[0].result.status == "ok" and not rep.loops[0].used
    assert rep.verdict == "inconclusive"


def test_bad_input():
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset(np.array([1.0]), np.array([0.5])))
    with pytest.raises(ValueError, match="curve"):
        check_integrability(flow, "nope")
    with pytest.raises(TypeError, match="flow"):
        check_integrability("flow", "twin")
    with pytest.raises(ValueError, match="order"):
        check_integrability(flow, "twin", order=0)
    wide = nf.GradientFlow(nf.Network(width=3), nf.Dataset(np.array([1.0]), np.array([0.5])))
    with pytest.raises(ValueError, match="width-2"):
        check_integrability(wide, "twin")
    with pytest.raises(ValueError, match="base"):
        check_integrability(flow, "points", loops=[[0, 1]])
    with pytest.raises(TypeError, match="pair of numbers"):
        check_integrability(flow, "twin", base=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="non-zero"):
        check_integrability(flow, "twin", base=(0.0, 0.3))
    with pytest.raises(ValueError, match="start at the base"):
        check_integrability(flow, "twin", loops=[[1.0, 2.0]])
    # w = 0 with target 0: the loss vanishes identically there, an equilibrium (and dw/dt = 0)
    zero = nf.GradientFlow(net, nf.Dataset(np.array([1.0]), np.array([0.0])))
    for par in ("w", "time"):
        with pytest.raises(ValueError, match="equilibrium"):
            check_integrability(zero, "twin", base=(0.8, 0.0), parametrization=par,
                                loops=[[0.0, 1.0]])
