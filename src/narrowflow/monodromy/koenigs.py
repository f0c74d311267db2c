"""Koenigs/Poincaré parametrization of the 1-D unstable manifold of a hyperbolic saddle,
and the higher-order variational test along loops in its z-plane (docs/math.md §6).

Let θ0 be a saddle of F = −∇L with a simple (within an invariant subspace) unstable
eigenvalue c > 0, eigenvector v. The unstable manifold is Θ(z) = Σ θ_k z^k, z = e^{ct}
(the Koenigs coordinate), the solution of the invariance equation

    c z Θ'(z) = F(Θ(z)),   Θ(0) = θ0,   Θ'(0) = v,

computed by the parameterization method: order by order, (k c I − DF(θ0)) θ_k = R_k,
where R_k is the order-k coefficient of F(Θ) with θ_k = 0 (non-resonant: k c is not an
eigenvalue of DF(θ0) for k >= 2, checked). F(Θ(z)) is evaluated in truncated power-series
arithmetic (online Taylor recurrences for tanh, sigmoid, softplus, silu, gelu_tanh,
quadratic, linear: narrowflow.series, the implementation the Taylor integrator uses too),
O(N²) per series, Numba-compiled.

In the z-plane, a loop around z = 0 is the time shift t -> t + 2πi/c; loops around the
series' singularities (branch points where the curve meets a singularity of F) close on
the curve only after some number of turns, which is verified, never assumed. Jets of the
flow map along such loops are transported with dy/dz = F(y)/(c z)
(:mod:`narrowflow.monodromy.jets`, Koenigs mode).
"""
from __future__ import annotations

import cmath
import math
import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from narrowflow import jit as _jit
from narrowflow import series as _series
from narrowflow.derivatives import architecture as _architecture
from narrowflow.rhs import HEADER as _HEADER

from .verify import JetVerdict

__all__ = ["KoenigsSeries", "koenigs_series", "saddle_unstable_check", "SaddleUnstableReport"]

_NJ = _jit.NOGIL


# ---------------------------------------------------------------------------------------
# F(Θ(z)) coefficient by coefficient: narrowflow.series (shared with the Taylor integrator),
# complex, one lane
# ---------------------------------------------------------------------------------------

@njit(**_NJ)
def _csoftplus(z):
    if z.real > 0:
        return z + cmath.log(1.0 + cmath.exp(-z))
    return cmath.log(1.0 + cmath.exp(z))


@njit(**_NJ)
def _field_coef(k, TH, params, W, out):
    """Coefficient k of F(Θ(z)) = −∇L(Θ(z)) into out (p,), updating the intermediate series.

    TH (p, N+1): coefficients of Θ (those <= k used); W: the intermediate series in
    narrowflow.series' wide layout (one lane: all data points in one vector, size from
    `_work_size`). params: ``narrowflow.derivatives.network_params``.
    """
    d, m, kk, bias, code = _architecture(params)
    n = int(params[0])
    lam = params[1]
    kappa = params[2]
    xo = _HEADER
    yo = _HEADER + n * d
    N1 = TH.shape[1]
    nbo, nbc, abo, abc, rbo, rbc, tmo, _ = _series.wide_layout(n, m, kk, code, 1, N1)
    th = TH.reshape(TH.size)
    _series.field_inputs(k, 1, d, m, kk, bias, n, params, xo, th, 0, N1, 1, W, nbo, nbc, abo, abc)
    if k == 0:
        mV = m * n
        _series.seed_args(code, mV, W, nbo)
        ts = _series.tanh_slot(code)
        for e in range(mV):
            if ts >= 0:
                W[nbo + ts * mV + e] = cmath.tanh(W[nbo + ts * mV + e])
            if code == 2:
                W[nbo + _series.S_U * mV + e] = _csoftplus(W[nbo + _series.S_Z * mV + e])
    _series.field_rest(k, 1, d, m, kk, bias, n, lam, kappa, code, params, xo, yo, th, 0, N1, 1,
                       W, nbo, nbc, abo, abc, rbo, rbc, tmo, out, 0, 1, 1.0)


