"""Compiled right-hand sides of network gradient flows (Numba cfuncs).

The C signature (ext/rhs_abi.pxd; ``RHS_SIGNATURE`` here is its Numba twin)::

    int f(int64 lanes, double t, const double* y, double* dy, const double* params)

evaluates ``lanes`` trajectories at once, structure-of-arrays: ``y[i*lanes + l]``
is state component i of lane l. It returns 0, or 1 when an output is not
finite (division by zero or overflow give inf/NaN under ``error_model='numpy'``
and are reported, never raised). Complex variants take ``complex128`` y/dy.

Source code specialised to one architecture (d, m, k, bias) and activation is
generated, written to a cache folder and compiled by Numba with ``cache=True``,
so a second process loads machine code from disk. Everything numeric about the
problem (n, x, y, λ, κ) travels in ``params`` (see `pack_params`): a new data set
never recompiles.

The flow and loss loop over data points outside and lanes inside, so the lane
loops vectorize (the activations use :mod:`narrowflow.fastmath`); for small
networks (p <= ``_UNROLL_MAX_PARAMS``) every neuron is unrolled into one lane
loop per data point, for larger ones they loop over neurons, so that the source
and the compile time do not grow with the width (see `_flow_loss_looped`). They
are compiled with FMA contraction (see :mod:`narrowflow.jit`). The variational right-hand side builds −H per lane
with scalar code: it serves accuracy studies, not the hot ensemble path. The
``jacobian`` cfunc (J = −∇²L per lane, for Rosenbrock steps) is lane-batched too,
with FMA, but loops over neurons and parameters, so its source does not grow with
the width (see `_jacobian_source`).
"""
from __future__ import annotations

import threading

import numpy as np
from numba import cfunc, njit, types

from narrowflow import jit
from narrowflow.model import GradientFlow, Network

HEADER = 8  # params[0] = n, [1] = weight decay λ, [2] = activation κ, [3:8] reserved
RHS_SIGNATURE = types.int32(types.int64, types.float64, types.CPointer(types.float64),
                            types.CPointer(types.float64), types.CPointer(types.float64))
COMPLEX_RHS_SIGNATURE = types.int32(types.int64, types.float64, types.CPointer(types.complex128),
                                    types.CPointer(types.complex128), types.CPointer(types.float64))
# compiled with jit.hot() (FMA contraction, see narrowflow.jit); the others with jit.BASE
_HOT = ("flow", "loss", "jacobian")
_JAC_BLOCK = 8  # data points per Gauss–Newton block of the jacobian cfunc
# flow/loss unroll every neuron up to this many parameters p (one lane loop per data point:
# 1.3-1.7x faster than the neuron loop from NF4, p = 4, up to p = 9) and loop over neurons above
# it. Past p ≈ 9 the unrolled lane loop stops vectorizing (too many y/dy streams for LLVM's
# runtime alias checks: the loop form is then 2.4-5x faster), and its compile time, every
# activation inlined once per neuron, grows steeply with the width (width 64: minutes).
# Measured in benchmarks/README.md ("Compile time and the neuron loop").
_UNROLL_MAX_PARAMS = 9
# files whose code the generated module compiles in (Numba's cache does not watch them)
_SRC_FILES = ("rhs.py", "activations.py", "fastmath.py")


def pack_params(flow: GradientFlow) -> np.ndarray:
    """The float64 block the compiled functions read: header, then x (n, d), then y (n, k)."""
    if not isinstance(flow, GradientFlow):
        raise TypeError(f"flow must be a GradientFlow, got {type(flow).__name__}")
    head = np.zeros(HEADER)
    head[0] = flow.data.n
    head[1] = flow.weight_decay
    head[2] = flow.network.activation.kappa
    return np.concatenate([head, flow.data.x.ravel(), flow.data.y.ravel()])


# --- code generation ---------------------------------------------------------------

def _names(d, m, k, bias):
    """State-index table: (kind, j, q) -> index in θ (neuron-major layout)."""
    bs = k + d + int(bias)
    idx = {}
    for j in range(m):
        for q in range(k):
            idx["a", j, q] = j * bs + q
        for q in range(d):
            idx["w", j, q] = j * bs + k + q
        if bias:
            idx["b", j, 0] = j * bs + k + d
    if bias:
        for q in range(k):
            idx["c", 0, q] = m * bs + q
    return idx


