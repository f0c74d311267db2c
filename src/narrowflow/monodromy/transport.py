"""Transport along complex paths: linear systems Y' = A(z) Y, and a vector field
together with its variational equation (docs/math.md §5.1, §5.4–§5.5).

Integration is :mod:`narrowflow.monodromy.pathint` (DOP853 on the real parameter of each
piece, restarted at every corner); verification is :mod:`narrowflow.monodromy.verify` (two
tolerances, closure of the base curve, deformation, the loop backwards). Here: the
right-hand sides on the transport state ``[vec Y (row-major), ∫tr A]`` (linear) or
``[y, vec Phi, ∫tr J]`` (field + VE), and :class:`TransportResult`, whose error estimate
also takes in the Liouville residual ``det M - exp(∮ tr A)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np
from numba import njit

from narrowflow import jit as _jit

from .pathint import (DEFAULT_MAX_NFEV, STATUS_BUDGET, STATUS_NONFINITE, STATUS_OK,  # noqa: F401
                      STATUS_STEP, STATUS_TEXT, CachedIntegrator, _is_jit, as_data,
                      cached_integrators, integrate_path)
from .pathint import NJ_DYNAMIC
from .paths import Path, as_path
from .verify import deformation_stable, inverse_residual, maxabs, verify_runs

__all__ = ["TransportResult", "LoopMonodromy", "transport_linear", "transport_field",
           "variational_monodromy", "integrate_path", "verified_transport", "DEFAULT_MAX_NFEV"]

_maxabs = maxabs           # the name network.py and older code use


# ---------------------------------------------------------------------------
# right-hand sides: linear systems and field + VE, with the trace for Liouville
# ---------------------------------------------------------------------------
_RHS_CACHE: dict = {}
_NJ = _jit.NOGIL


@njit(**_NJ)
def linear_state_rhs(M, y):
    """d/dz of the state ``[vec Y (n*n, row-major), ∫tr A]`` for ``Y' = M Y``.

    M: complex128 (n, n), A at the current z; y: complex128 (n*n + 1,). Returns (n*n + 1,).
    """
    n = M.shape[0]
    nn = n * n
    out = np.empty(nn + 1, dtype=np.complex128)
    tr = 0j
    for i in range(n):
        tr += M[i, i]
        for j in range(n):
            acc = 0j
            for k in range(n):
                acc += M[i, k] * y[k * n + j]
            out[i * n + j] = acc
    out[nn] = tr
    return out


@njit(**_NJ)
def field_state_rhs(fx, J, y):
    """d/dt of the state ``[y (n), vec Phi (n*n, row-major), ∫tr J]`` for ``y' = f(y)``,
    ``Phi' = J(y) Phi``. fx: complex128 (n,) = f(y); J: complex128 (n, n). Returns (n + n*n + 1,)."""
    n = fx.size
    nn = n * n
    out = np.empty(n + nn + 1, dtype=np.complex128)
    tr = 0j
    for i in range(n):
        out[i] = fx[i]
        tr += J[i, i]
        for j in range(n):
            acc = 0j
            for k in range(n):
                acc += J[i, k] * y[n + k * n + j]
            out[n + i * n + j] = acc
    out[n + nn] = tr
    return out


def linear_rhs(A, n: int):
    """rhs for ``Y' = A(z, data) Y`` on the state ``[vec Y (n*n, row-major), ∫tr A]``.

    Compiled when A is a Numba function, else Python (A's output taken as complex (n, n)).
    """
    key = ("linear", A, n)
    if key not in _RHS_CACHE:
        if _is_jit(A):
            def rhs(z, y, data):
                return linear_state_rhs(A(z, data), y)
            rhs = njit(**NJ_DYNAMIC)(rhs)
        else:
            def rhs(z, y, data):
                M = np.asarray(A(z, data), dtype=np.complex128).reshape(n, n)
                return linear_state_rhs(M, y)
        _RHS_CACHE[key] = rhs
    return _RHS_CACHE[key]


