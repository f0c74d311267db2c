"""solve_ensemble: accuracy against scipy DOP853 and closed forms, orders, dense output,
escape times, statuses, bitwise reproducibility, input validation."""
import numpy as np
import pytest
from numba import cfunc
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from scipy.optimize import brentq

import narrowflow as nf
from narrowflow import ensemble, model, tableaus
from narrowflow.ensemble import CompiledSystem, Status
from narrowflow.rhs import RHS_SIGNATURE

ADAPTIVE = ("dp5", "tsit5", "dop853", "vern7")


# --- a small test system with a closed form: y' = -M y + c y**2 (componentwise) ---------------

@cfunc(RHS_SIGNATURE, error_model="numpy")
def _quad_flow(lanes, t, y, dy, params):
    n = int(params[0])
    c = params[1]
    for i in range(n):
        for l in range(lanes):
            acc = c * y[i * lanes + l] * y[i * lanes + l]
            for j in range(n):
                acc -= params[2 + i * n + j] * y[j * lanes + l]
            dy[i * lanes + l] = acc
    return 0


@cfunc(RHS_SIGNATURE, error_model="numpy")
def _half_norm2(lanes, t, y, out, params):
    n = int(params[0])
    for l in range(lanes):
        s = 0.0
        for i in range(n):
            s += y[i * lanes + l] * y[i * lanes + l]
        out[l] = 0.5 * s
    return 0


def linear_system(M, c=0.0):
    M = np.asarray(M, dtype=float)
    n = M.shape[0]
    params = np.concatenate([[n, c], M.ravel()])
    return CompiledSystem(_quad_flow.address, _half_norm2.address, params, n,
                          keepalive=(_quad_flow, _half_norm2))


M3 = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.2]])


@pytest.fixture(scope="module")
def nf4():
    return model.nf4_benchmark()


@pytest.fixture(scope="module")
def nf4_y0():
    return model.nf4_initial_states(6)


def scipy_ref(flow, y0, t1=100.0, t_eval=None, events=None):
    sol = solve_ivp(lambda t, y: flow.field(y), (0.0, t1), y0, method="DOP853", rtol=1e-12,
                    atol=1e-14, t_eval=t_eval, events=events, dense_output=True)
    assert sol.success
    return sol


@pytest.fixture(scope="module")
def nf4_ref(nf4, nf4_y0):
    return np.array([scipy_ref(nf4, y)[ "y"][:, -1] for y in nf4_y0])


# --- tables ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", tableaus.METHODS)
def test_tableau_consistency(method):
    tab = tableaus.get(method)
    # dense output: sum of weights is theta (consistency), weights at theta=1 are b
    for th in (0.0, 0.25, 0.7, 1.0):
        assert tab.dense_weights(th).sum() == pytest.approx(th, abs=1e-12)
    assert np.allclose(tab.dense_weights(1.0), tab.b, atol=1e-12)
    c = tab.c[:tab.S]
    b = tab.b[:tab.S]
    # quadrature conditions up to the order, and failing at order + 1
    for k in range(tab.order):
        assert b @ c**k == pytest.approx(1.0 / (k + 1), abs=1e-12)
    assert abs(b @ c**tab.order - 1.0 / (tab.order + 1)) > 1e-6
    if tab.fsal:
        assert np.array_equal(tab.A[tab.S - 1], tab.b)
    if tab.adaptive:   # the error estimate vanishes on constants: sum of e is 0
        assert abs(tab.e.sum()) < 1e-12


# --- accuracy -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ADAPTIVE)
def test_linear_closed_form(method):
    sysm = linear_system(M3)
    y0 = np.random.default_rng(1).standard_normal((20, 3))
    res = nf.solve_ensemble(sysm, y0, t_span=(0.0, 10.0), method=method, rtol=1e-10, atol=1e-12,
                            threads=1)
    exact = y0 @ expm(-10.0 * M3).T
    assert np.all(res.status == Status.SUCCESS)
    assert np.all(res.t_final == 10.0)
    err = np.abs(res.y_final - exact).max()
    assert err < 1e-8
    assert np.allclose(res.loss_final, 0.5 * (exact**2).sum(1), rtol=1e-8)
    # and the error grows when the tolerance is loosened (the tolerance is really used)
    loose = nf.solve_ensemble(sysm, y0, t_span=(0.0, 10.0), method=method, rtol=1e-4,
                              atol=1e-6, threads=1)
    err_loose = np.abs(loose.y_final - exact).max()
    assert err_loose > 10 * err
    assert loose.nfev.mean() < res.nfev.mean()