def _lane_body(d, m, k, bias, want_grad: bool) -> list[str]:
    """Statements for one data point i and one lane l (indented 8 spaces)."""
    idx = _names(d, m, k, bias)
    L = []
    for key, i in idx.items():
        L.append(f"{key[0]}_{key[1]}_{key[2]} = y[{i} * lanes + l]")
    for j in range(m):
        z = " + ".join(f"w_{j}_{q} * x{q}" for q in range(d)) + (f" + b_{j}_0" if bias else "")
        L.append(f"s0_{j}, s1_{j}, _s2, _s3, _s4 = act({z}, kappa)")
    for q in range(k):
        f = " + ".join(f"a_{j}_{q} * s0_{j}" for j in range(m)) + (f" + c_0_{q}" if bias else "")
        L.append(f"r_{q} = {f} - y{q}")
    if not want_grad:
        L.append("acc[l] += " + " + ".join(f"r_{q} * r_{q}" for q in range(k)))
        return L
    for j in range(m):
        rho = " + ".join(f"r_{q} * a_{j}_{q}" for q in range(k))
        L.append(f"g_{j} = ({rho}) * s1_{j}")
        for q in range(k):
            L.append(f"dy[{idx['a', j, q]} * lanes + l] -= r_{q} * s0_{j}")
        for q in range(d):
            L.append(f"dy[{idx['w', j, q]} * lanes + l] -= g_{j} * x{q}")
        if bias:
            L.append(f"dy[{idx['b', j, 0]} * lanes + l] -= g_{j}")
    if bias:
        for q in range(k):
            L.append(f"dy[{idx['c', 0, q]} * lanes + l] -= r_{q}")
    return L


def _unrolls(d: int, m: int, k: int, bias: bool, unroll: bool | None = None) -> bool:
    """Whether `flow`/`loss` are generated with every neuron unrolled (None: by the size p)."""
    if unroll is not None:
        return bool(unroll)
    return m * (k + d + int(bias)) + (k if bias else 0) <= _UNROLL_MAX_PARAMS


# The end of every generated `flow` and `loss`, whatever the loop form: the mean over the
# data, weight decay, and the non-finite flag (v * 0.0 is NaN exactly when v is not finite).
_FLOW_TAIL = """\
    inv_n = 1.0 / n
    bad = 0.0
    for c in range(P * lanes):
        v = dy[c] * inv_n - lam * y[c]
        dy[c] = v
        bad += v * 0.0
    return 0 if bad == 0.0 else 1
"""
_LOSS_TAIL = """\
    half_inv_n = 0.5 / n
    for l in range(lanes):
        acc[l] *= half_inv_n
    if lam != 0.0:
        for c in range(P):
            for l in range(lanes):
                acc[l] += 0.5 * lam * y[c * lanes + l] * y[c * lanes + l]
    bad = 0.0
    for l in range(lanes):
        bad += acc[l] * 0.0
    return 0 if bad == 0.0 else 1
"""


def _flow_loss_unrolled(d: int, m: int, k: int, bias: bool) -> str:
    """`flow` and `loss` with every neuron unrolled: one lane loop per data point (small widths)."""
    load_x = "\n".join(f"        x{q} = params[{HEADER} + i * {d} + {q}]" for q in range(d))
    load_y = "\n".join(f"        y{q} = params[{HEADER} + n * {d} + i * {k} + {q}]" for q in range(k))
    body_g = "\n".join("            " + s for s in _lane_body(d, m, k, bias, True))
    body_l = "\n".join("            " + s for s in _lane_body(d, m, k, bias, False))
    return f'''\
def flow(lanes, t, y, dy, params):
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    for c in range(P * lanes):
        dy[c] = 0.0
    for i in range(n):
{load_x}
{load_y}
        for l in range(lanes):
{body_g}
{_FLOW_TAIL}

def loss(lanes, t, y, out, params):
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    acc = out
    for l in range(lanes):
        acc[l] = 0.0
    for i in range(n):
{load_x}
{load_y}
        for l in range(lanes):
{body_l}
{_LOSS_TAIL}'''


