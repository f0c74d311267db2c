"""Stiff integration in solve_ensemble: Rosenbrock methods (rodas5p, rodas4), method="auto"
(explicit or Taylor start, BDF tail), integration to convergence. References: closed forms
(linear systems) and scipy Radau at tight tolerance with the analytic Jacobian."""
import numpy as np
import pytest
from numba import cfunc
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import narrowflow as nf
from narrowflow import ensemble, model, tableaus
from narrowflow.ensemble import CompiledSystem, Status
from narrowflow.rhs import RHS_SIGNATURE
from test_ensemble import _half_norm2, _quad_flow

ROS = ("rodas5p", "rodas4")


# --- y' = -M y + c y**2 (componentwise; flow and loss of test_ensemble), with its Jacobian and
# a NaN switch ------------------------------------------------------------------------------
# params: [n, c, M (n*n), nan_above]: the Jacobian of a lane whose y[0] > nan_above is NaN

@cfunc(RHS_SIGNATURE, error_model="numpy")
def _quad_jac(lanes, t, y, out, params):
    n = int(params[0])
    c = params[1]
    lim = params[2 + n * n]
    bad = 0
    for i in range(n):
        for j in range(n):
            for l in range(lanes):
                v = -params[2 + i * n + j]
                if i == j:
                    v += 2.0 * c * y[i * lanes + l]
                if y[l] > lim:
                    v = np.nan
                    bad = 1
                out[(i * n + j) * lanes + l] = v
    return bad


def system(M, c=0.0, nan_above=np.inf, jacobian=True):
    M = np.asarray(M, dtype=float)
    n = M.shape[0]
    params = np.concatenate([[n, c], M.ravel(), [nan_above]])
    return CompiledSystem(_quad_flow.address, _half_norm2.address, params, n,
                          keepalive=(_quad_flow, _half_norm2, _quad_jac),
                          jacobian_address=_quad_jac.address if jacobian else None)