@pytest.mark.parametrize("method", ADAPTIVE)
def test_nf4_agrees_with_scipy_dop853(nf4, nf4_y0, nf4_ref, method):
    errs = {}
    for rtol in (1e-6, 1e-10):
        res = nf.solve_ensemble(nf4, nf4_y0, method=method, rtol=rtol, atol=rtol * 1e-2,
                                threads=1)
        assert np.all(res.status == Status.SUCCESS)
        errs[rtol] = np.abs(res.y_final - nf4_ref).max()
        scale = 1.0 + np.abs(nf4_ref).max()
        assert errs[rtol] < 300 * rtol * scale, (method, rtol, errs[rtol])
    # tolerance proportionality: four decades tighter gives at least two decades smaller error
    assert errs[1e-10] < 1e-2 * errs[1e-6]


@pytest.mark.parametrize("method", ADAPTIVE)
def test_wide_biased_softplus_agrees_with_scipy(method):
    rng = np.random.default_rng(7)
    net = nf.Network(width=3, input_dim=2, output_dim=1, activation="softplus", bias=True)
    x = rng.uniform(-1.5, 1.5, size=(12, 2))
    teacher = rng.standard_normal(net.n_params)
    flow = nf.GradientFlow(net, nf.Dataset.from_teacher(net, teacher, x), weight_decay=1e-3)
    y0 = rng.standard_normal((3, net.n_params))
    res = nf.solve_ensemble(flow, y0, t_span=(0.0, 30.0), method=method, rtol=1e-9,
                            atol=1e-11, threads=1)
    ref = np.array([scipy_ref(flow, y, t1=30.0).y[:, -1] for y in y0])
    assert np.all(res.status == Status.SUCCESS)
    assert np.abs(res.y_final - ref).max() < 300 * 1e-9 * (1 + np.abs(ref).max())


def _order(errors, ratio=2.0):
    return np.log(errors[:-1] / errors[1:]) / np.log(ratio)


def test_rk4_order_four(nf4, nf4_y0):
    y0 = nf4_y0[:3]
    ref = np.array([scipy_ref(nf4, y, t1=5.0).y[:, -1] for y in y0])
    errs = np.array([np.abs(nf.solve_ensemble(nf4, y0, t_span=(0, 5), method="rk4", dt=dt,
                                              threads=1).y_final - ref).max()
                     for dt in (0.1, 0.05, 0.025)])
    order = _order(errs)
    assert np.all(np.abs(order - 4.0) < 0.3), order


def test_gd_order_one_and_is_euler(nf4, nf4_y0):
    y0 = nf4_y0[:3]
    ref = np.array([scipy_ref(nf4, y, t1=5.0).y[:, -1] for y in y0])
    errs = np.array([np.abs(nf.solve_ensemble(nf4, y0, t_span=(0, 5), method="gd", dt=dt,
                                              threads=1).y_final - ref).max()
                     for dt in (0.02, 0.01, 0.005)])
    order = _order(errs)
    assert np.all(np.abs(order - 1.0) < 0.1), order
    # gradient descent is theta <- theta - eta grad L, step for step
    eta = 0.05
    theta = y0[0].copy()
    for _ in range(7):
        theta = theta - eta * nf4.grad(theta)
    res = nf.solve_ensemble(nf4, y0[:1], t_span=(0, 7 * eta), method="gd", dt=eta, threads=1)
    assert res.n_accepted[0] == 7
    assert np.allclose(res.y_final[0], theta, rtol=1e-12, atol=1e-14)


# --- dense output: save_at and escape times ------------------------------------------------

@pytest.mark.parametrize("method,kw,tol", [("dp5", {}, 5e-7), ("tsit5", {}, 5e-7),
                                           ("dop853", {}, 5e-7), ("vern7", {}, 5e-7),
                                           ("rk4", {"dt": 0.01}, 1e-6)])
def test_save_at_matches_dense_reference(nf4, nf4_y0, method, kw, tol):
    ts = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 25)])
    y0 = nf4_y0[:3]
    res = nf.solve_ensemble(nf4, y0, save_at=ts, method=method, threads=1, **kw)
    assert res.y_saved.shape == (3, ts.size, 4) and res.loss_saved.shape == (3, ts.size)
    assert np.array_equal(res.y_saved[:, 0], y0)             # t0 is the initial state exactly
    assert np.array_equal(res.y_saved[:, -1], res.y_final)    # t1 is the final state exactly
    for i, y in enumerate(y0):
        ref = scipy_ref(nf4, y, t_eval=ts).y.T
        assert np.abs(res.y_saved[i] - ref).max() < tol
        loss = np.array([nf4.loss(r) for r in ref])
        assert np.allclose(res.loss_saved[i], loss, rtol=1e-5, atol=1e-9)
    # a coarse interpolant is detectably worse (the check can fail)
    coarse = nf.solve_ensemble(nf4, y0, save_at=ts, method=method, threads=1, rtol=1e-3,
                               atol=1e-5, **({"dt": 0.5} if method == "rk4" else {}))
    ref0 = scipy_ref(nf4, y0[0], t_eval=ts).y.T
    assert np.abs(coarse.y_saved[0] - ref0).max() > tol


