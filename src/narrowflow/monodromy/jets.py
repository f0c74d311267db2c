"""Higher-order variational equations: k-jets of flow maps along complex paths (docs/math.md §5.6).

The k-jet of the flow map ``φ_γ`` of ``dy/dt = F(y)`` along a path ``γ`` of complex
times (or, in *Koenigs mode*, of ``dy/dz = F(y) / (c z)`` along a path of the
z-plane) is the list of derivative tensors ``Φ_j = ∂^j φ_γ / ∂y0^j``, ``j = 0..k``
(``Φ_0`` the end point, ``Φ_1`` the monodromy matrix, ``Φ_j`` of shape ``(n,)*(j+1)``,
symmetric in its last ``j`` indices). They satisfy the higher-order variational
equations VE_j, obtained by differentiating ``Φ̇_0 = F(Φ_0)`` with Faà di Bruno's formula:

    Φ̇_1 = DF Φ_1
    Φ̇_2 = DF Φ_2 + D²F(Φ_1, Φ_1)
    Φ̇_3 = DF Φ_3 + 3 D²F(Φ_2, Φ_1) + D³F(Φ_1, Φ_1, Φ_1)       (symmetrised)
    Φ̇_4 = ...                                                     (up to order 4)

all integrated jointly, in complex arithmetic, with a Numba DOP853 (Hairer's 8(5,3)
pair with scipy's error norm) on the real path parameter ``s``:
``dY/ds = F(Y) g(s)``, ``g = dz/ds`` (time) or ``g = dz/ds / (c z)`` (Koenigs).

The derivative tensors of ``F`` come from a Numba function with the signature

    derivs(y: complex128[:], params: float64[:], order: int,
           F (n,), DF (n,n), D2F (n,n,n), D3F (n,)*4, D4F (n,)*5) -> None

that fills the arrays up to ``order`` (built in: Hénon–Heiles, here; networks, in
:mod:`narrowflow.derivatives`).

Jets of loops are verified like monodromy matrices (issue 4): computed at two
tolerances (the difference is the error estimate), the base point's closure defect
at both (it must be small and shrink with the tolerance), and on a deformed copy of
the loop. Commutators of loop jets are **integrated along the commutator loop**
(``γ1 γ2 γ1⁻¹ γ2⁻¹``), never composed from float64 jets: jets with entries of size
1e4..1e9 lose every digit of a small order-3 part to round-off when composed.

The *order-j part* of a jet is its derivative tensor ``Φ_j`` (the homogeneous Taylor
term is ``Φ_j(δ, ..., δ) / j!``); norms are Frobenius norms of these full (symmetric)
tensors, the convention of docs/math.md §5.6; ``deviation(1)`` is ``‖Φ_1 − I‖``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.integrate._ivp import dop853_coefficients as _dc

from narrowflow import derivatives as _dv
from narrowflow.derivatives import network_derivs as _net_derivs

from .paths import Path, as_path

__all__ = [
    "JetSystem", "Jet", "JetCommutator", "Deviation", "jet_monodromy", "jet_commutator",
    "transport_jet", "henon_heiles_system", "henon_heiles_derivs", "henon_heiles_period_jets",
    "compose", "inverse", "MAX_ORDER",
]

MAX_ORDER = 4
_NJ = dict(cache=True, error_model="numpy", nogil=True)

# DOP853 tableau (Hairer's coefficients as shipped with scipy)
_NS = 12
_RK_A = np.ascontiguousarray(_dc.A[:_NS, :_NS])
_RK_B = np.ascontiguousarray(_dc.B)
_RK_C = np.ascontiguousarray(_dc.C[:_NS])
_RK_E3 = np.ascontiguousarray(_dc.E3)
_RK_E5 = np.ascontiguousarray(_dc.E5)
_TABLEAU = (_RK_A, _RK_B, _RK_C, _RK_E3, _RK_E5)


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
# the jet right-hand side and the DOP853 transport along encoded paths
# ---------------------------------------------------------------------------------------

@njit(**_NJ)
def _path_point(kind, prm, s):
    """z(s), dz/ds of one encoded piece (see paths.Path.encode)."""
    bump = prm[4]
    if kind == 0:
        a = prm[0]
        b = prm[1]
        z = a + (b - a) * s + bump * math.sin(math.pi * s)
        dz = (b - a) + bump * math.pi * math.cos(math.pi * s)
    else:
        c = prm[0]
        r = prm[1].real
        th0 = prm[2].real
        th1 = prm[3].real
        th = th0 + (th1 - th0) * s
        e = complex(math.cos(th), math.sin(th))
        z = c + r * e + bump * math.sin(math.pi * s)
        dz = 1j * (th1 - th0) * r * e + bump * math.pi * math.cos(math.pi * s)
    return z, dz


@njit(**_NJ)
def _g_factor(kind, prm, s, kc):
    z, dz = _path_point(kind, prm, s)
    if kc != 0:
        return dz / (kc * z)
    return dz


# ---------------------------------------------------------------------------------------
# Hénon–Heiles, the built-in validation system
# ---------------------------------------------------------------------------------------

@njit(**_NJ)
def henon_heiles_derivs(y, params, order, F, D1, D2, D3, D4):
    """Derivatives of the Hénon–Heiles field, y = (q1, q2, p1, p2), params = (A, B, eps).

    H = (p1² + p2²)/2 + (A q1² + B q2²)/2 + q1² q2 + (eps/3) q2³; F is quadratic,
    so D2F is constant and D3F = D4F = 0 (declare nz = 2).
    """
    A = params[0]
    B = params[1]
    eps = params[2]
    q1 = y[0]
    q2 = y[1]
    F[0] = y[2]
    F[1] = y[3]
    F[2] = -A * q1 - 2.0 * q1 * q2
    F[3] = -B * q2 - q1 * q1 - eps * q2 * q2
    if order < 1:
        return
    D1[:, :] = 0.0
    D1[0, 2] = 1.0
    D1[1, 3] = 1.0
    D1[2, 0] = -A - 2.0 * q2
    D1[2, 1] = -2.0 * q1
    D1[3, 0] = -2.0 * q1
    D1[3, 1] = -B - 2.0 * eps * q2
    if order < 2:
        return
    D2[:, :, :] = 0.0
    D2[2, 0, 1] = -2.0
    D2[2, 1, 0] = -2.0
    D2[3, 0, 0] = -2.0
    D2[3, 1, 1] = -2.0 * eps


@njit(**_NJ)
def _builtin_derivs(y, params, order, F, D1, D2, D3, D4):
    """The built-in fields, selected by params[0]: 0 Hénon–Heiles (params[1:4] = A, B, eps),
    1 a network gradient field (params[1:] as narrowflow.derivatives.pack_params)."""
    if params[0] == 0.0:
        henon_heiles_derivs(y, params[1:], order, F, D1, D2, D3, D4)
    else:
        _net_derivs(y, params[1:], order, F, D1, D2, D3, D4)


@njit(**_NJ)
def _jet_rhs(params, n, K, nz, offs, st, g, out, F, D1, D2, D3, D4,
             P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S):
    """out = g * d/dt(state) for state = (y, Φ1..ΦK) packed flat (see _offsets)."""
    y = st[offs[0]:offs[1]]
    _builtin_derivs(y, params, min(K, nz), F, D1, D2, D3, D4)
    for i in range(n):
        out[i] = g * F[i]
    if K == 0:
        return
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

@njit(**_NJ)
def _transport(params, n, K, nz, kinds, pprm, kc, st0, rtol, atol, max_nfev,
               F, D1, D2, D3, D4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S, tab):
    """Integrate the packed jet state along the encoded path with DOP853.

    Returns (state, nfev, n_accepted, n_rejected, status); status 0 success,
    1 evaluation budget exhausted, 2 non-finite state, 3 step size underflow.
    """
    _RK_A, _RK_B, _RK_C, _RK_E3, _RK_E5 = tab     # passed in: global arrays defeat the cache
    N = st0.size
    offs = np.empty(K + 2, np.int64)
    offs[0] = 0
    for j in range(K + 1):
        offs[j + 1] = offs[j] + n ** (j + 1)
    y = st0.copy()
    Ks = np.zeros((_NS + 1, N), np.complex128)
    ynew = np.empty(N, np.complex128)
    ytmp = np.empty(N, np.complex128)
    f = np.empty(N, np.complex128)
    nfev = 0
    nacc = 0
    nrej = 0
    h = 0.0
    for piece in range(kinds.size):
        kind = kinds[piece]
        prm = pprm[piece]
        s = 0.0
        _jet_rhs(params, n, K, nz, offs, y, _g_factor(kind, prm, 0.0, kc), f,
                 F, D1, D2, D3, D4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S)
        nfev += 1
        if h == 0.0:
            # initial step (Hairer's heuristic, as in scipy's select_initial_step)
            d0 = 0.0
            d1 = 0.0
            for i in range(N):
                sc = atol + rtol * abs(y[i])
                d0 += (abs(y[i]) / sc) ** 2
                d1 += (abs(f[i]) / sc) ** 2
            d0 = math.sqrt(d0 / N)
            d1 = math.sqrt(d1 / N)
            h = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
            h = min(h, 0.1)
        while s < 1.0:
            if nfev > max_nfev:
                return y, nfev, nacc, nrej, 1
            if h < 1e-14:
                return y, nfev, nacc, nrej, 3
            last = False
            if s + h >= 1.0:
                h = 1.0 - s
                last = True
            Ks[0, :] = f
            for stg in range(1, _NS):
                for i in range(N):
                    acc = 0j
                    for m in range(stg):
                        acc += _RK_A[stg, m] * Ks[m, i]
                    ytmp[i] = y[i] + h * acc
                _jet_rhs(params, n, K, nz, offs, ytmp,
                         _g_factor(kind, prm, s + _RK_C[stg] * h, kc), Ks[stg],
                         F, D1, D2, D3, D4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S)
            for i in range(N):
                acc = 0j
                for m in range(_NS):
                    acc += _RK_B[m] * Ks[m, i]
                ynew[i] = y[i] + h * acc
            snew = 1.0 if last else s + h
            _jet_rhs(params, n, K, nz, offs, ynew, _g_factor(kind, prm, snew, kc),
                     Ks[_NS], F, D1, D2, D3, D4, P1, P2, P3, P4, O1, O2, O3, O4, T, U1, U2, S)
            nfev += _NS
            e5 = 0.0
            e3 = 0.0
            finite = True
            for i in range(N):
                sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
                a5 = 0j
                a3 = 0j
                for m in range(_NS + 1):
                    a5 += _RK_E5[m] * Ks[m, i]
                    a3 += _RK_E3[m] * Ks[m, i]
                e5 += (abs(a5) / sc) ** 2
                e3 += (abs(a3) / sc) ** 2
                if not (math.isfinite(ynew[i].real) and math.isfinite(ynew[i].imag)):
                    finite = False
            if not finite:
                err = math.inf
            elif e5 == 0.0 and e3 == 0.0:
                err = 0.0
            else:
                err = h * e5 / math.sqrt((e5 + 0.01 * e3) * N)
            if err <= 1.0:
                s = snew
                y[:] = ynew
                f[:] = Ks[_NS]
                nacc += 1
                fac = 10.0 if err == 0.0 else min(10.0, 0.9 * err ** (-1.0 / 8.0))
                if not last:
                    h *= fac
            else:
                nrej += 1
                if not finite and h < 1e-10:
                    return y, nfev, nacc, nrej, 2
                h *= 0.2 if not finite else max(0.2, 0.9 * err ** (-1.0 / 8.0))
    return y, nfev, nacc, nrej, 0


_USER_KERNELS = {}


def _kernel_for(system):
    """The compiled transport for a system: the disk-cached one for the built-in fields; for a
    user's derivative function, the same source compiled with that function in place of
    ``_builtin_derivs`` (a global, not an argument: function-typed arguments and closures
    over dispatchers defeat Numba's on-disk cache)."""
    if system.builtin is not None:
        return _transport
    key = id(system.derivs)
    if key not in _USER_KERNELS:
        import inspect
        src = inspect.getsource(_jet_rhs.py_func) + "\n\n" + inspect.getsource(_transport.py_func)
        src = src.replace("@njit(**_NJ)", "@njit(cache=False, error_model='numpy', nogil=True)")
        ns = dict(globals())
        ns["_builtin_derivs"] = system.derivs
        exec(compile(src, f"<jet kernels for {system.name}>", "exec"), ns)
        _USER_KERNELS[key] = (system.derivs, ns["_transport"])
    return _USER_KERNELS[key][1]


@dataclass
class JetSystem:
    """A vector field for jet transport.

    derivs: Numba function (see the module docstring); params: float64 (q,) run-time
    numbers for it; n: dimension; nz: highest non-zero derivative order of F (e.g. 2 for
    a quadratic field; use MAX_ORDER when unsure); max_order: the highest jet order the
    derivatives support (``nz`` suffices for polynomial fields: then any order up to 4);
    koenigs_c: None for time paths; a complex c for z-plane paths, dy/dz = F(y)/(c z);
    name: for reports.
    """

    derivs: object
    params: np.ndarray
    n: int
    nz: int = MAX_ORDER
    max_order: int = MAX_ORDER
    koenigs_c: complex | None = None
    name: str = "field"
    builtin: int | None = None      # 0 Hénon–Heiles, 1 network: the disk-cached compiled path

    def __post_init__(self):
        self.params = np.ascontiguousarray(np.asarray(self.params, dtype=np.float64).ravel())
        if int(self.n) < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        self.n = int(self.n)

    def in_koenigs_mode(self, c) -> "JetSystem":
        """The same field with paths read in the Koenigs plane z = e^{c t}."""
        return JetSystem(self.derivs, self.params, self.n, self.nz, self.max_order, complex(c),
                         f"{self.name} (z = exp({complex(c):.6g} t))", self.builtin)

    def evaluate(self, y, order=1):
        """(F, DF, D2F, ...) at complex y (n,): numpy arrays, up to ``order``."""
        y = np.ascontiguousarray(np.asarray(y, dtype=np.complex128))
        n = self.n
        arrs = [np.zeros(n, np.complex128)] + [np.zeros(s, np.complex128) for s in _shapes(n, order)]
        self.derivs(y, self.params, min(order, self.nz), *arrs)
        return tuple(arrs[: order + 1])


def henon_heiles_system(eps, ratio=1.0) -> JetSystem:
    """JetSystem of H = (p1²+p2²)/2 + (ratio q1² + q2²)/2 + q1² q2 + (eps/3) q2³."""
    return JetSystem(henon_heiles_derivs, np.array([float(ratio), 1.0, float(eps)]), 4, nz=2,
                     max_order=MAX_ORDER, name=f"Hénon–Heiles(eps={eps:g}, A/B={ratio:g})", builtin=0)


# ---------------------------------------------------------------------------------------
# one transport, from Python
# ---------------------------------------------------------------------------------------

_STATUS = {0: "success", 1: "evaluation budget exhausted", 2: "non-finite state",
           3: "step size underflow"}


def _check_order(order, system=None):
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an integer, got {type(order).__name__}")
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be in 1..{MAX_ORDER}, got {order}")
    if system is not None and order > system.max_order:
        raise ValueError(f"order {order} exceeds what {system.name} supports ({system.max_order})")
    return int(order)


def transport_jet(system: JetSystem, y0, path, order=3, rtol=1e-12, atol=1e-14,
                  max_nfev=2_000_000):
    """Integrate the k-jet of the flow map from ``y0`` along ``path``.

    Returns ``(tensors, info)``: tensors = [Φ_0 (n,), Φ_1 (n,n), ..., Φ_k], complex128;
    info = dict(nfev, accepted, rejected, status, seconds).
    """
    order = _check_order(order, system)
    path = as_path(path)
    n = system.n
    y0 = np.ascontiguousarray(np.asarray(y0, dtype=np.complex128).ravel())
    if y0.shape != (n,):
        raise ValueError(f"y0 must have shape ({n},), got {y0.shape}")
    kinds, pprm, _ = path.encode()
    offs = _offsets(n, order)
    st0 = np.zeros(offs[-1], np.complex128)
    st0[:n] = y0
    st0[offs[1]:offs[2]] = np.eye(n).ravel()
    shp = _shapes(n, order)
    Dk = [np.zeros(s, np.complex128) for s in shp]
    Pk = [np.zeros(s, np.complex128) for s in shp]
    Ok = [np.zeros(s, np.complex128) for s in shp]
    T, U1, U2, S = _work(n, order)
    kc = 0j if system.koenigs_c is None else complex(system.koenigs_c)
    t0 = time.perf_counter()
    args = (n, order, int(system.nz), kinds, np.ascontiguousarray(pprm), kc, st0, float(rtol),
            float(atol), int(max_nfev), np.zeros(n, np.complex128), *Dk, *Pk, *Ok, T, U1, U2, S,
            _TABLEAU)
    params = (np.concatenate([[float(system.builtin)], system.params])
              if system.builtin is not None else system.params)
    st, nfev, nacc, nrej, status = _kernel_for(system)(params, *args)
    secs = time.perf_counter() - t0
    tensors = [st[offs[j]:offs[j + 1]].reshape((n,) * (j + 1)).copy() for j in range(order + 1)]
    return tensors, dict(nfev=int(nfev), accepted=int(nacc), rejected=int(nrej),
                         status=_STATUS[int(status)], seconds=secs)


# ---------------------------------------------------------------------------------------
# jet algebra: composition and inversion of truncated maps (with their float64 caveat)
# ---------------------------------------------------------------------------------------

def _as_tensors(jet_or_list):
    return list(jet_or_list.tensors) if isinstance(jet_or_list, Jet) else list(jet_or_list)


def compose(outer, inner):
    """Derivative tensors of ``outer ∘ inner`` (orders 1..k, Φ_0 = outer's end point).

    outer, inner: Jets or lists [Φ_0, Φ_1, ..., Φ_k] of the same order and dimension;
    the composition assumes inner's end point is outer's base point (closed loops).
    Caveat (docs/math.md §5.6): composing jets with large entries in float64 loses the digits of
    small higher-order parts; to compare loop products use loops integrated as one path.
    """
    G = _as_tensors(outer)
    P = _as_tensors(inner)
    if len(G) != len(P) or G[0].shape != P[0].shape:
        raise ValueError("outer and inner must have the same order and dimension")
    n = G[0].shape[0]
    K = len(G) - 1
    shp = _shapes(n, K)
    pad = lambda L: [np.ascontiguousarray(L[j], np.complex128) if j <= K else np.zeros(shp[j - 1], np.complex128)
                     for j in range(1, 5)]
    O = [np.zeros(s, np.complex128) for s in shp]
    _chain(n, K, MAX_ORDER, *pad(G), *pad(P), *O, *_work(n, K))
    return [G[0].copy()] + [O[j] for j in range(K)]


def inverse(jet):
    """Derivative tensors of the inverse map (orders 1..k), base and end point swapped.

    Solved order by order from ``jet ∘ inverse = id``: Ψ_1 = Φ_1⁻¹ and
    Ψ_j = −Φ_1⁻¹ [(Φ ∘ Ψ)_j with Ψ_j = 0]. Same float64 caveat as :func:`compose`.
    """
    F = _as_tensors(jet)
    n = F[0].shape[0]
    K = len(F) - 1
    Finv1 = np.linalg.inv(F[1])
    Psi = [F[0].copy(), Finv1] + [np.zeros((n,) * (j + 1), np.complex128) for j in range(2, K + 1)]
    for j in range(2, K + 1):
        Oj = compose(F, Psi)[j]          # Psi[j] is still zero here
        Psi[j] = -np.tensordot(Finv1, Oj, axes=(1, 0))
    return Psi


def _order_norms(tensors):
    """Frobenius norm of each order part; order 1 measured against the identity."""
    n = tensors[0].shape[0]
    out = [0.0, float(np.linalg.norm(tensors[1] - np.eye(n)))]
    out += [float(np.linalg.norm(t)) for t in tensors[2:]]
    return out


# ---------------------------------------------------------------------------------------
# verified loop jets
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deviation:
    """A measured non-negative figure with its error estimate.

    value: the figure (e.g. ‖order-k part of a commutator‖); error: its error estimate
    (max of the two-tolerance difference, the loop-deformation change and a round-off
    floor); margin = value / error (inf when error is 0).
    """

    order: int
    value: float
    error: float

    @property
    def margin(self) -> float:
        return math.inf if self.error == 0 else self.value / self.error

    def significant(self, factor=100.0) -> bool:
        """True when value > factor * error (the project's 100x rule)."""
        return self.value > factor * self.error

    def __str__(self):
        return f"order {self.order}: {self.value:.6g} ± {self.error:.2g} (margin {self.margin:.3g})"


def _closure(defect_tight, defect_loose, scale, closure_tol):
    """Closed: small defect that shrinks with the tolerance (or sits at round-off)."""
    floor = 1e-12 * scale
    small = defect_tight <= closure_tol * scale
    shrinks = defect_tight <= 0.5 * defect_loose or defect_tight <= floor
    return bool(small and shrinks)


class Jet:
    """The k-jet of the flow map along one path, with its verification figures.

    Attributes: ``tensors`` [Φ_0 (n,), Φ_1 (n,n), ..., Φ_k] at the tight tolerance;
    ``order``; ``n``; ``path`` (Path, in time or, in Koenigs mode, in the z-plane);
    ``system`` (JetSystem); ``y0`` (n,); ``error`` (per order: norm of the difference
    between the tight and loose tolerances, and the deformed loop); ``tol_difference``,
    ``deformation_change`` (per order); ``closure_defect`` (tight, loose);
    ``closed`` (bool, verified); ``deformation_ok``; ``verified`` (closed, finished,
    deformation-stable); ``nfev``; ``seconds``; ``status``.
    """

    def __init__(self, system, y0, path, order, rtol, loose_factor, atol_factor,
                 deformation, closure_tol, max_nfev, verify=True):
        self.system = system
        self.y0 = np.asarray(y0, np.complex128).ravel()
        self.path = as_path(path)
        self.order = order
        self.rtol = rtol
        self._kw = dict(rtol=rtol, loose_factor=loose_factor, atol_factor=atol_factor,
                        deformation=deformation, closure_tol=closure_tol, max_nfev=max_nfev)
        t0 = time.perf_counter()
        self.tensors, info = transport_jet(system, self.y0, self.path, order, rtol,
                                           rtol * atol_factor, max_nfev)
        self.status = info["status"]
        self.nfev = info["nfev"]
        scale = 1.0 + float(np.max(np.abs(self.y0)))
        self.n = system.n
        if verify:
            loose, info2 = transport_jet(system, self.y0, self.path, order, rtol * loose_factor,
                                         rtol * loose_factor * atol_factor, max_nfev)
            self.nfev += info2["nfev"]
            self.tol_difference = [float(np.linalg.norm(a - b)) for a, b in zip(self.tensors, loose)]
            d_t = float(np.linalg.norm(self.tensors[0] - self.y0))
            d_l = float(np.linalg.norm(loose[0] - self.y0))
            self.closure_defect = (d_t, d_l)
            self.closed = _closure(d_t, d_l, scale, closure_tol)
            if deformation:
                deformed, info3 = transport_jet(system, self.y0, self.path.deformed(deformation),
                                                order, rtol, rtol * atol_factor, max_nfev)
                self.nfev += info3["nfev"]
                self.deformation_change = [float(np.linalg.norm(a - b))
                                           for a, b in zip(self.tensors, deformed)]
                ok3 = info3["status"] == "success"
            else:
                self.deformation_change = [0.0] * (order + 1)
                ok3 = True
            self.status_loose = info2["status"]
            finished = self.status == "success" and info2["status"] == "success" and ok3
        else:
            self.tol_difference = [math.nan] * (order + 1)
            self.deformation_change = [math.nan] * (order + 1)
            self.closure_defect = (float(np.linalg.norm(self.tensors[0] - self.y0)), math.nan)
            self.closed = False
            finished = self.status == "success"
        # round-off floor: a few ulps of the largest entries met in the tensors
        self.roundoff = [64 * np.finfo(float).eps * (1.0 + float(np.max(np.abs(t))))
                         for t in self.tensors]
        self.error = [max(a, b, c) for a, b, c in
                      zip(self.tol_difference, self.deformation_change, self.roundoff)]
        # the deformed loop must give the same jet: within 1e-6 relative, or within 10x the
        # two-tolerance difference (parts that are zero within error are pure noise)
        self.deformation_ok = bool(verify and all(
            dc <= max(1e-6 * (1.0 + float(np.linalg.norm(t))), 10 * td)
            for dc, td, t in zip(self.deformation_change, self.tol_difference, self.tensors)))
        self.finished = bool(finished)
        self.verified = bool(verify and self.closed and self.finished and self.deformation_ok)
        self.seconds = time.perf_counter() - t0

    # -- views ---------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """Φ_1 (n, n): the monodromy matrix of the first VE."""
        return self.tensors[1]

    def part(self, order) -> np.ndarray:
        """Φ_order, the order-``order`` derivative tensor, shape (n,)*(order+1)."""
        if not 0 <= order <= self.order:
            raise ValueError(f"order must be in 0..{self.order}, got {order}")
        return self.tensors[order]

    def deviation(self, order) -> Deviation:
        """‖order-``order`` part − identity's‖ with its error (order 0: closure defect)."""
        if not 0 <= order <= self.order:
            raise ValueError(f"order must be in 0..{self.order}, got {order}")
        if order == 0:
            return Deviation(0, self.closure_defect[0], abs(self.closure_defect[0] - self.closure_defect[1])
                             if not math.isnan(self.closure_defect[1]) else math.nan)
        return Deviation(order, _order_norms(self.tensors)[order], self.error[order])

    def __call__(self, delta):
        """The Taylor polynomial: φ(y0 + δ) ≈ Σ_j Φ_j(δ, ..., δ)/j!, δ complex (n,)."""
        d = np.asarray(delta, np.complex128)
        out = self.tensors[0].copy()
        for j in range(1, self.order + 1):
            t = self.tensors[j]
            for _ in range(j):
                t = t @ d
            out += t / math.factorial(j)
        return out

    @property
    def unipotent(self) -> bool | None:
        """Whether Φ_1 is unipotent (all eigenvalues 1), decided with margin; None if undecided."""
        return _unipotent(self.matrix, self.error[1])[0]

    def power(self, q: int) -> "Jet":
        """The jet along the path travelled q times (time paths are translated end to start)."""
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
            raise ValueError(f"q must be a positive integer, got {q!r}")
        return Jet(self.system, self.y0, _concat([self.path] * int(q), self.system), self.order,
                   **self._kw)

    def __repr__(self):
        return (f"Jet(order={self.order}, n={self.n}, path={self.path!r}, closed={self.closed}, "
                f"verified={self.verified}, nfev={self.nfev})")


def _unipotent(M, err):
    """(decision, distance): eigenvalues all 1 ⇔ char. poly. = (λ−1)^n, compared coefficient-wise.

    Coefficients of the characteristic polynomial are well conditioned where the
    eigenvalues of a Jordan block are not (they scatter like ε^{1/n}).
    """
    n = M.shape[0]
    c = np.poly(M)
    ref = np.poly(np.ones(n))
    scale = 1.0 + np.linalg.norm(M)
    dist = max(abs(c[j] - ref[j]) / scale ** j for j in range(1, n + 1))
    tol = max(1e-9, 100 * err / scale)
    if dist <= tol:
        return True, dist
    if dist > 100 * tol:
        return False, dist
    return None, dist


def _concat(paths, system):
    """Join paths end to start: in time mode (autonomous field) by translating each path;
    in Koenigs mode the paths are closed loops at the same base point and are joined as they are."""
    out = []
    cur = None
    for p in paths:
        p = as_path(p)
        if system.koenigs_c is None:
            if cur is not None:
                p = p.transformed(1.0, cur - p.start)
        elif cur is not None and abs(p.start - cur) > 1e-9 * max(1.0, abs(cur)):
            raise ValueError("in Koenigs mode the loops must start where the previous one ends")
        out.append(p)
        cur = p.end
    return Path(out)


def _network_jet_system(flow):
    """The JetSystem of a gradient flow: analytic derivatives from narrowflow.derivatives
    (jet orders <= 3)."""
    _dv._check_flow(flow)
    return JetSystem(_net_derivs, _dv.pack_params(flow), flow.n_params, nz=3,
                     max_order=_dv.MAX_ORDER,
                     name=f"gradient flow of {flow.network!r} on {flow.data!r}", builtin=1)


def _parse_system(field, derivatives, params, n, nz, max_order):
    if isinstance(field, JetSystem):
        return field
    if derivatives is not None:
        if n is None:
            raise ValueError("n (the dimension) is required with derivatives=")
        return JetSystem(derivatives, np.zeros(1) if params is None else params, n,
                         nz=MAX_ORDER if nz is None else nz,
                         max_order=MAX_ORDER if max_order is None else max_order)
    # a GradientFlow: analytic derivatives from narrowflow.derivatives
    if hasattr(field, "network") and hasattr(field, "data"):
        return _network_jet_system(field)
    if all(hasattr(field, a) for a in ("eps", "ratio")):
        return henon_heiles_system(field.eps, field.ratio)
    raise TypeError("field must be a JetSystem, a GradientFlow, a Hénon–Heiles system, or a "
                    "callable together with derivatives= (a Numba derivative function)")


def jet_monodromy(field, y0, paths, order=3, *, derivatives=None, params=None, n=None, nz=None,
                  max_order=None, koenigs_c=None, rtol=1e-12, loose_factor=100.0,
                  atol_factor=1e-2, deformation=0.03, closure_tol=1e-8, max_nfev=2_000_000,
                  verify=True):
    """k-jets of the flow map of ``field`` from ``y0`` along each of ``paths``.

    field: a ``GradientFlow`` (analytic derivatives from :mod:`narrowflow.derivatives`), a
        Hénon–Heiles system, a :class:`JetSystem`, or any object with ``derivatives=`` a
        Numba function ``derivs(y, params, order, F, DF, D2F, D3F, D4F)`` (module docstring;
        then also ``n`` and optionally ``params``, ``nz``, ``max_order``).
    y0: complex (n,) base point. paths: sequence of paths (Path objects or sequences of
        complex numbers = polylines), times (or z-plane points with ``koenigs_c``): a path
        may be open in time but must close on the curve (e.g. ``[0, T]`` for a period).
    order: jet order k (1..4; networks: up to 3). koenigs_c: read paths in the plane
        z = e^{c t} (dy/dz = F(y)/(c z)).
    rtol: tight relative tolerance; the loose one is ``rtol * loose_factor``; atol =
        rtol * atol_factor. deformation: relative size of the loop deformation (0: none).
    Returns a list of :class:`Jet` (one per path), each with ``.verified``.
    """
    system = _parse_system(field, derivatives, params, n, nz, max_order)
    if koenigs_c is not None:
        system = system.in_koenigs_mode(koenigs_c)
    order = _check_order(order, system)
    for name, v in (("rtol", rtol), ("loose_factor", loose_factor), ("atol_factor", atol_factor)):
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if isinstance(paths, (Path, str)) or not hasattr(paths, "__iter__"):
        raise TypeError("paths must be a sequence of paths (wrap a single path in a list)")
    kw = dict(rtol=float(rtol), loose_factor=float(loose_factor), atol_factor=float(atol_factor),
              deformation=float(deformation), closure_tol=float(closure_tol),
              max_nfev=int(max_nfev), verify=bool(verify))
    return [Jet(system, y0, as_path(p), order, **kw) for p in paths]


# ---------------------------------------------------------------------------------------
# commutators and the verdict
# ---------------------------------------------------------------------------------------

NON_ABELIAN = "G⁰(VE_{k}) non-abelian ⇒ not integrable"
NO_CONCLUSION = "no conclusion at order {k}"


def _one_jet_group(jets, d1):
    """Is the Zariski closure of the group generated by the 1-jets connected?

    Then every generator lies in G⁰(VE_k) (the kernel of VE_k -> VE_1 is unipotent, hence
    connected), so non-commuting k-jets prove G⁰(VE_k) non-abelian. Certified cases:
    all 1-jets unipotent; or commuting 1-jets whose non-unit eigenvalues form one pair
    {λ, 1/λ} on a common 2-D subspace with some |λ| ≠ 1 beyond error (an infinite
    subgroup of C* is Zariski dense, so the semisimple parts fill a 1-D torus).
    Returns (connected: bool, reason: str).
    """
    decisions = [_unipotent(J.matrix, J.error[1]) for J in jets]
    if all(d[0] is True for d in decisions):
        return True, "all 1-jets unipotent"
    if not d1.value <= max(100 * d1.error, 1e-9):
        return False, "the 1-jets do not commute within error (a first-order question)"
    vecs = []
    infinite = False
    for J, (dec, _) in zip(jets, decisions):
        if dec is True:
            continue
        w, V = np.linalg.eig(J.matrix)
        tol = max(1e-4, 1e3 * math.sqrt(J.error[1] + 1e-16))
        idx = [i for i in range(len(w)) if abs(w[i] - 1) > tol]
        if len(idx) != 2 or abs(w[idx[0]] * w[idx[1]] - 1) > tol:
            return False, ("a 1-jet has non-unit eigenvalues other than one pair {λ, 1/λ}: "
                           "connectedness of the 1-jet group not certified")
        lam = w[idx[0]]
        if abs(math.log(abs(lam))) > 100 * tol:
            infinite = True
        vecs.append(V[:, idx])
    V = np.hstack(vecs)
    sv = np.linalg.svd(V / np.linalg.norm(V, axis=0), compute_uv=False)
    if len(sv) > 2 and sv[2] > 1e-6 * sv[0]:
        return False, "the non-unipotent parts of the 1-jets do not share one 2-D subspace"
    if not infinite:
        return False, ("1-jet eigenvalues on the unit circle (possibly roots of unity): "
                       "connectedness of the 1-jet group not certified")
    return True, "1-jets commute; semisimple parts fill a 1-D torus (|λ| ≠ 1)"


class JetCommutator:
    """The commutator of two loop jets, integrated along the loop γ1 γ2 γ1⁻¹ γ2⁻¹.

    Built by :func:`jet_commutator`. ``loop_jet`` is the Jet along the commutator loop
    (two tolerances, deformation, closure); ``deviation(order)`` the norm of its
    order-``order`` part minus the identity's, with error; ``verdict(order)`` the
    decision; ``str()`` a readable report with every figure.
    """

    def __init__(self, J1: Jet, J2: Jet):
        if not isinstance(J1, Jet) or not isinstance(J2, Jet):
            raise TypeError("J1 and J2 must be Jet objects (from jet_monodromy)")
        if J1.system is not J2.system and not (
                J1.system.derivs is J2.system.derivs and np.array_equal(J1.system.params, J2.system.params)
                and J1.system.koenigs_c == J2.system.koenigs_c):
            raise ValueError("J1 and J2 belong to different systems")
        if J1.order != J2.order:
            raise ValueError(f"J1 and J2 have different orders ({J1.order}, {J2.order})")
        if not np.allclose(J1.y0, J2.y0, rtol=1e-12, atol=1e-12):
            raise ValueError("J1 and J2 start from different base points")
        self.J1, self.J2 = J1, J2
        self.order = J1.order
        self.system = J1.system
        p1, p2 = J1.path, J2.path
        self.loop = _concat([p1, p2, p1.reversed(), p2.reversed()], self.system)
        self.loop_jet = Jet(self.system, J1.y0, self.loop, self.order, **J1._kw)
        # error terms beyond the integration at this base point (per order 0..k), e.g. the
        # base-point placement (koenigs.saddle_unstable_check); added to deviation().error
        self.extra_error = [0.0] * (self.order + 1)
        self.extra_error_note = ""

    @property
    def verified(self) -> bool:
        """Both generator loops and the commutator loop passed every check."""
        return bool(self.J1.verified and self.J2.verified and self.loop_jet.verified)

    def deviation(self, order=None) -> Deviation:
        """‖order part of the commutator − identity‖ with .value, .error (order 1..k)."""
        order = self.order if order is None else order
        if not 1 <= order <= self.order:
            raise ValueError(f"order must be in 1..{self.order}, got {order}")
        d = self.loop_jet.deviation(order)
        extra = self.extra_error[order]
        return d if not extra else Deviation(order, d.value, d.error + extra)

    def integration_deviation(self, order=None) -> Deviation:
        """deviation(order) with the integration error only (no ``extra_error``)."""
        order = self.order if order is None else order
        return self.loop_jet.deviation(order)

    def one_jet_group(self):
        """(connected: bool, reason): see :func:`_one_jet_group`."""
        return _one_jet_group([self.J1, self.J2], self.deviation(1))

    def verdict(self, order=None) -> str:
        """NON_ABELIAN at the lowest order j <= order whose commutator part exceeds 100x
        its error, when all loops are verified and the 1-jet group is connected;
        otherwise NO_CONCLUSION at ``order``."""
        order = self.order if order is None else order
        return self._decide(order)[0]

    def _decide(self, order):
        if not 1 <= order <= self.order:
            raise ValueError(f"order must be in 1..{self.order}, got {order}")
        nc = NO_CONCLUSION.format(k=order)
        if not self.verified:
            bad = [name for name, J in (("γ1", self.J1), ("γ2", self.J2),
                                        ("commutator loop", self.loop_jet)) if not J.verified]
            return nc, f"loop(s) not verified: {', '.join(bad)}"
        connected, why = self.one_jet_group()
        if not connected:
            return nc, why
        for j in range(1, order + 1):
            d = self.deviation(j)
            if d.significant(100.0):
                return NON_ABELIAN.format(k=j), f"{why}; commutator {d}"
        return nc, f"{why}; commutator zero within 100x error at orders 1..{order}"

    def __str__(self):
        lines = [f"Jet commutator on {self.system.name}, order {self.order}",
                 f"  base point y0 = {np.array2string(self.J1.y0, precision=6)}"]
        for name, J in (("γ1", self.J1), ("γ2", self.J2), ("γ1γ2γ1⁻¹γ2⁻¹", self.loop_jet)):
            lines.append(
                f"  {name}: {J.path!r}\n      closure defect {J.closure_defect[0]:.2e} "
                f"(loose tol {J.closure_defect[1]:.2e}), closed={J.closed}, "
                f"deformation stable={J.deformation_ok}, verified={J.verified}, nfev={J.nfev}")
        for J, name in ((self.J1, "γ1"), (self.J2, "γ2")):
            u, dist = _unipotent(J.matrix, J.error[1])
            lines.append(f"  1-jet of {name}: unipotent={u} (char. poly distance {dist:.1e})")
        for j in range(1, self.order + 1):
            lines.append(f"  commutator − id, {self.deviation(j)}")
        verdict, why = self._decide(self.order)
        lines.append(f"  verdict: {verdict}\n    ({why})")
        return "\n".join(lines)

    __repr__ = __str__


def jet_commutator(J1: Jet, J2: Jet) -> JetCommutator:
    """The commutator of two loop jets, integrated along γ1 γ2 γ1⁻¹ γ2⁻¹ (not composed).

    J1, J2: Jets of the same system, order and base point (from :func:`jet_monodromy`).
    ``jet_commutator(J1, J2).deviation(3)`` has ``.value`` and ``.error``.
    """
    return JetCommutator(J1, J2)


def henon_heiles_period_jets(hh, order=3, **kw):
    """(J_R, J_I): jets along the real period [0, T_real] and the imaginary period
    [0, i T_imag] of the Hénon–Heiles plane solution from its turning point ``hh.y0``.

    hh: an object with ``eps``, ``ratio``, ``y0`` (4,), ``T_real``, ``T_imag`` (e.g.
    ``narrowflow.monodromy.henon_heiles(...)``); kw: passed to :func:`jet_monodromy`.
    """
    for a in ("eps", "ratio", "y0", "T_real", "T_imag"):
        if not hasattr(hh, a):
            raise TypeError(f"hh must be a Hénon–Heiles system (missing attribute {a!r})")
    system = henon_heiles_system(hh.eps, hh.ratio)
    T1 = complex(hh.T_real)
    # T_imag: the imaginary period itself (purely imaginary) or its modulus (real)
    T2 = complex(hh.T_imag) if complex(hh.T_imag).imag != 0 else 1j * complex(hh.T_imag).real
    return tuple(jet_monodromy(system, hh.y0, [[0.0, T1], [0.0, T2]], order=order, **kw))