def stiff_matrix(eigs, seed=3):
    """A symmetric matrix with the given eigenvalues (random orthogonal eigenvectors)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs), len(eigs))))
    return q @ np.diag(eigs) @ q.T


EIGS = np.array([1e-6, 1e-3, 1e-1, 1.0, 1e2])


def radau_ref(f, jac, y0, t1):
    sol = solve_ivp(lambda t, y: f(y), (0.0, t1), y0, method="Radau", jac=lambda t, y: jac(y),
                    rtol=1e-12, atol=1e-14)
    assert sol.success
    return sol.y[:, -1]


# --- accuracy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ROS)
def test_fixed_step_order_on_linear_stiff_system(method):
    """Steps forced constant (first step = max_step = h, loose tolerance): error ~ h**order."""
    M = stiff_matrix(np.array([1e-6, 1e-2, 0.5, 2.0, 1e2]))
    y0 = np.random.default_rng(0).normal(size=(3, 5))
    T = 16.0
    exact = y0 @ expm(-M * T).T
    order = tableaus.get_rosenbrock(method).order
    errs, hs = [], [T / 10, T / 20, T / 40]       # h*lambda_max from 160 to 40: stiff steps
    for h in hs:
        r = nf.solve_ensemble(system(M), y0, t_span=(0.0, T), method=method, dt=h, max_step=h,
                              rtol=1.0, atol=1.0, threads=1)
        assert np.all(r.status == Status.SUCCESS)
        assert np.all(r.n_rejected == 0) and np.all(r.n_accepted == round(T / h))
        errs.append(np.abs(r.y_final - exact).max())
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert order - 0.4 < slope < order + 0.6, (errs, slope)


@pytest.mark.parametrize("method", ROS + ("auto",))
@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_linear_stiff_closed_form_and_dense_output(method, rtol):
    M = stiff_matrix(EIGS)
    y0 = np.random.default_rng(1).normal(size=(4, 5))
    T = 1e3
    ts = np.array([0.0, 0.37, 3.0, 250.0, 999.0, T])
    r = nf.solve_ensemble(system(M), y0, t_span=(0.0, T), method=method, rtol=rtol,
                          atol=rtol * 1e-2, save_at=ts, threads=1)
    assert np.all(r.status == Status.SUCCESS)
    exact = np.stack([y0 @ expm(-M * t).T for t in ts], axis=1)     # (N, K, n)
    assert np.abs(r.y_final - exact[:, -1]).max() < 50 * rtol
    assert np.abs(r.y_saved - exact).max() < 200 * rtol
    if method in ROS:
        assert np.all(r.njev > 0) and np.all(r.njev <= r.n_accepted + r.n_rejected + 1)


@pytest.mark.parametrize("method", ROS + ("auto",))
def test_nonlinear_against_radau(method):
    M = stiff_matrix(np.array([1e-3, 0.5, 2.0, 80.0]), seed=7)
    c = 0.1                                 # no blow-up before T from these states
    y0 = np.random.default_rng(2).uniform(-0.5, 0.5, size=(5, 4))
    T = 50.0

    def f(y):
        return -M @ y + c * y * y

    def jac(y):
        return -M + np.diag(2 * c * y)

    r = nf.solve_ensemble(system(M, c), y0, t_span=(0.0, T), method=method, rtol=1e-9,
                          atol=1e-11, threads=1)
    ref = np.array([radau_ref(f, jac, y, T) for y in y0])
    assert np.all(r.status == Status.SUCCESS)
    assert np.abs(r.y_final - ref).max() < 1e-7


@pytest.fixture(scope="module")
def nf4():
    return model.nf4_benchmark()


@pytest.mark.parametrize("method", ROS + ("auto",))
def test_nf4_long_horizon_against_radau(nf4, method):
    y0 = model.nf4_initial_states(6, seed=11)
    T = 2e3
    r = nf.solve_ensemble(nf4, y0, t_span=(0.0, T), method=method, rtol=1e-10, atol=1e-12,
                          threads=1, save_at=[0.0, 10.0, 1000.0, T])
    ref = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, T) for y in y0])
    assert np.all(r.status == Status.SUCCESS)
    assert np.abs(r.y_final - ref).max() < 1e-6
    assert np.array_equal(r.y_saved[:, -1], r.y_final)


# --- to convergence ---------------------------------------------------------------------------

QUAD_M = stiff_matrix(np.array([1e-6, 1e-4, 1e-2, 0.3, 1.0]), seed=5)
QUAD_Y0 = np.random.default_rng(4).normal(size=(8, 5))


def quadratic_to_convergence(method, gtol=1e-8):
    """L = yᵀMy/2 with Hessian eigenvalues 1e-6 ... 1, integrated to t = inf with `gtol`:
    every trajectory CONVERGED, with the gradient norm of its final state below gtol, and
    that state the exact flow's at the reported time (the right state, not only a small one)."""
    r = nf.solve_ensemble(system(QUAD_M), QUAD_Y0, t_span=(0.0, np.inf), gtol=gtol,
                          method=method, threads=1)
    assert np.all(r.status == Status.CONVERGED)
    assert np.all(np.linalg.norm(r.y_final @ QUAD_M.T, axis=1) < gtol)
    exact = np.array([expm(-QUAD_M * t) @ y for t, y in zip(r.t_final, QUAD_Y0)])
    assert np.abs(r.y_final - exact).max() < 1e-6
    return r


def test_quadratic_loss_converges_with_bounded_work():
    """Rodas5P to convergence with bounded RHS/Jacobian counts (auto too); DOP853 needs more
    than 50x the evaluations for a tenth of the time."""
    gtol = 1e-8
    r = quadratic_to_convergence("rodas5p", gtol)
    assert r.nfev.max() < 2000 and r.njev.max() < 250, (r.nfev, r.njev)
    assert quadratic_to_convergence("auto", gtol).nfev.max() < 2000
    e = nf.solve_ensemble(system(QUAD_M), QUAD_Y0[:2], t_span=(0.0, 1e5), method="dop853",
                          threads=1)
    assert e.nfev.min() > 50 * r.nfev.max() and np.all(r.t_final > 1e6)