def _flow_loss_looped(d: int, k: int, bias: bool) -> str:
    """`flow` and `loss` looping over neurons, lanes inside (wide networks).

    Per data point i: one lane loop per neuron j computes σ_j, σ'_j (kept in S0, S1)
    and accumulates the residuals R_q += a_jq σ_j; one lane loop finishes
    r_q = (R_q + c_q) − y_q; one lane loop per neuron then subtracts the gradient terms.
    Only the sums over the input (d) and output (k) dimensions are unrolled, so the
    source does not grow with the width m (neuron-major θ: see `_names`). Every lane
    does the same operations in the same order whatever the lane count.
    """
    load_x = "\n".join(f"        x{e} = params[{HEADER} + i * {d} + {e}]" for e in range(d))
    load_y = "\n".join(f"        y{q} = params[{HEADER} + n * {d} + i * {k} + {q}]" for q in range(k))
    z = " + ".join([f"y[oy + {k + e} * lanes + l] * x{e}" for e in range(d)]
                   + ([f"y[oy + {k + d} * lanes + l]"] if bias else []))

    def lines(stmts, indent=16):
        return "\n".join(" " * indent + t for t in stmts)

    r_zero = lines([f"R[{q} * lanes + l] = 0.0" for q in range(k)])
    r_acc = lines([f"R[{q} * lanes + l] += y[oy + {q} * lanes + l] * s0" for q in range(k)])
    c = [f" + y[oc + {q} * lanes + l]" if bias else "" for q in range(k)]
    r_fin = lines([f"R[{q} * lanes + l] = R[{q} * lanes + l]{c[q]} - y{q}" for q in range(k)], 12)
    r_loss = lines([f"r_{q} = R[{q} * lanes + l]{c[q]} - y{q}" for q in range(k)], 12)
    sq = " + ".join(f"r_{q} * r_{q}" for q in range(k))
    rho = " + ".join(f"R[{q} * lanes + l] * y[oy + {q} * lanes + l]" for q in range(k))
    grad = ([f"dy[oy + {q} * lanes + l] -= R[{q} * lanes + l] * s0" for q in range(k)]
            + [f"dy[oy + {k + e} * lanes + l] -= g * x{e}" for e in range(d)]
            + ([f"dy[oy + {k + d} * lanes + l] -= g"] if bias else []))
    grad_c = ("\n        for l in range(lanes):\n"
              + lines([f"dy[oc + {q} * lanes + l] -= R[{q} * lanes + l]" for q in range(k)], 12)
              if bias else "")
    return f"""\
def flow(lanes, t, y, dy, params):
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    ml = M * lanes
    oc = M * BS * lanes                      # output biases c_q (BIAS only)
    scratch = np.empty(2 * ml + K * lanes)
    S0 = scratch[0:ml]
    S1 = scratch[ml:2 * ml]
    R = scratch[2 * ml:]
    for c in range(P * lanes):
        dy[c] = 0.0
    for i in range(n):
{load_x}
{load_y}
        for l in range(lanes):
{r_zero}
        for j in range(M):
            oy = j * BS * lanes
            jl = j * lanes
            for l in range(lanes):
                s0, s1, _s2, _s3, _s4 = act({z}, kappa)
                S0[jl + l] = s0
                S1[jl + l] = s1
{r_acc}
        for l in range(lanes):
{r_fin}
        for j in range(M):
            oy = j * BS * lanes
            jl = j * lanes
            for l in range(lanes):
                s0 = S0[jl + l]
                g = ({rho}) * S1[jl + l]
{lines(grad)}{grad_c}
{_FLOW_TAIL}

def loss(lanes, t, y, out, params):
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    oc = M * BS * lanes
    R = np.empty(K * lanes)
    acc = out
    for l in range(lanes):
        acc[l] = 0.0
    for i in range(n):
{load_x}
{load_y}
        for l in range(lanes):
{r_zero}
        for j in range(M):
            oy = j * BS * lanes
            for l in range(lanes):
                s0, _s1, _s2, _s3, _s4 = act({z}, kappa)
{r_acc}
        for l in range(lanes):
{r_loss}
            acc[l] += {sq}
{_LOSS_TAIL}"""


