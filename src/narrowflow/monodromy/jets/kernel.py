"""The jet kernel: Faà di Bruno's chain rule on derivative tensors and the right-hand side
of the higher-order variational equations (docs/math.md §5.6).

The state of a k-jet is ``(Φ_0 (n,), Φ_1 (n, n), ..., Φ_k (n,)*(k+1))`` packed flat (see
:func:`_offsets`); its derivative along the flow of ``F`` is the chain rule of ``F ∘ φ``:

    Φ̇_1 = DF Φ_1
    Φ̇_2 = DF Φ_2 + D²F(Φ_1, Φ_1)
    Φ̇_3 = DF Φ_3 + 3 D²F(Φ_2, Φ_1) + D³F(Φ_1, Φ_1, Φ_1)       (symmetrised)
    Φ̇_4 = ...                                                     (up to order 4)

The derivative tensors of ``F`` come from a Numba function with the signature

    derivs(y: complex128[:], params: float64[:], order: int,
           F (n,), DF (n,n), D2F (n,n,n), D3F (n,)*4, D4F (n,)*5) -> None

that fills the arrays up to ``order`` (built in: Hénon–Heiles,
``narrowflow.monodromy.fields.henon_heiles_derivs``; networks,
``narrowflow.derivatives.network_derivs``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from narrowflow import jit as _jit

from narrowflow.derivatives import network_derivs as _net_derivs

from ..fields import henon_heiles_derivs
from ..pathint import NJ_DYNAMIC as _NJD

MAX_ORDER = 4
_NJ = _jit.NOGIL


# ---------------------------------------------------------------------------------------
# chain rule (Faà di Bruno) on derivative tensors, orders 1..4
# ---------------------------------------------------------------------------------------

@njit(**_NJ)
def _chain(n, K, nz, G1, G2, G3, G4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S):
    """Derivatives of G∘P, orders 1..K, from those of G (outer, at P(0)) and P (inner).

    G_j: (n,)*(j+1) derivative tensors of G, used only for j <= nz (higher ones are zero);
    P_j: (n,)*(j+1); O_j: output (same shapes). T (n,n,n), U1 (n,)*4, U2 (n,)*4 and
    S (n,)*4 are work arrays (unused ones may be of size 1 in each dimension).
    """
    # order 1: O1 = G1 P1
    for i in range(n):
        for a in range(n):
            acc = 0j
            for j in range(n):
                acc += G1[i, j] * P1[j, a]
            O1[i, a] = acc
    if K < 2:
        return
    have2 = nz >= 2
    have3 = nz >= 3 and K >= 3
    if have2:
        # T[i,j,a] = sum_k G2[i,j,k] P1[k,a]
        for i in range(n):
            for j in range(n):
                for a in range(n):
                    acc = 0j
                    for k in range(n):
                        acc += G2[i, j, k] * P1[k, a]
                    T[i, j, a] = acc
    for i in range(n):
        for a in range(n):
            for b in range(n):
                acc = 0j
                for j in range(n):
                    acc += G1[i, j] * P2[j, a, b]
                    if have2:
                        acc += T[i, j, b] * P1[j, a]
                O2[i, a, b] = acc
    if K < 3:
        return
    if have3:
        # U1[i,j,k,c] = sum_l G3[i,j,k,l] P1[l,c];  U2[i,j,b,c] = sum_k U1[i,j,k,c] P1[k,b]
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    for c in range(n):
                        acc = 0j
                        for l in range(n):
                            acc += G3[i, j, k, l] * P1[l, c]
                        U1[i, j, k, c] = acc
        for i in range(n):
            for j in range(n):
                for b in range(n):
                    for c in range(n):
                        acc = 0j
                        for k in range(n):
                            acc += U1[i, j, k, c] * P1[k, b]
                        U2[i, j, b, c] = acc
    for i in range(n):
        for a in range(n):
            for b in range(n):
                for c in range(n):
                    acc = 0j
                    for j in range(n):
                        acc += G1[i, j] * P3[j, a, b, c]
                        if have2:
                            acc += (T[i, j, c] * P2[j, a, b] + T[i, j, b] * P2[j, a, c]
                                    + T[i, j, a] * P2[j, b, c])
                        if have3:
                            acc += U2[i, j, b, c] * P1[j, a]
                    O3[i, a, b, c] = acc
    if K < 4:
        return
    if have2:
        # S[i,j,c,d] = sum_k G2[i,j,k] P2[k,c,d]
        for i in range(n):
            for j in range(n):
                for c in range(n):
                    for d in range(n):
                        acc = 0j
                        for k in range(n):
                            acc += G2[i, j, k] * P2[k, c, d]
                        S[i, j, c, d] = acc
    have4 = nz >= 4
    for i in range(n):
        for a in range(n):
            for b in range(n):
                for c in range(n):
                    for d in range(n):
                        acc = 0j
                        for j in range(n):
                            acc += G1[i, j] * P4[j, a, b, c, d]
                            if have2:
                                acc += (T[i, j, d] * P3[j, a, b, c] + T[i, j, c] * P3[j, a, b, d]
                                        + T[i, j, b] * P3[j, a, c, d] + T[i, j, a] * P3[j, b, c, d])
                                acc += (P2[j, a, b] * S[i, j, c, d] + P2[j, a, c] * S[i, j, b, d]
                                        + P2[j, a, d] * S[i, j, b, c])
                            if have3:
                                acc += (P2[j, a, b] * U2[i, j, c, d] + P2[j, a, c] * U2[i, j, b, d]
                                        + P2[j, a, d] * U2[i, j, b, c] + P2[j, b, c] * U2[i, j, a, d]
                                        + P2[j, b, d] * U2[i, j, a, c] + P2[j, c, d] * U2[i, j, a, b])
                        if have4:
                            for j in range(n):
                                for k in range(n):
                                    for l in range(n):
                                        for m in range(n):
                                            acc += (G4[i, j, k, l, m] * P1[j, a] * P1[k, b]
                                                    * P1[l, c] * P1[m, d])
                        O4[i, a, b, c, d] = acc


def _work(n, K):
    """Work arrays for _chain: T, U1, U2, S (dummy 1-element arrays where unused)."""
    one4 = (1, 1, 1, 1)
    T = np.zeros((n, n, n) if K >= 2 else (1, 1, 1), np.complex128)
    U1 = np.zeros((n,) * 4 if K >= 3 else one4, np.complex128)
    U2 = np.zeros((n,) * 4 if K >= 3 else one4, np.complex128)
    S = np.zeros((n,) * 4 if K >= 4 else one4, np.complex128)
    return T, U1, U2, S


def _shapes(n, K):
    """Shapes of the tensors of orders 1..4 (orders above K get 1-element dummies)."""
    return [(n,) * (j + 1) if j <= K else (1,) * (j + 1) for j in range(1, 5)]


def _offsets(n, K):
    offs = [0]
    for j in range(K + 1):
        offs.append(offs[-1] + n ** (j + 1))
    return np.array(offs, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# the jet right-hand side
# ---------------------------------------------------------------------------------------
# Functions below call into other files (the derivative functions, passed or imported), so
# they are not cached on their own: Numba's cache of a function does not notice changes in
# another file. They are compiled into the disk-cached integrator of ``jets.transport``,
# whose generated module's name hashes every file involved.

@njit(**_NJD)
def builtin_derivs(y, params, order, F, D1, D2, D3, D4):
    """The built-in fields, selected by params[0]: 0 Hénon–Heiles (params[1:4] = A, B, eps),
    1 a network gradient field (params[1:] as ``narrowflow.rhs.pack_params`` with its
    architecture header, see ``narrowflow.derivatives``)."""
    if params[0] == 0.0:
        henon_heiles_derivs(y, params[1:], order, F, D1, D2, D3, D4)
    else:
        _net_derivs(y, params[1:], order, F, D1, D2, D3, D4)


def jet_data(params, n, K, nz, kc):
    """The ``data`` tuple of :func:`jet_rhs`: params float64 (q,), n, K (jet order), nz
    (highest non-zero derivative order of F), kc (complex; 0 for time paths, c in Koenigs
    mode), then the offsets and work arrays."""
    shp = _shapes(n, K)
    Dk = [np.zeros(s, np.complex128) for s in shp]
    Pk = [np.zeros(s, np.complex128) for s in shp]
    Ok = [np.zeros(s, np.complex128) for s in shp]
    return (np.ascontiguousarray(params, np.float64), int(n), int(K), int(nz), complex(kc),
            _offsets(n, K), np.zeros(n, np.complex128), *Dk, *Pk, *Ok, *_work(n, K))


@njit(**_NJD)
def jet_rhs(derivs, z, st, data):
    """d/dz of the packed jet state: ``F`` (time paths) or ``F / (c z)`` (Koenigs mode,
    ``kc = c``) pushed through the chain rule. st complex128 (N,); data: :func:`jet_data`."""
    (params, n, K, nz, kc, offs, F, D1, D2, D3, D4,
     P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S) = data
    g = 1.0 + 0j
    if kc != 0:
        g = 1.0 / (kc * z)
    out = np.empty(st.size, np.complex128)
    y = st[offs[0]:offs[1]]
    derivs(y, params, min(K, nz), F, D1, D2, D3, D4)
    for i in range(n):
        out[i] = g * F[i]
    if K == 0:
        return out
    P1[:, :] = st[offs[1]:offs[2]].reshape(P1.shape)
    if K >= 2:
        P2[:, :, :] = st[offs[2]:offs[3]].reshape(P2.shape)
    if K >= 3:
        P3[:, :, :, :] = st[offs[3]:offs[4]].reshape(P3.shape)
    if K >= 4:
        P4[:, :, :, :, :] = st[offs[4]:offs[5]].reshape(P4.shape)
    _chain(n, K, nz, D1, D2, D3, D4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S)
    out[offs[1]:offs[2]] = g * O1.ravel()
    if K >= 2:
        out[offs[2]:offs[3]] = g * O2.ravel()
    if K >= 3:
        out[offs[3]:offs[4]] = g * O3.ravel()
    if K >= 4:
        out[offs[4]:offs[5]] = g * O4.ravel()
    return out