def test_infinite_horizon_needs_gtol(nf4):
    with pytest.raises(ValueError, match="t_span.*gtol"):
        nf.solve_ensemble(nf4, model.nf4_initial_states(2), t_span=(0.0, np.inf))
    with pytest.raises(ValueError, match="t_span"):
        nf.solve_ensemble(nf4, model.nf4_initial_states(2), t_span=(0.0, np.inf), gtol=1e-6,
                          method="rk4", dt=0.1)


def test_finite_guard_ends_with_success(nf4):
    y0 = model.nf4_initial_states(16, seed=2)
    r = nf.solve_ensemble(nf4, y0, t_span=(0.0, 50.0), gtol=1e-12, threads=1)
    assert np.all(r.status == Status.SUCCESS) and np.all(r.t_final == 50.0)


def test_nf4_to_convergence_escape_and_log_grid(nf4):
    y0 = model.nf4_initial_states(32, seed=3)
    grid = nf.log_times(1e7, num=30)
    r = nf.solve_ensemble(nf4, y0, t_span=(0.0, 1e7), gtol=1e-8, save_at=grid,
                          escape_threshold=1e-3, threads=1, save_states=False)
    conv = r.status == Status.CONVERGED
    assert conv.mean() > 0.9
    assert np.all(np.linalg.norm([nf4.field(y) for y in r.y_final[conv]], axis=1) < 1e-8)
    # after convergence the saved losses hold the final loss; before, they never increase
    assert np.all(np.isfinite(r.loss_saved[conv]))
    assert np.all(np.diff(r.loss_saved[conv], axis=1) <= 1e-12)
    esc = np.isfinite(r.escape_time)
    assert esc.any()
    assert np.all(r.loss_final[esc] < 1e-3)


def test_log_times():
    g = nf.ensemble.log_times(1e6, num=8)
    assert g[0] == 0.0 and g[-1] == 1e6 and g.size == 8 and np.all(np.diff(g) > 0)
    assert np.allclose(np.diff(np.log(g[1:])), np.log(g[2] / g[1]))
    with pytest.raises(ValueError, match="num"):
        nf.ensemble.log_times(10.0, num=1)
    with pytest.raises(ValueError, match="start"):
        nf.ensemble.log_times(10.0, start=20.0)


# --- auto -------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["dop853", "vern7"])
def test_auto_switches_only_when_stiff(monkeypatch, start):
    """Either explicit start (AUTO_NONSTIFF) hands a stiff problem to the implicit method
    and keeps a mild one to the end, bit for bit as the method alone."""
    monkeypatch.setattr(ensemble, "AUTO_NONSTIFF", start)
    stiff = stiff_matrix(np.array([1e-3, 1e-1, 50.0]), seed=8)
    mild = stiff_matrix(np.array([0.5, 1.0, 2.0]), seed=8)
    y0 = np.random.default_rng(6).normal(size=(4, 3))
    rs = nf.solve_ensemble(system(stiff), y0, t_span=(0.0, 2e3), method="auto", threads=1)
    rm = nf.solve_ensemble(system(mild), y0, t_span=(0.0, 10.0), method="auto", threads=1)
    assert np.all(rs.njev > 0)             # switched to the implicit method
    assert np.all(rm.njev == 0)            # never stiff: the explicit method to the end
    pure = nf.solve_ensemble(system(mild), y0, t_span=(0.0, 10.0), method=start, threads=1)
    assert np.array_equal(rm.y_final, pure.y_final) and np.array_equal(rm.nfev, pure.nfev)
    for r, M, T in ((rs, stiff, 2e3), (rm, mild, 10.0)):
        assert np.abs(r.y_final - y0 @ expm(-M * T).T).max() < 1e-7
    # the same stiff problem costs the explicit method far more
    d = nf.solve_ensemble(system(stiff), y0, t_span=(0.0, 2e3), method=start, threads=1)
    assert d.nfev.min() > 5 * rs.nfev.max()
    # alone, the explicit method's mean step is held at its stability boundary (eigenvalue
    # 50), of which stiff_hlam is a fraction
    h_mean = d.t_final[0] / d.n_accepted[0]
    boundary = tableaus.get(start).stability_boundary
    assert 0.9 * boundary < 50.0 * h_mean < 1.1 * boundary


