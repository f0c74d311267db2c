"""Truncated power-series arithmetic of network gradient fields: the one implementation.

Two users share every recurrence here:

- the Koenigs parametrisation (:mod:`narrowflow.monodromy.koenigs`): complex128 series of
  one unstable manifold, one "lane", orders up to hundreds;
- the Taylor integrator (:mod:`narrowflow.taylor`, ``method="taylor"``): real series of
  many trajectories at once, SIMD lanes innermost, orders up to ~30.

The functions are ``register_jitable`` (compiled in the caller's context, for the caller's
types: complex or float64, arrays or C pointers) and use one addressing scheme: a series
is (array, offset, coefficient stride); its coefficient j in lane l is
``a[offset + j*stride + l]``, l < L. With L = 1 and stride 1 that is a plain 1-D series.

The recurrences are the classical ones of automatic differentiation of series (online:
coefficient k from coefficients <= k). With s = Σ s_j t^j:

- product:          (u v)_k = Σ_{j<=k} u_j v_{k-j}
- square:           (u²)_k, symmetric (half the products)
- U' = g s':        U_k = (1/k) Σ_{j=1..k} j s_j g_{k-j}
- T = tanh(a s):    T_k = (a/k) Σ_{j=1..k} j s_j Q_{k-j},  Q = 1 − T²,  Q_k = −(T²)_k (k >= 1)
- sigmoid(s) = (1 + tanh(s/2))/2, sigmoid' = (1 − tanh²(s/2))/4
- softplus' = sigmoid (the U' = g s' rule), silu = s g, silu' = g + s g(1 − g)
- gelu_tanh = s(1 + T)/2 with T = tanh(v), v = C(s + A s³);
  gelu' = (1 + T)/2 + (C/2) s W, W = (1 − T²)(1 + 3 A s²)
- quadratic s + κ s², linear s.

Coefficient 0 of tanh and softplus needs the elementary function itself, which each user
evaluates its own way (branch-free vectorizable real code, or cmath): `seed_args` leaves
the argument in place and the caller overwrites it with the value (see `tanh_slot`).

The intermediate series of the field (per neuron: Z pre-activation, U σ, SP σ', RHO
Σ_q r_q a_jq, X1..X6 auxiliary, `nslots(code)` of them; per output: the residual) are stored
"wide", all data points and lanes in one contiguous vector (see `field_inputs`), so every
recurrence is one long loop: n*L values for NF4's 16 points and 16 lanes, n for Koenigs.
"""
from __future__ import annotations

from numba.extending import register_jitable

GELU_C = 0.7978845608028654   # sqrt(2/pi)
GELU_A = 0.044715

# activation codes (the order of narrowflow.activations.NAMES)
TANH, SIGMOID, SOFTPLUS, SILU, GELU, QUADRATIC, LINEAR = range(7)

# neuron-block slots
S_Z, S_U, S_SP, S_RHO, S_X1, S_X2, S_X3, S_X4, S_X5, S_X6 = range(10)


@register_jitable
def nslots(code):
    """Slots of a neuron block for the activation `code`."""
    if code == 1 or code == 2 or code == 3:
        return 8
    if code == 4:
        return 10
    return 4


@register_jitable
def tanh_slot(code):
    """The slot whose coefficient 0 the caller turns from tanh's argument into its value
    (-1: none)."""
    if code == 0:
        return S_U
    if code >= 1 and code <= 4:
        return S_X1
    return -1


# --- elementary recurrences --------------------------------------------------------------

@register_jitable
def mul_set(k, L, u, ou, us, v, ov, vs, out, oo):
    """out[oo + l] = (u v)_k."""
    b = ov + k * vs
    for l in range(L):
        out[oo + l] = u[ou + l] * v[b + l]
    for j in range(1, k + 1):
        a = ou + j * us
        b = ov + (k - j) * vs
        for l in range(L):
            out[oo + l] += u[a + l] * v[b + l]


