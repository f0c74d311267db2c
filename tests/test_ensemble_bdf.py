"""method="bdf": the variable-order NDF worker of the lane kernel (ext/ensemble.pyx,
run_worker_bdf), against closed forms, Radau at tight tolerance and itself across lanes."""
import dataclasses

import numpy as np
import pytest
from scipy.linalg import expm

import narrowflow as nf
from narrowflow import model, tableaus
from narrowflow.ensemble import Status
from test_ensemble_stiff import (EIGS, FIELDS, quadratic_to_convergence, radau_ref,
                                 stiff_matrix, system)


def test_coefficients_are_scipys_ndf():
    """kappa, gamma, alpha and the error constants of Shampine & Reichelt's NDFs."""
    m = tableaus.get("bdf")
    q = np.arange(1, m.max_order + 1)
    assert np.allclose(m.gamma[1:], np.cumsum(1.0 / q))
    assert np.allclose(m.alpha, (1 - m.kappa) * m.gamma)
    assert np.allclose(m.error_const, m.kappa * m.gamma + 1.0 / np.arange(1, m.max_order + 2))
    assert m.kappa[m.max_order] == 0.0          # order 5 is BDF5
    # BDF's error constants without kappa: 1/(q+1); NDF's are smaller at orders 1..4
    assert np.all(m.error_const[1:5] < 1.0 / (q[:4] + 1))


@pytest.mark.parametrize("rtol", [1e-6, 1e-8, 1e-10])
def test_linear_stiff_closed_form_and_dense_output(rtol):
    M = stiff_matrix(EIGS)
    y0 = np.random.default_rng(1).normal(size=(4, 5))
    T = 1e3
    ts = np.array([0.0, 0.37, 3.0, 250.0, 999.0, T])
    r = nf.solve_ensemble(system(M), y0, t_span=(0.0, T), method="bdf", rtol=rtol,
                          atol=rtol * 1e-2, save_at=ts, threads=1)
    assert np.all(r.status == Status.SUCCESS) and np.all(r.t_final == T)
    exact = np.stack([y0 @ expm(-M * t).T for t in ts], axis=1)     # (N, K, n)
    assert np.abs(r.y_final - exact[:, -1]).max() < 100 * rtol
    assert np.abs(r.y_saved - exact).max() < 300 * rtol
    assert np.array_equal(r.y_saved[:, -1], r.y_final)
    # a linear problem: the Newton iteration never fails, so the Jacobian is evaluated at the
    # start and then on schedule only, after every jacobian_every accepted steps
    every = tableaus.get("bdf").jacobian_every
    assert np.array_equal(r.njev, 1 + (r.n_accepted - 1) // every), (r.njev, r.n_accepted)


def test_error_follows_the_tolerance():
    """Tighter rtol, smaller global error: the controller works (order 1..5, not fixed)."""
    M = stiff_matrix(np.array([1e-3, 0.3, 1.0, 30.0]), seed=2)
    y0 = np.random.default_rng(3).normal(size=(6, 4))
    T = 200.0
    exact = y0 @ expm(-M * T).T
    errs, work = [], []
    for rtol in (1e-5, 1e-7, 1e-9, 1e-11):
        r = nf.solve_ensemble(system(M), y0, t_span=(0.0, T), method="bdf", rtol=rtol,
                              atol=rtol * 1e-2, threads=1)
        errs.append(np.abs(r.y_final - exact).max())
        work.append(r.nfev.mean())
    slope = np.polyfit(np.log10([1e-5, 1e-7, 1e-9, 1e-11]), np.log10(errs), 1)[0]
    assert 0.6 < slope < 1.3, (errs, slope)
    assert np.all(np.diff(work) > 0), work


def test_nonlinear_against_radau():
    M = stiff_matrix(np.array([1e-3, 0.5, 2.0, 80.0]), seed=7)
    c = 0.1
    y0 = np.random.default_rng(2).uniform(-0.5, 0.5, size=(5, 4))
    T = 50.0

    def f(y):
        return -M @ y + c * y * y

    def jac(y):
        return -M + np.diag(2 * c * y)

    r = nf.solve_ensemble(system(M, c), y0, t_span=(0.0, T), method="bdf", rtol=1e-10,
                          atol=1e-12, threads=1)
    ref = np.array([radau_ref(f, jac, y, T) for y in y0])
    assert np.all(r.status == Status.SUCCESS)
    assert np.abs(r.y_final - ref).max() < 1e-7


@pytest.fixture(scope="module")
def nf4():
    return model.nf4_benchmark()


def test_nf4_long_horizon_against_radau(nf4):
    y0 = model.nf4_initial_states(6, seed=11)
    T = 2e3
    r = nf.solve_ensemble(nf4, y0, t_span=(0.0, T), method="bdf", rtol=1e-10, atol=1e-12,
                          threads=1, save_at=[0.0, 10.0, 1000.0, T])
    ref = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, T) for y in y0])
    assert np.all(r.status == Status.SUCCESS)
    assert np.abs(r.y_final - ref).max() < 1e-6
    mid = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, 1000.0) for y in y0])
    assert np.abs(r.y_saved[:, 2] - mid).max() < 1e-6
    # the Hessian is renewed on schedule and when the Newton iteration fails: far fewer
    # times than there are steps
    assert np.all(r.njev < 0.2 * r.n_accepted)