def test_auto_on_a_mild_problem_switches_only_at_loose_tolerances():
    """The switch at a fifth of the stability boundary (ensemble.STIFF_FRACTION) has a price
    on a problem that is not stiff: at rtol 1e-4 Vern7's accuracy-limited step reaches it
    (h|λ| about 1.8 against 0.93) and BDF takes over. The answer must stay as accurate as
    Vern7's alone; at rtol 1e-8 the step stays below the threshold and nothing switches."""
    mild = stiff_matrix(np.array([0.5, 1.0, 2.0]), seed=8)
    y0 = np.random.default_rng(6).normal(size=(4, 3))
    exact = y0 @ expm(-mild * 10.0).T
    for rtol, switched in ((1e-4, True), (1e-8, False)):
        kw = dict(t_span=(0.0, 10.0), rtol=rtol, atol=rtol / 100, threads=1)
        a = nf.solve_ensemble(system(mild), y0, method="auto", **kw)
        v = nf.solve_ensemble(system(mild), y0, method="vern7", **kw)
        assert np.any(a.njev > 0) == switched
        assert np.abs(a.y_final - exact).max() <= 2.0 * np.abs(v.y_final - exact).max()


def test_auto_chooses_its_start():
    """"auto" starts a GradientFlow with the Taylor method at rtol <= AUTO_TAYLOR_RTOL,
    everything else (looser rtol, a CompiledSystem) with AUTO_NONSTIFF."""
    nf4 = model.nf4_benchmark()
    assert ensemble.auto_nonstiff(ensemble.make_problem(nf4, rtol=1e-10)) == "taylor"
    assert ensemble.auto_nonstiff(ensemble.make_problem(
        nf4, rtol=ensemble.AUTO_TAYLOR_RTOL)) == "taylor"
    assert ensemble.auto_nonstiff(ensemble.make_problem(nf4, rtol=1e-8)) == ensemble.AUTO_NONSTIFF
    quad = system(np.eye(2))
    assert ensemble.auto_nonstiff(ensemble.make_problem(quad, rtol=1e-12)) == ensemble.AUTO_NONSTIFF
    assert ensemble.AUTO_NONSTIFF in ("dop853", "vern7")
    assert ensemble.taylor_stiff_ratio(1e-10) == ensemble.TAYLOR_STIFF_RATIO
    assert ensemble.taylor_stiff_ratio(1e-12) > ensemble.taylor_stiff_ratio(1e-10)


def test_auto_taylor_start_switches_only_when_stiff(nf4, monkeypatch):
    """With the Taylor start, a trajectory that never meets the stiffness test is the Taylor
    method's bit for bit (the test only reads the Jacobian); one that does continues with
    BDF, in a fraction of the pure Taylor method's steps, and both stay on the Radau
    reference. Each condition can stop the switch: the slowness ratio set beyond reach, or a
    horizon too short for the step to reach the stability boundary."""
    y0 = model.nf4_initial_states(8, seed=12)
    T = 1e4
    kw = dict(t_span=(0.0, T), rtol=1e-10, atol=1e-12, threads=1)
    auto = nf.solve_ensemble(nf4, y0, method="auto", **kw)
    pure = nf.solve_ensemble(nf4, y0, method="taylor", **kw)
    switched = ~np.all(auto.y_final == pure.y_final, axis=1)
    assert switched.all(), switched      # NF4 is stiff long before t = 1e4
    # a BDF step (1-2 F, rarely J and LU) costs less than a Taylor expansion of order 13
    assert np.all(auto.n_accepted + auto.n_rejected < pure.n_accepted / 2)
    assert np.all(pure.njev == 0) and np.all(auto.njev > 0)
    ref = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, T) for y in y0])
    for r in (auto, pure):
        assert np.all(r.status == Status.SUCCESS)
        assert np.abs(r.y_final - ref).max() < 1e-7
    # never slow enough: no switch, and every bit as the Taylor method's
    monkeypatch.setattr(ensemble, "TAYLOR_STIFF_RATIO", 1e300)
    held = nf.solve_ensemble(nf4, y0[:3], method="auto", **kw)
    assert np.array_equal(held.y_final, pure.y_final[:3])
    assert np.array_equal(held.nfev, pure.nfev[:3])
    assert np.all(held.njev == 0)     # the free estimates already rule the test out
    monkeypatch.undo()
    # a short, non-stiff stretch of the same trajectories: no switch either
    short = dict(kw, t_span=(0.0, 5.0))
    a, p = (nf.solve_ensemble(nf4, y0, method=m, **short) for m in ("auto", "taylor"))
    assert np.array_equal(a.y_final, p.y_final) and np.array_equal(a.nfev, p.nfev)


