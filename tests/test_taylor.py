"""method="taylor": Taylor coefficients of the gradient field (narrowflow.taylor, through the
series arithmetic shared with the Koenigs parametrisation) and the adaptive Taylor integrator."""
import mpmath as mp
import numpy as np
import pytest

import narrowflow as nf
from narrowflow import activations, model, taylor

ACTS = activations.NAMES


def _mp_act(name, kappa):
    C, A = mp.sqrt(2 / mp.pi), mp.mpf("0.044715")
    return {
        "tanh": mp.tanh,
        "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
        "softplus": lambda z: mp.log(1 + mp.exp(z)),
        "silu": lambda z: z / (1 + mp.exp(-z)),
        "gelu_tanh": lambda z: z * (1 + mp.tanh(C * (z + A * z ** 3))) / 2,
        "quadratic": lambda z: z + kappa * z * z,
        "linear": lambda z: z,
    }[name]


def _mp_field(flow, theta):
    """−∇L(θ) in mpmath (complex θ allowed), from the definition of the loss."""
    net = flow.network
    d, m, k, bias = net.architecture
    x, y = flow.data.x, flow.data.y
    n = x.shape[0]
    sig = _mp_act(net.activation.name, mp.mpf(net.activation.kappa))
    lam = mp.mpf(flow.weight_decay)
    bs = k + d + int(bias)
    # dσ by a complex step would lose digits: differentiate σ exactly with mp.diff
    g = [mp.mpf(0)] * len(theta)
    for i in range(n):
        z = [sum(theta[j * bs + k + e] * x[i, e] for e in range(d))
             + (theta[j * bs + k + d] if bias else 0) for j in range(m)]
        s = [sig(zj) for zj in z]
        s1 = [mp.diff(sig, zj) for zj in z]
        r = [sum(theta[j * bs + q] * s[j] for j in range(m))
             + (theta[m * bs + q] if bias else 0) - y[i, q] for q in range(k)]
        for j in range(m):
            rho = sum(r[q] * theta[j * bs + q] for q in range(k))
            for q in range(k):
                g[j * bs + q] += r[q] * s[j]
            for e in range(d):
                g[j * bs + k + e] += rho * s1[j] * x[i, e]
            if bias:
                g[j * bs + k + d] += rho * s1[j]
        if bias:
            for q in range(k):
                g[m * bs + q] += r[q]
    return [-gi / n - lam * th for gi, th in zip(g, theta)]


def _mp_coefficients(flow, theta0, order, radius=0.05, npts=24):
    """Taylor coefficients of the solution through theta0, order by order: F_k by the Cauchy
    integral of F(θ(t)) on |t| = radius (mpmath, 40 digits), θ_{k+1} = F_k / (k + 1)."""
    mp.mp.dps = 40
    p = len(theta0)
    c = [[mp.mpf(v) for v in theta0]]
    ts = [radius * mp.expj(2 * mp.pi * j / npts) for j in range(npts)]
    for k in range(order):
        vals = []
        for t in ts:
            th = [sum(c[q][i] * t ** q for q in range(len(c))) for i in range(p)]
            vals.append(_mp_field(flow, th))
        Fk = [sum(vals[j][i] * ts[j] ** (-k) for j in range(npts)) / npts for i in range(p)]
        c.append([mp.re(v) / (k + 1) for v in Fk])
    return np.array([[float(v) for v in row] for row in c])


def _wide_flow(activation, weight_decay=0.1):
    """Width 3, 2 inputs, 2 outputs, with bias and weight decay."""
    rng = np.random.default_rng(3)
    net = nf.Network(width=3, input_dim=2, output_dim=2, activation=activation, bias=True,
                     **({"kappa": 0.7} if activation == "quadratic" else {}))
    x = rng.uniform(-1.5, 1.5, (4, 2))
    y = np.stack([np.tanh(x[:, 0] - 0.5 * x[:, 1]), 0.3 * x[:, 0] * x[:, 1]], axis=1)
    return nf.GradientFlow(net, nf.Dataset(x, y), weight_decay=weight_decay)