def test_quadratic_loss_converges_with_bounded_work():
    """Hessian eigenvalues 1e-6 ... 1: CONVERGED at t = inf (the gradient norm of the final
    state itself, not of a Newton iterate), about one evaluation a step."""
    r = quadratic_to_convergence("bdf")
    every = tableaus.get("bdf").jacobian_every
    assert r.nfev.max() < 1000, r.nfev
    assert np.array_equal(r.njev, 1 + (r.n_accepted - 1) // every), (r.njev, r.n_accepted)
    assert np.all(r.nfev < 1.6 * (r.n_accepted + r.n_rejected))
    ros = quadratic_to_convergence("rodas5p")
    assert r.nfev.max() < ros.nfev.min()


@pytest.mark.parametrize("rtol", [1e-6, 1e-10])
def test_first_step_is_scipys(nf4, rtol):
    """The first step (BDF1, local error O(h^2)) is scipy's BDF's, h ~ tol^(1/2): a step
    ~ tol^(1/1) started NF4 five decades too small."""
    from scipy.integrate import BDF
    y0 = model.nf4_initial_states(5, seed=2)
    r = nf.solve_ensemble(nf4, y0, t_span=(0.0, 1e3), method="bdf", rtol=rtol,
                          atol=rtol * 1e-2, max_steps=1, threads=1)
    assert np.all(r.status == Status.MAX_STEPS) and np.all(r.n_accepted == 1)
    h = [BDF(lambda t, y: nf4.field(y), 0.0, y, 1e3, rtol=rtol, atol=rtol * 1e-2,
             jac=lambda t, y: -nf4.hessian(y)).h_abs for y in y0]
    assert np.allclose(r.t_final, h, rtol=1e-12, atol=0.0), (r.t_final, h)


def test_max_step_and_t1():
    M = stiff_matrix(np.array([1e-2, 1.0]), seed=1)
    y0 = np.ones((3, 2))
    r = nf.solve_ensemble(system(M), y0, t_span=(0.0, 100.0), method="bdf", max_step=0.5,
                          threads=1)
    assert np.all(r.status == Status.SUCCESS) and np.all(r.t_final == 100.0)
    assert np.all(r.n_accepted >= 200)
    assert np.abs(r.y_final - y0 @ expm(-M * 100.0).T).max() < 1e-6


_GET = tableaus.get


def _bdf_with(monkeypatch, **fields):
    """method "bdf" (and auto's tail) with other MultistepMethod fields, through tableaus.get
    (each call replaces the previous one's fields)."""
    monkeypatch.setattr(tableaus, "get", lambda name: (dataclasses.replace(_GET(name), **fields)
                                                       if name == "bdf" else _GET(name)))


def test_jacobian_renewed_on_schedule(nf4, monkeypatch):
    """NF4's stiff tail: renewing each lane's Hessian every jacobian_every steps (CVODE's
    msbj) lets the first Newton correction pass more often, so the tail costs fewer
    evaluations than with a Hessian renewed only when Newton fails, at the same accuracy."""
    y0 = model.nf4_initial_states(6, seed=31)
    T = 1e4
    kw = dict(t_span=(0.0, T), method="bdf", rtol=1e-10, atol=1e-12, threads=1)
    ref = np.array([radau_ref(nf4.field, lambda y: -nf4.hessian(y), y, T) for y in y0])
    every = tableaus.get("bdf").jacobian_every
    assert every == 40
    sched = nf.solve_ensemble(nf4, y0, **kw)
    _bdf_with(monkeypatch, jacobian_every=0)
    fail_only = nf.solve_ensemble(nf4, y0, **kw)
    for r in (sched, fail_only):
        assert np.all(r.status == Status.SUCCESS)
        assert np.abs(r.y_final - ref).max() < 1e-7
    assert np.all(sched.njev >= (sched.n_accepted - 1) // every)          # the schedule
    assert fail_only.njev.sum() < sched.njev.sum()
    assert sched.nfev.sum() < 0.85 * fail_only.nfev.sum(), (sched.nfev, fail_only.nfev)
    _bdf_with(monkeypatch, jacobian_every=-1)
    with pytest.raises(ValueError, match="jacobian_every"):
        nf.solve_ensemble(nf4, y0[:1], **kw)


def test_fifth_newton_iteration_saves_hessians(monkeypatch):
    """A wide network's stiff stretch: a Newton iteration that fails with an old Hessian
    costs a new one, so a fifth iteration (the default) leaves fewer failures, fewer
    Hessians and fewer rejected steps than scipy's four, at the same accuracy."""
    rng = np.random.default_rng(9)
    net = nf.Network(width=3, input_dim=2, activation="softplus", bias=True)
    flow = nf.GradientFlow(net, nf.Dataset.from_teacher(net, rng.normal(size=net.n_params),
                                                        rng.normal(size=(32, 2))))
    y0 = rng.normal(size=(16, net.n_params))
    kw = dict(t_span=(0.0, 1e5), method="bdf", threads=1)
    assert tableaus.get("bdf").newton_maxiter == 5
    five = nf.solve_ensemble(flow, y0, rtol=1e-8, atol=1e-10, **kw)
    ref = nf.solve_ensemble(flow, y0, rtol=1e-12, atol=1e-14, **kw)
    _bdf_with(monkeypatch, newton_maxiter=4)
    four = nf.solve_ensemble(flow, y0, rtol=1e-8, atol=1e-10, **kw)
    for r in (five, four, ref):
        assert np.all(r.status == Status.SUCCESS)
    err5, err4 = (np.abs(r.y_final - ref.y_final).max() for r in (five, four))
    assert err5 < 1e-5 and err5 < 3 * err4, (err5, err4)
    assert five.njev.sum() < 0.95 * four.njev.sum(), (five.njev, four.njev)
    assert five.n_rejected.sum() <= four.n_rejected.sum(), (five.n_rejected, four.n_rejected)
    for bad in (0, 9):
        _bdf_with(monkeypatch, newton_maxiter=bad)
        with pytest.raises(ValueError, match="newton_maxiter"):
            nf.solve_ensemble(flow, y0[:1], rtol=1e-8, **kw)


@pytest.mark.parametrize("method", ["bdf"])
def test_bitwise_identical_threads_chunks_lanes(nf4, method):
    """Lanes run their own phases (Newton, gradient test): nothing depends on the others."""
    y0 = model.nf4_initial_states(70, seed=4)
    kw = dict(t_span=(0.0, 3e3), method=method, save_at=[0.0, 5.0, 500.0, 3e3],
              escape_threshold=1e-2, gtol=1e-5)
    base = nf.solve_ensemble(nf4, y0, threads=1, **kw)
    assert 0 < np.count_nonzero(base.status == Status.CONVERGED) < len(y0)
    for other in (nf.solve_ensemble(nf4, y0, threads=2, **kw),
                  nf.solve_ensemble(nf4, y0, threads=2, chunk_size=17, **kw),
                  nf.solve_ensemble(nf4, y0, threads=1, lanes=5, **kw),
                  nf.solve_ensemble(nf4, y0, threads=1, lanes=1, **kw)):
        for name in FIELDS:
            assert np.array_equal(getattr(other, name), getattr(base, name), equal_nan=True), name
    perm = np.random.default_rng(0).permutation(len(y0))
    shuffled = nf.solve_ensemble(nf4, y0[perm], threads=2, **kw)
    for name in FIELDS:
        assert np.array_equal(getattr(shuffled, name), getattr(base, name)[perm],
                              equal_nan=True), name


def test_nonfinite_jacobian_in_one_lane():
    M = np.diag([1e-2, 1.0, 40.0])
    y0 = np.random.default_rng(7).uniform(-1, 1, size=(6, 3))
    y0[2, 0] = 5.0                          # this lane's Jacobian is NaN (y[0] > 4)
    sysm = system(M, nan_above=4.0)
    r = nf.solve_ensemble(sysm, y0, t_span=(0.0, 200.0), method="bdf", threads=1, lanes=4)
    assert r.status[2] == Status.DIVERGED
    ok = np.arange(6) != 2
    clean = nf.solve_ensemble(sysm, y0[ok], t_span=(0.0, 200.0), method="bdf", threads=1,
                              lanes=4)
    for name in ("y_final", "status", "nfev", "njev"):
        assert np.array_equal(getattr(r, name)[ok], getattr(clean, name)), name
    assert np.all(r.status[ok] == Status.SUCCESS)


def test_singular_w_rejects_the_step_and_recovers():
    """y' = lam y with lam = alpha_1 / h: at order 1 and first step h, W = I - (h/alpha_1) J
    is exactly singular; the step is rejected (h halved) and the run goes on."""
    m = tableaus.get("bdf")
    h = 0.5
    lam = m.alpha[1] / h
    y0 = np.array([[1e-3, -2e-3], [2e-3, 1e-3]])
    r = nf.solve_ensemble(system(-lam * np.eye(2)), y0, t_span=(0.0, 1.0), method="bdf",
                          dt=h, rtol=1e-9, atol=1e-12, threads=1)
    assert np.all(r.status == Status.SUCCESS)
    assert np.all(r.n_rejected >= 1)
    assert np.allclose(r.y_final, y0 * np.exp(lam), rtol=1e-6)


def test_needs_the_jacobian():
    M = np.diag([1.0, 2.0])
    with pytest.raises(ValueError, match="jacobian_address"):
        nf.solve_ensemble(system(M, jacobian=False), np.ones((1, 2)), method="bdf")