# the DOP853 start at 1e-8, the Taylor start at 1e-10 (where Rodas5P's steps grow costly)
@pytest.mark.parametrize("start_rtol, work_ratio", [(1e-8, 1.0), (1e-10, 0.5)])
def test_auto_stiff_tail_is_bdf_at_a_hundredth_of_the_tolerance(nf4, monkeypatch, start_rtol,
                                                                 work_ratio):
    """Stiff trajectories continue with AUTO_STIFF (BDF) at AUTO_STIFF_TOL times rtol and
    atol: on NF4 to t = 1e4 as accurate as the Rosenbrock handover at the same rtol (both
    against Radau), in far fewer evaluations; the Rosenbrock handover stays one setting away.
    A hundredth of the tolerance is what makes BDF as accurate: at the same rtol its error
    is many times larger."""
    y0 = model.nf4_initial_states(6, seed=21)
    T = 1e4
    kw = dict(t_span=(0.0, T), rtol=start_rtol, atol=start_rtol / 100, threads=1)
    ref = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, T) for y in y0])
    assert (ensemble.AUTO_STIFF, ensemble.AUTO_STIFF_TOL) == ("bdf", 0.01)
    runs = {"bdf": nf.solve_ensemble(nf4, y0, method="auto", **kw)}
    monkeypatch.setattr(ensemble, "AUTO_STIFF_TOL", 1.0)
    runs["bdf, same rtol"] = nf.solve_ensemble(nf4, y0, method="auto", **kw)
    monkeypatch.setattr(ensemble, "AUTO_STIFF", "rodas5p")
    runs["rodas5p"] = nf.solve_ensemble(nf4, y0, method="auto", **kw)
    err = {k: np.abs(r.y_final - ref).max() for k, r in runs.items()}
    for r in runs.values():
        assert np.all(r.status == Status.SUCCESS) and np.all(r.njev > 0)   # all switched
    assert err["bdf"] <= 2 * err["rodas5p"] and err["rodas5p"] < 100 * start_rtol, err
    assert err["bdf, same rtol"] > 5 * err["bdf"], err
    # a Hessian costs about 2.5 flow evaluations on NF4 (benchmarks/README.md)
    work = {k: (r.nfev + 2.5 * r.njev).sum() for k, r in runs.items()}
    assert work["bdf"] < work_ratio * work["rodas5p"], work


def test_auto_tolerance_floor():
    """At rtol 1e-14 the BDF tail would be asked for 1e-16, below round-off: it runs at 1e-15
    and still reaches the closed form."""
    M = stiff_matrix(np.array([1e-3, 1e-1, 50.0]), seed=8)
    y0 = np.random.default_rng(23).normal(size=(3, 3))
    r = nf.solve_ensemble(system(M), y0, t_span=(0.0, 2e3), method="auto", rtol=1e-14,
                          atol=1e-16, threads=1)
    assert np.all(r.status == Status.SUCCESS) and np.all(r.njev > 0)
    assert np.abs(r.y_final - y0 @ expm(-M * 2e3).T).max() < 1e-10


def test_taylor_stiffness_test_needs_the_jacobian():
    from narrowflow._ext import ensemble as kernel
    opts = kernel.KernelOptions(t0=0.0, t1=1.0, rtol=1e-10, atol=1e-12, lanes=4, threads=1,
                                stiff_switch=True)
    out = ensemble.allocate(ensemble.make_problem(model.nf4_benchmark()), 1)
    with pytest.raises(ValueError, match="jac_address"):
        kernel.integrate(1, 1, np.zeros(1), np.zeros((1, 4)), None,
                         opts.replace(taylor_address=1, taylor_order=8), np.empty(0), out)