def _generate_source(d: int, m: int, k: int, bias: bool, activation: str,
                     unroll: bool | None = None) -> str:
    """The module's source; `unroll` None: neurons unrolled in flow/loss iff p <= _UNROLL_MAX_PARAMS."""
    p = m * (k + d + int(bias)) + (k if bias else 0)
    looped = not _unrolls(d, m, k, bias, unroll)
    flow_loss = _flow_loss_looped(d, k, bias) if looped else _flow_loss_unrolled(d, m, k, bias)
    return f'''\
# Generated by narrowflow.rhs for d={d}, m={m}, k={k}, bias={bias}, activation={activation!r}.
# flow/loss: {"loop over neurons" if looped else "neurons unrolled"}.
# Do not edit: regenerated when narrowflow's sources change.
import numpy as np
from numba import carray, njit
from narrowflow.activations import get as _get
from narrowflow.jit import BASE, NOGIL, INLINE

_A = _get({activation!r})
act = _A.real_derivs
act_c = _A.complex_derivs
D, M, K, BIAS, P = {d}, {m}, {k}, {bias}, {p}


{flow_loss}

@njit(**BASE)
def _data(params):
    n = int(params[0])
    pa = carray(params, ({HEADER} + n * (D + K),))
    return n, pa[{HEADER}:{HEADER} + n * D], pa[{HEADER} + n * D:]


{_scalar_helpers("real", "act", "np.float64")}

{_scalar_helpers("complex", "act_c", "np.complex128")}

def variational(lanes, t, y, dy, params):
    return _lane_variational_real(lanes, y, dy, params)


def complex_flow(lanes, t, yp, dyp, params):
    n, x, yd = _data(params)
    y = carray(yp, (P * lanes,))
    dy = carray(dyp, (P * lanes,))
    th = np.empty(P, np.complex128)
    g = np.empty(P, np.complex128)
    bad = 0
    for l in range(lanes):
        for c in range(P):
            th[c] = y[c * lanes + l]
        _field_into_complex(th, x, yd, n, params[1], params[2], g)
        for c in range(P):
            dy[c * lanes + l] = g[c]
            if not (np.isfinite(g[c].real) and np.isfinite(g[c].imag)):
                bad = 1
    return bad


def complex_variational(lanes, t, y, dy, params):
    return _lane_variational_complex(lanes, y, dy, params)


def complex_field(theta, params):
    n = int(params[0])
    g = np.empty(P, np.complex128)
    _field_into_complex(theta, params[{HEADER}:{HEADER} + n * D],
                        params[{HEADER} + n * D:{HEADER} + n * (D + K)], n, params[1], params[2], g)
    return g


def complex_jacobian(theta, params):
    n = int(params[0])
    H = np.empty((P, P), np.complex128)
    _hessian_into_complex(theta, params[{HEADER}:{HEADER} + n * D],
                          params[{HEADER} + n * D:{HEADER} + n * (D + K)], n, params[1], params[2], H)
    return -H
''' + _jacobian_source(d, m, k, bias)