@njit(**_NJ)
def _koenigs_coeffs(params, theta0, v, c, Minv, N):
    """θ_0..θ_N of the parameterization method. Minv (N+1, p, p): (k c I − A)⁻¹ for k >= 2.

    Returns TH (p, N+1) and the coefficient-k residual of the invariance equation after
    each solve (res (N+1,)), a check of the linear algebra.
    """
    p = theta0.size
    n = int(params[0])
    _, m, kk, _, code = _architecture(params)
    TH = np.zeros((p, N + 1), np.complex128)
    W = np.zeros(_series.wide_layout(n, m, kk, code, 1, N + 1)[7], np.complex128)
    out = np.zeros(p, np.complex128)
    res = np.zeros(N + 1)
    TH[:, 0] = theta0
    _field_coef(0, TH, params, W, out)
    res[0] = np.max(np.abs(out))               # F(θ0): the saddle's equilibrium residual
    if N >= 1:
        TH[:, 1] = v
        _field_coef(1, TH, params, W, out)
        res[1] = np.max(np.abs(c * v - out))
    for k in range(2, N + 1):
        TH[:, k] = 0.0
        _field_coef(k, TH, params, W, out)
        Mk = Minv[k]
        for q in range(p):
            acc = 0j
            for l in range(p):
                acc += Mk[q, l] * out[l]
            TH[q, k] = acc
        # second pass with the true θ_k: the intermediates' coefficient k
        _field_coef(k, TH, params, W, out)
        r = 0.0
        for q in range(p):
            r = max(r, abs(k * c * TH[q, k] - out[q]))
        res[k] = r
    return TH, res


# ---------------------------------------------------------------------------------------
# the series object
# ---------------------------------------------------------------------------------------

def _check_flow(flow):
    if not (hasattr(flow, "network") and hasattr(flow, "data") and hasattr(flow, "weight_decay")):
        raise TypeError(f"flow must be a GradientFlow, got {type(flow).__name__}")


@dataclass(frozen=True)
class Singularity:
    """An estimated singular point z of the series, with error estimate and method."""

    z: complex
    error: float
    method: str

    def __str__(self):
        return f"z* = {self.z:.8g} ± {self.error:.1e} ({self.method})"