@pytest.mark.parametrize("method", ADAPTIVE)
def test_escape_time_matches_scipy_event(nf4, nf4_y0, method):
    thr = 0.05
    y0 = nf4_y0[:4]
    res = nf.solve_ensemble(nf4, y0, method=method, escape_threshold=thr, threads=1)
    event = lambda t, y: nf4.loss(y) - thr  # noqa: E731
    for i, y in enumerate(y0):
        sol = scipy_ref(nf4, y, events=event)
        crossings = [t for t in sol.t_events[0] if nf4.loss(sol.sol(t + 1e-9)) < thr]
        if nf4.loss(y) < thr:
            assert res.escape_time[i] == 0.0
        elif not crossings:
            assert np.isnan(res.escape_time[i])
        else:
            assert res.escape_time[i] == pytest.approx(crossings[0], abs=1e-6, rel=1e-6)


def test_escape_time_linear_closed_form():
    sysm = linear_system(M3)
    y0 = np.random.default_rng(2).standard_normal((10, 3)) * 2
    thr = 0.1
    res = nf.solve_ensemble(sysm, y0, t_span=(0.0, 20.0), method="dop853", escape_threshold=thr,
                            rtol=1e-10, atol=1e-12, threads=1)
    for i, y in enumerate(y0):
        g = lambda t: 0.5 * np.sum((expm(-t * M3) @ y) ** 2) - thr  # noqa: E731
        if g(0.0) < 0:
            assert res.escape_time[i] == 0.0
        else:
            assert res.escape_time[i] == pytest.approx(brentq(g, 0.0, 20.0, xtol=1e-14), abs=1e-8)
    # a threshold never reached gives NaN
    res = nf.solve_ensemble(sysm, y0, t_span=(0.0, 1.0), escape_threshold=-1.0, threads=1)
    assert np.all(np.isnan(res.escape_time))


# --- statuses -------------------------------------------------------------------------------

def test_gtol_converged_both_ways(nf4):
    # seed 1's six states: two reach ||grad L|| < 1e-3 before t = 100 and four do not, and
    # the first two reach 1e-2 (the premises below)
    nf4_y0 = model.nf4_initial_states(6, seed=1)
    loose = nf.solve_ensemble(nf4, nf4_y0, gtol=1e-3, threads=1)
    conv = loose.status == Status.CONVERGED
    assert conv.sum() >= 2 and (~conv).sum() >= 2
    assert np.all(loose.status[~conv] == Status.SUCCESS)
    g = np.array([np.linalg.norm(nf4.grad(y)) for y in loose.y_final])
    # converged ones stopped early below gtol; the others never got there (checked at steps)
    assert np.all(g[conv] < 1e-3) and np.all(loose.t_final[conv] < 100.0)
    assert np.all(g[~conv] >= 1e-3) and np.all(loose.t_final[~conv] == 100.0)
    tight = nf.solve_ensemble(nf4, nf4_y0, gtol=1e-300, threads=1)
    assert np.all(tight.status == Status.SUCCESS)
    # save points after convergence hold the final state
    ts = np.linspace(0, 100, 5)
    held = nf.solve_ensemble(nf4, nf4_y0[:2], gtol=1e-2, save_at=ts, threads=1)
    assert np.all(held.status == Status.CONVERGED)
    assert np.array_equal(held.y_saved[:, -1], held.y_final)
    assert not np.isnan(held.loss_saved).any()


def test_max_steps_and_step_too_small(nf4, nf4_y0):
    res = nf.solve_ensemble(nf4, nf4_y0, max_steps=5, threads=1)
    assert np.all(res.status == Status.MAX_STEPS)
    assert np.all(res.n_accepted + res.n_rejected == 5)
    assert np.all(res.t_final < 100.0)
    ok = nf.solve_ensemble(nf4, nf4_y0, max_steps=10**6, threads=1)
    assert np.all(ok.status == Status.SUCCESS)


