"""Model layer: derivatives against finite differences and complex steps, layout, subspaces, errors."""
import itertools

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import narrowflow as nf
from narrowflow import activations, initial, model

ACTS = list(activations.NAMES)


def _problem(d, m, k, act, bias, rng, weight_decay=0.05, n=9):
    net = nf.Network(width=m, input_dim=d, output_dim=k, activation=act, bias=bias)
    data = nf.Dataset(rng.normal(size=(n, d)), rng.normal(size=(n, k)))
    return nf.GradientFlow(net, data, weight_decay=weight_decay), 0.7 * rng.normal(size=net.n_params)


def _fd_grad(f, th, h=1e-5):
    g = np.zeros_like(th)
    for i in range(th.size):
        e = np.zeros_like(th)
        e[i] = h
        g[i] = (f(th + e) - f(th - e)) / (2 * h)
    return g


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [False, True])
def test_gradient_against_finite_differences_and_complex_step(act, bias, rng):
    """Every (d, m, k) in {1, 2, 3}³."""
    for shape in itertools.product((1, 2, 3), repeat=3):
        flow, th = _problem(*shape, act, bias, rng)
        g = flow.grad(th)
        scale = max(1.0, np.max(np.abs(g)))
        # central differences: error O(h^2) ~ 1e-10 relative
        assert np.max(np.abs(_fd_grad(flow.loss, th) - g)) / scale < 1e-7, shape
        # complex step: exact to round-off for a holomorphic loss
        h = 1e-30
        cs = np.array([flow.loss(th + 1j * h * e).imag / h for e in np.eye(th.size)])
        assert np.max(np.abs(cs - g)) / scale < 1e-12, shape


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [False, True])
def test_hessian_against_finite_differences(act, bias, rng):
    for shape in [(1, 2, 1), (2, 2, 2), (3, 1, 2)]:
        flow, th = _problem(*shape, act, bias, rng)
        H = flow.hessian(th)
        assert np.allclose(H, H.T, rtol=0, atol=1e-14 * max(1, np.abs(H).max()))
        h = 1e-30  # complex step on the gradient: columns of H to round-off
        Hcs = np.array([flow.grad(th + 1j * h * e).imag / h for e in np.eye(th.size)]).T
        Hfd = np.array([(flow.grad(th + 1e-5 * e) - flow.grad(th - 1e-5 * e)) / 2e-5
                        for e in np.eye(th.size)]).T
        scale = max(1.0, np.abs(H).max())
        assert np.max(np.abs(H - Hcs)) / scale < 1e-12
        assert np.max(np.abs(H - Hfd)) / scale < 1e-7


@pytest.mark.parametrize("act", ["tanh", "softplus", "gelu_tanh"])
def test_complex_parameters_are_holomorphic(act, rng):
    flow, th = _problem(2, 2, 1, act, True, rng)
    thc = th + 0.2j * rng.normal(size=th.size)
    g = flow.grad(thc)
    # derivative along a real direction of a holomorphic function, by central differences
    fd = _fd_grad(flow.loss, thc)
    assert np.max(np.abs(fd - g)) < 1e-7 * max(1, np.abs(g).max())
    Hfd = np.array([(flow.grad(thc + 1e-5 * e) - flow.grad(thc - 1e-5 * e)) / 2e-5
                    for e in np.eye(th.size)]).T
    assert np.max(np.abs(flow.hessian(thc) - Hfd)) < 1e-7 * max(1, np.abs(Hfd).max())
    assert np.array_equal(flow.field(thc), -g)