@pytest.mark.parametrize("activation", ACTS)
def test_coefficients_against_mpmath(activation):
    flow = _wide_flow(activation)
    theta = 0.6 * np.random.default_rng(5).standard_normal((2, flow.n_params))
    order = 6
    C = taylor.coefficients(flow, theta, order, lanes=3)
    for r in range(2):
        ref = _mp_coefficients(flow, theta[r], order)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        assert np.all(np.abs(C[r] - ref) <= 1e-12 * scale + 1e-300), (
            activation, np.abs(C[r] - ref).max(axis=1) / scale[:, 0])


def test_coefficients_nf4_high_order_and_lanes():
    """NF4, order 20: coefficient 1 is the flow, coefficient 2 is J F / 2, the polynomial
    matches a tight DOP853 solution, and the lane count does not change a bit."""
    from narrowflow import derivatives
    flow = model.nf4_benchmark()
    th = model.nf4_initial_states(7)
    C = taylor.coefficients(flow, th, 20, lanes=4)
    for r in range(3):
        F, DF = derivatives.derivatives(flow, th[r], order=1)[:2]
        assert np.allclose(C[r, 1], F, rtol=1e-14, atol=1e-15)
        assert np.allclose(C[r, 2], DF @ F / 2, rtol=1e-13, atol=1e-15)
    for lanes in (1, 3, 16):
        assert np.array_equal(taylor.coefficients(flow, th, 20, lanes=lanes), C)
    h = 0.02
    res = nf.solve_ensemble(flow, th, t_span=(0.0, h), method="dop853", rtol=1e-13,
                            atol=1e-15, threads=1)
    poly = np.einsum("nkp,k->np", C, h ** np.arange(21))
    assert np.abs(poly - res.y_final).max() < 1e-12



@pytest.mark.parametrize("activation", ACTS)
def test_specialised_coefficients_against_mpmath(activation):
    """The code generated for one order (Cauchy sums written out, blocks of 8 lanes) gives
    the 40-digit coefficients, and the same bits in every lane whatever the lane count
    (1, 3, 17: one padded block, three blocks the last of them padded)."""
    flow = _wide_flow(activation)
    theta = 0.6 * np.random.default_rng(5).standard_normal((17, flow.n_params))
    order = 6
    C = taylor.coefficients(flow, theta, order, lanes=17, specialised=True, compact=False)
    for r in range(2):
        ref = _mp_coefficients(flow, theta[r], order)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        assert np.all(np.abs(C[r] - ref) <= 1e-12 * scale + 1e-300), (
            activation, np.abs(C[r] - ref).max(axis=1) / scale[:, 0])
    for lanes in (1, 3):
        assert np.array_equal(taylor.coefficients(flow, theta, order, lanes=lanes,
                                                  specialised=True, compact=False), C)


@pytest.mark.parametrize("activation,factor", [("tanh", False), ("silu", True),
                                               ("gelu_tanh", False)])
def test_compact_coefficients_against_mpmath(activation, factor):
    """The neurons in run-time loops (compact, the default from COMPACT_MIN_WIDTH on; gelu_tanh
    has the most series per neuron, silu here the factored sums): the 40-digit coefficients,
    the unrolled code's to round-off, the same bits whatever the lane count."""
    flow = _wide_flow(activation)
    theta = 0.6 * np.random.default_rng(5).standard_normal((17, flow.n_params))
    order = 6
    kw = dict(specialised=True, factor=factor)
    C = taylor.coefficients(flow, theta, order, lanes=17, compact=True, **kw)
    for r in range(2):
        ref = _mp_coefficients(flow, theta[r], order)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        assert np.all(np.abs(C[r] - ref) <= 1e-12 * scale + 1e-300), (
            activation, np.abs(C[r] - ref).max(axis=1) / scale[:, 0])
    U = taylor.coefficients(flow, theta, order, lanes=17, compact=False, **kw)
    scale = np.abs(U).max(axis=(0, 2), keepdims=True)
    assert np.all(np.abs(C - U) <= 1e-14 * scale), np.abs(C - U).max(axis=(0, 2)) / scale[0, :, 0]
    for lanes in (1, 3):
        assert np.array_equal(taylor.coefficients(flow, theta, order, lanes=lanes, compact=True,
                                                  **kw), C)


