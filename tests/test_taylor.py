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