def test_nf4_layout_and_pack_roundtrip(rng):
    net = nf.Network(width=2, activation="tanh")
    th = np.array([1.0, 2.0, 3.0, 4.0])
    P = net.unpack(th)
    assert P.a.ravel().tolist() == [1.0, 3.0] and P.w.ravel().tolist() == [2.0, 4.0]
    assert P.b is None and P.c is None
    assert net.parameter_names() == ["a1", "w1", "a2", "w2"]
    x = np.linspace(-1, 1, 5)
    assert np.allclose(net.forward(th, x)[:, 0], 1 * np.tanh(2 * x) + 3 * np.tanh(4 * x))
    big = nf.Network(width=3, input_dim=2, output_dim=2, bias=True)
    thb = rng.normal(size=big.n_params)
    Pb = big.unpack(thb)
    assert np.array_equal(big.pack(Pb.a, Pb.w, Pb.b, Pb.c), thb)
    assert big.n_params == 3 * (2 + 2 + 1) + 2
    assert big.parameter_names()[:5] == ["a1_1", "a1_2", "w1_1", "w1_2", "b1"]


def test_loss_matches_definition(rng):
    flow, th = _problem(2, 3, 2, "silu", True, rng, weight_decay=0.3)
    r = flow.network.forward(th, flow.data.x) - flow.data.y
    expected = 0.5 * np.sum(r**2) / flow.data.n + 0.15 * np.sum(th**2)
    assert np.isclose(flow.loss(th), expected, rtol=1e-14)


def _integrate(flow, th0, t1=10.0):
    sol = solve_ivp(lambda t, y: flow.field(y), (0, t1), th0, method="DOP853", rtol=1e-12, atol=1e-14)
    assert sol.success
    return sol.y[:, -1]


@pytest.mark.parametrize("kind, act", [("dead", "tanh"), ("dead", "silu"), ("twin", "softplus"),
                                       ("twin", "tanh"), ("mirror", "tanh")])
def test_invariant_subspaces_are_invariant(kind, act, rng):
    net = nf.Network(width=3, input_dim=1, output_dim=1, activation=act, bias=True)
    flow = nf.GradientFlow(net, nf.Dataset(np.linspace(-2, 2, 7), np.sin(np.linspace(-2, 2, 7))))
    S = {"dead": lambda: model.DeadNeuron(net, 1), "twin": lambda: model.Twin(net, 0, 2),
         "mirror": lambda: model.MirrorTwin(net, 0, 2)}[kind]()
    th0 = S.project(rng.normal(size=net.n_params))
    assert S.contains(th0)
    th1 = _integrate(flow, th0)
    assert np.linalg.norm(th1 - th0) > 1e-2          # it moved ...
    assert S.distance(th1) < 1e-12                   # ... and stayed on S
    off = th0 + 1e-3 * S.normal_basis()[:, 0]
    assert not S.contains(off)


def test_subspace_bases(rng):
    net = nf.Network(width=3, input_dim=2, output_dim=1, bias=True)
    for S in (model.DeadNeuron(net, 0), model.Twin(net, 1, 2), model.MirrorTwin(net, 0, 1)):
        N, T = S.normal_basis(), S.tangent_basis()
        assert N.shape[1] + T.shape[1] == net.n_params
        Q = np.concatenate([N, T], axis=1)
        assert np.allclose(Q.T @ Q, np.eye(net.n_params), atol=1e-14)