def test_compact_source_does_not_grow_with_width():
    """What compact mode is for: the generated source (and so the compile time) of the
    unrolled code grows with the width, the compact code's barely; the default follows
    COMPACT_MIN_WIDTH."""
    def lines(m, compact):
        return taylor._generate_fixed_source(2, m, 1, True, "tanh", 8, True, compact).count("\n")
    assert lines(16, False) > 5 * lines(2, False)
    # only the residuals' sums over the neurons are written out, a line or two per neuron
    assert lines(16, True) - lines(2, True) < (lines(16, False) - lines(2, False)) / 10
    wide = nf.Network(width=taylor.COMPACT_MIN_WIDTH, input_dim=2, bias=True)
    narrow = nf.Network(width=taylor.COMPACT_MIN_WIDTH - 1, input_dim=2, bias=True)
    assert taylor.compile_taylor(wide, 5).compact and not taylor.compile_taylor(narrow, 5).compact
    assert not taylor.compile_taylor(wide).compact       # the generic code has no such variant
    with pytest.raises(TypeError, match="compact"):
        taylor.compile_taylor(wide, 5, compact=1)


@pytest.mark.parametrize("activation", ["tanh", "silu"])
def test_factored_coefficients_against_mpmath(activation):
    """The specialised code with the output weights applied after the sum over data points
    (2 outputs, 2 inputs, bias: every (neuron, output, input) sum and the biases') gives the
    40-digit coefficients too, and the same bits whatever the lane count. The default
    chooses by cost: 4 data points are too few for this network, 16 enough for NF4's."""
    flow = _wide_flow(activation)
    assert not taylor.compile_taylor(flow, 6).factor
    assert taylor.compile_taylor(model.nf4_benchmark(), 6).factor
    assert not taylor.compile_taylor(model.nf4_benchmark().network, 6).factor
    theta = 0.6 * np.random.default_rng(6).standard_normal((9, flow.n_params))
    order = 6
    C = taylor.coefficients(flow, theta, order, lanes=9, specialised=True, factor=True)
    for r in range(2):
        ref = _mp_coefficients(flow, theta[r], order)
        scale = np.abs(ref).max(axis=1, keepdims=True)
        assert np.all(np.abs(C[r] - ref) <= 1e-12 * scale + 1e-300), (
            activation, np.abs(C[r] - ref).max(axis=1) / scale[:, 0])
    assert np.array_equal(taylor.coefficients(flow, theta, order, lanes=1, specialised=True,
                                              factor=True), C)
    with pytest.raises(TypeError, match="factor"):
        taylor.compile_taylor(flow, 6, factor=1)


def test_specialised_matches_generic_nf4():
    """NF4 at order 11 (rtol 1e-8): the specialised code and the loops of narrowflow.series
    agree to round-off; the specialised function refuses another order."""
    import ctypes
    flow = model.nf4_benchmark()
    th = model.nf4_initial_states(20)
    a = taylor.coefficients(flow, th, 11, lanes=16)
    b = taylor.coefficients(flow, th, 11, lanes=16, specialised=True)
    scale = np.abs(a).max(axis=(0, 2), keepdims=True)
    assert np.all(np.abs(a - b) <= 4e-15 * scale), np.abs(a - b).max(axis=(0, 2)) / scale[0, :, 0]
    fns = taylor.compile_taylor(flow, 11)
    with pytest.raises(ValueError, match="order 11"):
        fns.work_size(10, 16, flow.data.n)
    dp = ctypes.POINTER(ctypes.c_double)
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int64, dp, dp, dp)(fns.address)
    X = np.full((11, 4, 1), 0.5)
    w = np.zeros(fns.work_size(11, 1, flow.data.n))
    from narrowflow import rhs
    par = rhs.pack_params(flow)
    assert fn(1, 10, X.ctypes.data_as(dp), w.ctypes.data_as(dp), par.ctypes.data_as(dp)) == 2
    assert np.all(X == 0.5)