def test_diverging_trajectory_is_isolated():
    """Quadratic activation, gradient descent from a large state: that one diverges alone."""
    x = np.linspace(-1, 1, 8)
    net = nf.Network(width=2, activation="quadratic", kappa=0.5)
    flow = nf.GradientFlow(net, nf.Dataset(x, 0.3 * x**2 + 0.1 * x))
    y0 = np.random.default_rng(3).standard_normal((40, 4)) * 0.5
    y0[17] = [8.0, 8.0, -8.0, 8.0]
    res = nf.solve_ensemble(flow, y0, method="gd", dt=0.05, t_span=(0, 20), threads=2)
    assert res.status[17] == Status.DIVERGED
    others = np.delete(np.arange(40), 17)
    assert np.all(res.status[others] == Status.SUCCESS)
    for i in (0, 16, 18, 39):
        solo = nf.solve_ensemble(flow, y0[i:i + 1], method="gd", dt=0.05, t_span=(0, 20),
                                 threads=1)
        assert np.array_equal(solo.y_final[0], res.y_final[i])
        assert solo.nfev[0] == res.nfev[i]


def test_finite_time_blowup_is_diverged_adaptive():
    """y' = -My + y**2 blows up in finite time from a large state; the batch is unaffected."""
    sysm = linear_system(M3, c=1.0)
    y0 = np.random.default_rng(4).uniform(-0.2, 0.2, (30, 3))
    y0[5] = [5.0, 5.0, 5.0]
    for method in ADAPTIVE:
        res = nf.solve_ensemble(sysm, y0, t_span=(0, 5), method=method, threads=2)
        assert res.status[5] == Status.DIVERGED
        assert np.all(res.status[np.arange(30) != 5] == Status.SUCCESS)
        solo = nf.solve_ensemble(sysm, y0[[4, 6]], t_span=(0, 5), method=method, threads=1)
        assert np.array_equal(solo.y_final, res.y_final[[4, 6]])


# --- reproducibility ------------------------------------------------------------------------

FIELDS = ("y_final", "t_final", "status", "nfev", "n_accepted", "n_rejected", "loss_final",
          "y_saved", "loss_saved", "escape_time")


def _same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x, y, equal_nan=True), name


@pytest.mark.parametrize("method,kw", [("dp5", {}), ("dop853", {}), ("tsit5", {}), ("vern7", {}),
                                       ("rk4", {"dt": 0.05})])
def test_bitwise_identical_threads_chunks_lanes(nf4, method, kw):
    y0 = model.nf4_initial_states(150, seed=99)
    opts = dict(method=method, save_at=np.linspace(0, 100, 7), escape_threshold=0.02,
                t_span=(0, 100), **kw)
    base = nf.solve_ensemble(nf4, y0, threads=1, **opts)
    _same(base, nf.solve_ensemble(nf4, y0, threads=2, **opts))
    _same(base, nf.solve_ensemble(nf4, y0, threads=2, chunk_size=13, **opts))
    _same(base, nf.solve_ensemble(nf4, y0, threads=1, lanes=8, **opts))
    _same(base, nf.solve_ensemble(nf4, y0, threads=2, lanes=3, **opts))   # odd: scalar RHS tails
    _same(base, nf.solve_ensemble(nf4, y0, threads=2, lanes=32, chunk_size=40, **opts))
    # a trajectory's result does not depend on its neighbours either
    perm = np.random.default_rng(0).permutation(150)
    shuffled = nf.solve_ensemble(nf4, y0[perm], threads=2, **opts)
    for name in FIELDS:
        assert np.array_equal(getattr(shuffled, name), getattr(base, name)[perm], equal_nan=True)


def test_solve_chunk_matches_solve_ensemble(nf4):
    y0 = model.nf4_initial_states(40, seed=5)
    prob = ensemble.make_problem(nf4, save_at=[0.0, 50.0], escape_threshold=0.05)
    whole = nf.solve_ensemble(nf4, y0, save_at=[0.0, 50.0], escape_threshold=0.05, threads=1)
    parts = [ensemble.solve_chunk(prob, y0[lo:lo + 15]) for lo in range(0, 40, 15)]
    for key in ("y_final", "nfev", "y_saved", "escape_time", "loss_final"):
        assert np.array_equal(np.concatenate([p[key] for p in parts]), getattr(whole, key),
                              equal_nan=True)
    import pickle
    assert pickle.loads(pickle.dumps(prob)).method == ensemble.DEFAULT_METHOD == "auto"


# --- result object ---------------------------------------------------------------------------