def _jacobian_source(d: int, m: int, k: int, bias: bool) -> str:
    """The ``jacobian`` cfunc: J = −∇²L per lane; loops over neurons and parameters, lanes inside.

    Per data point i and output q, the output-Jacobian row g_q = ∂f_q/∂θ has
    NZ = m(1 + d + bias) + bias structural nonzeros (a_jq: σ_j; w̃_je = (w_j, b_j)_e:
    a_jq σ'_j x̃_e with x̃ = (x, 1); c_q: 1), kept compressed in G with their
    θ-indices in _IDX. The upper triangle accumulates Σ_q g_q g_qᵀ plus the residual
    terms r_q σ'_j x̃_e (a_jq, w̃_je) and ρ_j σ''_j x̃_e x̃_e′ (w̃_je, w̃_je′),
    ρ_j = Σ_q r_q a_jq; then J = −(·)/n − λI is mirrored into the lower triangle.

    The Gauss–Newton sum runs over blocks of NB data points (the last one padded
    with zero rows): each (a, b) pair's lane loop then adds NB products, which pays
    for its loop overhead and the load/store of the accumulator. Every lane does
    the same operations in the same order whatever the lane count. Source size does
    not grow with m or p²: only the pre-activation (over d) and the NB products are unrolled.
    """
    bs = k + d + int(bias)
    z = " + ".join([f"y[(o + {k + e}) * lanes + l] * x{e}" for e in range(d)]
                   + ([f"y[(o + {k + d}) * lanes + l]"] if bias else []))
    load_x = "\n".join(f"            x{e} = params[{HEADER} + i * {d} + {e}]\n"
                       f"            XE[{e}] = x{e}" for e in range(d))
    products = "\n".join(f"                        v += G[g1 + {b} * gs + l] * G[g2 + {b} * gs + l]"
                         for b in range(_JAC_BLOCK))
    return f'''

BS, DE, NB = {bs}, {d + int(bias)}, {_JAC_BLOCK}
NZ = M * (1 + DE) + (1 if BIAS else 0)


def _jacobian_index():
    idx = np.empty((K, NZ), np.int64)
    for q in range(K):
        for j in range(M):
            idx[q, j * (1 + DE)] = j * BS + q
            for e in range(DE):
                idx[q, j * (1 + DE) + 1 + e] = j * BS + K + e
        if BIAS:
            idx[q, M * (1 + DE)] = M * BS + q
    return idx


_IDX = _jacobian_index()


def jacobian(lanes, t, y, out, params):
    # One lane (a BDF lane whose Newton iteration needs a fresh Jacobian) runs the same
    # code with the lane count a constant: its lane loops fold away instead of each paying a
    # vector loop's set-up for one element (about 3x faster at one lane, same bits).
    if lanes == 1:
        return _jacobian_lanes(1, t, y, out, params)
    return _jacobian_lanes(lanes, t, y, out, params)


@njit(**INLINE)
def _jacobian_lanes(lanes, t, y, out, params):
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    ml = M * lanes
    gs = K * NZ * lanes                      # G stride between the block's data points
    o_r = 3 * ml
    o_rs = o_r + K * lanes
    o_g = o_rs + lanes
    o_x = o_g + NB * gs
    scratch = np.empty(o_x + DE)
    S0 = scratch[0:ml]
    S1 = scratch[ml:2 * ml]
    S2 = scratch[2 * ml:o_r]
    R = scratch[o_r:o_rs]
    RS = scratch[o_rs:o_g]
    G = scratch[o_g:o_x]
    XE = scratch[o_x:]
    if BIAS:
        XE[DE - 1] = 1.0
    for c in range(P * P * lanes):
        out[c] = 0.0
    for i0 in range(0, n, NB):
        for ib in range(NB):
            i = i0 + ib
            gb = ib * gs
            if i >= n:                       # padding: zero rows add nothing
                for c in range(gs):
                    G[gb + c] = 0.0
                continue
{load_x}
            for j in range(M):
                o = j * BS
                for l in range(lanes):
                    s0, s1, s2, _s3, _s4 = act({z}, kappa)
                    S0[j * lanes + l] = s0
                    S1[j * lanes + l] = s1
                    S2[j * lanes + l] = s2
            for q in range(K):
                yq = params[{HEADER} + n * D + i * K + q]
                for l in range(lanes):
                    R[q * lanes + l] = y[(M * BS + q) * lanes + l] if BIAS else 0.0
                for j in range(M):
                    for l in range(lanes):
                        R[q * lanes + l] += y[(j * BS + q) * lanes + l] * S0[j * lanes + l]
                for l in range(lanes):
                    R[q * lanes + l] -= yq
            # compressed output-Jacobian rows g_q of data point i
            for q in range(K):
                for j in range(M):
                    gj = gb + (q * NZ + j * (1 + DE)) * lanes
                    for l in range(lanes):
                        G[gj + l] = S0[j * lanes + l]
                    for e in range(DE):
                        xe = XE[e]
                        ge = gj + (1 + e) * lanes
                        for l in range(lanes):
                            G[ge + l] = y[(j * BS + q) * lanes + l] * S1[j * lanes + l] * xe
                if BIAS:
                    gc = gb + (q * NZ + M * (1 + DE)) * lanes
                    for l in range(lanes):
                        G[gc + l] = 1.0
            # residual terms r·∂²f (a-w̃ and w̃-w̃ blocks of each neuron)
            for j in range(M):
                o = j * BS
                for l in range(lanes):
                    RS[l] = 0.0
                for q in range(K):
                    for l in range(lanes):
                        RS[l] += R[q * lanes + l] * y[(o + q) * lanes + l]
                    for e in range(DE):
                        xe = XE[e]
                        base = ((o + q) * P + o + K + e) * lanes
                        for l in range(lanes):
                            out[base + l] += R[q * lanes + l] * S1[j * lanes + l] * xe
                for l in range(lanes):
                    RS[l] *= S2[j * lanes + l]
                for e in range(DE):
                    for e2 in range(e, DE):
                        xx = XE[e] * XE[e2]
                        base = ((o + K + e) * P + o + K + e2) * lanes
                        for l in range(lanes):
                            out[base + l] += RS[l] * xx
        # Gauss–Newton part of the block, upper triangle: Σ_i Σ_q g_q g_qᵀ
        for q in range(K):
            for t1 in range(NZ):
                a = _IDX[q, t1]
                g1 = (q * NZ + t1) * lanes
                for t2 in range(t1, NZ):
                    base = (a * P + _IDX[q, t2]) * lanes
                    g2 = (q * NZ + t2) * lanes
                    for l in range(lanes):
                        v = out[base + l]
{products}
                        out[base + l] = v
    inv_n = 1.0 / n
    bad = 0.0
    for a in range(P):
        base = (a * P + a) * lanes
        for l in range(lanes):
            v = -(out[base + l] * inv_n) - lam
            out[base + l] = v
            bad += v * 0.0
        for b in range(a + 1, P):
            up = (a * P + b) * lanes
            lo = (b * P + a) * lanes
            for l in range(lanes):
                v = -(out[up + l] * inv_n)
                out[up + l] = v
                out[lo + l] = v
                bad += v * 0.0
    return 0 if bad == 0.0 else 1
'''