def test_subspace_preconditions():
    with pytest.raises(ValueError, match="σ\\(0\\) = 0"):
        model.DeadNeuron(nf.Network(activation="sigmoid"), 0)
    with pytest.raises(ValueError, match="odd"):
        model.MirrorTwin(nf.Network(activation="softplus"), 0, 1)
    with pytest.raises(ValueError, match="different"):
        model.Twin(nf.Network(), 1, 1)
    with pytest.raises(ValueError, match="j must be in"):
        model.DeadNeuron(nf.Network(), 5)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="width"):
        nf.Network(width=0)
    with pytest.raises(TypeError, match="width"):
        nf.Network(width=2.5)
    with pytest.raises(ValueError, match="unknown activation"):
        nf.Network(activation="relu6")
    with pytest.raises(ValueError, match="same number of rows"):
        nf.Dataset(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="x contains NaN"):
        nf.Dataset(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="y contains NaN or infinite"):
        nf.Dataset(np.zeros(2), np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="input_dim"):
        nf.GradientFlow(nf.Network(input_dim=2), nf.Dataset(np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="output_dim"):
        nf.GradientFlow(nf.Network(output_dim=2), nf.Dataset(np.zeros(3), np.zeros(3)))
    flow = nf.GradientFlow(nf.Network(), nf.Dataset(np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match=r"theta must have shape \(4,\)"):
        flow.grad(np.zeros(5))
    with pytest.raises(ValueError, match="weight_decay"):
        nf.GradientFlow(nf.Network(), nf.Dataset(np.zeros(3), np.zeros(3)), weight_decay=-1)
    with pytest.raises(TypeError, match="weight_decay"):
        nf.GradientFlow(nf.Network(), nf.Dataset(np.zeros(3), np.zeros(3)), weight_decay="x")
    with pytest.raises(TypeError, match="weight_decay"):
        nf.GradientFlow(nf.Network(), nf.Dataset(np.zeros(3), np.zeros(3)), weight_decay=None)
    with pytest.raises(TypeError, match="network"):
        nf.GradientFlow("net", nf.Dataset(np.zeros(3), np.zeros(3)))


def test_nf4_benchmark_problem():
    flow = model.nf4_benchmark()
    assert flow.n_params == 4 and flow.data.n == 16
    assert flow.network.architecture == (1, 2, 1, False) and flow.network.activation.key == "tanh"
    x = np.linspace(-2.0, 2.0, 16)
    assert np.array_equal(flow.data.x.ravel(), x)
    assert np.array_equal(flow.data.y.ravel(), np.tanh(1.5 * x) - 0.7 * np.tanh(0.4 * x))
    # the teacher is a global minimum: zero loss and zero gradient there
    assert flow.loss(model.NF4_TEACHER) == 0.0
    assert np.array_equal(flow.grad(model.NF4_TEACHER), np.zeros(4))
    th0 = model.nf4_initial_states(3)       # narrowflow.initial's scheme, seed 12345
    assert np.array_equal(th0, initial.sample(3, 4, 12345))
    assert th0.shape == (3, 4) and th0.dtype == np.float64


@pytest.mark.parametrize("kw, name", [
    (dict(width=10 ** 7), "width"),
    (dict(width=1e7), "width"),
    (dict(width=2 ** 63), "width"),
    (dict(width=float("inf")), "width"),
    (dict(input_dim=10 ** 5), "input_dim"),
    (dict(input_dim=1e5), "input_dim"),
    (dict(output_dim=10 ** 5), "output_dim"),
    (dict(width=model.MAX_WIDTH + 1), "width"),
    (dict(input_dim=model.MAX_INPUT_DIM + 1), "input_dim"),
    (dict(output_dim=model.MAX_OUTPUT_DIM + 1), "output_dim"),
])
def test_huge_networks_are_refused_before_any_work(kw, name):
    # refused in the constructor, before any code generation or allocation (no wall-clock
    # assertion: the suite must not depend on timing)
    with pytest.raises(ValueError, match=rf"^{name} must be <= \d+"):
        nf.Network(**kw)


def test_parameter_count_bound_names_the_arguments():
    # each size within its own bound, but p = m (k + d + bias) + k over MAX_PARAMS
    with pytest.raises(ValueError, match=r"parameters.*width.*input_dim.*output_dim"):
        nf.Network(width=1024, input_dim=8)
    # the largest networks within the bounds are accepted
    net = nf.Network(width=model.MAX_WIDTH, input_dim=1, bias=True)
    assert net.n_params <= model.MAX_PARAMS
    net = nf.Network(width=1, input_dim=model.MAX_INPUT_DIM, output_dim=1)
    assert net.n_params == model.MAX_INPUT_DIM + 1
    assert nf.Network(width=np.int64(4)).width == 4
    with pytest.raises(TypeError, match="width"):
        nf.Network(width=2.0)                  # a float in range stays a type error