def test_result_to_xarray_schema(nf4, nf4_y0):
    res = nf.solve_ensemble(nf4, nf4_y0, save_at=np.linspace(0, 100, 4), escape_threshold=0.1,
                            threads=1, seed=12345)
    ds = res.to_xarray()
    assert ds["y_final"].dims == ("trajectory", "parameter")
    assert ds["y_saved"].dims == ("trajectory", "time", "parameter")
    assert ds["loss_saved"].dims == ("trajectory", "time")
    assert ds["data_x"].dims == ("sample", "input")
    assert list(ds["parameter"].values) == ["a1", "w1", "a2", "w2"]
    assert np.array_equal(ds["time"].values, res.t_saved)
    for key in ("width", "input_dim", "output_dim", "activation", "kappa", "bias",
                "weight_decay", "method", "rtol", "atol", "t0", "t1", "seed",
                "escape_threshold", "narrowflow_version"):
        assert key in ds.attrs, key
    assert ds.attrs["bias"] == 0 and ds.attrs["seed"] == 12345
    assert res.counts()["SUCCESS"] == len(nf4_y0)
    assert 0.0 < res.lane_occupancy <= 1.0


def test_progress_bar_counts_the_trajectories(nf4, nf4_y0, capsys):
    y0 = np.repeat(nf4_y0, 5, axis=0)
    n = len(y0)
    res = nf.solve_ensemble(nf4, y0, progress=True, chunk_size=10, threads=1)
    assert np.all(res.status == Status.SUCCESS)
    err = capsys.readouterr().err
    # the bar names the call and ends full, counted in trajectories
    assert "solve_ensemble[auto]" in err and f"{n}/{n}" in err and "100%" in err, err
    assert f"0/{n}" in err and "traj" in err      # it started empty (redraws between are
    # throttled by time, so they are not asserted)
    nf.solve_ensemble(nf4, y0, progress=False, threads=1)
    assert capsys.readouterr().err == ""


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(theta0=np.zeros((3, 5))), "theta0"),
    (dict(theta0=np.zeros(4)), "theta0"),
    (dict(theta0=np.array([[0.0, np.nan, 0.0, 0.0]])), "theta0"),
    (dict(rtol=0.0), "rtol"),
    (dict(rtol=-1e-6), "rtol"),
    (dict(atol=0.0), "atol"),
    (dict(t_span=(1.0, 1.0)), "t_span"),
    (dict(t_span=(10.0, 0.0)), "t_span"),
    (dict(t_span=(0.0, np.inf)), "t_span"),
    (dict(save_at=[3.0, 1.0]), "save_at"),
    (dict(save_at=[-1.0, 1.0]), "save_at"),
    (dict(save_at=[1.0, 200.0]), "save_at"),
    (dict(method="euler"), "method"),
    (dict(method="gd"), "dt"),
    (dict(method="rk4"), "dt"),
    (dict(method="gd", dt=-0.1), "dt"),
    (dict(max_steps=0), "max_steps"),
    (dict(gtol=-1.0), "gtol"),
    (dict(threads=0), "threads"),
    (dict(lanes=0), "lanes"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(memory_limit=100), "memory_limit"),
])
def test_bad_inputs_named(nf4, kwargs, match):
    args = dict(theta0=np.zeros((3, 4)))
    args.update(kwargs)
    theta0 = args.pop("theta0")
    with pytest.raises((ValueError, TypeError), match=match):
        nf.solve_ensemble(nf4, theta0, **args)


def test_bad_types_named(nf4):
    with pytest.raises(TypeError, match="flow"):
        nf.solve_ensemble("nf4", np.zeros((2, 4)))
    with pytest.raises(TypeError, match="theta0"):
        nf.solve_ensemble(nf4, np.zeros((2, 4), dtype=complex))
    with pytest.raises(TypeError, match="rtol"):
        nf.solve_ensemble(nf4, np.zeros((2, 4)), rtol="1e-8")
    with pytest.raises(TypeError, match="max_steps"):
        nf.solve_ensemble(nf4, np.zeros((2, 4)), max_steps=1.5)


def test_memory_limit_refuses_before_allocating(nf4):
    prob = ensemble.make_problem(nf4, save_at=np.linspace(0, 100, 1000))
    need = ensemble.output_nbytes(prob, 10**7)
    assert need > 300e9  # 10^7 trajectories x 1000 save points x 5 doubles
    with pytest.raises(ValueError, match="memory_limit"):
        nf.solve_ensemble(nf4, np.zeros((10, 4)), save_at=np.linspace(0, 100, 1000),
                          memory_limit=ensemble.output_nbytes(prob, 10) - 1)
    ok = nf.solve_ensemble(nf4, np.zeros((10, 4)), t_span=(0, 1),
                           memory_limit=ensemble.output_nbytes(
                               ensemble.make_problem(nf4, t_span=(0, 1)), 10))
    assert ok.n_trajectories == 10