def field_rhs(field, jacobian, n: int, with_data: bool = False):
    """rhs for ``y' = f(y)``, ``Phi' = J(y) Phi`` on ``[y (n), vec Phi (n*n), ∫tr J]``.

    ``field(y) -> (n,)``, ``jacobian(y) -> (n, n)``, complex (or ``field(y, data)``,
    ``jacobian(y, data)`` with ``with_data``: then one compiled rhs serves every parameter
    set); the path variable is the (complex) time. Compiled when both are Numba functions.
    """
    key = ("field", field, jacobian, n, with_data)
    if key in _RHS_CACHE:
        return _RHS_CACHE[key]
    if with_data:
        def fj(x, data):
            return field(x, data), jacobian(x, data)
    else:
        def fj(x, data):
            return field(x), jacobian(x)
    if _is_jit(field) and _is_jit(jacobian):
        fj = njit(**NJ_DYNAMIC)(fj)

        def rhs(z, y, data):
            fx, J = fj(y[:n].copy(), data)
            return field_state_rhs(fx, J, y)
        rhs = njit(**NJ_DYNAMIC)(rhs)
    else:
        def rhs(z, y, data):
            fx, J = fj(y[:n].copy(), data)
            return field_state_rhs(np.asarray(fx, dtype=np.complex128).reshape(n),
                                   np.asarray(J, dtype=np.complex128).reshape(n, n), y)
    _RHS_CACHE[key] = rhs
    return rhs


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class TransportResult:
    """Transport of a fundamental matrix along one path.

    Built by the transport functions; the fields are attributes of the same names.
    ``LoopMonodromy`` is another name of this class.

    Parameters
    ----------
    path : Path
        The path travelled.
    matrix : ndarray of complex128, shape (n, n)
        The transported fundamental matrix (``Phi(start) = I``), at ``rtol``.
    error : float
        A conservative absolute max-entry error estimate of ``matrix``: the largest of the
        difference to the run at ``rtol * tol_ratio``, the change along the deformed loop
        (when checked) and the Liouville and backwards residuals times ``max |matrix
        entry|`` (inf when a check run failed).
    rel_error : float
        ``error / max |matrix entry|``.
    y_end : ndarray of complex128, shape (n,), or None
        End of the base curve (field transport); None for linear systems.
    closure_defect : tuple of float
        ``(coarse, fine)`` relative defects ``|y_end - y0|_max / max(1, |y0|_max)``, or
        ``(0, 0)``.
    closed : bool
        The verified closure (see the module docstring); True for closed linear loops.
    closure_note : str
        Why ``closed`` is what it is.
    deformation_change : float or None
        Max-entry change of the matrix under ``Path.deformed`` (None: not checked).
    deformation_ok : bool or None
        Whether that change is within the error.
    trace_integral : complex
        ``∮ tr A`` along the path.
    liouville_residual : float
        ``|det M - exp(∮ tr A)| / |exp(∮ tr A)|``.
    nfev : int
        Total right-hand-side evaluations (all runs).
    seconds : float
        Wall time of all runs.
    status : str, optional
        ``"ok"`` or why integration stopped.
    tolerances : tuple of float, optional
        ``(rtol, rtol * tol_ratio)`` of the two runs.
    extra : dict, optional
        Further data of the run (e.g. ``"full_matrix"``).
    alternates : dict, optional
        Other estimates of the same matrix: ``"coarse"`` (at ``rtol * tol_ratio``) and
        ``"deformed"`` (along the deformed loop, when checked).
    inverse_residual : float or None, optional
        ``max|M_back M - I| / (max|M_back| max|M|)`` with ``M_back`` from the loop
        travelled backwards (closed loops; None when not checked).
    """
    path: Path
    matrix: np.ndarray
    error: float
    rel_error: float
    y_end: np.ndarray | None
    closure_defect: tuple
    closed: bool
    closure_note: str
    deformation_change: float | None
    deformation_ok: bool | None
    trace_integral: complex
    liouville_residual: float
    nfev: int
    seconds: float
    status: str = "ok"
    tolerances: tuple = ()
    extra: dict = dc_field(default_factory=dict)
    # other estimates of the same matrix: {"coarse": at rtol*tol_ratio, "deformed": along the
    # deformed loop}; statistics computed from them give realistic error bars (groups.py)
    alternates: dict = dc_field(default_factory=dict)
    # max |M_back M - I| / (|M_back| |M|) for the loop travelled backwards (None: not checked)
    inverse_residual: float | None = None

    @property
    def verified(self) -> bool:
        """Closed, integrated successfully and (where checked) stable under deformation."""
        return bool(self.status == "ok" and self.closed and self.deformation_ok is not False)

    def summary(self) -> str:
        """A one-line report of the checks.

        Returns
        -------
        str
            Verified or not, closure note and defects, error, deformation change, Liouville
            and backwards residuals, evaluations and wall time.
        """
        d = self.closure_defect
        dd = "not checked" if self.deformation_change is None else f"{self.deformation_change:.1e}"
        return (f"{'verified' if self.verified else 'NOT verified'}: {self.closure_note}; "
                f"closure defect {d[0]:.1e} -> {d[1]:.1e}; error {self.error:.1e} "
                f"(rel {self.rel_error:.1e}); deformation change {dd}; "
                f"Liouville residual {self.liouville_residual:.1e}; "
                + (f"backwards {self.inverse_residual:.1e}; " if self.inverse_residual is not None
                   else "")
                + f"nfev {self.nfev}; "
                f"{self.seconds * 1e3:.1f} ms")

    # A short alias used by reports
    @property
    def M(self) -> np.ndarray:
        """Another name of ``matrix``."""
        return self.matrix

    @property
    def full_matrix(self) -> np.ndarray:
        """The whole transported matrix (differs from ``matrix`` when a block was extracted)."""
        return self.extra.get("full_matrix", self.matrix)

    def __array__(self, dtype=None, copy=None):
        return np.array(self.matrix, dtype=dtype)

    @property
    def shape(self):
        """The shape of ``matrix``."""
        return self.matrix.shape

    @property
    def dtype(self):
        """The dtype of ``matrix``."""
        return self.matrix.dtype

    def __getitem__(self, idx):
        return self.matrix[idx]

    def __matmul__(self, other):
        return self.matrix @ np.asarray(other)

    def __rmatmul__(self, other):
        return np.asarray(other) @ self.matrix