# --- the integrator (method="taylor") ------------------------------------------------------

NF4 = model.nf4_benchmark()


@pytest.fixture(scope="module")
def nf4_reference():
    th = model.nf4_initial_states(32)
    ref = nf.solve_ensemble(NF4, th, method="dop853", rtol=1e-13, atol=1e-15, threads=1)
    assert np.all(ref.status == 0)
    return th, ref.y_final


def test_stability_boundary():
    """The real stability boundary of the degree-p Taylor polynomial: Euler's 2, RK4's
    2.7853 (the classical value), and at every order |P(-x)| <= 1 up to it, > 1 just past."""
    import math
    assert taylor.stability_boundary(1) == pytest.approx(2.0, abs=1e-9)
    assert taylor.stability_boundary(4) == pytest.approx(2.785293563, abs=1e-8)
    for p in (2, 8, 13, 16, 25):
        b = taylor.stability_boundary(p)
        poly = lambda z: sum(z ** k / math.factorial(k) for k in range(p + 1))  # noqa: E731
        assert max(abs(poly(-s)) for s in np.linspace(0.0, b, 500)) <= 1.0 + 1e-9
        assert abs(poly(-b * (1 + 1e-6))) > 1.0
    assert [taylor.stability_boundary(p) for p in (8, 13, 16)] == sorted(
        taylor.stability_boundary(p) for p in (8, 13, 16))
    with pytest.raises(ValueError, match="order"):
        taylor.stability_boundary(0)


def test_order_from_tolerance():
    assert [taylor.order_for(r) for r in (1e-6, 1e-8, 1e-10, 1e-13, 1e-15)] == [8, 11, 13, 16, 19]


def test_agrees_with_dop853_nf4(nf4_reference):
    th, ref = nf4_reference
    res = nf.solve_ensemble(NF4, th, method="taylor", rtol=1e-13, atol=1e-15, threads=1)
    assert np.all(res.status == 0) and np.all(res.t_final == 100.0)
    assert np.all(res.n_rejected == 0)
    assert np.abs(res.y_final - ref).max() < 1e-10


def test_accuracy_follows_the_tolerance(nf4_reference):
    """Tighter rtol: higher order, smaller error (within a modest factor of rtol over t = 100),
    about the same number of steps (the order does the work)."""
    th, ref = nf4_reference
    errs, steps = [], []
    for rtol in (1e-6, 1e-8, 1e-10, 1e-12):
        res = nf.solve_ensemble(NF4, th, method="taylor", rtol=rtol, atol=rtol * 1e-2, threads=1)
        assert np.all(res.status == 0)
        errs.append(np.abs(res.y_final - ref).max())
        steps.append(res.n_accepted.mean())
        assert errs[-1] < 100 * rtol, (rtol, errs[-1])
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    # Jorba & Zou: the step is a fixed fraction of the series' radius of convergence whatever
    # the tolerance, which the order meets; the step count barely moves
    assert max(steps) < 1.5 * min(steps), steps


@pytest.mark.parametrize("compact", [False, True])
def test_agrees_with_dop853_wide_network_with_bias(compact, monkeypatch):
    """Width 3 with the neurons written out (the default) and in loops (the default from
    COMPACT_MIN_WIDTH on, lowered to 3 here) in the kernel: dense output and losses too."""
    if compact:
        monkeypatch.setattr(taylor, "COMPACT_MIN_WIDTH", 3)
    rng = np.random.default_rng(11)
    net = nf.Network(width=3, input_dim=2, activation="tanh", bias=True)
    x = rng.uniform(-2, 2, (12, 2))
    flow = nf.GradientFlow(net, nf.Dataset(x, np.sin(x[:, 0]) * x[:, 1]), weight_decay=1e-3)
    assert taylor.compile_taylor(flow, taylor.order_for(1e-12)).compact == compact
    th = rng.standard_normal((24, flow.n_params))
    kw = dict(t_span=(0.0, 30.0), save_at=np.linspace(0, 30, 7), threads=1)
    ref = nf.solve_ensemble(flow, th, method="dop853", rtol=1e-13, atol=1e-15, **kw)
    res = nf.solve_ensemble(flow, th, method="taylor", rtol=1e-12, atol=1e-14, **kw)
    assert np.all(res.status == 0)
    assert np.abs(res.y_final - ref.y_final).max() < 1e-9
    assert np.abs(res.y_saved - ref.y_saved).max() < 1e-9       # dense output
    assert np.abs(res.loss_saved - ref.loss_saved).max() < 1e-10


