"""Critical points: Morse index from the Hessian spectrum, Newton polishing onto a
critical point, and the classification of a point's type (minimum, saddle, degenerate).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

@dataclass
class MorseInfo:
    """Second-order type of a point θ: Hessian eigenvalues, the tolerance used to call an
    eigenvalue zero, and the counts it gives (returned by `morse_index`).

    Parameters
    ----------
    eigenvalues : ndarray of float64, shape (p,)
        Eigenvalues of the Hessian of L at θ, ascending.
    tol : float
        ``max(eig_rtol·max|λ|, 2·shift, rounding)``.
    shift : float
        Estimate of how far the eigenvalues move between θ and the critical point next to
        it (the change of the Hessian over one Newton step, spectral norm, Weyl's bound).
    index : int
        The number of eigenvalues below −tol.
    n_zero : int
        The number of eigenvalues with ``|λ| <= tol``.
    n_positive : int
        The number of eigenvalues above tol.
    grad_norm : float
        ||∇L(θ)||.
    """
    eigenvalues: np.ndarray
    tol: float
    shift: float
    index: int
    n_zero: int
    n_positive: int
    grad_norm: float

    @property
    def degenerate(self) -> bool:
        """True when an eigenvalue is zero within ``tol``."""
        return self.n_zero > 0


def morse_index(flow, theta, eig_rtol: float = 1e-6) -> MorseInfo:
    """Morse index of the Hessian of ``flow``'s loss at θ, with a tolerance.

    An eigenvalue is negative if below −tol, zero ("degenerate") if ``|λ| <= tol``, where
    ``tol = max(eig_rtol·max|λ|, 2·shift, 100·p·ε·||H||)`` and shift is the spectral-norm change
    of the Hessian over the Newton step to the nearest critical point (so an eigenvalue
    that only looks non-zero because θ is not exactly critical is called zero).

    Parameters
    ----------
    flow : GradientFlow
        The loss (its ``grad`` and ``hessian``).
    theta : array_like of float, shape (p,)
        The point.
    eig_rtol : float, optional
        Relative tolerance for a zero eigenvalue (finite, >= 0).

    Returns
    -------
    MorseInfo
        Eigenvalues, tolerance and counts at θ.

    Raises
    ------
    ValueError
        If ``eig_rtol`` is negative or not finite, or ``theta`` is not of shape (p,).
    """
    if not (np.isfinite(eig_rtol) and eig_rtol >= 0):
        raise ValueError(f"eig_rtol: must be finite and >= 0, got {eig_rtol!r}")
    th = np.asarray(theta, dtype=float)
    if th.ndim != 1 or th.shape[0] != flow.n_params:
        raise ValueError(f"theta: expected shape ({flow.n_params},), got {th.shape}")
    g = np.asarray(flow.grad(th), dtype=float)
    H = np.asarray(flow.hessian(th), dtype=float)
    H = 0.5 * (H + H.T)
    lam = np.linalg.eigvalsh(H)
    hnorm = float(np.max(np.abs(lam))) if lam.size else 0.0
    # Newton step restricted to eigenvalues above the relative tolerance: the others count
    # as zero anyway, and dividing by them would throw the step (and the estimate) away
    step = np.linalg.lstsq(H, -g, rcond=max(eig_rtol, 1e-12))[0]
    shift = float(np.linalg.norm(np.asarray(flow.hessian(th + step), float) - H, 2)) \
        if np.any(g) else 0.0
    tol = max(eig_rtol * hnorm, 2.0 * shift, 100.0 * th.size * np.finfo(float).eps * hnorm)
    return MorseInfo(eigenvalues=lam, tol=tol, shift=shift, index=int(np.sum(lam < -tol)),
                     n_zero=int(np.sum(np.abs(lam) <= tol)), n_positive=int(np.sum(lam > tol)),
                     grad_norm=float(np.linalg.norm(g)))


def polish_critical_point(flow, theta, max_shift: float = np.inf):
    """Refine θ to a nearby critical point by solving ∇L = 0.

    Uses scipy's Levenberg–Marquardt (``least_squares``, Jacobian = Hessian).

    Parameters
    ----------
    flow : GradientFlow
        The loss (its ``grad`` and ``hessian``).
    theta : array_like of float, shape (p,)
        The starting point.
    max_shift : float, optional
        The farthest (Euclidean norm) the refined point may be from θ.

    Returns
    -------
    theta : ndarray of float64, shape (p,)
        The refined point θ* if it is finite, lowers ||∇L|| and moved at most
        ``max_shift``; otherwise a copy of θ.
    accepted : bool
        Whether θ* was kept (True also when ∇L(θ) = 0 already).
    """
    from scipy.optimize import least_squares
    th = np.asarray(theta, dtype=float)
    g0 = float(np.linalg.norm(flow.grad(th)))
    if g0 == 0.0:
        return th.copy(), True
    try:
        sol = least_squares(lambda t: np.asarray(flow.grad(t), float), th,
                            jac=lambda t: np.asarray(flow.hessian(t), float), method="lm",
                            xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=200 * th.size)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        return th.copy(), False
    x = sol.x
    if (np.all(np.isfinite(x)) and np.linalg.norm(x - th) <= max_shift
            and float(np.linalg.norm(flow.grad(x))) < g0):
        return x, True
    return th.copy(), False


@dataclass
class CriticalPoint:
    """One limit cluster: where a set of trajectories ended, modulo symmetry.

    Parameters
    ----------
    label : int
        Cluster number (0 = largest).
    size : int
        Member count.
    fraction : float
        Share of all trajectories.
    theta : ndarray of float64, shape (p,)
        Canonical representative, refined to a critical point when that succeeded.
    loss : float
        The loss at ``theta``.
    grad_norm : float
        ||∇L|| at ``theta``.
    loss_median : float
        Median final loss of the members (NaN without losses).
    spread : float
        Largest distance of a member's canonical state from the representative (before
        polishing).
    n_dead : int
        Dead neurons at ``theta``.
    polished : bool
        Whether the refinement to a critical point was accepted.
    polish_shift : float
        Distance from the representative to ``theta``.
    morse : MorseInfo or None
        The Morse data at ``theta``.
    kind : str, optional
        "global minimum", "local minimum", "saddle", "degenerate" or "not critical" (set
        by `classify`).
    global_certified : bool, optional
        True when the global minimum is certified (zero loss without weight decay) rather
        than the lowest found.
    description : str, optional
        A one-line summary.
    """
    label: int
    size: int
    fraction: float
    theta: np.ndarray
    loss: float
    grad_norm: float
    loss_median: float
    spread: float
    n_dead: int
    polished: bool
    polish_shift: float
    morse: MorseInfo | None
    kind: str = ""
    global_certified: bool = False
    description: str = ""

    @property
    def index(self) -> int | None:
        """The Morse index at ``theta`` (None without Morse data)."""
        return None if self.morse is None else self.morse.index


def _describe(cp: CriticalPoint) -> str:
    m = cp.morse
    if cp.kind == "not critical":
        return f"not a critical point (‖∇L‖ = {cp.grad_norm:.2e})"
    if cp.kind == "saddle":
        return f"saddle of index {m.index}"
    if cp.kind == "degenerate":
        extra = f", index ≥ {m.index}: not a minimum" if m.index else ""
        return f"degenerate ({m.n_zero} zero eigenvalue{'s' if m.n_zero > 1 else ''}{extra})"
    txt = cp.kind
    if cp.kind == "global minimum":
        txt += " (zero loss)" if cp.global_certified else " (lowest found)"
    if m is not None and m.n_zero:
        txt += f", degenerate ({m.n_zero} zero eigenvalue{'s' if m.n_zero > 1 else ''})"
    return txt


def classify(points, weight_decay: float = 0.0, gtol: float = 1e-6, loss_rtol: float = 1e-6,
             loss_atol: float = 1e-12) -> None:
    """Set ``kind``, ``global_certified`` and ``description`` of each CriticalPoint in place.

    not critical: ||∇L|| > gtol (or no Morse data). saddle: Morse index >= 1 and no zero
    eigenvalue. degenerate: an eigenvalue within tolerance of 0 (and the loss not certifiably
    minimal). minima: index 0 and no zero eigenvalue; the global one is the lowest loss among
    the minima found (within ``loss_rtol·|L| + loss_atol``), certified when L <= loss_atol and
    there is no weight decay (L >= 0, so L = 0 is a global minimum even if degenerate).

    Parameters
    ----------
    points : iterable of CriticalPoint
        The points, modified in place.
    weight_decay : float, optional
        The flow's weight decay (0: L >= 0, so zero loss certifies a global minimum).
    gtol : float, optional
        Gradient norm above which a point is not critical.
    loss_rtol, loss_atol : float, optional
        Relative and absolute loss tolerances for the global minimum.
    """
    pts = list(points)
    for cp in pts:
        m = cp.morse
        certified = weight_decay == 0.0 and cp.loss <= loss_atol
        if m is None or not np.isfinite(cp.grad_norm) or cp.grad_norm > gtol:
            cp.kind = "not critical"
        elif certified and m.index == 0:
            cp.kind, cp.global_certified = "global minimum", True
        elif m.n_zero:
            cp.kind = "degenerate"
        elif m.index:
            cp.kind = "saddle"
        else:
            cp.kind = "local minimum"
    minima = [cp for cp in pts if cp.kind in ("local minimum", "global minimum")]
    if minima:
        best = min(cp.loss for cp in minima)
        for cp in minima:
            if cp.loss <= best + loss_rtol * abs(best) + loss_atol:
                cp.kind = "global minimum"
    for cp in pts:
        cp.description = _describe(cp)