LoopMonodromy = TransportResult


def _run_linear(rhs, n, path, data, rtol, max_nfev):
    """One transport of ``[vec Y, ∫tr A]`` from Y = I: a verify.Run (no base curve)."""
    y0 = np.zeros(n * n + 1, dtype=np.complex128)
    y0[:n * n] = np.eye(n).ravel()
    y, nfev, _, _, status = integrate_path(rhs, y0, path, data, rtol=rtol, atol=rtol,
                                           max_nfev=max_nfev)
    return None, y[:n * n].reshape(n, n).copy(), y[n * n], nfev, status


def _is_polyline(v) -> bool:
    """A non-empty list/tuple/1-D array of numbers: the vertices of one polyline path."""
    if isinstance(v, np.ndarray):
        return v.ndim == 1 and v.size > 0 and np.issubdtype(v.dtype, np.number)
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(x, (int, float, complex, np.number)) and not isinstance(x, bool)
                    for x in v))


def transport_linear(A, n, paths, data=None, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                     max_nfev=DEFAULT_MAX_NFEV, check_inverse=True, rhs=None):
    """Fundamental matrices of ``Y' = A(z, data) Y`` along paths, Y(start) = I.

    A path that does not close in the z-plane gives ``closed=False`` (its matrix is a
    connection, not a monodromy).

    Parameters
    ----------
    A : callable
        ``A(z, data) -> (n, n)`` complex matrix, for complex z and data complex128 (q,);
        Numba njit for speed (then the right-hand side is compiled).
    n : int
        The dimension (>= 1).
    paths : Path, sequence of complex, or list of them
        One path (a Path, or the vertices of a polyline) or a list of paths.
    data : array_like of complex, shape (q,), optional
        Parameters passed to ``A``.
    rtol : float, optional
        Relative (and absolute) tolerance of the main run.
    tol_ratio : float, optional
        The check run is at ``rtol * tol_ratio``.
    deform : float or None, optional
        Relative size of the deformation check (0 or None: skip).
    max_nfev : int, optional
        Right-hand-side evaluations allowed per run.
    check_inverse : bool, optional
        Also travel closed loops backwards (``inverse_residual``).
    rhs : callable, optional
        Replacement of the right-hand side built from A (e.g. a CachedIntegrator on the
        state ``[vec Y, ∫tr A]``).

    Returns
    -------
    TransportResult or list of TransportResult
        One result for one path, else a list in the order of ``paths``.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer.
    """
    single = isinstance(paths, Path) or not isinstance(paths, (list, tuple)) or _is_polyline(paths)
    plist = [as_path(paths)] if single else [as_path(p) for p in paths]
    n = _check_n(n)
    if rhs is None:
        rhs = linear_rhs(A, n)
    if data is not None:
        data = as_data(data)
    out = []
    for p in plist:
        def run(pth, tol):
            return _run_linear(rhs, n, pth, data, tol, max_nfev)
        out.append(verified_transport(run, p, None, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                                      check_inverse=check_inverse))
    return out[0] if single else out


