"""Analytic higher derivatives of the gradient field F = −∇L of a two-layer network.

``DF = −∇²L`` (the Jacobian), ``D²F = −∇³L``, ``D³F = −∇⁴L``: full symmetric tensors of
shapes (p, p), (p, p, p), (p, p, p, p), real or complex θ, from one Numba kernel
(complex arithmetic; real θ gives real results). They feed the higher-order variational
equations (:mod:`narrowflow.monodromy.jets`). D³F needs σ'''' — the highest derivative
:mod:`narrowflow.activations` provides — so jets of networks go up to order 3.

Formulas (docs/math.md §1–2, carried to order 4). With ``r_iκ = f_κ(x_i) − y_iκ``,

    ∇^m L = (1/n) Σ_iκ ∇^m (r_iκ² / 2) + λ [m = 2] I
    ∇²(r²/2) = r r'' + r' ⊗ r'
    ∇³(r²/2) = r r''' + Σ_3 r' ⊗ r''                  (sum over the 3 placements of r')
    ∇⁴(r²/2) = r r'''' + Σ_4 r' ⊗ r''' + Σ_3 r'' ⊗ r''  (4 placements, 3 pairings)

and inside neuron j's block ``u = (a_j, w_j, b_j)``, with ``ζ = ∂z/∂u = (0_k, x, 1)``
and ``e_κ`` the unit vector of ``a_jκ`` (f is linear in a_j):

    ∂^m f_κ = a_jκ σ^(m)(z) ζ^{⊗m} + σ^(m−1)(z) Σ_{placements} e_κ ⊗ ζ^{⊗(m−1)},

zero across blocks; ``∂f_κ/∂c_κ = 1``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from narrowflow import activations as _act
from narrowflow import jit as _jit
from narrowflow.rhs import HEADER, pack_params

__all__ = ["network_derivs", "network_params", "architecture", "derivatives", "MAX_ORDER"]

MAX_ORDER = 3          # D³F (σ'''' needed); D⁴F would need σ^(5)

_NJ = _jit.NOGIL

# activation codes, in the registry's order
_CODES = {name: i for i, name in enumerate(_act.NAMES)}
_F0 = _act.get("tanh").complex_derivs
_F1 = _act.get("sigmoid").complex_derivs
_F2 = _act.get("softplus").complex_derivs
_F3 = _act.get("silu").complex_derivs
_F4 = _act.get("gelu_tanh").complex_derivs
_F5 = _act.get("quadratic").complex_derivs
_F6 = _act.get("linear").complex_derivs
assert _act.NAMES[:7] == ("tanh", "sigmoid", "softplus", "silu", "gelu_tanh", "quadratic", "linear")


@njit(**_NJ)
def _sigma(code, z, kappa):
    """(σ, σ', σ'', σ''', σ'''') at complex z for the activation with this code."""
    if code == 0:
        return _F0(z, kappa)
    elif code == 1:
        return _F1(z, kappa)
    elif code == 2:
        return _F2(z, kappa)
    elif code == 3:
        return _F3(z, kappa)
    elif code == 4:
        return _F4(z, kappa)
    elif code == 5:
        return _F5(z, kappa)
    return _F6(z, kappa)


ARCH = 5   # the architecture after the data: d, m, k, bias, activation code


@njit(**_NJ)
def architecture(params):
    """(d, m, k, bias, activation code) from the tail of a :func:`network_params` block."""
    L = params.size
    return (int(params[L - 5]), int(params[L - 4]), int(params[L - 3]), int(params[L - 2]),
            int(params[L - 1]))


@njit(**_NJ)
def network_derivs(theta, params, order, F, D1, D2, D3, D4):
    """Fill F = −∇L (p,) and, up to ``order`` (<= 3), D1 = −∇²L, D2 = −∇³L, D3 = −∇⁴L.

    theta: complex128 (p,); params: float64, see :func:`network_params`; D4 is not touched.
    The signature is the one :mod:`narrowflow.monodromy.jets` expects.
    """
    d, m, k, bias, code = architecture(params)
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    xo = HEADER
    yo = HEADER + n * d
    p = theta.size
    bs = k + d + bias
    inv_n = 1.0 / n
    o = min(order, 3)
    # derivatives of f_κ(x_i) (r1..r{o+1}); r{j} only within blocks, so reset per block
    r1 = np.zeros(p, np.complex128)
    r2 = np.zeros((p, p) if o >= 1 else (1, 1), np.complex128)
    r3 = np.zeros((p, p, p) if o >= 2 else (1, 1, 1), np.complex128)
    r4 = np.zeros((p, p, p, p) if o >= 3 else (1, 1, 1, 1), np.complex128)
    zeta = np.zeros(bs, np.complex128)
    sig = np.zeros((m, 5), np.complex128)
    for i in range(p):
        F[i] = -lam * theta[i]
    if o >= 1:
        D1[:, :] = 0.0
        for i in range(p):
            D1[i, i] = -lam
    if o >= 2:
        D2[:, :, :] = 0.0
    if o >= 3:
        D3[:, :, :, :] = 0.0
    for i in range(n):
        for j in range(m):
            base = j * bs
            z = 0j
            for l in range(d):
                z += theta[base + k + l] * params[xo + i * d + l]
            if bias:
                z += theta[base + k + d]
            s0, s1, s2, s3, s4 = _sigma(code, z, kappa)
            sig[j, 0] = s0
            sig[j, 1] = s1
            sig[j, 2] = s2
            sig[j, 3] = s3
            sig[j, 4] = s4
        # ζ = ∂z/∂(block), the same for every neuron at this data point
        for u in range(k):
            zeta[u] = 0.0
        for l in range(d):
            zeta[k + l] = params[xo + i * d + l]
        if bias:
            zeta[k + d] = 1.0
        for kap in range(k):
            f = 0j
            if bias:
                f += theta[m * bs + kap]
            for j in range(m):
                f += theta[j * bs + kap] * sig[j, 0]
            r = f - params[yo + i * k + kap]
            # derivative tensors of f_κ (block-diagonal above order 1)
            for j in range(m):
                base = j * bs
                a = theta[base + kap]
                S0 = sig[j, 0]
                S1 = sig[j, 1]
                S2 = sig[j, 2]
                S3 = sig[j, 3]
                S4 = sig[j, 4]
                for u in range(bs):
                    eu = 1.0 if u == kap else 0.0
                    r1[base + u] = a * S1 * zeta[u] + eu * S0
                    if o < 1:
                        continue
                    for v in range(bs):
                        ev = 1.0 if v == kap else 0.0
                        r2[base + u, base + v] = (a * S2 * zeta[u] * zeta[v]
                                                  + S1 * (eu * zeta[v] + ev * zeta[u]))
                        if o < 2:
                            continue
                        for w in range(bs):
                            ew = 1.0 if w == kap else 0.0
                            zuv = zeta[u] * zeta[v]
                            r3[base + u, base + v, base + w] = (
                                a * S3 * zuv * zeta[w]
                                + S2 * (eu * zeta[v] * zeta[w] + ev * zeta[u] * zeta[w] + ew * zuv))
                            if o < 3:
                                continue
                            for x in range(bs):
                                ex = 1.0 if x == kap else 0.0
                                zw = zeta[w]
                                zx = zeta[x]
                                r4[base + u, base + v, base + w, base + x] = (
                                    a * S4 * zuv * zw * zx
                                    + S3 * (eu * zeta[v] * zw * zx + ev * zeta[u] * zw * zx
                                            + ew * zuv * zx + ex * zuv * zw))
            if bias:
                r1[m * bs + kap] = 1.0
                for kk in range(k):
                    if kk != kap:
                        r1[m * bs + kk] = 0.0
            # accumulate −(1/n) ∇^m (r²/2)
            c = -inv_n
            for u in range(p):
                F[u] += c * r * r1[u]
            if o >= 1:
                for u in range(p):
                    for v in range(p):
                        D1[u, v] += c * (r * r2[u, v] + r1[u] * r1[v])
            if o >= 2:
                for u in range(p):
                    for v in range(p):
                        for w in range(p):
                            D2[u, v, w] += c * (r * r3[u, v, w] + r1[u] * r2[v, w]
                                                + r1[v] * r2[u, w] + r1[w] * r2[u, v])
            if o >= 3:
                for u in range(p):
                    for v in range(p):
                        for w in range(p):
                            for x in range(p):
                                D3[u, v, w, x] += c * (
                                    r * r4[u, v, w, x]
                                    + r1[u] * r3[v, w, x] + r1[v] * r3[u, w, x]
                                    + r1[w] * r3[u, v, x] + r1[x] * r3[u, v, w]
                                    + r2[u, v] * r2[w, x] + r2[u, w] * r2[v, x]
                                    + r2[u, x] * r2[v, w])


def network_params(flow) -> np.ndarray:
    """float64 params for :func:`network_derivs` and the Koenigs series: the block of
    ``narrowflow.rhs.pack_params`` (header ``n, λ, κ``, reserved, then x (n·d) and y (n·k),
    docs/design.md §5), followed by the architecture ``(d, m, k, bias, activation code)``
    (codes in the order of ``activations.NAMES``). The compiled right-hand sides have the
    architecture compiled in; these kernels are compiled once for all architectures, so they
    read it from the block's last ``ARCH`` entries (:func:`architecture`)."""
    net = flow.network
    act = net.activation
    if act.name not in _CODES or _CODES[act.name] > 6:
        raise ValueError(f"activation {act.name!r} has no compiled derivatives")
    arch = [net.input_dim, net.width, net.output_dim, int(net.bias), _CODES[act.name]]
    return np.concatenate([pack_params(flow), np.array(arch, np.float64)])


def _check_flow(flow):
    if not (hasattr(flow, "network") and hasattr(flow, "data") and hasattr(flow, "weight_decay")):
        raise TypeError(f"flow must be a GradientFlow, got {type(flow).__name__}")


def derivatives(flow, theta, order=3):
    """(F, DF, D²F, ..., D^order F) of F = −∇L at θ: numpy arrays of shapes (p,), (p,p), ...

    theta: real or complex (p,); real θ gives real arrays. order: 0..3.
    """
    _check_flow(flow)
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an integer, got {type(order).__name__}")
    if not 0 <= order <= MAX_ORDER:
        raise ValueError(f"order must be in 0..{MAX_ORDER}, got {order}")
    th = flow.network.check_theta(theta)
    real = not np.iscomplexobj(th)
    p = th.size
    thc = np.ascontiguousarray(th, np.complex128)
    arrs = [np.zeros(p, np.complex128)]
    for j in range(1, 5):
        arrs.append(np.zeros((p,) * (j + 1) if j <= order else (1,) * (j + 1), np.complex128))
    network_derivs(thc, network_params(flow), int(order), *arrs)
    out = tuple(arrs[: order + 1])
    return tuple(a.real.copy() for a in out) if real else out
