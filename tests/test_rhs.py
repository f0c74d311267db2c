"""Compiled right-hand sides: agreement with the model layer, lane independence, ABI, errors."""
import numpy as np
import pytest

import narrowflow as nf
from narrowflow import activations, rhs
from narrowflow._ext import rhscall

CASES = [(1, 2, 1, False, "tanh"), (2, 3, 2, True, "softplus"), (1, 2, 1, True, "silu"),
         (3, 1, 1, False, "gelu_tanh"), (1, 2, 1, False, "quadratic")]


def _problem(case, rng, n=11, lam=0.02):
    d, m, k, bias, act = case
    net = nf.Network(width=m, input_dim=d, output_dim=k, activation=act, bias=bias)
    data = nf.Dataset(rng.normal(size=(n, d)), rng.normal(size=(n, k)))
    return nf.GradientFlow(net, data, weight_decay=lam)


def _soa(states):
    """(lanes, n) -> structure-of-arrays vector y[i*lanes + l]."""
    return np.ascontiguousarray(np.asarray(states).T).ravel()


@pytest.mark.parametrize("case", CASES)
def test_flow_and_loss_match_model(case, rng):
    flow = _problem(case, rng)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    for lanes in (1, 3, 16):
        th = rng.normal(size=(lanes, p))
        out, status = rhscall.call(F.flow_address, lanes, 0.0, _soa(th), prm, p)
        ref = np.array([flow.field(t) for t in th])
        assert status == 0
        assert np.allclose(out.reshape(p, lanes).T, ref, rtol=1e-13, atol=1e-14)
        loss, status = rhscall.call(F.loss_address, lanes, 0.0, _soa(th), prm, 1)
        assert status == 0
        assert np.allclose(loss, [flow.loss(t) for t in th], rtol=1e-13)