def verified_transport(run, path, y0, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                       closure_floor=100.0, check_inverse=True) -> TransportResult:
    """The verification protocol (:func:`narrowflow.monodromy.verify.verify_runs`) for a
    transported matrix.

    run(path, tol) -> (y_end or None, M (n, n), ∮tr, nfev, status): one integration.
    y0: the base point of the curve (None for linear systems in the z-plane: closure is
    then that of the path). Runs at rtol and rtol * tol_ratio (error estimate, closure defect
    at both), along ``path.deformed(deform)`` and ``path.reversed()`` when closed.
    """
    runs = verify_runs(run, path, y0, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                       backwards=check_inverse, floor_factor=closure_floor)
    M2, M1 = runs.fine.value, runs.coarse.value
    err = maxabs(M2 - M1)
    note = runs.closure.note
    dchange, dok, inv = None, None, None
    alts = {"coarse": M1}
    if runs.deformed is not None:
        ok = runs.deformed.status == STATUS_OK
        dchange = maxabs(runs.deformed.value - M2) if ok else float("inf")
        dok = deformation_stable(dchange, err, maxabs(M2), rtol)
        if ok:
            alts["deformed"] = runs.deformed.value
        if not dok:
            note += "; matrix changes under deformation of the loop"
    if runs.backwards is not None:
        inv = (inverse_residual(M2, runs.backwards.value)
               if runs.backwards.status == STATUS_OK else float("inf"))
    defects = (runs.closure.coarse, runs.closure.fine)
    return _make_result(path, M2, err, runs.fine.y_end, defects, runs.closure.closed, note,
                        dchange, dok, runs.fine.extra, runs.nfev, runs.seconds, runs.status,
                        (rtol, rtol * tol_ratio), alts, inv)


def _make_result(p, M, err, y_end, defects, closed, note, dchange, dok, w, nfev, secs, status, tols,
                 alternates=None, inv=None):
    """The TransportResult; ``err`` (the two-tolerance difference) is widened to the other
    error estimates (docs/math.md §5.4–§5.5): the deformation change, and the Liouville and
    backwards residuals (relative) times max|M|. A residual that could not be computed
    (nan: the run failed) is left out; an infinite one (a check run failed) makes the
    error infinite."""
    scale = max(maxabs(M), 1e-300)
    ew = np.exp(w) if np.isfinite(w) else np.nan
    with np.errstate(all="ignore"):
        liou = float(abs(np.linalg.det(M) - ew) / abs(ew)) if np.all(np.isfinite(M)) else float("nan")
    for extra in (dchange, liou * scale, None if inv is None else inv * scale):
        if extra is not None and not math.isnan(extra):
            err = max(err, float(extra))
    return TransportResult(path=p, matrix=M, error=err, rel_error=err / scale, y_end=y_end,
                           closure_defect=defects, closed=bool(closed and status == STATUS_OK),
                           closure_note=note if status == STATUS_OK else STATUS_TEXT[status],
                           deformation_change=dchange, deformation_ok=dok, trace_integral=complex(w),
                           liouville_residual=liou, nfev=int(nfev), seconds=secs,
                           status="ok" if status == STATUS_OK else STATUS_TEXT[status],
                           tolerances=tols, alternates=dict(alternates or {}),
                           inverse_residual=inv)