def test_empty_ensemble(nf4):
    res = nf.solve_ensemble(nf4, np.zeros((0, 4)), threads=1)
    assert res.y_final.shape == (0, 4)


def test_save_states_false_keeps_losses_only(nf4, nf4_y0):
    ts = np.linspace(0, 100, 6)
    full = nf.solve_ensemble(nf4, nf4_y0, save_at=ts, threads=1)
    lean = nf.solve_ensemble(nf4, nf4_y0, save_at=ts, threads=1, save_states=False)
    assert lean.y_saved is None
    assert np.array_equal(lean.loss_saved, full.loss_saved)
    assert np.array_equal(lean.y_final, full.y_final)
    ds = lean.to_xarray()
    assert "y_saved" not in ds and ds["loss_saved"].dims == ("trajectory", "time")
    prob = ensemble.make_problem(nf4, save_at=ts, save_states=False)
    assert ensemble.output_nbytes(prob, 10) < ensemble.output_nbytes(
        ensemble.make_problem(nf4, save_at=ts), 10)


def test_step_too_small_without_a_bound():
    """Near a finite-time blow-up the step falls below round-off of t: STEP_TOO_SMALL, unless
    the divergence bound catches it first (DIVERGED)."""
    sysm = linear_system(M3, c=1.0)
    y0 = np.array([[5.0, 5.0, 5.0], [0.1, 0.1, 0.1]])
    for method in ADAPTIVE:
        free = nf.solve_ensemble(sysm, y0, t_span=(0, 5), method=method, threads=1,
                                 divergence_bound=np.inf)
        assert free.status[0] == Status.STEP_TOO_SMALL and free.status[1] == Status.SUCCESS
        assert 0.1 < free.t_final[0] < 0.3
        bounded = nf.solve_ensemble(sysm, y0, t_span=(0, 5), method=method, threads=1,
                                    divergence_bound=1e6)
        assert bounded.status[0] == Status.DIVERGED
        assert np.abs(bounded.y_final[0]).max() > 1e6 and bounded.t_final[0] < free.t_final[0]


def test_max_step_bounds_the_steps(nf4, nf4_y0):
    free = nf.solve_ensemble(nf4, nf4_y0, threads=1)
    capped = nf.solve_ensemble(nf4, nf4_y0, threads=1, max_step=0.25)
    # 100 / 0.25 = 400 steps at least; the unbounded run takes far fewer
    assert np.all(capped.n_accepted >= 400) and np.all(free.n_accepted < 400)
    assert np.abs(capped.y_final - free.y_final).max() < 1e-6
    with pytest.raises(ValueError, match="max_step"):
        nf.solve_ensemble(nf4, nf4_y0, max_step=0.0)


# --- review fixes: kernel-level checks --------------------------------------------------------

def test_solve_chunk_refuses_wrong_output_shapes(nf4):
    """The kernel writes without the GIL: a wrong `out=` is refused, naming the array."""
    y0 = model.nf4_initial_states(6, seed=1)
    prob = ensemble.make_problem(nf4, t_span=(0, 1), save_at=[0.0, 1.0], escape_threshold=0.1)
    good = ensemble.solve_chunk(prob, y0)
    for name, bad in (("y_final", np.empty((5, 4))), ("t_final", np.empty(5)),
                      ("nfev", np.empty(7, dtype=np.int64)),
                      ("y_saved", np.empty((6, 3, 4))), ("loss_saved", np.empty((6, 1))),
                      ("escape_time", np.empty(2))):
        out = ensemble.allocate(prob, 6)
        out[name] = bad
        with pytest.raises(ValueError, match=name):
            ensemble.solve_chunk(prob, y0, out=out)
    out = ensemble.allocate(prob, 6)
    del out["loss_saved"]
    with pytest.raises(ValueError, match="loss_saved"):
        ensemble.solve_chunk(prob, y0, out=out)
    # the right shapes (also views into larger arrays) are accepted and give the same result
    big = ensemble.allocate(prob, 10)
    view = {k: v[2:8] for k, v in big.items()}
    ensemble.solve_chunk(prob, y0, out=view)
    for key in ("y_final", "nfev", "y_saved", "loss_saved", "escape_time"):
        assert np.array_equal(view[key], good[key], equal_nan=True), key


def test_eval_lanes_reports_failed_allocation(nf4):
    from narrowflow import rhs
    from narrowflow._ext import ensemble as kernel
    fns = rhs.compile_network(nf4.network)
    params = rhs.pack_params(nf4)
    y = model.nf4_initial_states(3, seed=2)
    ok = kernel.eval_lanes(fns.loss_address, params, y, 16, 1)
    assert np.allclose(ok, [nf4.loss(t) for t in y], rtol=1e-12)
    # a lane buffer of ~2**60 bytes cannot be allocated: MemoryError, not NaN losses
    with pytest.raises(MemoryError, match="eval_lanes"):
        kernel.eval_lanes(fns.loss_address, params, y, 2**55, 1)


