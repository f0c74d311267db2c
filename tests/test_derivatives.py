"""Analytic D²F, D³F of the network gradient field against the model layer's Hessian,
finite differences and complex-step derivatives (issue 7, item 1)."""
import numpy as np
import pytest

import narrowflow as nf
from narrowflow import derivatives as dv


def make_flow(act, bias, seed=0, width=2, d=2, k=1, lam=0.05):
    rng = np.random.default_rng(seed)
    net = nf.Network(width=width, input_dim=d, output_dim=k, activation=act, bias=bias)
    x = rng.normal(size=(4, d))
    y = rng.normal(size=(4, k))
    flow = nf.GradientFlow(net, nf.Dataset(x, y), weight_decay=lam)
    return flow, 0.7 * rng.normal(size=net.n_params)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("act", ["tanh", "softplus", "silu"])
@pytest.mark.parametrize("bias", [False, True])
def test_against_finite_differences(act, bias):
    flow, th = make_flow(act, bias)
    p = th.size
    F, D1, D2, D3 = dv.derivatives(flow, th, order=3)
    # orders 0, 1 against the model layer's closed forms
    assert np.allclose(F, flow.field(th), rtol=0, atol=1e-14)
    assert np.allclose(D1, flow.jacobian(th), rtol=0, atol=1e-13)
    E = np.eye(p)
    J = flow.jacobian
    # D²F: central first differences of the model's Jacobian
    h = 1e-5
    fd2 = np.stack([(J(th + h * E[l]) - J(th - h * E[l])) / (2 * h) for l in range(p)], axis=-1)
    assert rel(D2, fd2) < 1e-6
    # D³F: central second differences of the model's Jacobian (independent of D²F's code)
    h = 2e-4
    fd3 = np.empty((p,) * 4)
    for l in range(p):
        for m in range(p):
            fd3[..., l, m] = (J(th + h * (E[l] + E[m])) - J(th + h * (E[l] - E[m]))
                              - J(th - h * (E[l] - E[m])) + J(th - h * (E[l] + E[m]))) / (4 * h * h)
    assert rel(D3, fd3) < 1e-6
    # symmetry of the tensors in their derivative indices
    assert np.allclose(D2, D2.transpose(0, 2, 1), atol=1e-14)
    assert np.allclose(D3, D3.transpose(0, 1, 3, 2), atol=1e-14)
    assert np.allclose(D3, D3.transpose(0, 3, 2, 1), atol=1e-14)
    # F = −∇L is a gradient: D^jF is symmetric in all j+1 indices
    assert np.allclose(D2, D2.transpose(1, 0, 2), atol=1e-13)


@pytest.mark.parametrize("act", ["tanh", "gelu_tanh", "sigmoid"])
def test_complex_step(act):
    # for real θ, Im G(θ + i h e_l) / h = ∂G/∂θ_l with no cancellation (h = 1e-20)
    flow, th = make_flow(act, True, seed=3, k=2)
    p = th.size
    F, D1, D2, D3 = dv.derivatives(flow, th, order=3)
    h = 1e-20
    cs = [dv.derivatives(flow, th + 1j * h * np.eye(p)[l], order=2) for l in range(p)]
    assert rel(D1, np.stack([c[0].imag / h for c in cs], axis=-1)) < 1e-12
    assert rel(D2, np.stack([c[1].imag / h for c in cs], axis=-1)) < 1e-12
    assert rel(D3, np.stack([c[2].imag / h for c in cs], axis=-1)) < 1e-12


def test_complex_theta_matches_model():
    flow, th = make_flow("tanh", True, seed=5)
    thc = th + 0.3j * np.random.default_rng(7).normal(size=th.size)
    F, D1 = dv.derivatives(flow, thc, order=1)
    assert F.dtype == np.complex128
    assert np.allclose(F, flow.field(thc), atol=1e-13)
    assert np.allclose(D1, flow.jacobian(thc), atol=1e-13)


def test_real_in_real_out_and_bad_input():
    flow, th = make_flow("silu", False)
    out = dv.derivatives(flow, th, order=2)
    assert len(out) == 3 and all(a.dtype == np.float64 for a in out)
    with pytest.raises(ValueError, match="order"):
        dv.derivatives(flow, th, order=4)
    with pytest.raises(TypeError, match="order"):
        dv.derivatives(flow, th, order=1.5)
    with pytest.raises(TypeError, match="flow"):
        dv.derivatives(object(), th)
    with pytest.raises(ValueError):
        dv.derivatives(flow, th[:-1])