def _check_n(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _run_field(rhs, n, y0, path, rtol, max_nfev, data=None):
    """One joint transport of ``[y, vec Phi, ∫tr J]`` from (y0, I): a verify.Run."""
    s0 = np.zeros(n + n * n + 1, dtype=np.complex128)
    s0[:n] = y0
    s0[n:n + n * n] = np.eye(n).ravel()
    y, nfev, _, _, status = integrate_path(rhs, s0, path, data, rtol=rtol, atol=rtol,
                                           max_nfev=max_nfev)
    return y[:n].copy(), y[n:n + n * n].reshape(n, n).copy(), y[n + n * n], nfev, status


def transport_field(field, jacobian, y0, path, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                    max_nfev=DEFAULT_MAX_NFEV, closure_floor=100.0, data=None, check_inverse=True,
                    rhs=None):
    """Transport ``y' = f(y)`` and its VE ``Phi' = J(y) Phi`` jointly along one complex-time path.

    Parameters
    ----------
    field : callable
        ``field(y) -> (n,)`` complex (``field(y, data)`` with ``data``); Numba njit
        (compiled) or plain Python.
    jacobian : callable
        ``jacobian(y) -> (n, n)`` complex (``jacobian(y, data)`` with ``data``).
    y0 : array_like of complex, shape (n,)
        The base point (finite).
    path : Path or sequence of complex
        The path in complex time (e.g. ``[0, T]``).
    rtol : float, optional
        Relative (and absolute) tolerance of the main run.
    tol_ratio : float, optional
        The check run is at ``rtol * tol_ratio``.
    deform : float or None, optional
        Relative size of the deformation check (0 or None: skip).
    max_nfev : int, optional
        Right-hand-side evaluations allowed per run.
    closure_floor : float, optional
        The accuracy floor is ``closure_floor * rtol``: a relative closure defect below it
        counts as closed.
    data : array_like of complex, optional
        Parameters passed to ``field`` and ``jacobian``.
    check_inverse : bool, optional
        Also travel a closed loop backwards (``inverse_residual``).
    rhs : callable, optional
        Replacement of the joint right-hand side built from field and jacobian.

    Returns
    -------
    TransportResult
        The fundamental matrix of the VE; ``closed`` is the verified closure of the base
        curve and ``y_end`` its end point.

    Raises
    ------
    TypeError
        If ``y0`` is not an array of complex numbers.
    ValueError
        If ``y0`` is not a finite non-empty 1-D array.
    """
    p = as_path(path)
    y0 = _check_y0(y0)
    n = y0.size
    if rhs is None:
        rhs = field_rhs(field, jacobian, n, with_data=data is not None)
    if data is not None:
        data = as_data(data)

    def run(pth, tol):
        return _run_field(rhs, n, y0, pth, tol, max_nfev, data)
    return verified_transport(run, p, y0, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                              closure_floor=closure_floor, check_inverse=check_inverse)


def _check_y0(y0) -> np.ndarray:
    try:
        y = np.asarray(y0, dtype=np.complex128)
    except (TypeError, ValueError):
        raise TypeError("y0 must be an array of complex numbers") from None
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y0 must be a non-empty 1-D array, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y0 must be finite")
    return y


def variational_monodromy(field, jacobian, y0, paths, *, rtol=1e-12, tol_ratio=100.0,
                          deform=0.02, max_nfev=DEFAULT_MAX_NFEV, data=None, check_inverse=True,
                          rhs=None):
    """Monodromy of the variational equation of ``y' = field(y)`` along each path.

    field(y) -> dy/dt (n,), jacobian(y) -> (n, n): complex, autonomous; Numba njit
    functions run compiled, plain Python callables run (slowly) in Python.
    y0: complex base point (n,). paths: a list of paths in the complex-time plane, each a
    Path or a sequence of complex times (a polyline, e.g. ``[0, T]`` for a period); a single
    Path or polyline given alone counts as one path. A path
    may be open in time but must close on the curve (y(end) = y0): that is verified
    (closure defect at two tolerances, shrinking; matrix unchanged under a ``deform``
    relative deformation) and reported per path in ``.closed`` / ``.verified``.

    Parameters
    ----------
    field : callable
        ``field(y) -> dy/dt`` (n,), complex, autonomous (``field(y, data)`` with ``data``).
    jacobian : callable
        ``jacobian(y) -> (n, n)`` complex (``jacobian(y, data)`` with ``data``).
    y0 : array_like of complex, shape (n,)
        The base point.
    paths : list of (Path or sequence of complex), or one of them
        Paths in the complex-time plane.
    rtol : float, optional
        Relative (and absolute) tolerance of the main run.
    tol_ratio : float, optional
        The check run is at ``rtol * tol_ratio``.
    deform : float or None, optional
        Relative size of the deformation check (0 or None: skip).
    max_nfev : int, optional
        Right-hand-side evaluations allowed per run.
    data : array_like of complex, optional
        Parameters passed to ``field`` and ``jacobian`` (one compilation serves all
        parameter values).
    check_inverse : bool, optional
        Also travel closed loops backwards (``inverse_residual``).
    rhs : callable, optional
        Replacement of the joint right-hand side built from field and jacobian (e.g. a
        CachedIntegrator, compiled once per machine).

    Returns
    -------
    list of TransportResult
        One per path, with ``.matrix`` (n, n) complex128, ``.closed``,
        ``.closure_defect``, ``.error``, ``.nfev``.

    Raises
    ------
    TypeError
        If ``paths`` is not a list of paths, or ``field`` or ``jacobian`` is not callable.
    ValueError
        If a path or ``y0`` is invalid.
    """
    if isinstance(paths, Path) or _is_polyline(paths):
        paths = [paths]         # one path given alone, e.g. [0, T]: as transport_linear does
    if not isinstance(paths, (list, tuple)):
        raise TypeError("paths must be a list of paths (Path objects or sequences of complex times)")
    plist = []
    for i, p in enumerate(paths):
        try:
            plist.append(as_path(p))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"paths[{i}]: {exc}") from None
    if not callable(field):
        raise TypeError("field must be callable")
    if not callable(jacobian):
        raise TypeError("jacobian must be callable")
    return [transport_field(field, jacobian, y0, p, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                            max_nfev=max_nfev, data=data, check_inverse=check_inverse, rhs=rhs)
            for p in plist]