def test_escape_times_and_save_points_nf4(nf4_reference):
    th, _ = nf4_reference
    kw = dict(t_span=(0.0, 50.0), save_at=np.linspace(0, 50, 11), escape_threshold=0.01,
              threads=1)
    ref = nf.solve_ensemble(NF4, th, method="dop853", rtol=1e-13, atol=1e-15, **kw)
    res = nf.solve_ensemble(NF4, th, method="taylor", rtol=1e-12, atol=1e-14, **kw)
    assert np.array_equal(np.isnan(res.escape_time), np.isnan(ref.escape_time))
    ok = ~np.isnan(ref.escape_time)
    assert ok.any()
    assert np.abs(res.escape_time[ok] - ref.escape_time[ok]).max() < 1e-8
    assert np.abs(res.y_saved - ref.y_saved).max() < 1e-9


def test_deterministic_across_threads_lanes_chunks():
    th = model.nf4_initial_states(70)
    kw = dict(method="taylor", rtol=1e-9, atol=1e-11, save_at=np.linspace(0, 100, 5),
              escape_threshold=0.02)
    a = nf.solve_ensemble(NF4, th, threads=1, **kw)
    perm = np.random.default_rng(0).permutation(70)
    for extra in (dict(threads=2), dict(threads=2, lanes=5, chunk_size=17), dict(lanes=1)):
        b = nf.solve_ensemble(NF4, th, **{**kw, "threads": 1, **extra})
        for key in ("y_final", "t_final", "nfev", "n_accepted", "y_saved", "escape_time"):
            assert np.array_equal(getattr(a, key), getattr(b, key), equal_nan=True), (extra, key)
    c = nf.solve_ensemble(NF4, th[perm], threads=2, **kw)
    assert np.array_equal(c.y_final, a.y_final[perm])


@pytest.mark.parametrize("method", ["taylor", "auto"])
def test_diverging_lane_does_not_spoil_the_others(method):
    """A lane whose gradient is finite but whose Taylor coefficients overflow (quadratic
    activation from 1e30) stops DIVERGED; the lanes beside it are bit for bit as alone
    (also under "auto", which starts with the Taylor method at this rtol and reads
    Jacobians for its stiffness test)."""
    net = nf.Network(width=2, activation="quadratic", kappa=1.0)
    x = np.linspace(-1, 1, 6)
    flow = nf.GradientFlow(net, nf.Dataset(x, 0.5 * x))
    th = 0.3 * np.random.default_rng(2).standard_normal((20, 4))
    th[[3, 11]] = 1e30
    kw = dict(method=method, rtol=1e-10, atol=1e-12, t_span=(0.0, 20.0), threads=1,
              divergence_bound=np.inf)
    res = nf.solve_ensemble(flow, th, **kw)
    assert np.all(res.status[[3, 11]] == nf.Status.DIVERGED)
    assert np.all(res.t_final[[3, 11]] == 0.0) and np.all(res.nfev[[3, 11]] == 1)
    good = np.setdiff1d(np.arange(20), [3, 11])
    alone = nf.solve_ensemble(flow, th[good], **kw)
    assert np.all(alone.status == 0)
    for name in ("y_final", "nfev", "njev", "n_accepted"):
        assert np.array_equal(getattr(res, name)[good], getattr(alone, name)), name