@pytest.mark.parametrize("case", CASES[:3])
def test_variational_rhs_is_minus_hessian_times_phi(case, rng):
    flow = _problem(case, rng)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    lanes = 4
    th = rng.normal(size=(lanes, p))
    Phi = rng.normal(size=(lanes, p, p))
    y = _soa(np.concatenate([th, Phi.reshape(lanes, -1)], axis=1))
    out, status = rhscall.call(F.variational_address, lanes, 0.0, y, prm, p + p * p)
    assert status == 0
    got = out.reshape(p + p * p, lanes).T
    for l in range(lanes):
        assert np.allclose(got[l, :p], flow.field(th[l]), rtol=1e-13, atol=1e-14)
        assert np.allclose(got[l, p:].reshape(p, p), -flow.hessian(th[l]) @ Phi[l], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("case", CASES[:2])
def test_complex_versions(case, rng):
    flow = _problem(case, rng)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    th = rng.normal(size=p) + 0.3j * rng.normal(size=p)
    assert np.allclose(F.complex_field(th, prm), flow.field(th), rtol=1e-13, atol=1e-14)
    assert np.allclose(F.complex_jacobian(th, prm), flow.jacobian(th), rtol=1e-12, atol=1e-13)
    import ctypes
    y = np.concatenate([th, np.eye(p, dtype=complex).ravel()])
    dy = np.zeros_like(y)
    cptr = ctypes.POINTER(ctypes.c_double)
    status = F.complex_variational.ctypes(
        1, 0.0, y.ctypes.data_as(cptr), dy.ctypes.data_as(cptr), prm.ctypes.data_as(cptr))
    assert status == 0
    assert np.allclose(dy[p:].reshape(p, p), flow.jacobian(th), rtol=1e-12, atol=1e-13)


def test_lane_results_are_bitwise_independent_of_lane_count(rng):
    """A trajectory's bits must not depend on which lane or how many lanes it ran with."""
    flow = _problem(CASES[0], rng, n=16)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    th = rng.normal(size=(37, p))
    for address, n_out in ((F.flow_address, p), (F.loss_address, 1)):
        solo = [rhscall.call(address, 1, 0.0, _soa(t[None]), prm, n_out)[0] for t in th]
        for lanes in (3, 8, 16, 37):
            out, _ = rhscall.call(address, lanes, 0.0, _soa(th[:lanes]), prm, n_out)
            got = out.reshape(n_out, lanes).T
            for l in range(lanes):
                assert np.array_equal(got[l], solo[l])


@pytest.mark.parametrize("case", CASES)
def test_neuron_loop_form_matches_model_and_is_lane_count_independent(case, rng):
    """flow/loss looping over neurons (the form of wide networks), forced on the small cases."""
    flow = _problem(case, rng, n=16)
    F, prm, p = rhs.NetworkFunctions(flow.network, unroll=False), rhs.pack_params(flow), flow.n_params
    assert not F.unrolled
    th = rng.normal(size=(37, p))
    for address, n_out, ref in ((F.flow_address, p, flow.field), (F.loss_address, 1, flow.loss)):
        solo = [rhscall.call(address, 1, 0.0, _soa(t[None]), prm, n_out)[0] for t in th]
        for lanes in (3, 8, 16, 37):
            out, status = rhscall.call(address, lanes, 0.0, _soa(th[:lanes]), prm, n_out)
            assert status == 0
            got = out.reshape(n_out, lanes).T
            for l in range(lanes):
                assert np.array_equal(got[l], solo[l])
                assert np.allclose(got[l], np.atleast_1d(ref(th[l])), rtol=1e-13, atol=1e-14)


def test_unrolled_only_for_small_networks():
    assert rhs.compile_network(nf.model.nf4_benchmark()).unrolled            # NF4: p = 4
    assert rhs._unrolls(2, 2, 1, True) and not rhs._unrolls(1, 5, 1, False)  # p = 9, p = 10
    assert not rhs._unrolls(1, 64, 1, False) and rhs._unrolls(1, 64, 1, False, unroll=True)


@pytest.mark.parametrize("arch", [(1, 64, 1, False), (2, 64, 1, True)])
def test_wide_network_source_does_not_grow_with_width(arch, rng):
    """Width 64 compiles from a source no larger than a width-16 one (issue 11: 244 s unrolled)."""
    d, m, k, bias = arch
    src = rhs._generate_source(d, m, k, bias, "tanh")
    narrow = rhs._generate_source(d, 16, k, bias, "tanh")
    assert len(src.splitlines()) == len(narrow.splitlines()) < 700
    assert abs(len(src) - len(narrow)) < 20 and len(src) < 30_000
    assert rhs._generate_source(d, m, k, bias, "tanh", unroll=True).count("act(") > m  # what it replaces
    flow = _problem((d, m, k, bias, "tanh"), rng, n=7)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    assert not F.unrolled
    th = 0.3 * rng.normal(size=(5, p))
    out, status = rhscall.call(F.flow_address, 5, 0.0, _soa(th), prm, p)
    assert status == 0
    assert np.allclose(out.reshape(p, 5).T, [flow.field(t) for t in th], rtol=1e-12, atol=1e-14)
    loss, status = rhscall.call(F.loss_address, 5, 0.0, _soa(th), prm, 1)
    assert status == 0
    assert np.allclose(loss, [flow.loss(t) for t in th], rtol=1e-13)


def test_new_data_does_not_recompile(rng):
    f1, f2 = _problem(CASES[0], rng), _problem(CASES[0], rng, n=5)
    F1, F2 = rhs.compile_network(f1), rhs.compile_network(f2)
    assert F1 is F2 and F1.flow_address == F2.flow_address
    p = f2.n_params
    th = rng.normal(size=(2, p))
    out, _ = rhscall.call(F2.flow_address, 2, 0.0, _soa(th), rhs.pack_params(f2), p)
    assert np.allclose(out.reshape(p, 2).T, [f2.field(t) for t in th], rtol=1e-13)


def test_overflow_is_reported_not_swallowed(rng):
    flow = _problem(CASES[0], rng)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    th = np.array([[1e308, 1.0, 1e308, 1.0], [0.1, 0.2, 0.3, 0.4]])
    out, status = rhscall.call(F.flow_address, 2, 0.0, _soa(th), prm, p)
    got = out.reshape(p, 2).T
    assert status == 1
    assert not np.all(np.isfinite(got[0]))
    assert np.allclose(got[1], flow.field(th[1]), rtol=1e-13)        # the other lane is intact
    nan_state = np.array([[np.nan, 1.0, 0.5, 0.5]])
    out, status = rhscall.call(F.flow_address, 1, 0.0, _soa(nan_state), prm, p)
    assert status == 1 and np.isnan(out).any()
    loss, status = rhscall.call(F.loss_address, 1, 0.0, _soa(nan_state), prm, 1)
    assert status == 1 and np.isnan(loss[0])


# --- the lane-batched Jacobian cfunc (J = −∇²L, row-major per lane, structure-of-arrays) ---

ARCHS = sorted({c[:4] for c in CASES})


def _jac(F, lanes, th, prm, p):
    """(lanes, p, p) Jacobians and the status from the jacobian cfunc."""
    out, status = rhscall.call(F.jacobian_address, lanes, 0.0, _soa(th), prm, p * p)
    return out.reshape(p * p, lanes).T.reshape(lanes, p, p), status


@pytest.mark.parametrize("lam", [0.0, 0.02])
@pytest.mark.parametrize("act", activations.NAMES)
@pytest.mark.parametrize("arch", ARCHS)
def test_jacobian_matches_model_hessian(arch, act, lam, rng):
    flow = _problem((*arch, act), rng, lam=lam)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    assert F.n_out("jacobian") == p * p
    lanes = 5
    th = rng.normal(size=(lanes, p))
    got, status = _jac(F, lanes, th, prm, p)
    assert status == 0
    for l in range(lanes):
        ref = -flow.hessian(th[l])
        assert np.allclose(got[l], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
        assert np.array_equal(got[l], got[l].T)


@pytest.mark.parametrize("lam", [0.0, 0.02])
@pytest.mark.parametrize("act", activations.NAMES)
@pytest.mark.parametrize("arch", ARCHS)
def test_jacobian_matches_finite_differences_of_flow(arch, act, lam, rng):
    flow = _problem((*arch, act), rng, lam=lam)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    th = 0.7 * rng.normal(size=p)
    h = 1e-5
    # all 2p perturbed states in one call, one per lane
    plus, minus = th + h * np.eye(p), th - h * np.eye(p)
    out, status = rhscall.call(F.flow_address, 2 * p, 0.0, _soa(np.vstack([plus, minus])), prm, p)
    assert status == 0
    f = out.reshape(p, 2 * p).T
    fd = ((f[:p] - f[p:]) / (2 * h)).T                    # column c: ∂(flow)/∂θ_c
    got, status = _jac(F, 1, th[None], prm, p)
    assert status == 0
    assert np.allclose(got[0], fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("case", CASES)
def test_jacobian_is_bitwise_independent_of_lane_count(case, rng):
    flow = _problem(case, rng, n=16)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    th = rng.normal(size=(37, p))
    solo = [_jac(F, 1, t[None], prm, p)[0][0] for t in th]
    for lanes in (3, 16, 37):
        got, status = _jac(F, lanes, th[:lanes], prm, p)
        assert status == 0
        for l in range(lanes):
            assert np.array_equal(got[l], solo[l])


def test_jacobian_reports_a_non_finite_lane_and_leaves_the_others_alone(rng):
    flow = _problem(CASES[1], rng)
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    lanes = 16
    th = rng.normal(size=(lanes, p))
    clean, status = _jac(F, lanes, th, prm, p)
    assert status == 0
    for bad_lane, value in ((0, np.nan), (5, np.inf), (15, 1e308)):
        bad = th.copy()
        bad[bad_lane, :: 2] = value
        got, status = _jac(F, lanes, bad, prm, p)
        assert status == 1
        assert not np.all(np.isfinite(got[bad_lane]))
        others = [l for l in range(lanes) if l != bad_lane]
        assert np.array_equal(got[others], clean[others])


def test_signature_constants():
    assert str(rhs.RHS_SIGNATURE.return_type) == "int32"
    assert [str(a) for a in rhs.RHS_SIGNATURE.args] == ["int64", "float64", "float64*", "float64*", "float64*"]


def test_bad_input():
    with pytest.raises(TypeError, match="flow"):
        rhs.pack_params("not a flow")
    with pytest.raises(TypeError, match="net"):
        rhs.compile_network(3)