def test_theta0_beyond_the_bound_is_diverged_at_t0(nf4):
    y0 = model.nf4_initial_states(20, seed=3)
    y0[7, 2] = 60.0          # beyond the bound before any step
    y0[11, 0] = -4.0         # inside it
    opts = dict(t_span=(0, 10), save_at=[0.0, 5.0], escape_threshold=0.05, divergence_bound=50.0)
    for method, kw in (("dp5", {}), ("dop853", {}), ("vern7", {}), ("rk4", {"dt": 0.1}),
                       ("gd", {"dt": 0.1})):
        res = nf.solve_ensemble(nf4, y0, method=method, threads=2, lanes=4, **opts, **kw)
        assert res.status[7] == Status.DIVERGED
        assert res.t_final[7] == 0.0 and res.nfev[7] == 0 and res.n_accepted[7] == 0
        assert np.array_equal(res.y_final[7], y0[7])
        assert np.all(np.isnan(res.loss_saved[7])) and np.isnan(res.escape_time[7])
        # a row just inside the bound starts normally
        assert res.t_final[11] > 0.0 and res.nfev[11] > 0
        # the others are unaffected (their neighbour stopped at t0 and was refilled)
        solo = nf.solve_ensemble(nf4, np.delete(y0, 7, axis=0), method=method, threads=1,
                                 **opts, **kw)
        for name in FIELDS:
            assert np.array_equal(np.delete(getattr(res, name), 7, axis=0),
                                  getattr(solo, name), equal_nan=True), (method, name)
    # the bound decides: with a larger one the same row is integrated
    res = nf.solve_ensemble(nf4, y0[7:8], t_span=(0, 1), method="rk4", dt=0.1,
                            divergence_bound=100.0, threads=1)
    assert res.t_final[0] > 0.0 and res.nfev[0] > 0
    # the default bound (1e10) too
    y0[7, 2] = 3e10
    res = nf.solve_ensemble(nf4, y0[7:8], t_span=(0, 10), threads=1)
    assert res.status[0] == Status.DIVERGED and res.t_final[0] == 0.0 and res.nfev[0] == 0


# y' = 1 where y < c, NaN where y >= c (params [c]); status 1 when any output is non-finite
@cfunc(RHS_SIGNATURE, error_model="numpy")
def _nan_wall(lanes, t, y, dy, params):
    bad = 0
    for l in range(lanes):
        if y[l] < params[0]:
            dy[l] = 1.0
        else:
            dy[l] = np.nan
            bad = 1
    return bad


@cfunc(RHS_SIGNATURE, error_model="numpy")
def _half_square_1d(lanes, t, y, out, params):
    for l in range(lanes):
        out[l] = 0.5 * y[l] * y[l]
    return 0


def test_nonfinite_gradient_at_a_finite_state_is_diverged():
    """Gradient descent reaches y = 2 exactly (steps of 0.5 from 0) where f is NaN: the lane is
    DIVERGED there, with its finite state, instead of taking a NaN step; below the wall it runs
    on, and a lane next to it is unaffected."""
    def system(c):
        # (a 1-D loss: _half_norm2 would read params[0] = c as the dimension)
        return CompiledSystem(_nan_wall.address, _half_square_1d.address, np.array([c, 0.0]), 1,
                              keepalive=(_nan_wall, _half_square_1d))
    y0 = np.array([[0.0], [-10.0]])
    res = nf.solve_ensemble(system(2.0), y0, t_span=(0, 5), method="gd", dt=0.5, threads=1,
                            lanes=2)
    assert res.status.tolist() == [Status.DIVERGED, Status.SUCCESS]
    assert res.y_final[0, 0] == 2.0 and res.t_final[0] == 2.0 and res.n_accepted[0] == 4
    assert res.y_final[1, 0] == -5.0 and res.t_final[1] == 5.0
    # the wall moved beyond the state reached at t = 2: it runs on until y = 2.5
    res = nf.solve_ensemble(system(2.25), y0, t_span=(0, 5), method="gd", dt=0.5, threads=1,
                            lanes=2)
    assert res.status[0] == Status.DIVERGED and res.y_final[0, 0] == 2.5
    assert res.t_final[0] == 2.5
    # never reached: SUCCESS
    res = nf.solve_ensemble(system(2.0), y0, t_span=(0, 1.5), method="gd", dt=0.5, threads=1)
    assert np.all(res.status == Status.SUCCESS) and res.y_final[0, 0] == 1.5


