"""Ensembles of gradient flows: `solve_ensemble` and its result type.

The work is done by the Cython kernel ``narrowflow._ext.ensemble`` (lane-batched explicit
Runge-Kutta, Rosenbrock and variable-order NDF methods, OpenMP over workers); this module
validates the inputs, sizes and allocates the outputs once, runs the kernel chunk by chunk
and wraps the arrays in an `EnsembleResult`.

``method="auto"`` (the default) integrates every trajectory with `AUTO_NONSTIFF` while it
is not stiff; Hairer's stiffness test (`STIFF_STEPS` consecutive steps with h|λ| beyond
`stiff_hlam`, a fifth of the method's stability boundary) stops it, and the variable-order BDF
method (`AUTO_STIFF`, at `AUTO_STIFF_TOL` times the tolerances) continues it from the same
state, time, step size, save points and counters.
A GradientFlow at rtol <= `AUTO_TAYLOR_RTOL` starts with the Taylor method instead, whose own
stiffness test (`auto_nonstiff`, the kernel's taylor_stiffness_test) hands over the same way.
The decision depends only on the trajectory's own arithmetic, so it is the same in any lane,
thread or chunk. See docs/integrators.md.

Distributed runs (narrowflow.distributed) use the same pieces: an `EnsembleProblem` is a
picklable description of everything but the initial states, and `solve_chunk(problem,
theta0)` integrates one block of trajectories on a worker. A trajectory's result depends
only on its initial state and the problem, never on the chunk, lane or thread it ran in.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from enum import IntEnum
from numbers import Integral, Real

import numpy as np

from narrowflow import tableaus
from narrowflow.memory import default_memory_limit  # noqa: F401  (narrowflow.ensemble's API)

EXPLICIT = tableaus.METHODS
ROSENBROCK = tableaus.ROSENBROCK
MULTISTEP = tableaus.MULTISTEP
IMPLICIT = ROSENBROCK + MULTISTEP      # the methods that use the Jacobian
METHODS = EXPLICIT + ROSENBROCK + MULTISTEP + ("taylor", "auto")
DEFAULT_METHOD = "auto"
AUTO_NONSTIFF = "vern7"       # method="auto": the explicit method, with its stiffness test
# Vern7 rather than DOP853: on NF4, for the same evaluations, its median error is level and
# its tail shorter (99th percentile 3-6x), so at equal max error auto is 1.27-1.36x as fast to
# T = 1e2 and 0.81-1.55x at later horizons; at equal median error the two are level
# (benchmarks/README.md, "Vern7").
AUTO_STIFF = "bdf"            # ... and the implicit method that continues stiff trajectories,
AUTO_STIFF_TOL = 0.01         # at rtol and atol times this (not below rtol 1e-15).
# BDF's global error at a given rtol is 10-100x Rodas5P's on NF4 (Rodas5P advances with its
# 5th-order solution and controls the 4th-order one's error; BDF controls its own); at a
# hundredth of the tolerance it errs no more than Rodas5P at the tolerance, with a fraction
# of the evaluations: at equal error 1.3-1.6x as fast to convergence at rtol 1e-6 ... 1e-8,
# 2.6-4.5x at 1e-10 ... 1e-12 (benchmarks/README.md).
# AUTO_STIFF = "rodas5p" with AUTO_STIFF_TOL = 1.0 is the handover used before BDF.
# the stiffness test of "auto": STIFF_STEPS accepted explicit steps in a row with h|λ|
# (estimated from the last two stages) beyond STIFF_FRACTION of the method's real stability
# boundary (`stiff_hlam`) switch a trajectory to AUTO_STIFF. Hairer uses 6.1 (about DOP853's
# boundary, 6.39) and 15. With the cheap BDF tail, switching at a fifth of the boundary (1.28
# for DOP853, 0.93 for Vern7) saves evaluations at every horizon on NF4 and on wider networks:
# at equal max error 1.0-1.34x as fast to T = 1e2, level to 1.24x later (0.47, half the
# boundary, before; benchmarks/README.md, "Switching earlier")
STIFF_FRACTION = 0.2
STIFF_STEPS = 5
# method="auto" on a GradientFlow at rtol <= AUTO_TAYLOR_RTOL starts with the Taylor method
# instead of AUTO_NONSTIFF (faster there, benchmarks/README.md). Its stiffness test (on every 4th
# step) counts a step as stiff when h ||J||_F exceeds TAYLOR_STIFF_FRACTION of the
# Taylor polynomial's stability boundary AND the flow moves slowly against its fastest mode,
# ||J||_F ||f|| / ||J f|| > taylor_stiff_ratio(rtol); TAYLOR_STIFF_STEPS such tests in a row
# switch to AUTO_STIFF. The second condition holds back a switch that would not pay: the
# implicit method's accuracy-limited step only beats the Taylor method's stability-limited one
# once the motion is that much slower, more so at tight rtol (tuned on NF4: 300 with the
# Rodas5P tail, 100 with BDF's, which is cheaper per unit of time; docs/integrators.md)
AUTO_TAYLOR_RTOL = 1e-9
TAYLOR_STIFF_FRACTION = 0.85
TAYLOR_STIFF_STEPS = 3
TAYLOR_STIFF_RATIO = 100.0      # ... at rtol 1e-10, scaled by (1e-10 / rtol)^(1/4)
DEFAULT_LANES = 16
DEFAULT_BOUND = 1e10


_ST_STIFF = 6   # the kernel's internal status: found stiff, continued by AUTO_STIFF


class Status(IntEnum):
    """Per-trajectory outcome, stored as int8 in the result arrays.

    ``SUCCESS`` (0) reached ``t_span[1]``; ``CONVERGED`` (1) reached ``||grad L||_2 < gtol``
    first; ``DIVERGED`` (2) left ``|theta|_inf <= divergence_bound`` or became non-finite;
    ``MAX_STEPS`` (3) used ``max_steps`` attempted steps; ``STEP_TOO_SMALL`` (4) the adaptive
    step fell below the round-off of t; ``INTERRUPTED`` (5) stopped by Ctrl-C (only
    `solve_chunk` returns it; `solve_ensemble` raises ``KeyboardInterrupt``). Distributed
    stores use -1 for chunks not yet computed. See docs/integrators.md.
    """

    SUCCESS = 0         # reached t_span[1] (finite)
    CONVERGED = 1       # ||grad L|| < gtol before t_span[1]
    DIVERGED = 2        # |theta|_inf > divergence_bound (also at t0), non-finite state or gradient
    MAX_STEPS = 3       # max_steps attempted steps without reaching t_span[1]
    STEP_TOO_SMALL = 4  # the adaptive step fell below round-off of t
    INTERRUPTED = 5     # Ctrl-C: stopped where it was, or never started (solve_chunk only;
                        # solve_ensemble raises KeyboardInterrupt)


@dataclass
class CompiledSystem:
    """An autonomous ODE system ``y' = F(y)`` given by compiled functions.

    The functions follow the right-hand-side ABI of ``ext/rhs_abi.pxd`` (docs/design.md §4).

    Parameters
    ----------
    flow_address : int
        Address of the lane-batched right-hand side (``n`` outputs per lane).
    loss_address : int
        Address of a scalar per lane, used for ``loss_saved`` and escape times.
    params : ndarray of float64, shape (m,)
        The parameter block both functions receive.
    n : int
        The state dimension.
    keepalive : tuple, optional
        Objects (e.g. Numba cfuncs) that must stay alive while the addresses are in use.
    jacobian_address : int or None, optional
        Address of the Jacobian ``dF/dy`` (``n*n`` outputs per lane, row-major:
        ``out[(r*n + c)*lanes + l]``). Needed by the Rosenbrock and BDF methods, and by
        ``"auto"`` to switch (without it ``"auto"`` stays with its explicit method).
    """

    flow_address: int
    loss_address: int
    params: np.ndarray
    n: int
    keepalive: tuple = ()
    jacobian_address: int | None = None

    @property
    def n_params(self) -> int:
        """The state dimension ``n`` (the name `GradientFlow` uses)."""
        return self.n


@dataclass(frozen=True)
class _Compiled:
    """Addresses of a system's compiled functions (jac 0 when absent) and what keeps them alive."""

    flow: int
    loss: int
    params: np.ndarray
    n: int
    keepalive: tuple
    jac: int = 0