# --- scalar (one lane at a time) code, generated once for real and once for complex ---

_SCALAR_TEMPLATE = r'''
@njit(**INLINE)
def _forward_SUFFIX(th, x, yd, i, kappa, s0, s1, s2, r):
    """Data point i: σ, σ', σ'' of every neuron into s0, s1, s2 (M,), residuals into r (K,)."""
    bs = K + D + (1 if BIAS else 0)
    for j in range(M):
        z = th[j * bs + K + D] if BIAS else 0.0 * th[0]
        for q in range(D):
            z += th[j * bs + K + q] * x[i * D + q]
        v = ACT(z, kappa)
        s0[j] = v[0]
        s1[j] = v[1]
        s2[j] = v[2]
    for q in range(K):
        f = th[M * bs + q] if BIAS else 0.0 * th[0]
        for j in range(M):
            f += th[j * bs + q] * s0[j]
        r[q] = f - yd[i * K + q]


@njit(**NOGIL)
def _field_into_SUFFIX(th, x, yd, n, lam, kappa, g):
    """g[:] = −∇L(θ) for one parameter vector (real or complex)."""
    bs = K + D + (1 if BIAS else 0)
    for c in range(g.shape[0]):
        g[c] = 0.0
    s0 = np.empty(M, th.dtype)
    s1 = np.empty(M, th.dtype)
    s2 = np.empty(M, th.dtype)
    r = np.empty(K, th.dtype)
    for i in range(n):
        _forward_SUFFIX(th, x, yd, i, kappa, s0, s1, s2, r)
        for j in range(M):
            rho = 0.0 * th[0]
            for q in range(K):
                rho += r[q] * th[j * bs + q]
                g[j * bs + q] -= r[q] * s0[j]
            for q in range(D):
                g[j * bs + K + q] -= rho * s1[j] * x[i * D + q]
            if BIAS:
                g[j * bs + K + D] -= rho * s1[j]
        if BIAS:
            for q in range(K):
                g[M * bs + q] -= r[q]
    for c in range(g.shape[0]):
        g[c] = g[c] / n - lam * th[c]


@njit(**NOGIL)
def _hessian_into_SUFFIX(th, x, yd, n, lam, kappa, H):
    """H[:, :] = ∇²L(θ) for one parameter vector (docs/math.md §2), real or complex."""
    bs = K + D + (1 if BIAS else 0)
    P = H.shape[0]
    for a in range(P):
        for b in range(P):
            H[a, b] = 0.0
    J = np.empty((K, P), th.dtype)
    s0 = np.empty(M, th.dtype)
    s1 = np.empty(M, th.dtype)
    s2 = np.empty(M, th.dtype)
    r = np.empty(K, th.dtype)
    for i in range(n):
        _forward_SUFFIX(th, x, yd, i, kappa, s0, s1, s2, r)
        for a in range(K):
            for b in range(P):
                J[a, b] = 0.0
        for j in range(M):
            for q in range(K):
                J[q, j * bs + q] = s0[j]
                for e in range(D):
                    J[q, j * bs + K + e] = th[j * bs + q] * s1[j] * x[i * D + e]
                if BIAS:
                    J[q, j * bs + K + D] = th[j * bs + q] * s1[j]
        if BIAS:
            for q in range(K):
                J[q, M * bs + q] = 1.0
        for a in range(P):
            for b in range(P):
                acc = 0.0 * th[0]
                for q in range(K):
                    acc += J[q, a] * J[q, b]
                H[a, b] += acc
        for j in range(M):
            o = j * bs
            rho = 0.0 * th[0]
            for q in range(K):
                rho += r[q] * th[o + q]
            for q in range(K):
                for e in range(D):
                    v = r[q] * s1[j] * x[i * D + e]
                    H[o + q, o + K + e] += v
                    H[o + K + e, o + q] += v
                if BIAS:
                    v = r[q] * s1[j]
                    H[o + q, o + K + D] += v
                    H[o + K + D, o + q] += v
            rs2 = rho * s2[j]
            for e in range(D):
                for e2 in range(D):
                    H[o + K + e, o + K + e2] += rs2 * x[i * D + e] * x[i * D + e2]
                if BIAS:
                    H[o + K + e, o + K + D] += rs2 * x[i * D + e]
                    H[o + K + D, o + K + e] += rs2 * x[i * D + e]
            if BIAS:
                H[o + K + D, o + K + D] += rs2
    for a in range(P):
        for b in range(P):
            H[a, b] = H[a, b] / n
        H[a, a] += lam


@njit(**BASE)
def _lane_variational_SUFFIX(lanes, yp, dyp, params):
    n, x, yd = _data(params)
    y = carray(yp, ((P + P * P) * lanes,))
    dy = carray(dyp, ((P + P * P) * lanes,))
    th = np.empty(P, DTYPE)
    g = np.empty(P, DTYPE)
    H = np.empty((P, P), DTYPE)
    bad = 0
    for l in range(lanes):
        for c in range(P):
            th[c] = y[c * lanes + l]
        _field_into_SUFFIX(th, x, yd, n, params[1], params[2], g)
        _hessian_into_SUFFIX(th, x, yd, n, params[1], params[2], H)
        for c in range(P):
            dy[c * lanes + l] = g[c]
        for r in range(P):
            for c in range(P):
                s = 0.0 * H[0, 0]
                for q in range(P):
                    s -= H[r, q] * y[(P + q * P + c) * lanes + l]
                dy[(P + r * P + c) * lanes + l] = s
    for c in range((P + P * P) * lanes):
        if not (np.isfinite(dy[c].real) and np.isfinite(dy[c].imag)):
            bad = 1
    return bad
'''