@register_jitable
def mul_add(k, L, u, ou, us, v, ov, vs, out, oo):
    """out[oo + l] += (u v)_k."""
    for j in range(k + 1):
        a = ou + j * us
        b = ov + (k - j) * vs
        for l in range(L):
            out[oo + l] += u[a + l] * v[b + l]


@register_jitable
def sq_set(k, L, u, ou, us, out, oo):
    """out[oo + l] = (u²)_k, each product once: 2 Σ_{j < k-j} u_j u_{k-j} (+ u_{k/2}²)."""
    for l in range(L):
        out[oo + l] = 0.0 * u[ou + l]
    for j in range((k + 1) // 2):
        a = ou + j * us
        b = ou + (k - j) * us
        for l in range(L):
            out[oo + l] += u[a + l] * u[b + l]
    for l in range(L):
        out[oo + l] *= 2.0
    if k % 2 == 0:
        a = ou + (k // 2) * us
        for l in range(L):
            out[oo + l] += u[a + l] * u[a + l]


@register_jitable
def dmul_set(k, L, scale, s, os_, ss, g, og, gs, out, oo):
    """out[oo + l] = (scale/k) Σ_{j=1..k} j s_j g_{k-j}: coefficient k (>= 1) of U with
    U' = scale g s'."""
    a = os_ + ss
    b = og + (k - 1) * gs
    for l in range(L):
        out[oo + l] = s[a + l] * g[b + l]
    for j in range(2, k + 1):
        a = os_ + j * ss
        b = og + (k - j) * gs
        fj = float(j)
        for l in range(L):
            out[oo + l] += fj * (s[a + l] * g[b + l])
    f = scale / k
    for l in range(L):
        out[oo + l] *= f


@register_jitable
def tanh_step(k, L, scale, B, oS, oT, oQ, c):
    """T = tanh(scale s), Q = 1 − T² (all in block B, coefficient stride c): coefficient k.
    At k = 0, T_0 must already hold tanh(scale s_0) (the caller's elementary function)."""
    if k == 0:
        for l in range(L):
            t = B[oT + l]
            B[oQ + l] = 1.0 - t * t
        return
    dmul_set(k, L, scale, B, oS, c, B, oQ, c, B, oT + k * c)
    sq_set(k, L, B, oT, c, B, oQ + k * c)
    for l in range(L):
        B[oQ + k * c + l] = -B[oQ + k * c + l]


@register_jitable
def act_step(code, kappa, k, L, B, b, c):
    """Coefficient k of σ(Z) (slot U) and σ'(Z) (slot SP) in the neuron block at b."""
    oZ = b + S_Z * L
    oU = b + S_U * L
    oSP = b + S_SP * L
    kc = k * c
    one = 1.0 if k == 0 else 0.0
    if code == 0:
        tanh_step(k, L, 1.0, B, oZ, oU, oSP, c)
    elif code == 1 or code == 2 or code == 3:
        oX1 = b + S_X1 * L
        oX2 = b + S_X2 * L
        oX3 = b + S_X3 * L
        oX4 = b + S_X4 * L
        tanh_step(k, L, 0.5, B, oZ, oX1, oX2, c)
        for l in range(L):
            B[oX3 + kc + l] = 0.5 * B[oX1 + kc + l] + 0.5 * one     # g = sigmoid
            B[oX4 + kc + l] = 0.25 * B[oX2 + kc + l]                # g (1 − g)
        if code == 1:
            for l in range(L):
                B[oU + kc + l] = B[oX3 + kc + l]
                B[oSP + kc + l] = B[oX4 + kc + l]
        elif code == 2:
            if k > 0:                                               # U_0: the caller's seed
                dmul_set(k, L, 1.0, B, oZ, c, B, oX3, c, B, oU + kc)
            for l in range(L):
                B[oSP + kc + l] = B[oX3 + kc + l]
        else:
            mul_set(k, L, B, oZ, c, B, oX3, c, B, oU + kc)
            mul_set(k, L, B, oZ, c, B, oX4, c, B, oSP + kc)
            for l in range(L):
                B[oSP + kc + l] += B[oX3 + kc + l]
    elif code == 4:
        oX1 = b + S_X1 * L
        oX2 = b + S_X2 * L
        oX3 = b + S_X3 * L
        oX4 = b + S_X4 * L
        oX5 = b + S_X5 * L
        oX6 = b + S_X6 * L
        if k > 0:                                                   # k = 0: seed_args
            sq_set(k, L, B, oZ, c, B, oX3 + kc)                     # s²
            mul_set(k, L, B, oX3, c, B, oZ, c, B, oX4 + kc)         # s³
            for l in range(L):
                B[oX5 + kc + l] = GELU_C * (B[oZ + kc + l] + GELU_A * B[oX4 + kc + l])
        tanh_step(k, L, 1.0, B, oX5, oX1, oX2, c)                   # T = tanh(v), 1 − T²
        mul_set(k, L, B, oX2, c, B, oX3, c, B, oX6 + kc)            # W = (1 − T²)(1 + 3A s²)
        for l in range(L):
            B[oX6 + kc + l] = B[oX2 + kc + l] + (3.0 * GELU_A) * B[oX6 + kc + l]
        mul_set(k, L, B, oZ, c, B, oX1, c, B, oU + kc)
        for l in range(L):
            B[oU + kc + l] = 0.5 * (B[oZ + kc + l] + B[oU + kc + l])
        mul_set(k, L, B, oZ, c, B, oX6, c, B, oSP + kc)
        for l in range(L):
            B[oSP + kc + l] = 0.5 * (one + B[oX1 + kc + l]) + (0.5 * GELU_C) * B[oSP + kc + l]
    elif code == 5:
        sq_set(k, L, B, oZ, c, B, oU + kc)
        for l in range(L):
            z = B[oZ + kc + l]
            B[oU + kc + l] = z + kappa * B[oU + kc + l]
            B[oSP + kc + l] = one + 2.0 * kappa * z
    else:
        for l in range(L):
            B[oU + kc + l] = B[oZ + kc + l]
            B[oSP + kc + l] = one + 0.0 * B[oZ + kc + l]


# --- the gradient field ------------------------------------------------------------------
#
# "Wide" layout: every series of a data point is stored for all data points and lanes at
# once, V = n*L values (element i*L + l), so that each recurrence runs one contiguous loop
# of V (or m*V) values. Per coefficient c, in one array W:
#   neuron series  W[nbo + c*nbc + s*(m*V) + j*V + i*L + l], slot s of neuron j, nbc = nslots*m*V
#   a_jq broadcast W[abo + c*abc + (j*kk + q)*V + i*L + l], abc = m*kk*V
#   residual r_q   W[rbo + c*rbc + q*V + i*L + l], rbc = kk*V
#   scratch        W[tmo : tmo + V]

@register_jitable
def field_inputs(k, L, d, m, kk, bias, n, params, xo, th, oth, qs, ths, W, nbo, nbc, abo, abc):
    """Coefficient k of every pre-activation z_ij = w_j·x_i (+ b_j) (slot Z) and of the
    output weights a_jq broadcast over the data points.

    Θ: coefficient c of parameter q, lane l at th[oth + q*qs + c*ths + l] (neuron-major
    layout of narrowflow.model: a_j (kk), w_j (d), b_j, ..., then c (kk) with bias).
    """
    V = n * L
    mV = m * V
    bs = kk + d + bias
    for j in range(m):
        oz = nbo + k * nbc + S_Z * mV + j * V
        base = j * bs
        for i in range(n):
            o = oz + i * L
            t = oth + (base + kk) * qs + k * ths
            x0 = params[xo + i * d]
            for l in range(L):
                W[o + l] = th[t + l] * x0
            for e in range(1, d):
                xe = params[xo + i * d + e]
                t = oth + (base + kk + e) * qs + k * ths
                for l in range(L):
                    W[o + l] += th[t + l] * xe
            if bias:
                t = oth + (base + kk + d) * qs + k * ths
                for l in range(L):
                    W[o + l] += th[t + l]
        for q in range(kk):
            oa = abo + k * abc + (j * kk + q) * V
            t = oth + (base + q) * qs + k * ths
            for i in range(n):
                for l in range(L):
                    W[oa + i * L + l] = th[t + l]


@register_jitable
def seed_args(code, N, B, b):
    """After field_inputs(0), for the N = m*V pre-activations at b (slot stride N): the
    argument of tanh at coefficient 0 into slot `tanh_slot(code)` (and gelu's s², s³, v).
    The caller then replaces it by tanh of it, and for softplus writes softplus(Z_0) into
    slot U."""
    oZ = b + S_Z * N
    if code == 0:
        for e in range(N):
            B[b + S_U * N + e] = B[oZ + e]
    elif code == 1 or code == 2 or code == 3:
        for e in range(N):
            B[b + S_X1 * N + e] = 0.5 * B[oZ + e]
    elif code == 4:
        for e in range(N):
            z = B[oZ + e]
            z2 = z * z
            z3 = z2 * z
            v = GELU_C * (z + GELU_A * z3)
            B[b + S_X3 * N + e] = z2
            B[b + S_X4 * N + e] = z3
            B[b + S_X5 * N + e] = v
            B[b + S_X1 * N + e] = v


@register_jitable
def field_rest(k, L, d, m, kk, bias, n, lam, kappa, code, params, xo, yo, th, oth, qs, ths,
               W, nbo, nbc, abo, abc, rbo, rbc, tmo, out, oo, os_, scale):
    """Coefficient k of F(Θ) = −∇L(Θ) (mean squared loss / 2, weight decay lam), times
    `scale`, into out[oo + q*os_ + l], after field_inputs(k) (and the seeds at k = 0).

    W: the wide layout above. Arrays or C pointers (pointers index without Numba's
    negative-index wraparound, which keeps the loops vectorizable: the Taylor cfunc passes
    pointers).
    """
    V = n * L
    mV = m * V
    bs = kk + d + bias
    p = m * bs + (kk if bias else 0)
    act_step(code, kappa, k, mV, W, nbo, nbc)
    oU = nbo + S_U * mV
    # residuals r_q = Σ_j a_jq σ_j (+ c_q) − y_q
    for q in range(kk):
        orq = rbo + k * rbc + q * V
        mul_set(k, V, W, abo + q * V, abc, W, oU, nbc, W, orq)
        for j in range(1, m):
            mul_add(k, V, W, abo + (j * kk + q) * V, abc, W, oU + j * V, nbc, W, orq)
        if bias:
            t = oth + (m * bs + q) * qs + k * ths
            for i in range(n):
                for l in range(L):
                    W[orq + i * L + l] += th[t + l]
        if k == 0:
            for i in range(n):
                yq = params[yo + i * kk + q]
                for l in range(L):
                    W[orq + i * L + l] -= yq
    for q in range(p):
        for l in range(L):
            out[oo + q * os_ + l] = 0.0 * th[oth + l]
    for j in range(m):
        orho = nbo + k * nbc + S_RHO * mV + j * V
        # rho_j = Σ_q r_q a_jq
        mul_set(k, V, W, rbo, rbc, W, abo + j * kk * V, abc, W, orho)
        for q in range(1, kk):
            mul_add(k, V, W, rbo + q * V, rbc, W, abo + (j * kk + q) * V, abc, W, orho)
        # ∂/∂a_jq: Σ_i r_q σ_j
        for q in range(kk):
            mul_set(k, V, W, rbo + q * V, rbc, W, oU + j * V, nbc, W, tmo)
            o = oo + (j * bs + q) * os_
            for i in range(n):
                for l in range(L):
                    out[o + l] += W[tmo + i * L + l]
        # ∂/∂w_je, ∂/∂b_j: Σ_i rho_j σ'_j x_ie, Σ_i rho_j σ'_j
        mul_set(k, V, W, nbo + S_RHO * mV + j * V, nbc, W, nbo + S_SP * mV + j * V, nbc,
                W, tmo)
        for e in range(d):
            o = oo + (j * bs + kk + e) * os_
            for i in range(n):
                xe = params[xo + i * d + e]
                for l in range(L):
                    out[o + l] += W[tmo + i * L + l] * xe
        if bias:
            o = oo + (j * bs + kk + d) * os_
            for i in range(n):
                for l in range(L):
                    out[o + l] += W[tmo + i * L + l]
    if bias:
        for q in range(kk):
            orq = rbo + k * rbc + q * V
            o = oo + (m * bs + q) * os_
            for i in range(n):
                for l in range(L):
                    out[o + l] += W[orq + i * L + l]
    f = -scale / n
    g = -scale * lam
    for q in range(p):
        t = oth + q * qs + k * ths
        for l in range(L):
            out[oo + q * os_ + l] = f * out[oo + q * os_ + l] + g * th[t + l]


@register_jitable
def wide_layout(n, m, kk, code, L, N1):
    """Offsets and strides (nbo, nbc, abo, abc, rbo, rbc, tmo, size) of the wide layout for
    n data points, m neurons, kk outputs, L lanes and N1 coefficients."""
    V = n * L
    nbc = nslots(code) * m * V
    abo = N1 * nbc
    abc = m * kk * V
    rbo = abo + N1 * abc
    rbc = kk * V
    tmo = rbo + N1 * rbc
    return 0, nbc, abo, abc, rbo, rbc, tmo, tmo + V


# --- the same recurrences at a fixed coefficient k, as source text -----------------------
#
# The Taylor integrator's order is fixed per run, so narrowflow.taylor generates code for
# each coefficient k with the bounds of every Cauchy sum known: LLVM unrolls the sums, keeps
# the partial sums in registers and vectorizes the lane loop around them. These emitters
# write that code from the recurrences above, term for term in the same order (each
# `x += a * b` is the same contracted FMA), so that the generated code and the loops above
# agree bit for bit (tests/test_taylor.py checks it). `get(s, c)` is the source expression of
# coefficient c of series s, c an int or the text of an index expression in the loop
# variable j (never k then); `loc(s)` is the local name that receives coefficient k of s.
# Each emitter returns source lines.

def _sum(dst, lo, hi, term, ends):
    """dst += term(j) for j = lo..hi in order: a loop over the middle, the terms whose
    operands may be coefficient k (j in `ends`) written out (they read locals)."""
    out, j = [], lo
    while j <= hi and j in ends:
        out.append(f"{dst} += {term(j)}")
        j += 1
    top = hi
    while top >= j and top in ends:
        top -= 1
    if top >= j:
        out += [f"for j in range({j}, {top + 1}):", f"    {dst} += {term('j')}"]
    out += [f"{dst} += {term(e)}" for e in range(top + 1, hi + 1)]
    return out


def _sub(k, j):
    return k - j if isinstance(j, int) else f"{k} - j"


def emit_mul(k, get, u, v, dst, add=False):
    """dst = (u v)_k (as mul_set), or dst += (u v)_k (as mul_add)."""
    def term(j):
        return f"{get(u, j)} * {get(v, _sub(k, j))}"
    out = [] if add else [f"{dst} = {term(0)}"]
    return out + _sum(dst, 0 if add else 1, k, term, (0, k))


def emit_sq(k, get, u, dst):
    """dst = (u²)_k (as sq_set)."""
    def term(j):
        return f"{get(u, j)} * {get(u, _sub(k, j))}"
    out = [f"{dst} = 0.0 * {get(u, 0)}"] + _sum(dst, 0, (k + 1) // 2 - 1, term, (0,))
    out.append(f"{dst} *= 2.0")
    if k % 2 == 0:
        out.append(f"{dst} += {get(u, k // 2)} * {get(u, k // 2)}")
    return out


def emit_dmul(k, get, scale, s, g, dst):
    """dst = (scale/k) Σ_{j=1..k} j s_j g_{k-j}, k >= 1 (as dmul_set)."""
    def term(j):
        fj = f"{float(j)!r}" if isinstance(j, int) else "float(j)"
        return f"{fj} * ({get(s, j)} * {get(g, _sub(k, j))})"
    out = [f"{dst} = {get(s, 1)} * {get(g, k - 1)}"] + _sum(dst, 2, k, term, (k,))
    out.append(f"{dst} *= {scale / k!r}")
    return out


def emit_tanh(k, get, loc, scale, s, t, q):
    """T = tanh(scale s), Q = 1 − T² at coefficient k (as tanh_step; at k = 0 loc(t) must
    hold T_0 already)."""
    if k == 0:
        return [f"{loc(q)} = 1.0 - {loc(t)} * {loc(t)}"]
    return (emit_dmul(k, get, scale, s, q, loc(t)) + emit_sq(k, get, t, loc(q))
            + [f"{loc(q)} = -{loc(q)}"])


def emit_act(code, k, get, loc, kappa="kappa", tanh="fm.tanh", softplus="fm.softplus"):
    """σ(Z) into loc('U') and σ'(Z) into loc('SP') at coefficient k (as act_step, with the
    seeds of seed_args and the caller's elementary functions at k = 0). Slots are named
    'Z', 'U', 'SP', 'X1' ... 'X6'; loc('Z') must hold Z_k."""
    one = "1.0" if k == 0 else "0.0"
    Z, U, SP = loc("Z"), loc("U"), loc("SP")
    X = {i: loc(f"X{i}") for i in range(1, 7)}
    if code == 0:
        out = [f"{U} = {tanh}({Z})"] if k == 0 else []
        return out + emit_tanh(k, get, loc, 1.0, "Z", "U", "SP")
    if code in (1, 2, 3):
        out = [f"{X[1]} = {tanh}(0.5 * {Z})"] if k == 0 else []
        out += emit_tanh(k, get, loc, 0.5, "Z", "X1", "X2")
        out += [f"{X[3]} = 0.5 * {X[1]} + 0.5 * {one}", f"{X[4]} = 0.25 * {X[2]}"]
        if code == 1:
            return out + [f"{U} = {X[3]}", f"{SP} = {X[4]}"]
        if code == 2:
            out += ([f"{U} = {softplus}({Z})"] if k == 0
                    else emit_dmul(k, get, 1.0, "Z", "X3", U))
            return out + [f"{SP} = {X[3]}"]
        return (out + emit_mul(k, get, "Z", "X3", U) + emit_mul(k, get, "Z", "X4", SP)
                + [f"{SP} += {X[3]}"])
    if code == 4:
        if k == 0:
            out = [f"{X[3]} = {Z} * {Z}", f"{X[4]} = {X[3]} * {Z}",
                   f"{X[5]} = {GELU_C!r} * ({Z} + {GELU_A!r} * {X[4]})", f"{X[1]} = {tanh}({X[5]})"]
        else:
            out = emit_sq(k, get, "Z", X[3]) + emit_mul(k, get, "X3", "Z", X[4])
            out.append(f"{X[5]} = {GELU_C!r} * ({Z} + {GELU_A!r} * {X[4]})")
        out += emit_tanh(k, get, loc, 1.0, "X5", "X1", "X2")
        out += emit_mul(k, get, "X2", "X3", X[6])
        out.append(f"{X[6]} = {X[2]} + {3.0 * GELU_A!r} * {X[6]}")
        out += emit_mul(k, get, "Z", "X1", U) + [f"{U} = 0.5 * ({Z} + {U})"]
        out += emit_mul(k, get, "Z", "X6", SP)
        return out + [f"{SP} = 0.5 * ({one} + {X[1]}) + {0.5 * GELU_C!r} * {SP}"]
    if code == 5:
        return emit_sq(k, get, "Z", U) + [f"{U} = {Z} + {kappa} * {U}",
                                          f"{SP} = {one} + 2.0 * {kappa} * {Z}"]
    return [f"{U} = {Z}", f"{SP} = {one} + 0.0 * {Z}"]