def _compiled(system, jacobian: bool = True) -> _Compiled:
    """The compiled functions of a GradientFlow or CompiledSystem (the Jacobian if wanted)."""
    if isinstance(system, CompiledSystem):
        return _Compiled(int(system.flow_address), int(system.loss_address),
                         np.ascontiguousarray(system.params, dtype=np.float64), int(system.n),
                         system.keepalive, int(system.jacobian_address or 0))
    from narrowflow.model import GradientFlow
    if not isinstance(system, GradientFlow):
        raise TypeError(f"flow must be a GradientFlow or CompiledSystem, got {type(system).__name__}")
    from narrowflow import rhs
    fns = rhs.compile_network(system.network)
    params = rhs.pack_params(system)
    return _Compiled(fns.flow_address, fns.loss_address, params, system.n_params, (fns,),
                     fns.jacobian_address if jacobian else 0)


def _needs_jacobian(method: str) -> bool:
    return method in IMPLICIT or method == "auto"


@dataclass(frozen=True)
class EnsembleProblem:
    """Everything `solve_chunk` needs except the initial states (picklable).

    Build it with `make_problem`, which validates. The fields mirror the arguments of
    `solve_ensemble`, with defaults resolved.

    Parameters
    ----------
    flow : GradientFlow or CompiledSystem
        The system to integrate.
    method : str, optional
        One of `METHODS`.
    t_span : tuple of float, optional
        ``(t0, t1)``, ``t0 < t1``; ``t1`` may be ``inf`` when ``gtol`` is set.
    rtol, atol : float, optional
        Local error tolerances.
    dt : float or None, optional
        Fixed step (rk4), learning rate (gd) or first step; None for adaptive methods
        without a given first step.
    max_steps : int, optional
        Attempted steps per trajectory.
    gtol : float or None, optional
        Convergence threshold on ``||grad L||_2``; None when off.
    save_at : ndarray of float64, shape (K,), optional
        Sorted save times in ``t_span`` (possibly empty).
    escape_threshold : float or None, optional
        Loss level whose first crossing is recorded; None when off.
    divergence_bound : float, optional
        Bound on ``|theta|_inf``.
    lanes : int, optional
        Trajectories per right-hand-side call.
    save_states : bool, optional
        Whether states are saved on ``save_at`` (losses always are).
    max_step : float or None, optional
        Largest adaptive step; None for unbounded.
    """

    flow: object
    method: str = DEFAULT_METHOD
    t_span: tuple = (0.0, 100.0)
    rtol: float = 1e-8
    atol: float = 1e-10
    dt: float | None = None
    max_steps: int = 10**6
    gtol: float | None = None
    save_at: np.ndarray = field(default_factory=lambda: np.empty(0))
    escape_threshold: float | None = None
    divergence_bound: float = DEFAULT_BOUND
    lanes: int = DEFAULT_LANES
    save_states: bool = True
    max_step: float | None = None

    @property
    def n_params(self) -> int:
        """The state dimension ``p``."""
        return int(self.flow.n_params)

    @property
    def n_save(self) -> int:
        """The number ``K`` of save times."""
        return int(self.save_at.shape[0])


def _real(value, name, positive=False, finite=True):
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return v