def test_auto_without_jacobian_stays_explicit():
    M = stiff_matrix(np.array([1e-2, 30.0]), seed=9)
    y0 = np.ones((2, 2))
    r = nf.solve_ensemble(system(M, jacobian=False), y0, t_span=(0.0, 100.0), threads=1)
    d = nf.solve_ensemble(system(M, jacobian=False), y0, t_span=(0.0, 100.0),
                          method=ensemble.AUTO_NONSTIFF, threads=1)
    assert np.array_equal(r.y_final, d.y_final) and np.all(r.njev == 0)
    with pytest.raises(ValueError, match="jacobian_address"):
        nf.solve_ensemble(system(M, jacobian=False), y0, method="rodas5p")


FIELDS = ("y_final", "t_final", "status", "nfev", "njev", "n_accepted", "n_rejected",
          "loss_final", "y_saved", "loss_saved", "escape_time")


@pytest.mark.parametrize("method", ["auto", "auto-taylor", "rodas5p", "rodas4"])
def test_bitwise_identical_threads_chunks_lanes(nf4, method):
    y0 = model.nf4_initial_states(70, seed=4)
    kw = dict(t_span=(0.0, 3e3), method=method, save_at=[0.0, 5.0, 500.0, 3e3],
              escape_threshold=1e-2, gtol=1e-9)
    if method == "auto-taylor":     # "auto" with its Taylor start
        kw.update(method="auto", rtol=1e-10, atol=1e-12)
    base = nf.solve_ensemble(nf4, y0, threads=1, **kw)
    if method.startswith("auto"):
        assert 0 < np.count_nonzero(base.njev) < len(y0) or np.all(base.njev > 0)
    for other in (nf.solve_ensemble(nf4, y0, threads=2, **kw),
                  nf.solve_ensemble(nf4, y0, threads=2, chunk_size=17, **kw),
                  nf.solve_ensemble(nf4, y0, threads=1, lanes=5, **kw)):
        for name in FIELDS:
            assert np.array_equal(getattr(other, name), getattr(base, name), equal_nan=True), name
    perm = np.random.default_rng(0).permutation(len(y0))
    shuffled = nf.solve_ensemble(nf4, y0[perm], threads=2, **kw)
    for name in FIELDS:
        assert np.array_equal(getattr(shuffled, name), getattr(base, name)[perm],
                              equal_nan=True), name


# --- failures stay in their lane ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["rodas5p", "auto"])
def test_nonfinite_jacobian_in_one_lane(method):
    M = np.diag([1e-2, 1.0, 40.0])          # y[0] decays slowly: still > 4 when "auto" switches
    y0 = np.random.default_rng(7).uniform(-1, 1, size=(6, 3))
    y0[2, 0] = 5.0                          # this lane's Jacobian is NaN (y[0] > 4)
    sysm = system(M, nan_above=4.0)
    r = nf.solve_ensemble(sysm, y0, t_span=(0.0, 200.0), method=method, threads=1, lanes=4)
    assert r.status[2] == Status.DIVERGED
    ok = np.arange(6) != 2
    clean = nf.solve_ensemble(sysm, y0[ok], t_span=(0.0, 200.0), method=method, threads=1,
                              lanes=4)
    for name in ("y_final", "status", "nfev", "njev"):
        assert np.array_equal(getattr(r, name)[ok], getattr(clean, name)), name
    assert np.all(r.status[ok] == Status.SUCCESS)


def test_singular_w_rejects_the_step_and_recovers():
    """J = 8 I and a first step h = 0.5 with gamma = 1/4: W = I/(gamma h) - J = 0 exactly."""
    tab = tableaus.get_rosenbrock("rodas4")
    assert tab.gamma == 0.25
    M = -8.0 * np.eye(2)
    y0 = np.array([[1e-3, -2e-3], [1e-3, 1e-3]])
    r = nf.solve_ensemble(system(M), y0, t_span=(0.0, 1.0), method="rodas4", dt=0.5,
                          rtol=1e-9, atol=1e-12, threads=1)
    assert np.all(r.status == Status.SUCCESS)
    assert np.all(r.n_rejected >= 1)
    assert np.allclose(r.y_final, y0 * np.exp(8.0), rtol=1e-7)