class KoenigsSeries:
    """Θ(z) = Σ_{k<=N} θ_k z^k, the unstable manifold of the saddle ``theta0`` of ``flow``.

    Attributes: flow, theta0 (p,), c (unstable eigenvalue), v (θ_1), coeffs (N+1, p)
    complex, order N, step_residual (N+1,) (the linear solve's residual per order),
    seconds. z is the Koenigs coordinate z = e^{c t}; scaling v by s maps z -> z / s.
    """

    def __init__(self, flow, theta0, c, v, coeffs, step_residual, seconds):
        self.flow = flow
        self.theta0 = theta0
        self.c = c
        self.v = v
        self.coeffs = coeffs
        self.order = coeffs.shape[0] - 1
        self.step_residual = step_residual
        self.seconds = seconds

    # -- evaluation ------------------------------------------------------------------
    def __call__(self, z):
        """Θ(z): complex, shape z.shape + (p,)."""
        z = np.asarray(z, np.complex128)
        out = np.zeros(z.shape + (self.coeffs.shape[1],), np.complex128)
        for k in range(self.order, -1, -1):
            out = out * z[..., None] + self.coeffs[k]
        return out

    def derivative(self, z):
        """Θ'(z): complex, shape z.shape + (p,)."""
        z = np.asarray(z, np.complex128)
        out = np.zeros(z.shape + (self.coeffs.shape[1],), np.complex128)
        for k in range(self.order, 0, -1):
            out = out * z[..., None] + k * self.coeffs[k]
        return out

    def invariance_residual(self, radius, n_points=64):
        """max over |z| = radius of ‖c z Θ'(z) − F(Θ(z))‖_∞, relative to max ‖F(Θ)‖_∞ (float)."""
        zs = radius * np.exp(2j * np.pi * (np.arange(n_points) + 0.5) / n_points)
        worst = 0.0
        fmax = 0.0
        for z in zs:
            th = self(z)
            f = self.flow.field(th)
            worst = max(worst, float(np.max(np.abs(self.c * z * self.derivative(z) - f))))
            fmax = max(fmax, float(np.max(np.abs(f))))
        return worst / max(fmax, 1e-300)

    # -- singularities -----------------------------------------------------------------
    def _dominant(self):
        tail = np.abs(self.coeffs[self.order // 2:])
        return int(np.argmax(tail.max(axis=0)))

    def parity(self) -> int:
        """+1 (even: only even powers), -1 (odd), 0 (neither), for Θ − θ0."""
        a = np.abs(self.coeffs[1:])
        odd = a[0::2].max()
        even = a[1::2].max() if a.shape[0] > 1 else 0.0
        if even <= 1e-13 * odd:
            return -1
        if odd <= 1e-13 * even:
            return 1
        return 0

    def radius(self):
        """(R, error): radius of convergence from a root test (least squares of log|θ_k| over the
        second half of the coefficients; error: the difference between its two quarters)."""
        a = np.abs(self.coeffs).max(axis=1)
        N = self.order

        def fit(lo, hi):
            k = np.arange(lo, hi + 1)
            k = k[a[k] > 0]
            return float(np.exp(-np.polyfit(k, np.log(a[k]), 1)[0]))

        R = fit(N // 2, N)
        return R, abs(fit(N // 2, 3 * N // 4) - fit(3 * N // 4, N))

    def singularities(self):
        """Nearest singular points: Domb–Sykes (in z² for odd/even series, extrapolated in
        1/k) and linear prediction on the dominant component; list of Singularity."""
        comp = self.coeffs[:, self._dominant()]
        N = self.order
        out = []
        par = self.parity()
        if par != 0:
            b = comp[1::2] if par == -1 else comp[2::2]
            b = b[np.abs(b) > 0]
            j = np.arange(1, b.size)
            r = b[1:] / b[:-1]
            est = []
            for lo in (b.size // 4, b.size // 3, b.size // 2):
                sel = j > lo
                co = np.polyfit(1.0 / j[sel], r[sel], 2)
                est.append(co[-1])
            inv_z2 = est[-1]
            err_inv = max(abs(e - inv_z2) for e in est)
            z2 = 1.0 / inv_z2
            zs = np.sqrt(complex(z2))
            err = 0.5 * abs(zs) * err_inv / abs(inv_z2) + 1e-15
            for z in (zs, -zs):
                out.append(Singularity(complex(z), float(err), "Domb–Sykes in z², 1/k-extrapolated"))
        else:
            # linear prediction of order 2 (a conjugate pair or a single point), extrapolated in 1/K
            ests = []
            Ks = (N // 2, 3 * N // 4, N - 1)
            for K in Ks:
                ks = np.arange(K - 40, K)
                A = np.stack([comp[ks], comp[ks - 1]], axis=1)
                p1, p2 = np.linalg.lstsq(A, -comp[ks + 1], rcond=None)[0]
                roots = np.roots([1.0, p1, p2])
                roots = roots[np.argsort(-np.abs(roots))]
                ests.append(1.0 / roots)
            ests = np.array(ests)
            invK = 1.0 / np.array(Ks, float)
            for col in range(2):
                zc = ests[:, col]
                slope = (zc[-1] - zc[-2]) / (invK[-1] - invK[-2])
                z = zc[-1] - slope * invK[-1]
                out.append(Singularity(complex(z), float(abs(z - zc[-1]) + abs(zc[-1] - zc[-2])),
                                       "linear prediction, 1/K-extrapolated"))
        return sorted(out, key=lambda s: (abs(s.z), -s.z.imag))

    def pade_poles(self, m=8, component=None):
        """Poles of the [m/m] Padé approximant of one component, nearest first: complex array.

        For an odd (even) series the approximant is taken in u = z² for (Θ − θ0)/z (resp.
        Θ − θ0), so each pole u gives the pair ±√u. Coefficients are rescaled by the radius
        first (float64 Padé is ill-conditioned otherwise). Branch points show as the ends
        of lines of poles. Poles inside the disc of convergence are dropped (spurious); a
        small m (about 8) is the stable choice in float64.
        """
        from scipy.interpolate import pade
        comp = self.coeffs[:, self._dominant() if component is None else component].copy()
        comp[0] -= self.theta0[self._dominant() if component is None else component]
        R, _ = self.radius()
        par = self.parity()
        if par != 0:
            b = comp[1::2] if par == -1 else comp[0::2]
            scale2 = R * R
        else:
            b = comp
            scale2 = R
        b = b[: 2 * m + 1] * scale2 ** np.arange(min(2 * m + 1, b.size))
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, q = pade(b.real if np.all(b.imag == 0) else b, m)
        u = np.roots(q.coeffs) * scale2
        poles = np.concatenate([np.sqrt(u.astype(complex)), -np.sqrt(u.astype(complex))]) if par != 0 else u
        # the series converges for |z| < R: poles inside are spurious (round-off doublets)
        poles = poles[np.abs(poles) > 0.98 * R]
        return poles[np.argsort(np.abs(poles))]

    # -- continuation ------------------------------------------------------------------
    def continue_along(self, path, rtol=1e-12):
        """Θ at the end of a z-plane ``path`` by ODE continuation (dy/dz = F(y)/(c z)) from
        Θ(path.start) (which must lie inside the disc): complex (p,)."""
        from . import jets
        from .paths import as_path
        path = as_path(path)
        R, _ = self.radius()
        if abs(path.start) >= 0.9 * R:
            raise ValueError(f"the path must start inside the disc |z| < 0.9 R = {0.9 * R:.4g}")
        system = jets._parse_system(self.flow, None, None, None, None, None).in_koenigs_mode(self.c)
        tens, info = jets.transport_jet(system, self(path.start), path, order=1, rtol=rtol,
                                        atol=rtol * 1e-2)
        if info["status"] != "success":
            raise RuntimeError(f"continuation failed: {info['status']}")
        return tens[0]

    def __repr__(self):
        return (f"KoenigsSeries(order={self.order}, c={self.c:.8g}, "
                f"theta0={np.array2string(np.real_if_close(self.theta0), precision=4)})")


def _unstable_direction(A, tangent=None):
    """(c, v): the positive real eigenvalue of A (restricted to span(tangent) if given) that
    is simple there, and its unit eigenvector (sign: largest entry positive)."""
    if tangent is not None:
        Q = np.asarray(tangent, float)
        B = Q.T @ A @ Q
    else:
        Q = None
        B = A
    w, V = np.linalg.eig(B)
    pos = [i for i in range(len(w)) if w[i].real > 1e-10 and abs(w[i].imag) <= 1e-10 * abs(w[i])]
    if len(pos) != 1:
        raise ValueError(f"expected exactly one positive eigenvalue (a 1-D unstable manifold) "
                         f"{'in the subspace ' if Q is not None else ''}, got eigenvalues {w}")
    i = pos[0]
    c = float(w[i].real)
    v = np.real_if_close(V[:, i])
    v = np.asarray(v.real if np.iscomplexobj(v) and np.all(np.abs(v.imag) < 1e-12) else v)
    if Q is not None:
        v = Q @ v
    v = v / np.linalg.norm(v)
    if v[np.argmax(np.abs(v))].real < 0:
        v = -v
    return c, v


def koenigs_series(flow, saddle=None, order=400, eigenvector=None, subspace=None, scale=1.0):
    """The Koenigs/Poincaré series of the 1-D unstable manifold of a hyperbolic saddle.

    flow: GradientFlow. saddle: (p,) equilibrium (default: θ = 0, which is one for
    activations with σ(0) = 0 and no biases). order: N (>= 2). eigenvector: θ_1 (default:
    the unit eigenvector of the only positive eigenvalue of DF, within ``subspace`` if
    given: an InvariantSubspace such as ``model.Twin(net, 0, 1)`` or a (p, q) basis).
    scale: ‖θ_1‖ (z scales inversely). Returns a :class:`KoenigsSeries`.

    Parameters
    ----------
    flow : GradientFlow
        The flow.
    saddle : array_like of float, shape (p,), optional
        The equilibrium (default θ = 0).
    order : int, optional
        The series order N (>= 2).
    eigenvector : array_like of float, shape (p,), optional
        θ_1, an eigenvector of DF(saddle) with a positive eigenvalue.
    subspace : InvariantSubspace or ndarray of float64, shape (p, q), optional
        Where to look for the unstable direction.
    scale : float, optional
        ‖θ_1‖ (> 0).

    Returns
    -------
    KoenigsSeries
        The coefficients θ_k, k = 0..N, complex (N + 1, p).

    Raises
    ------
    TypeError
        If ``flow`` is not a GradientFlow or ``order`` is not an integer.
    ValueError
        If ``order`` < 2, a shape is wrong, ``saddle`` is not an equilibrium,
        ``eigenvector`` is not an unstable eigenvector, ``scale`` is not positive, or k·c
        is an eigenvalue of DF (resonance).
    """
    _check_flow(flow)
    from narrowflow import derivatives as dv
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an integer, got {type(order).__name__}")
    if order < 2:
        raise ValueError(f"order must be >= 2, got {order}")
    p = flow.n_params
    th0 = np.zeros(p) if saddle is None else np.asarray(saddle, dtype=float)
    if th0.shape != (p,):
        raise ValueError(f"saddle must have shape ({p},), got {th0.shape}")
    F, A = dv.derivatives(flow, th0, order=1)
    if np.max(np.abs(F)) > 1e-10 * (1 + np.max(np.abs(A))):
        raise ValueError(f"saddle is not an equilibrium: |F(saddle)| = {np.max(np.abs(F)):.2e}")
    if eigenvector is None:
        tangent = None
        if subspace is not None:
            tangent = subspace.tangent_basis() if hasattr(subspace, "tangent_basis") else subspace
        c, v = _unstable_direction(A, tangent)
    else:
        v = np.asarray(eigenvector, dtype=float)
        if v.shape != (p,):
            raise ValueError(f"eigenvector must have shape ({p},), got {v.shape}")
        Av = A @ v
        c = float(v @ Av / (v @ v))
        if np.linalg.norm(Av - c * v) > 1e-9 * np.linalg.norm(Av) or c <= 0:
            raise ValueError("eigenvector is not an eigenvector of DF(saddle) with a positive eigenvalue")
        v = v / np.linalg.norm(v)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    v = v * float(scale)
    ev = np.linalg.eigvals(A)
    Minv = np.zeros((order + 1, p, p), np.complex128)
    for k in range(2, order + 1):
        gap = np.min(np.abs(k * c - ev))
        if gap < 1e-8 * k * c:
            raise ValueError(f"resonance: {k}c is an eigenvalue of DF (gap {gap:.2e})")
        Minv[k] = np.linalg.inv(k * c * np.eye(p) - A)
    t0 = time.perf_counter()
    TH, res = _koenigs_coeffs(dv.network_params(flow), th0.astype(np.complex128),
                              v.astype(np.complex128), complex(c), Minv, int(order))
    secs = time.perf_counter() - t0
    return KoenigsSeries(flow, th0, c, v, TH.T.copy(), res, secs)


# ---------------------------------------------------------------------------------------
# loops in the z-plane and the verdict for networks
# ---------------------------------------------------------------------------------------

@dataclass
class LoopRecord:
    """One candidate loop: what it encircles, how many turns closed it, and its jet."""

    name: str
    around: complex | None
    radius: float
    turns: int | None
    path: object
    jet: object = None
    note: str = ""

    @property
    def verified(self) -> bool:
        return self.jet is not None and self.jet.verified


def _closing_turns(system, y0, z0, point, radii, max_turns, rtol):
    """Smallest (radius, turns) whose lasso from z0 around ``point`` closes on the curve:
    defect < 1e-8 at rtol (confirmed later at two tolerances). None if none does."""
    from . import jets
    from .paths import lasso
    scale = 1.0 + float(np.max(np.abs(y0)))
    tried = []
    for rho in radii:
        for q in range(1, max_turns + 1):
            path = lasso(z0, point, rho, turns=q)
            tens, info = jets.transport_jet(system, y0, path, order=1, rtol=rtol, atol=rtol * 1e-2,
                                            max_nfev=400_000)
            d = float(np.linalg.norm(tens[0] - y0))
            tried.append((rho, q, d, info["status"]))
            if info["status"] == "success" and d < 1e-8 * scale:
                return rho, q, tried
    return None, None, tried


def _coordinate_free(C, order):
    """The coordinate-free reading of a commutator's figures: the lowest order at which its
    jet differs from the identity's (that does not depend on the base point or coordinates;
    the norms do: moving the base point along the curve conjugates the jet)."""
    for k in range(1, order + 1):
        d = C.deviation(k)
        if d.significant(100.0):
            low = "Φ1 = I within error, " if k > 1 else ""
            return (f"coordinate-free: {low}Φ{k} {'≠ I' if k == 1 else '≠ 0'} (margin {d.margin:.3g}): "
                    f"the commutator is not the identity at order {k}; the norms above are "
                    f"at this base point, in θ coordinates")
    return (f"coordinate-free: the commutator's {order}-jet is the identity within error "
            f"(orders 1..{order} not significant)")


class SaddleUnstableReport:
    """Higher-order VE test along the unstable manifold of a saddle (``saddle_unstable_check``).

    Attributes: curve (str), series (KoenigsSeries), radius (R = nearest singularity, root-test
    error), root_test (R, err), singularities,
    residuals {radius: relative residual}, continuation_error, base (z0), loops
    (LoopRecord list; only verified ones enter), commutators {(i, j): JetCommutator},
    order, verdict (str), reason (str), seconds.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def deviations(self, order=None):
        """{(name_i, name_j): [Deviation for orders 1..order]} of the verified commutators."""
        order = self.order if order is None else order
        return {(self.loops[i].name, self.loops[j].name): [C.deviation(k) for k in range(1, order + 1)]
                for (i, j), C in self.commutators.items()}

    def __str__(self):
        S = self.series
        L = [f"Saddle-unstable check: {self.curve}",
             f"  flow: {S.flow!r}",
             f"  saddle θ0 = {np.array2string(np.real_if_close(S.theta0), precision=6)}, "
             f"unstable eigenvalue c = {S.c:.10g}, θ_1 = {np.array2string(np.real_if_close(S.v), precision=6)}",
             f"  Koenigs series: order {S.order} ({S.seconds:.3f} s), radius {self.radius[0]:.8g} "
             f"± {self.radius[1]:.1e} (nearest singularity; root test {self.root_test[0]:.4g} ± "
             f"{self.root_test[1]:.1e})"]
        Rs = getattr(self, "R_by_order", {})
        if len(Rs) > 1:
            L.append("    R by series order: " + ", ".join(f"N={k}: {v:.9g}" for k, v in sorted(Rs.items()))
                     + " (the ± above is the larger of this spread and the Domb–Sykes error)")
        for r, v in self.residuals.items():
            L.append(f"    invariance residual on |z| = {r:.4g}: {v:.2e} (relative)")
        L.append(f"    series vs ODE continuation at {self.continuation_point:.4g}: {self.continuation_error:.2e}")
        for s in self.singularities:
            L.append(f"    singularity {s}")
        frac = getattr(self, "base_fraction", None)
        L.append(f"  base point z0 = {self.base:.9g}"
                 + (f" = {frac:g} R, placed to ± {frac * self.radius[1]:.1e} by R's error"
                    if frac is not None else "") + " (Koenigs plane z = e^(c t))")
        for lp in self.loops:
            J = lp.jet
            if J is None:
                L.append(f"  loop {lp.name}: {lp.note}")
                continue
            L.append(f"  loop {lp.name}: turns={lp.turns}, radius={lp.radius:.3g}; closure defect "
                     f"{J.closure_defect[0]:.1e} (loose {J.closure_defect[1]:.1e}), deformation "
                     f"stable={J.deformation_ok}, verified={J.verified}, unipotent 1-jet={J.unipotent}")
        for (i, j), C in self.commutators.items():
            L.append(f"  commutator [{self.loops[i].name}, {self.loops[j].name}] "
                     f"(verified={C.verified}):")
            for k in range(1, self.order + 1):
                d, di = C.deviation(k), C.integration_deviation(k)
                extra = (f" (integration {di.error:.1e}, {C.extra_error_note} {C.extra_error[k]:.1e})"
                         if C.extra_error[k] else "")
                L.append(f"    {d}{extra}")
            L.append("    " + _coordinate_free(C, self.order))
            L.append(f"    -> {C.verdict(self.order)}")
        L.append(f"  verdict: {self.verdict}\n    ({self.reason})")
        L.append(f"  time: {self.seconds:.2f} s")
        return "\n".join(L)

    __repr__ = __str__


def _placement_errors(system, S, loops, commutators, order, z0, dz, rtol, max_nfev=2_000_000):
    """{(i, j): [error per order 0..k]}: how much each commutator's order-j figure moves when
    the base point z0 moves by ±dz along the curve (the loops keep their shape and homotopy
    class; the base point y0 = Θ(z0 ± dz) from the same series). inf where a transport fails."""
    from . import jets
    from .paths import circle, lasso

    def loop_path(lp, z):
        if lp.around == 0j:
            return circle(0.0, z)
        return lasso(z, lp.around, lp.radius, turns=lp.turns)

    out = {}
    for (i, j), C in commutators.items():
        ref = jets._order_norms(C.loop_jet.tensors)
        worst = [0.0] * (order + 1)
        for z in (z0 - dz, z0 + dz):
            p1, p2 = loop_path(loops[i], z), loop_path(loops[j], z)
            loop = jets._concat([p1, p2, p1.reversed(), p2.reversed()], system)
            tens, info = jets.transport_jet(system, S(z), loop, order=order, rtol=rtol,
                                            atol=rtol * 1e-2, max_nfev=max_nfev)
            if info["status"] != "success":
                worst = [math.inf] * (order + 1)
                break
            v = jets._order_norms(tens)
            worst = [max(w, abs(a - b)) for w, a, b in zip(worst, v, ref)]
        out[(i, j)] = worst
    return out


def saddle_unstable_check(flow, order=2, *, saddle=None, subspace="twin", series_order=400,
                          base_fraction=0.6, n_singular=2, radii=(0.01, 0.003), max_turns=8,
                          rtol=1e-12, placement=True, placement_orders=None, **jet_kw):
    """VE_k test along the 1-D unstable manifold of a saddle, in its Koenigs plane.

    flow: GradientFlow. order: k (1..3). saddle: (p,) equilibrium (default θ = 0).
    subspace: "twin" (the plane of neurons 0 and 1; default for width >= 2), None, or an
    InvariantSubspace / (p, q) basis selecting a simple unstable eigenvalue.
    series_order: N of the Koenigs series. base_fraction: base point z0 = fraction * R.
    n_singular: how many of the nearest singularities to loop around. radii: loop radii
    around them, as fractions of R, tried in turn; max_turns: the most turns tried.
    Loops: the circle ``|z| = z0`` (t -> t + 2πi/c) and, around each singularity, the lasso with
    the fewest turns that closes on the curve. Only loops that pass closure (two tolerances),
    deformation and evaluation checks enter the commutators.
    placement: add to every commutator figure's error the base-point placement error: the
    radius R that places z0 = base_fraction * R is an estimate; its error dR is the larger of
    the Domb–Sykes error and the spread of R over the series orders ``placement_orders``
    (default N/2 and 3N/2; this also covers the series truncation), and the figure's change
    when z0 moves by ±base_fraction * dR is added to its error (figures at a base point
    depend on it: they are conjugated as the base point moves along the curve; whether the
    commutator's jet is the identity does not). Returns a SaddleUnstableReport;
    its ``verdict`` is a JetVerdict: "G⁰(VE_j) non-abelian ⇒ not integrable" (lowest such
    j <= k, margin 100x) or "no conclusion at order k".

    Parameters
    ----------
    flow : GradientFlow
        The flow.
    order : int, optional
        The order k of the variational equation.
    saddle : array_like of float, shape (p,), optional
        The equilibrium (default θ = 0).
    subspace : "twin", None, InvariantSubspace or ndarray of float64, shape (p, q), optional
        Where the unstable direction lies.
    series_order : int, optional
        N of the Koenigs series.
    base_fraction : float, optional
        Base point z0 = base_fraction × R.
    n_singular : int, optional
        How many of the nearest singularities to loop around.
    radii : sequence of float, optional
        Loop radii around them, as fractions of R, tried in turn.
    max_turns : int, optional
        The most turns tried.
    rtol : float, optional
        Relative tolerance of the jet transports.
    placement : bool, optional
        Add the base-point placement error to every commutator figure.
    placement_orders : sequence of int, optional
        Series orders for the spread of R (default N/2 and 3N/2).
    **jet_kw
        Keywords of `jet_monodromy`.

    Returns
    -------
    SaddleUnstableReport
        Series, loops, commutators and the ``verdict`` (a JetVerdict).

    Raises
    ------
    TypeError
        If ``flow`` is not a GradientFlow.
    ValueError
        If ``order`` or ``subspace`` is invalid, or the Koenigs series cannot be built (see
        `koenigs_series`).
    """
    from . import jets
    from .paths import circle
    t0 = time.perf_counter()
    _check_flow(flow)
    order = jets._check_order(order)
    from narrowflow import derivatives as dv
    if order > dv.MAX_ORDER:
        raise ValueError(f"order must be <= {dv.MAX_ORDER} for networks, got {order}")
    net = flow.network
    sub = subspace
    if isinstance(subspace, str):
        if subspace != "twin":
            raise ValueError(f"subspace must be 'twin', None or an invariant subspace, got {subspace!r}")
        from narrowflow.model import Twin
        sub = Twin(net, 0, 1) if net.width >= 2 else None
    S = koenigs_series(flow, saddle=saddle, order=series_order, subspace=sub)
    R_root, Rerr = S.radius()
    sing = S.singularities()
    R = min(abs(s.z) for s in sing) if sing else R_root
    R_by_order = {int(series_order): R}
    dR = max([s.error for s in sing[:1]] + [Rerr if not sing else 0.0])
    if placement:
        orders = (placement_orders if placement_orders is not None
                  else (max(2, series_order // 2), 3 * series_order // 2))
        for N2 in orders:
            S2 = koenigs_series(flow, saddle=saddle, order=int(N2), subspace=sub)
            sing2 = S2.singularities()
            R_by_order[int(N2)] = min(abs(s.z) for s in sing2) if sing2 else S2.radius()[0]
        dR = max([dR] + [abs(r - R) for r in R_by_order.values()])
    residuals = {r * R: S.invariance_residual(r * R) for r in (0.5, 0.9)}
    zc = 0.8 * R * np.exp(0.6j)
    from .paths import polyline
    cont = float(np.max(np.abs(S.continue_along(polyline([0.3 * R, zc]), rtol=rtol) - S(zc))))
    cont /= 1.0 + float(np.max(np.abs(S(zc))))
    z0 = base_fraction * R
    y0 = S(z0)
    system = jets._parse_system(flow, None, None, None, None, None).in_koenigs_mode(S.c)
    loops = [LoopRecord("around 0", 0j, z0, 1, circle(0.0, z0))]
    for s in sing[:n_singular]:
        if abs(s.z) > 1.5 * R:
            continue
        rho, q, tried = _closing_turns(system, y0, z0, s.z, [f * R for f in radii], max_turns, rtol)
        name = f"around {s.z:.5g}"
        if q is None:
            loops.append(LoopRecord(name, s.z, radii[-1] * R, None, None,
                                    note=f"no closure within {max_turns} turns at radii {radii} R: excluded"))
        else:
            from .paths import lasso
            loops.append(LoopRecord(name, s.z, rho, q, lasso(z0, s.z, rho, turns=q)))
    kept = [lp for lp in loops if lp.path is not None]
    jl = jets.jet_monodromy(system, y0, [lp.path for lp in kept], order=order, rtol=rtol, **jet_kw)
    for lp, J in zip(kept, jl):
        lp.jet = J
        if not J.verified:
            lp.note = "failed verification: excluded"
    good = [i for i, lp in enumerate(loops) if lp.verified]
    commutators = {}
    for a in range(len(good)):
        for b in range(a + 1, len(good)):
            i, j = good[a], good[b]
            commutators[(i, j)] = jets.jet_commutator(loops[i].jet, loops[j].jet)
    placement_err = {}
    if placement and commutators:
        placement_err = _placement_errors(system, S, loops, commutators, order, z0,
                                          base_fraction * dR, rtol)
        for key, C in commutators.items():
            C.extra_error = list(placement_err[key])
            C.extra_error_note = "base-point placement"
    verdict = JetVerdict(order, False)
    reason = "fewer than two verified loops" if len(good) < 2 else ""
    best = None
    for key, C in commutators.items():
        v, why = C._decide(order)
        if v.non_abelian:
            if best is None or v.order < best[0].order:
                best = (v, f"[{loops[key[0]].name}, {loops[key[1]].name}]: {why}")
        elif not reason:
            reason = f"[{loops[key[0]].name}, {loops[key[1]].name}]: {why}"
    if best is not None:
        verdict, reason = best
    curve = ("unstable manifold of the saddle θ0" + (f" in {type(sub).__name__} plane" if sub is not None else "")
             + f", Koenigs coordinate z = exp({S.c:.6g} t)")
    return SaddleUnstableReport(curve=curve, series=S, radius=(R, dR), root_test=(R_root, Rerr),
                                singularities=sing, R_by_order=R_by_order,
                                placement_errors=placement_err, base_fraction=base_fraction,
                                residuals=residuals, continuation_point=zc, continuation_error=cont,
                                base=z0, loops=loops, commutators=commutators, order=order,
                                verdict=verdict, reason=reason, seconds=time.perf_counter() - t0)