def test_max_step_gtol_and_statuses():
    th = model.nf4_initial_states(8)
    res = nf.solve_ensemble(NF4, th, method="taylor", rtol=1e-8, max_step=0.5, threads=1)
    assert np.all(res.status == 0) and np.all(res.n_accepted >= 200)
    conv = nf.solve_ensemble(NF4, th, method="taylor", rtol=1e-8, t_span=(0.0, np.inf),
                             gtol=1e-3, threads=1)
    assert np.all(conv.status == nf.Status.CONVERGED)
    g = np.array([np.linalg.norm(NF4.field(t)) for t in conv.y_final])
    assert np.all(g < 1e-3)
    few = nf.solve_ensemble(NF4, th, method="taylor", rtol=1e-8, max_steps=3, threads=1)
    assert np.all(few.status == nf.Status.MAX_STEPS) and np.all(few.n_accepted == 3)
    with pytest.raises(ValueError, match="GradientFlow"):
        from narrowflow import rhs
        fns = rhs.compile_network(NF4)
        from narrowflow.ensemble import CompiledSystem
        cs = CompiledSystem(fns.flow_address, fns.loss_address, rhs.pack_params(NF4), 4, (fns,))
        nf.solve_ensemble(cs, th, method="taylor")


def test_step_fraction_option(monkeypatch):
    """KernelOptions.taylor_factor (the step as a fraction of the radius estimate, for
    benchmarks/taylor_rule.py): 0 is Jorba & Zou's fraction, which given explicitly gives the
    same bits; a larger fraction takes fewer steps; outside [0, 1) it is refused."""
    import math
    from narrowflow._ext import ensemble as kernel
    with pytest.raises(ValueError, match="taylor_factor"):
        kernel.KernelOptions(taylor_factor=1.0)
    assert kernel.KernelOptions(taylor_factor=0.2).replace(lanes=8).taylor_factor == 0.2
    th = model.nf4_initial_states(24)
    kw = dict(method="taylor", rtol=1e-8, atol=1e-10, threads=1)
    base = nf.solve_ensemble(NF4, th, **kw)
    integrate = kernel.integrate
    p = taylor.order_for(1e-8)
    jorba_zou = math.exp(-0.7 / (p - 1)) / (math.e * math.e)    # as the kernel computes it
    for factor in (jorba_zou, math.exp(-1.5)):
        monkeypatch.setattr(kernel, "integrate", lambda *a, f=factor, **k: integrate(
            *a[:5], a[5].replace(taylor_factor=f), *a[6:], **k))
        res = nf.solve_ensemble(NF4, th, **kw)
        assert np.all(res.status == 0)
        if factor == jorba_zou:
            assert np.array_equal(res.y_final, base.y_final)
            assert np.array_equal(res.n_accepted, base.n_accepted)
        else:
            assert res.n_accepted.sum() < base.n_accepted.sum()


@pytest.mark.parametrize("progress", [False, True])
def test_compiled_before_the_run_starts(monkeypatch, progress):
    """solve_ensemble compiles (or loads) the Taylor code before its clock starts, as it does
    the right-hand side, so `elapsed` and the throughput it gives are the run's: every chunk
    finds the compiled function in the process cache."""
    from narrowflow import ensemble
    monkeypatch.setattr(taylor, "_BUNDLES", {})
    key = (NF4.network.architecture, NF4.network.activation.key, taylor.order_for(1e-8), True,
           False)
    solve_chunk, seen = ensemble.solve_chunk, []

    def spy(*args, **kwargs):
        seen.append(key in taylor._BUNDLES and taylor._BUNDLES[key]._cfunc is not None)
        return solve_chunk(*args, **kwargs)
    monkeypatch.setattr(ensemble, "solve_chunk", spy)
    res = nf.solve_ensemble(NF4, model.nf4_initial_states(40), method="taylor", rtol=1e-8,
                            threads=1, chunk_size=16, progress=progress)
    assert np.all(res.status == 0)
    assert seen == [True, True, True]