def _scalar_helpers(suffix: str, act: str, dtype: str) -> str:
    return _SCALAR_TEMPLATE.replace("SUFFIX", suffix).replace("ACT", act).replace("DTYPE", dtype)


# --- compiled bundles ------------------------------------------------------------

_LOCK = threading.RLock()
_BUNDLES: dict = {}


def _load_generated(net: Network, unroll: bool | None = None):
    d, m, k, bias = net.architecture
    act = net.activation.key
    form = "unrolled" if _unrolls(d, m, k, bias, unroll) else "looped"
    return jit.load_generated(f"nf_rhs_d{d}_m{m}_k{k}_b{int(bias)}_{act}_{form}",
                              _generate_source(d, m, k, bias, act, unroll), depends=_SRC_FILES)


class NetworkFunctions:
    """Compiled functions of one (architecture, activation); each built on first use.

    cfuncs (ext/rhs_abi.pxd), with the number of outputs per lane:
      ``flow`` (p: dy = −∇L), ``loss`` (1: L), ``variational`` (p + p²: state
      [θ, Φ row-major], Φ̇ = −HΦ), ``jacobian`` (p²: J = −∇²L, λ included,
      row-major per lane: ``out[(r*p + c)*lanes + l] = J[r, c]``), ``complex_flow`` / ``complex_variational``
      (complex128 y, dy). ``*_address`` give their C addresses; keep this
      object alive while an address is in use (it is cached per process).
    njit functions: ``complex_field(theta, params) -> (p,)``, ``complex_jacobian(theta, params) -> (p, p)``.

    ``unroll`` chooses how flow/loss are generated (None: neurons unrolled up to
    ``_UNROLL_MAX_PARAMS`` parameters, looped above; True/False force one form, for tests and
    benchmarks).
    """

    def __init__(self, net: Network, unroll: bool | None = None):
        self.architecture = net.architecture
        self.activation = net.activation.key
        self.n_params = net.n_params
        self.unrolled = _unrolls(*net.architecture, unroll)
        self._module = _load_generated(net, unroll)
        self._cache: dict = {}

    def _get(self, name: str, sig):
        with _LOCK:
            if name not in self._cache:
                py = getattr(self._module, name)
                opts = jit.hot() if name in _HOT else jit.BASE
                self._cache[name] = cfunc(sig, **opts)(py) if sig is not None else njit(**opts)(py)
            return self._cache[name]

    flow = property(lambda self: self._get("flow", RHS_SIGNATURE))
    loss = property(lambda self: self._get("loss", RHS_SIGNATURE))
    variational = property(lambda self: self._get("variational", RHS_SIGNATURE))
    jacobian = property(lambda self: self._get("jacobian", RHS_SIGNATURE))
    complex_flow = property(lambda self: self._get("complex_flow", COMPLEX_RHS_SIGNATURE))
    complex_variational = property(lambda self: self._get("complex_variational", COMPLEX_RHS_SIGNATURE))
    complex_field = property(lambda self: self._get("complex_field", None))
    complex_jacobian = property(lambda self: self._get("complex_jacobian", None))

    flow_address = property(lambda self: self.flow.address)
    loss_address = property(lambda self: self.loss.address)
    variational_address = property(lambda self: self.variational.address)
    jacobian_address = property(lambda self: self.jacobian.address)
    complex_flow_address = property(lambda self: self.complex_flow.address)
    complex_variational_address = property(lambda self: self.complex_variational.address)

    def n_out(self, name: str) -> int:
        """Outputs per lane of the cfunc `name`."""
        p = self.n_params
        return {"flow": p, "loss": 1, "variational": p + p * p, "jacobian": p * p,
                "complex_flow": p,
                "complex_variational": p + p * p}[name]


def compile_network(net) -> NetworkFunctions:
    """The compiled functions for `net` (a Network or GradientFlow), cached per process."""
    if isinstance(net, GradientFlow):
        net = net.network
    if not isinstance(net, Network):
        raise TypeError(f"net must be a Network or GradientFlow, got {type(net).__name__}")
    key = (net.architecture, net.activation.key)
    with _LOCK:
        if key not in _BUNDLES:
            _BUNDLES[key] = NetworkFunctions(net)
        return _BUNDLES[key]
