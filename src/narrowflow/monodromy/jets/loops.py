"""Verified loop jets: the k-jet of a flow map along one path, with the verification
protocol of :mod:`narrowflow.monodromy.verify` (docs/math.md §5.4, §5.6)."""
from __future__ import annotations

import math
import time

import numpy as np

from .. import pathint
from ..paths import Path, as_path
from ..verify import (Deviation, Run, closure_defect, deformation_stable, CLOSURE_TOL,
                      verify_runs)
from .algebra import _order_norms
from .system import _STATUS, _check_order, _concat, _parse_system, transport_jet

class Jet:
    """The k-jet of the flow map along one path, with its verification figures.

    Attributes: ``tensors`` [Φ_0 (n,), Φ_1 (n,n), ..., Φ_k] at the tight tolerance;
    ``order``; ``n``; ``path`` (Path, in time or, in Koenigs mode, in the z-plane);
    ``system`` (JetSystem); ``y0`` (n,); ``error`` (per order: norm of the difference
    between the tight and loose tolerances, and the deformed loop); ``tol_difference``,
    ``deformation_change`` (per order; nan when not checked); ``closure_defect`` (relative
    defects at the tight and the loose tolerance, :func:`verify.closure_defect`);
    ``closed`` (bool, the closure rule of :mod:`narrowflow.monodromy.verify`);
    ``deformation_ok`` (None when not checked); ``verified`` (closed, finished,
    deformation-stable); ``nfev``; ``seconds``; ``status``.
    """

    def __init__(self, system, y0, path, order, rtol, loose_factor, atol_factor,
                 deformation, closure_tol, max_nfev, verify=True):
        self.system = system
        self.y0 = np.asarray(y0, np.complex128).ravel()
        self.path = as_path(path)
        self.order = order
        self.rtol = rtol
        self.n = system.n
        self._kw = dict(rtol=rtol, loose_factor=loose_factor, atol_factor=atol_factor,
                        deformation=deformation, closure_tol=closure_tol, max_nfev=max_nfev)

        def run(pth, tol):
            tens, info = transport_jet(system, self.y0, pth, order, tol, tol * atol_factor, max_nfev)
            return tens[0], tens, None, info["nfev"], info["code"]

        t0 = time.perf_counter()
        nan = [math.nan] * (order + 1)
        if not verify:
            fine = Run(*run(self.path, rtol))
            self.tensors, self.nfev = fine.value, fine.nfev
            self.status = _STATUS[fine.status]
            self.tol_difference = self.deformation_change = nan
            self.closure_defect = (closure_defect(self.tensors[0], self.y0), math.nan)
            self.closed = False
            self.deformation_ok = False
            finished = fine.status == pathint.STATUS_OK
        else:
            runs = verify_runs(run, self.path, self.y0, rtol=rtol, tol_ratio=loose_factor,
                               deform=deformation, backwards=False, closure_tol=closure_tol)
            self.tensors, loose = runs.fine.value, runs.coarse.value
            self.nfev = runs.nfev
            self.status = _STATUS[runs.fine.status]
            self.status_loose = _STATUS[runs.coarse.status]
            self.tol_difference = [float(np.linalg.norm(a - b)) for a, b in zip(self.tensors, loose)]
            c = runs.closure
            self.closure_defect = (c.fine, c.coarse)
            self.closed = bool(c.closed)
            self.closure_note = c.note
            finished = runs.ok
            if runs.deformed is None:
                # not closed, or a run failed (not checked), or no deformation asked for
                self.deformation_change = nan if (deformation and not c.closed) else [0.0] * (order + 1)
                self.deformation_ok = None if (deformation and not c.closed) else True
            else:
                finished = finished and runs.deformed.status == pathint.STATUS_OK
                self.deformation_change = [float(np.linalg.norm(a - b))
                                           for a, b in zip(self.tensors, runs.deformed.value)]
                self.deformation_ok = all(
                    deformation_stable(dc, td, float(np.linalg.norm(t)), rtol)
                    for dc, td, t in zip(self.deformation_change, self.tol_difference, self.tensors))
        # round-off floor: a few ulps of the largest entries met in the tensors
        self.roundoff = [64 * np.finfo(float).eps * (1.0 + float(np.max(np.abs(t))))
                         for t in self.tensors]
        self.error = [max(x for x in (a, b, c) if not math.isnan(x)) for a, b, c in
                      zip(self.tol_difference, self.deformation_change, self.roundoff)]
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


def jet_monodromy(field, y0, paths, order=3, *, derivatives=None, params=None, n=None, nz=None,
                  max_order=None, koenigs_c=None, rtol=1e-12, loose_factor=100.0,
                  atol_factor=1e-2, deformation=0.03, closure_tol=CLOSURE_TOL, max_nfev=2_000_000,
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
        closure_tol: the largest tight-tolerance closure defect that may count as closed
        (the closure rule of :mod:`narrowflow.monodromy.verify`).

    Parameters
    ----------
    field : GradientFlow, HenonHeiles, JetSystem or object
        The system (see above).
    y0 : array_like of complex, shape (n,)
        The base point.
    paths : sequence of (Path or sequence of complex)
        The paths (a single path must be wrapped in a list).
    order : int, optional
        Jet order k (1..4; networks: up to 3).
    derivatives : callable, optional
        Numba ``derivs(y, params, order, F, DF, D2F, D3F, D4F)`` filling the derivative
        tensors of the field.
    params : ndarray of float64, optional
        Parameters passed to ``derivatives``.
    n : int, optional
        The dimension (with ``derivatives``).
    nz : int, optional
        Highest non-zero derivative order of the field (with ``derivatives``; e.g. 2 for a
        quadratic field).
    max_order : int, optional
        Highest order ``derivatives`` supports.
    koenigs_c : complex, optional
        Read paths in the plane z = e^{c t} (dy/dz = F(y)/(c z)).
    rtol : float, optional
        Tight relative tolerance (> 0).
    loose_factor : float, optional
        The loose tolerance is ``rtol * loose_factor`` (> 0).
    atol_factor : float, optional
        atol = ``rtol * atol_factor`` (> 0).
    deformation : float, optional
        Relative size of the loop deformation (0: none).
    closure_tol : float, optional
        Largest tight-tolerance closure defect that may count as closed.
    max_nfev : int, optional
        Right-hand-side evaluations allowed per run.
    verify : bool, optional
        Run the checks (loose tolerance, closure, deformation).

    Returns
    -------
    list of Jet
        One per path, each with ``.verified``.

    Raises
    ------
    TypeError
        If ``paths`` is a single path or not a sequence.
    ValueError
        If ``order`` or a tolerance is invalid.
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