def _int(value, name, minimum=1, maximum=2**63 - 1):
    """An integer in [minimum, maximum] (default: what a C int64 holds), or an error naming it."""
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return v


MIN_THREAD_CAP = 64


def max_threads() -> int:
    """The most OpenMP threads a run may ask for.

    More threads than this only oversubscribe the cores, and far more than the system can
    create crash inside the OpenMP runtime, so they are refused.

    Returns
    -------
    int
        4 x the cores available to this process, at least ``MIN_THREAD_CAP`` (64).
    """
    return max(MIN_THREAD_CAP, 4 * default_threads())


def make_problem(flow, *, method=DEFAULT_METHOD, t_span=(0.0, 100.0), save_at=None, rtol=1e-8,
                 atol=1e-10, dt=None, max_steps=10**6, gtol=None, escape_threshold=None,
                 divergence_bound=DEFAULT_BOUND, lanes=DEFAULT_LANES,
                 save_states=True, max_step=None) -> EnsembleProblem:
    """Validate the solver settings and return an `EnsembleProblem`.

    Parameters
    ----------
    flow : GradientFlow or CompiledSystem
        The system to integrate.
    method, t_span, save_at, rtol, atol, dt, max_steps, gtol, escape_threshold
        As in `solve_ensemble`.
    divergence_bound, lanes, save_states, max_step
        As in `solve_ensemble`.

    Returns
    -------
    EnsembleProblem
        The settings with defaults resolved; ``save_at`` as a sorted float64 array.

    Raises
    ------
    TypeError, ValueError
        For an invalid setting; the message names the argument.
    """
    from narrowflow.model import GradientFlow
    if not isinstance(flow, (GradientFlow, CompiledSystem)):
        raise TypeError(f"flow must be a GradientFlow or CompiledSystem, got {type(flow).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    try:
        t0, t1 = t_span
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be a pair (t0, t1), got {t_span!r}") from None
    t0 = _real(t0, "t_span[0]")
    t1 = _real(t1, "t_span[1]", finite=False)
    if not t1 > t0:
        raise ValueError(f"t_span must satisfy t0 < t1 (forward integration), got {t_span!r}")
    if math.isinf(t1) and gtol is None:
        raise ValueError("t_span: an infinite end time needs gtol (each trajectory then runs "
                         "until ||grad L|| < gtol, divergence or max_steps)")
    if math.isinf(t1) and method in ("rk4", "gd"):
        raise ValueError(f"t_span: method={method!r} has a fixed step and needs a finite end time")
    rtol = _real(rtol, "rtol", positive=True)
    atol = _real(atol, "atol", positive=True)
    if rtol < 1e-15:
        raise ValueError(f"rtol must be >= 1e-15 (round-off), got {rtol!r}")
    fixed = method in ("rk4", "gd")
    if method == "taylor" and not isinstance(flow, GradientFlow):
        raise ValueError("flow: method='taylor' needs a GradientFlow (its Taylor coefficients "
                         "are generated from the network); a CompiledSystem has none")
    if isinstance(flow, CompiledSystem) and method in IMPLICIT and not flow.jacobian_address:
        raise ValueError(f"flow: method={method!r} needs the Jacobian; give the CompiledSystem "
                         f"a jacobian_address")
    if dt is not None:
        dt = _real(dt, "dt", positive=True)
    elif fixed:
        what = "a learning rate" if method == "gd" else "a step size"
        raise ValueError(f"dt is required for method={method!r} ({what}; fixed-step method)")
    if method == "gd":
        # every step of gradient descent is one step of learning rate dt: the kernel's last
        # step ends at t1, so a t_span that is not a whole number of steps would end with a
        # step of another learning rate
        ratio = (t1 - t0) / dt
        steps = round(ratio) if math.isfinite(ratio) else 0
        if steps < 1 or abs(ratio - steps) > 1e-9 * steps:
            raise ValueError(
                f"dt: for method='gd', t_span[1] - t_span[0] must be a whole number of steps of "
                f"dt (the learning rate); got t_span={t_span!r}, dt={dt!r}: "
                f"{ratio:.12g} steps")
    max_steps = _int(max_steps, "max_steps")
    if max_step is not None:
        max_step = _real(max_step, "max_step", positive=True)
    if gtol is not None:
        gtol = _real(gtol, "gtol", positive=True)
    if escape_threshold is not None:
        escape_threshold = _real(escape_threshold, "escape_threshold")
    divergence_bound = _real(divergence_bound, "divergence_bound", positive=True, finite=False)
    if not isinstance(save_states, (bool, np.bool_)):
        raise TypeError(f"save_states must be True or False, got {save_states!r}")
    lanes = _int(lanes, "lanes", maximum=1024)
    if save_at is None:
        ts = np.empty(0)
    else:
        try:
            ts = np.asarray(save_at)
        except (ValueError, TypeError):
            raise ValueError("save_at must be a 1-D array of times; rows of different lengths "
                             "(ragged)") from None
        if ts.dtype.kind not in "iuf":
            raise TypeError(f"save_at must be an array of real times, got dtype {ts.dtype}")
        ts = np.atleast_1d(ts.astype(np.float64))
        if ts.ndim != 1:
            raise ValueError(f"save_at must be 1-D, got shape {ts.shape}")
        if not np.all(np.isfinite(ts)):
            raise ValueError("save_at must be finite")
        if np.any(np.diff(ts) < 0):
            raise ValueError("save_at must be sorted in increasing order")
        if ts.size and (ts[0] < t0 or ts[-1] > t1):
            raise ValueError(f"save_at must lie inside t_span [{t0}, {t1}], got "
                             f"[{ts[0]}, {ts[-1]}]")
    return EnsembleProblem(flow=flow, method=method, t_span=(t0, t1), rtol=rtol, atol=atol,
                           dt=dt, max_steps=max_steps, gtol=gtol,
                           save_at=np.ascontiguousarray(ts), escape_threshold=escape_threshold,
                           divergence_bound=divergence_bound, lanes=lanes,
                           save_states=bool(save_states), max_step=max_step)


def check_theta0(theta0, n_params: int) -> np.ndarray:
    """Check initial states and return them as a C-contiguous float64 array.

    Parameters
    ----------
    theta0 : array_like of real, shape (N, p)
        One initial state per row.
    n_params : int
        The state dimension ``p``.

    Returns
    -------
    ndarray of float64, shape (N, p)
        ``theta0``, C-contiguous (a copy only when needed).

    Raises
    ------
    TypeError
        If ``theta0`` is not real.
    ValueError
        If it is ragged, has the wrong shape or holds NaN or inf (the rows are named).
    """
    try:
        arr = np.asarray(theta0)
    except (ValueError, TypeError):
        raise ValueError("theta0 must be an (N, p) array; rows of different lengths "
                         "(ragged)") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"theta0 must be a real array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != n_params:
        raise ValueError(f"theta0 must have shape (N, {n_params}) (one row per trajectory), "
                         f"got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        raise ValueError(f"theta0 must be finite; rows {bad[:5].tolist()} contain NaN or inf")
    return arr


def output_nbytes(problem: EnsembleProblem, n_traj: int) -> int:
    """Bytes `solve_ensemble` allocates for the outputs of ``n_traj`` trajectories.

    Parameters
    ----------
    problem : EnsembleProblem
        The settings (state dimension, save grid, what is saved).
    n_traj : int
        Number of trajectories.

    Returns
    -------
    int
        Bytes of all output arrays (the initial states not included).
    """
    p, K = problem.n_params, problem.n_save
    per = 8 * p + 8 + 1 + 4 * 8 + 8            # y_final, t_final, status, counts, loss_final
    if problem.escape_threshold is not None:
        per += 8
    per += K * (8 * p * problem.save_states + 8)   # y_saved, loss_saved
    return n_traj * per


def allocate(problem: EnsembleProblem, n_traj: int) -> dict:
    """Allocate the output arrays for ``n_traj`` trajectories.

    Parameters
    ----------
    problem : EnsembleProblem
        The settings (state dimension ``p``, ``K`` save times, what is saved).
    n_traj : int
        Number of trajectories ``N``.

    Returns
    -------
    dict of str to ndarray
        ``y_final`` (N, p), ``t_final``, ``loss_final`` (N,) float64; ``status`` (N,) int8;
        ``nfev``, ``n_accepted``, ``n_rejected``, ``njev`` (N,) int64; and, when asked for,
        ``y_saved`` (N, K, p), ``loss_saved`` (N, K), ``escape_time`` (N,) float64 filled
        with NaN.
    """
    p, K = problem.n_params, problem.n_save
    out = dict(
        y_final=np.empty((n_traj, p)), t_final=np.empty(n_traj),
        status=np.empty(n_traj, dtype=np.int8), nfev=np.empty(n_traj, dtype=np.int64),
        n_accepted=np.empty(n_traj, dtype=np.int64), n_rejected=np.empty(n_traj, dtype=np.int64),
        njev=np.zeros(n_traj, dtype=np.int64), loss_final=np.empty(n_traj))
    if K and problem.save_states:
        out["y_saved"] = np.full((n_traj, K, p), np.nan)
    if K:
        out["loss_saved"] = np.full((n_traj, K), np.nan)
    if problem.escape_threshold is not None:
        out["escape_time"] = np.full(n_traj, np.nan)
    return out


def auto_nonstiff(problem: EnsembleProblem) -> str:
    """The method ``"auto"`` starts `problem`'s trajectories with: ``"taylor"`` for a
    GradientFlow at ``rtol <= AUTO_TAYLOR_RTOL``, else `AUTO_NONSTIFF` (``"vern7"``).

    Parameters
    ----------
    problem : EnsembleProblem
        With ``method="auto"``.

    Returns
    -------
    str
        The explicit method; stiff trajectories continue with `AUTO_STIFF` either way.
    """
    from narrowflow.model import GradientFlow
    if isinstance(problem.flow, GradientFlow) and problem.rtol <= AUTO_TAYLOR_RTOL:
        return "taylor"
    return AUTO_NONSTIFF


def stiff_hlam(method: str) -> float:
    """The h|λ| beyond which ``"auto"``'s stiffness test counts an explicit step as stiff.

    Parameters
    ----------
    method : str
        An explicit method with Hairer's stiffness test (``"dop853"``, ``"vern7"``).

    Returns
    -------
    float
        ``STIFF_FRACTION`` times the method's real stability boundary (1.28 for DOP853,
        0.93 for Vern7).
    """
    return STIFF_FRACTION * tableaus.get(method).stability_boundary


def taylor_stiff_ratio(rtol: float) -> float:
    """The slowness beyond which ``"auto"``'s Taylor start hands a trajectory to `AUTO_STIFF`.

    Parameters
    ----------
    rtol : float
        The relative tolerance of the run.

    Returns
    -------
    float
        ``TAYLOR_STIFF_RATIO * (1e-10 / rtol) ** 0.25``: a stability-limited Taylor step
        counts as stiff once ``||J||_F ||f|| / ||J f||`` exceeds it (docs/integrators.md).
    """
    return TAYLOR_STIFF_RATIO * (1e-10 / rtol) ** 0.25


def _uses_taylor(problem: EnsembleProblem) -> bool:
    return problem.method == "taylor" or (problem.method == "auto"
                                          and auto_nonstiff(problem) == "taylor")


def _taylor_function(problem: EnsembleProblem):
    """(order, compiled Taylor function) of method "taylor": code specialised to the order,
    compiled once per network and order (10-50 s on NF4), then loaded from the disk cache
    and kept per process."""
    from narrowflow import taylor as _taylor
    order = _taylor.order_for(problem.rtol)
    tf = _taylor.compile_taylor(problem.flow, order)
    tf.address      # compiles now
    return order, tf


def solve_chunk(problem: EnsembleProblem, theta0, threads: int = 1, out: dict | None = None,
                _compiled_cache=None, profile: bool = False, _checked: bool = False) -> dict:
    """Integrate one block of trajectories theta0 (n, p); returns (or fills) the output dict.

    Keys: y_final (n, p), t_final, status (int8), nfev, n_accepted, n_rejected, njev,
    loss_final (n,), and y_saved (n, K, p) / loss_saved (n, K) with save points, escape_time
    (n,) with an escape threshold. `out` may hold preallocated arrays (views into larger
    ones) of those shapes (checked: ValueError naming the array). Safe to call from a Dask
    worker: compiles (or loads from Numba's cache) there. _checked=True (internal,
    solve_ensemble): theta0 is already a C-contiguous finite float64 (n, p) array.
    """
    from narrowflow._ext import ensemble as _kernel
    y0 = theta0 if _checked else check_theta0(theta0, problem.n_params)
    n = y0.shape[0]
    if out is None:
        out = allocate(problem, n)
    comp = _compiled_cache or _compiled(problem.flow, _needs_jacobian(problem.method))
    # Ctrl-C reaches the kernel through its own SIGINT handler, which only the main thread
    # may install (Dask runs tasks in worker threads: their runs are not interruptible)
    interruptible = threading.current_thread() is threading.main_thread()
    t0, t1 = problem.t_span
    escape = np.nan if problem.escape_threshold is None else problem.escape_threshold
    stats = np.zeros(4, dtype=np.int64)

    opts = _kernel.KernelOptions(
        t0=t0, t1=t1, rtol=problem.rtol, atol=problem.atol,
        h_init=0.0, dt=0.0, gtol=problem.gtol or 0.0, bound=problem.divergence_bound,
        max_steps=problem.max_steps, escape=escape, max_step=problem.max_step or 0.0,
        lanes=problem.lanes, threads=int(threads), profile=bool(profile),
        jac_address=comp.jac, interruptible=interruptible)

    def run(tab, y, rows=None, t_start=None, h_start=None, h_last=None, **changes):
        adaptive = getattr(tab, "adaptive", True)
        o = opts.replace(h_init=problem.dt if (problem.dt is not None and adaptive) else 0.0,
                         dt=problem.dt if (problem.dt is not None and not adaptive) else 0.0,
                         **changes)
        stats[:] += _kernel.integrate(comp.flow, comp.loss, comp.params, y, tab, o,
                                      problem.save_at, out, rows=rows, t_start=t_start,
                                      h_start=h_start, h_last=h_last)

    def run_taylor(y, **changes):
        order, tf = _taylor_function(problem)
        if changes.get("stiff_switch"):
            from narrowflow.taylor import stability_boundary
            changes.update(stiff_hlam=TAYLOR_STIFF_FRACTION * stability_boundary(order),
                           stiff_steps=TAYLOR_STIFF_STEPS,
                           stiff_ratio=taylor_stiff_ratio(problem.rtol))
        run(None, y, taylor_address=tf.address, taylor_order=order,
            taylor_work=tf.work_size(order, problem.lanes, problem.flow.data.n), **changes)

    if problem.method == "auto":
        h_last = np.zeros(n)
        if auto_nonstiff(problem) == "taylor":
            run_taylor(y0, stiff_switch=comp.jac != 0, h_last=h_last)
        else:
            run(tableaus.get(AUTO_NONSTIFF), y0, stiff_switch=comp.jac != 0, h_last=h_last,
                stiff_hlam=stiff_hlam(AUTO_NONSTIFF), stiff_steps=STIFF_STEPS)
        rows = np.flatnonzero(out["status"] == _ST_STIFF)
        if rows.size:
            # continue each stiff trajectory where it stopped, in the same output rows
            run(tableaus.get(AUTO_STIFF), np.ascontiguousarray(out["y_final"]), rows=rows,
                t_start=np.ascontiguousarray(out["t_final"]), h_start=h_last, resume=True,
                rtol=max(problem.rtol * AUTO_STIFF_TOL, 1e-15),
                atol=problem.atol * AUTO_STIFF_TOL)
    elif problem.method == "taylor":
        run_taylor(y0)
    else:
        run(tableaus.get(problem.method), y0)
    out["loss_final"][...] = _kernel.eval_lanes(comp.loss, comp.params, out["y_final"],
                                                problem.lanes, int(threads))
    # a finite state whose loss is not finite (e.g. residuals beyond 1e154) has not trained
    # to anything: DIVERGED, never SUCCESS or CONVERGED
    ok = (out["status"] == Status.SUCCESS) | (out["status"] == Status.CONVERGED)
    out["status"][ok & ~np.isfinite(out["loss_final"])] = Status.DIVERGED
    if problem.n_save:
        _hold_converged(problem, out)
    out.setdefault("_stats", np.zeros(4, dtype=np.int64))
    out["_stats"] += stats
    return out


def _hold_converged(problem, out):
    """Save points after a CONVERGED stop hold the final state (the flow is at rest within gtol)."""
    conv = out["status"] == Status.CONVERGED
    if not conv.any():
        return
    rows = np.flatnonzero(conv)
    later = problem.save_at[None, :] > out["t_final"][rows, None]
    r, k = np.nonzero(later)
    if "y_saved" in out:
        out["y_saved"][rows[r], k] = out["y_final"][rows[r]]
    out["loss_saved"][rows[r], k] = out["loss_final"][rows[r]]


def default_threads() -> int:
    """The number of CPU cores this process may run on (its affinity mask on Linux).

    Returns
    -------
    int
        The default ``threads`` of `solve_ensemble`.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _check_memory(problem: EnsembleProblem, n_traj: int, memory_limit, theta0=None) -> None:
    """Refuse (ValueError naming memory_limit) outputs larger than memory_limit bytes (a
    number, e.g. 1e9), counting the float64 C-contiguous copy of theta0 when one is needed
    (a broadcast view is checked before it is materialised)."""
    limit = (default_memory_limit() if memory_limit is None
             else _real(memory_limit, "memory_limit", positive=True))
    need = output_nbytes(problem, n_traj)
    if theta0 is not None and not (isinstance(theta0, np.ndarray) and theta0.dtype == np.float64
                                   and theta0.flags.c_contiguous):
        need += 8 * n_traj * problem.n_params
    if need > limit:
        raise ValueError(
            f"memory_limit: the outputs of {n_traj} trajectories (rows of theta0; "
            f"{problem.n_save} save points) "
            f"need {need / 2**30:.3g} GiB, over memory_limit = {limit / 2**30:.3g} GiB; use "
            f"fewer trajectories or save points, or raise memory_limit")


@dataclass
class EnsembleResult:
    """Result of `solve_ensemble`: N trajectories of p parameters, K save times.

    Times are in the flow's time units; losses are values of L.

    Parameters
    ----------
    y_final : ndarray of float64, shape (N, p)
        The state where each trajectory stopped.
    t_final : ndarray of float64, shape (N,)
        The time where it stopped.
    status : ndarray of int8, shape (N,)
        `Status` codes.
    nfev : ndarray of int64, shape (N,)
        Right-hand-side evaluations per trajectory.
    n_accepted, n_rejected : ndarray of int64, shape (N,)
        Accepted and rejected steps.
    loss_final : ndarray of float64, shape (N,)
        The loss at ``y_final``.
    t_saved : ndarray of float64, shape (K,), or None
        The save times (None without ``save_at``).
    y_saved : ndarray of float64, shape (N, K, p), or None
        States on the save grid (None without ``save_at`` or with ``save_states=False``).
    loss_saved : ndarray of float64, shape (N, K), or None
        Losses on the save grid.
    escape_threshold : float or None
        The loss level of ``escape_time``.
    escape_time : ndarray of float64, shape (N,), or None
        First time the loss fell below ``escape_threshold`` (NaN: never).
    flow : GradientFlow or CompiledSystem
        The system integrated.
    method : str
        The method asked for.
    rtol, atol : float
        The tolerances.
    t_span : tuple of float
        ``(t0, t1)``.
    elapsed : float
        Wall time of the run, in seconds (compiling the right-hand side or the Taylor code
        happens before it and is not counted).
    dt : float or None, optional
        The fixed step, learning rate or first step.
    gtol : float or None, optional
        The convergence threshold.
    seed : int or None, optional
        The seed of the initial states (metadata only).
    rhs_calls : int, optional
        Lane-batched right-hand-side calls.
    lane_evaluations : int, optional
        Lane evaluations that served a trajectory.
    rhs_seconds : float or None, optional
        Seconds inside the right-hand side (``profile=True`` only).
    worker_seconds : float, optional
        Seconds spent by the kernel's workers, summed.
    lanes : int, optional
        Trajectories per right-hand-side call.
    threads : int, optional
        OpenMP threads used.
    njev : ndarray of int64, shape (N,), or None, optional
        Jacobian (Hessian) evaluations per trajectory.
    """

    y_final: np.ndarray
    t_final: np.ndarray
    status: np.ndarray
    nfev: np.ndarray
    n_accepted: np.ndarray
    n_rejected: np.ndarray
    loss_final: np.ndarray
    t_saved: np.ndarray | None
    y_saved: np.ndarray | None
    loss_saved: np.ndarray | None
    escape_threshold: float | None
    escape_time: np.ndarray | None
    flow: object
    method: str
    rtol: float
    atol: float
    t_span: tuple
    elapsed: float
    dt: float | None = None
    gtol: float | None = None
    seed: int | None = None
    rhs_calls: int = 0
    lane_evaluations: int = 0
    rhs_seconds: float | None = None
    worker_seconds: float = 0.0
    lanes: int = DEFAULT_LANES
    threads: int = 1
    njev: np.ndarray | None = None

    @property
    def n_trajectories(self) -> int:
        """The number of trajectories ``N``."""
        return int(self.y_final.shape[0])

    @property
    def lane_occupancy(self) -> float:
        """Fraction of lane evaluations of the right-hand side that served a trajectory."""
        total = self.rhs_calls * self.lanes
        return self.lane_evaluations / total if total else float("nan")

    @property
    def rhs_fraction(self) -> float | None:
        """Fraction of the workers' time spent inside the right-hand side (profile=True only)."""
        if self.rhs_seconds is None or not self.worker_seconds:
            return None
        return self.rhs_seconds / self.worker_seconds

    def counts(self) -> dict:
        """Count the trajectories by status.

        Returns
        -------
        dict of str to int
            ``{status name: number of trajectories}`` for every `Status`.
        """
        return {s.name: int(np.count_nonzero(self.status == s)) for s in Status}

    def __repr__(self) -> str:
        c = ", ".join(f"{k}={v}" for k, v in self.counts().items() if v)
        return (f"EnsembleResult(N={self.n_trajectories}, method={self.method!r}, "
                f"t_span={self.t_span}, {c}, elapsed={self.elapsed:.3g} s)")

    def to_xarray(self):
        """The result as an ``xarray.Dataset`` in the narrowflow schema (docs/design.md §8).

        Returns
        -------
        xarray.Dataset
            Dimensions ``trajectory``, ``parameter``, ``time`` (when saved) and, for a
            `GradientFlow`, ``sample``, ``input``, ``output`` (the data set); the settings,
            network and version as attributes.
        """
        import xarray as xr

        import narrowflow
        from narrowflow.model import GradientFlow
        flow = self.flow
        if isinstance(flow, GradientFlow):
            names = flow.network.parameter_names()
        else:
            names = [f"y{i}" for i in range(self.y_final.shape[1])]
        dv = {
            "y_final": (("trajectory", "parameter"), self.y_final),
            "t_final": (("trajectory",), self.t_final),
            "status": (("trajectory",), self.status),
            "nfev": (("trajectory",), self.nfev),
            "n_accepted": (("trajectory",), self.n_accepted),
            "n_rejected": (("trajectory",), self.n_rejected),
            **({"njev": (("trajectory",), self.njev)} if self.njev is not None else {}),
            "loss_final": (("trajectory",), self.loss_final),
        }
        coords = {"parameter": names, "trajectory": np.arange(self.n_trajectories)}
        if self.y_saved is not None:
            dv["y_saved"] = (("trajectory", "time", "parameter"), self.y_saved)
        if self.loss_saved is not None:
            dv["loss_saved"] = (("trajectory", "time"), self.loss_saved)
            coords["time"] = self.t_saved
        if self.escape_time is not None:
            dv["escape_time"] = (("trajectory",), self.escape_time)
        attrs = dict(method=self.method, rtol=self.rtol, atol=self.atol,
                     t0=float(self.t_span[0]), t1=float(self.t_span[1]),
                     narrowflow_version=narrowflow.__version__,
                     status_codes="; ".join(f"{s.value}={s.name}" for s in Status))
        if isinstance(flow, GradientFlow):
            net = flow.network
            dv["data_x"] = (("sample", "input"), flow.data.x)
            dv["data_y"] = (("sample", "output"), flow.data.y)
            attrs.update(width=net.width, input_dim=net.input_dim, output_dim=net.output_dim,
                         activation=net.activation.name, kappa=float(net.activation.kappa),
                         bias=int(net.bias), weight_decay=float(flow.weight_decay))
        for key in ("seed", "escape_threshold", "dt", "gtol"):
            val = getattr(self, key)
            if val is not None:
                attrs[key] = val
        return xr.Dataset(dv, coords=coords, attrs=attrs)


def solve_ensemble(flow, theta0, t_span=(0.0, 100.0), save_at=None, method=DEFAULT_METHOD,
                   rtol=1e-8, atol=1e-10, dt=None, max_steps=10**6, gtol=None, threads=None,
                   progress=False, *, escape_threshold=None, divergence_bound=DEFAULT_BOUND,
                   lanes=DEFAULT_LANES, chunk_size=None, memory_limit=None,
                   save_states=True, seed=None, profile=False,
                   max_step=None) -> EnsembleResult:
    """Integrate the gradient flow from every row of theta0, each with its own step size.

    Runs in this process; ``narrowflow.solve_ensemble`` takes the same arguments and can run
    the ensemble on Dask instead (``backend="dask"``).

    Parameters
    ----------
    flow : GradientFlow or CompiledSystem
        The system to integrate.
    theta0 : array_like of float, shape (N, p)
        Initial states, one per row, finite.
    t_span : tuple of float, optional
        ``(t0, t1)`` with ``t0 < t1``, in the flow's time units. For ``"gd"``, t advances by
        ``dt`` per step and ``t1 - t0`` must be a whole number of steps. ``t1 = np.inf``
        needs ``gtol``: every trajectory then runs until it converges, diverges or uses
        ``max_steps``.
    save_at : array_like of float, shape (K,), optional
        Sorted times in ``t_span`` where ``y_saved`` and ``loss_saved`` are filled from
        dense output (4th order for dp5, tsit5 and rodas5p, 7th for dop853 and vern7, 3rd for
        rk4 and rodas4, linear for gd). `log_times` makes a grid for runs that span decades.
    method : str, optional
        ``"auto"`` (default: Vern7, or the Taylor method for a `GradientFlow` at
        ``rtol <= 1e-9``, switching each trajectory to BDF at a hundredth of the
        tolerances once it is stiff);
        ``"rodas5p"``, ``"rodas4"`` (Rosenbrock, for stiff problems, with the exact Hessian);
        ``"bdf"`` (variable-order NDF, for stiff problems: about one evaluation per step and
        few Hessians, a larger error at a given rtol; dense output of its order);
        ``"dp5"``, ``"tsit5"``, ``"dop853"``, ``"vern7"`` (explicit, adaptive); ``"rk4"``,
        ``"gd"``
        (fixed step ``dt``); ``"taylor"`` (adaptive Taylor series, `GradientFlow` only:
        order from rtol, Jorba and Zou's step). See docs/integrators.md.
    rtol, atol : float, optional
        Relative and absolute local error tolerances (adaptive methods).
    dt : float, optional
        Step (rk4), learning rate (gd), or the first step of an adaptive method (default:
        Hairer's heuristic).
    max_steps : int, optional
        Attempted steps per trajectory.
    gtol : float, optional
        Stop a trajectory as ``CONVERGED`` when ``||grad L||_2 < gtol`` (checked at every
        accepted step).
    threads : int, optional
        OpenMP threads (default: all cores available; at most `max_threads`).
    progress : bool, optional
        Show a tqdm bar advancing per chunk.
    escape_threshold : float, optional
        Record the first time the loss falls below it (a root of the dense-output loss).
    divergence_bound : float, optional
        ``DIVERGED`` when ``|theta|_inf`` exceeds it (a ``theta0`` row beyond it stops at t0
        with ``nfev`` 0), when a state is non-finite, or when the gradient at an accepted
        state is.
    lanes : int, optional
        Trajectories per right-hand-side call (at most 1024).
    chunk_size : int, optional
        Trajectories per kernel call, the granularity of progress and Ctrl-C (default about
        64k).
    memory_limit : float, optional
        Bytes the outputs may take (default 80 % of RAM); larger requests are refused before
        anything is allocated.
    save_states : bool, optional
        False keeps only ``loss_saved`` (``y_saved`` is None), for large ensembles.
    seed : int, optional
        Recorded in the result as metadata; it does not draw anything.
    profile : bool, optional
        Time every right-hand-side call (``result.rhs_fraction``; costs a few per cent).
    max_step : float, optional
        Largest step of an adaptive method (default: unbounded, i.e. ``t1 - t0``).

    Returns
    -------
    EnsembleResult
        Save points after a trajectory stopped early are NaN, except after ``CONVERGED``,
        where they hold the final state. ``escape_time`` is NaN where the loss never fell
        below the threshold (t0 where it starts below).

    Raises
    ------
    TypeError, ValueError
        For an invalid argument, before any work is done; the message names it.
    KeyboardInterrupt
        On Ctrl-C (the kernel stops within one step).

    Notes
    -----
    Results are bitwise identical for any ``threads``, ``chunk_size`` and ``lanes``, as long
    as the right-hand side evaluates lanes independently.
    """
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    problem = make_problem(flow, method=method, t_span=t_span, save_at=save_at, rtol=rtol,
                           atol=atol, dt=dt, max_steps=max_steps, gtol=gtol,
                           escape_threshold=escape_threshold, divergence_bound=divergence_bound,
                           lanes=lanes, save_states=save_states, max_step=max_step)
    threads = (default_threads() if threads is None
               else _int(threads, "threads", maximum=max_threads()))
    if isinstance(theta0, np.ndarray) and theta0.ndim == 2:
        # before theta0 is copied (a broadcast view would be materialised)
        _check_memory(problem, theta0.shape[0], memory_limit, theta0)
    y0 = check_theta0(theta0, problem.n_params)
    N = y0.shape[0]
    if chunk_size is None:
        # big chunks (each ends with its lanes draining); smaller with a progress bar
        chunk_size = max(65536, problem.lanes * threads * 64)
        if progress:
            chunk_size = max(problem.lanes * threads * 32, min(chunk_size, -(-N // 50)))
    else:
        chunk_size = _int(chunk_size, "chunk_size")
    _check_memory(problem, N, memory_limit)
    comp = _compiled(problem.flow, _needs_jacobian(problem.method))
    out = allocate(problem, N)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=N, unit="traj", desc=f"solve_ensemble[{method}]")
    stats = np.zeros(4, dtype=np.int64)
    try:
        if _uses_taylor(problem):
            # compiled before the clock starts, like the right-hand side: `elapsed` is the run
            if bar is not None:
                bar.set_description(f"solve_ensemble[{method}] compiling the Taylor method "
                                    f"(once per network and order)")
            _taylor_function(problem)
            if bar is not None:
                bar.set_description(f"solve_ensemble[{method}]")
        start = time.perf_counter()
        for lo in range(0, N, chunk_size):
            hi = min(N, lo + chunk_size)
            view = {k: v[lo:hi] for k, v in out.items()}
            solve_chunk(problem, y0[lo:hi], threads=threads, out=view, _compiled_cache=comp,
                        profile=profile, _checked=True)
            stats += view["_stats"]
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    return EnsembleResult(
        y_final=out["y_final"], t_final=out["t_final"], status=out["status"], nfev=out["nfev"],
        n_accepted=out["n_accepted"], n_rejected=out["n_rejected"], loss_final=out["loss_final"],
        t_saved=problem.save_at.copy() if problem.n_save else None,
        y_saved=out.get("y_saved"), loss_saved=out.get("loss_saved"),
        escape_threshold=problem.escape_threshold, escape_time=out.get("escape_time"),
        flow=flow, method=method, rtol=problem.rtol, atol=problem.atol, t_span=problem.t_span,
        elapsed=elapsed, dt=problem.dt, gtol=problem.gtol, seed=seed,
        rhs_calls=int(stats[0]), lane_evaluations=int(stats[1]), lanes=problem.lanes,
        rhs_seconds=stats[2] * 1e-9 if profile else None, worker_seconds=stats[3] * 1e-9,
        threads=threads, njev=out["njev"])


def log_times(stop: float, num: int = 50, start: float | None = None, t0: float = 0.0) -> np.ndarray:
    """A save grid for runs that span decades: t0, then num - 1 log-spaced times up to stop.

    Parameters
    ----------
    stop : float
        The last time, ``stop > t0``.
    num : int, optional
        Number of times, at least 2.
    start : float, optional
        The first time after t0, as an offset from t0 (default: ``stop * 1e-9``, at least
        1e-3).
    t0 : float, optional
        The first time of the grid.

    Returns
    -------
    ndarray of float64, shape (num,)
        ``t0``, then ``t0 + geomspace(start, stop - t0, num - 1)``: sorted, in
        ``[t0, stop]``, usable as ``save_at``.

    Raises
    ------
    TypeError, ValueError
        For a non-real or out-of-range argument (named).
    """
    stop = _real(stop, "stop")
    t0 = _real(t0, "t0")
    num = _int(num, "num", minimum=2)
    if not stop > t0:
        raise ValueError(f"stop must be > t0, got stop={stop!r}, t0={t0!r}")
    first = max(stop * 1e-9, 1e-3) if start is None else _real(start, "start", positive=True)
    if not first < stop - t0:
        raise ValueError(f"start must be < stop - t0, got start={first!r}")
    return np.concatenate([[t0], t0 + np.geomspace(first, stop - t0, num - 1)])