def test_kernel_refuses_fsal_tableau_blind_to_its_last_stage(nf4, monkeypatch):
    """The kernel counts on a non-finite f(y_new) of an FSAL method failing the error test."""
    import dataclasses
    dp5 = tableaus.get("dp5")
    e = dp5.e.copy()
    e[dp5.S - 1] = 0.0
    blind = dataclasses.replace(dp5, e=e)
    prob = ensemble.make_problem(nf4, t_span=(0, 1))
    y0 = np.zeros((2, 4))
    ensemble.solve_chunk(prob, y0)                     # the real tableau is accepted
    monkeypatch.setattr(tableaus, "get", lambda name: blind)
    with pytest.raises(ValueError, match="FSAL"):
        ensemble.solve_chunk(prob, y0)


def test_gd_needs_whole_steps_and_progress_is_bool(nf4):
    y0 = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"dt.*t_span"):
        nf.solve_ensemble(nf4, y0, t_span=(0, 1.0), method="gd", dt=0.3)
    with pytest.raises(ValueError, match=r"dt.*t_span"):
        nf.solve_ensemble(nf4, y0, t_span=(0, 0.2), method="gd", dt=0.3)
    # whole numbers of steps pass, also when t1 - t0 is a rounded product k * dt
    for dt, k in ((0.1, 1000), (0.3, 7), (1e-3, 1234)):
        res = nf.solve_ensemble(nf4, y0[:1], t_span=(0, k * dt), method="gd", dt=dt,
                                threads=1)
        assert res.n_accepted[0] == k
    # rk4 keeps its (shorter) last step to land on t1
    res = nf.solve_ensemble(nf4, y0[:1], t_span=(0, 1.0), method="rk4", dt=0.3, threads=1)
    assert res.n_accepted[0] == 4 and res.t_final[0] == 1.0
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="progress"):
            nf.solve_ensemble(nf4, y0, t_span=(0, 1), progress=bad)


def test_solve_ensemble_checks_theta0_once(nf4, monkeypatch):
    y0 = model.nf4_initial_states(10, seed=4)
    calls = []
    real = ensemble.check_theta0
    monkeypatch.setattr(ensemble, "check_theta0", lambda *a: calls.append(1) or real(*a))
    nf.solve_ensemble(nf4, y0, t_span=(0, 1), chunk_size=3, threads=1)
    assert len(calls) == 1
    # the public solve_chunk still checks its input
    prob = ensemble.make_problem(nf4, t_span=(0, 1))
    with pytest.raises(ValueError, match="theta0"):
        ensemble.solve_chunk(prob, np.full((2, 4), np.nan))


# --- issue 11: bounds before work ----------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(threads=2**31), "threads must be <="),
    (dict(threads=10**6), "threads must be <="),
    (dict(threads=-1), "threads must be >="),
    (dict(max_steps=2**63), "max_steps must be <="),
    (dict(max_steps=2**70), "max_steps must be <="),
    (dict(chunk_size=2**64), "chunk_size must be <="),
    (dict(lanes=2**63), "lanes must be <= 1024"),
])
def test_integer_bounds_refused_by_name(nf4, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nf.solve_ensemble(nf4, np.zeros((2, 4)), t_span=(0.0, 1.0), **kwargs)
    assert ensemble.max_threads() >= max(ensemble.MIN_THREAD_CAP, ensemble.default_threads())


def test_memory_limit_before_theta0_is_materialised(nf4):
    """A broadcast theta0 (a view of one row) is refused by memory_limit (a number, 1e6 as
    well as 10**6) before its copy exists."""
    import tracemalloc
    view = np.broadcast_to(np.zeros(4), (10**7, 4))     # 320 MB once copied
    tracemalloc.start()
    try:
        for limit in (1e6, 10**6):
            with pytest.raises(ValueError, match="memory_limit"):
                nf.solve_ensemble(nf4, view, t_span=(0.0, 1.0), memory_limit=limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    with pytest.raises(ValueError, match="memory_limit"):
        nf.solve_ensemble(nf4, np.broadcast_to(np.zeros(4), (10**9, 4)), t_span=(0.0, 1.0),
                          memory_limit=1e6)
    with pytest.raises(ValueError, match="memory_limit"):
        nf.solve_ensemble(nf4, np.zeros((2, 4)), memory_limit=float("nan"))


def test_ragged_theta0_refused_by_name(nf4):
    with pytest.raises(ValueError, match="theta0"):
        nf.solve_ensemble(nf4, [[0.0, 0.0, 0.0, 0.0], [0.0]], t_span=(0.0, 1.0))
