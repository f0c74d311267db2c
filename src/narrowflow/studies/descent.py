"""Gradient descent against gradient flow: at which learning rates GD still follows the
flow to the same limits. Runs integrations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from narrowflow.studies.results import _DIVERGED, _check_quantiles
from narrowflow.studies.statistics import wilson_interval
from narrowflow.studies.limits import LimitPoints, limit_points


@dataclass
class GDComparison:
    """Gradient descent θ_{k+1} = θ_k − η∇L(θ_k) against the flow from the same θ0.

    R learning rates, N trajectories, T comparison times (returned by `gd_vs_flow`).

    Parameters
    ----------
    learning_rates : ndarray of float64, shape (R,)
        The learning rates η.
    times : ndarray of float64, shape (R, T)
        The comparison times k·η (multiples of η nearest a common grid).
    distance : ndarray of float64, shape (R, N, T)
        ||θ_GD(k η) − θ_flow(k η)||, NaN once a GD run diverged.
    changed : ndarray of float64, shape (R,)
        Fraction of trajectories whose limit cluster differs (GD at t_end assigned to the
        flow's clusters modulo symmetry; a diverged or unassigned GD run counts as changed).
    changed_ci : ndarray of float64, shape (R, 2)
        95% Wilson interval of that fraction.
    diverged : ndarray of float64, shape (R,)
        Fraction of GD runs that diverged.
    limit_points : LimitPoints
        The flow's clusters.
    gd_labels : ndarray of int64, shape (R, N)
        The flow's cluster assigned to each GD run's state at t_end (-1: none).
    t_end : float
        The time at which the limits are compared.
    """
    learning_rates: np.ndarray
    times: np.ndarray
    distance: np.ndarray
    changed: np.ndarray
    changed_ci: np.ndarray
    diverged: np.ndarray
    limit_points: LimitPoints
    gd_labels: np.ndarray
    t_end: float

    def distance_quantiles(self, q=(10, 50, 90)) -> np.ndarray:
        """Quantiles across trajectories of the distance GD–flow.

        Parameters
        ----------
        q : sequence of float, optional
            Percentages in [0, 100].

        Returns
        -------
        ndarray of float64, shape (len(q), R, T)
            The quantiles; NaN distances (GD diverged) are ignored.

        Raises
        ------
        ValueError
            If a quantile is outside [0, 100].
        """
        q = _check_quantiles(q)
        with np.errstate(invalid="ignore"):
            return np.nanpercentile(self.distance, q, axis=1)

def gd_vs_flow(flow, theta0, learning_rates, t_end: float = 100.0, *, t_compare=None,
               n_times: int = 40, method="dp5", rtol=1e-10, atol=1e-12, tol=1e-3,
               symmetric=True, max_steps=10**7, threads=None, limit_points_flow=None,
               **solve_kwargs) -> GDComparison:
    """Compare gradient descent with learning rates η against the gradient flow.

    The flow runs once with ``method`` at (rtol, atol) and saves at every comparison time
    (dense output); GD runs through ``solve_ensemble(method="gd", dt=η)``, segment by
    segment (GD is memoryless, so restarting from the last iterate is exact).

    Parameters
    ----------
    flow : GradientFlow
        The flow.
    theta0 : array_like of float, shape (N, p)
        Initial states.
    learning_rates : array_like of float, shape (R,)
        The η values (> 0).
    t_end : float, optional
        Time (GD: t_end/η steps) at which limit clusters are compared.
    t_compare : float, optional
        The window [0, t_compare] for distances, in (0, t_end] (default t_end).
    n_times : int, optional
        Comparison times in the window, rounded to multiples of each η.
    method, rtol, atol : optional
        The flow's integrator and tolerances.
    tol : float, optional
        Clustering scale of the flow's final states (modulo symmetry).
    symmetric : bool, optional
        Cluster modulo the network's symmetries.
    max_steps, threads : optional
        Passed to ``solve_ensemble`` (flow and GD).
    limit_points_flow : LimitPoints, optional
        The flow's clusters, if already known (then ``tol`` and ``symmetric`` are unused).
    **solve_kwargs
        Other keywords for ``solve_ensemble`` (flow and GD).

    Returns
    -------
    GDComparison
        Distances, changed and diverged fractions per learning rate.

    Raises
    ------
    ValueError
        If ``theta0`` is not (N, p), a learning rate is not positive, ``t_end`` is not
        positive or ``t_compare`` is outside (0, t_end].
    """
    from narrowflow.ensemble import solve_ensemble
    th0 = np.asarray(theta0, dtype=float)
    if th0.ndim != 2 or th0.shape[1] != flow.n_params:
        raise ValueError(f"theta0: expected shape (N, {flow.n_params}), got {th0.shape}")
    lrs = np.atleast_1d(np.asarray(learning_rates, dtype=float))
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"learning_rates: expected positive numbers, got {learning_rates!r}")
    if not (np.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end: must be > 0, got {t_end!r}")
    t_compare = float(t_end if t_compare is None else t_compare)
    if not (0 < t_compare <= t_end):
        raise ValueError(f"t_compare: must be in (0, t_end], got {t_compare!r}")
    N = th0.shape[0]
    grid = np.linspace(0.0, t_compare, int(n_times))
    steps = [np.unique(np.round(grid / eta).astype(np.int64)) for eta in lrs]
    T = max(len(s) for s in steps)
    # pad so every η has T comparison steps (repeat the last one: distances identical)
    steps = [np.concatenate([s, np.full(T - len(s), s[-1])]) for s in steps]
    times = np.array([s * eta for s, eta in zip(steps, lrs)])
    save = np.unique(times)
    flow_run = solve_ensemble(flow, th0, t_span=(0.0, float(max(t_end, save[-1]))),
                              save_at=save, method=method, rtol=rtol, atol=atol,
                              max_steps=max_steps, threads=threads, **solve_kwargs)
    y_flow = np.asarray(flow_run.y_saved)
    lp = limit_points_flow
    if lp is None:
        fin = np.where((np.asarray(flow_run.status) == _DIVERGED)[:, None], np.nan,
                       flow_run.y_final)
        lp = limit_points(flow=flow, theta=fin, loss=flow_run.loss_final, tol=tol,
                          symmetric=symmetric)
    R = lrs.size
    dist = np.full((R, N, T), np.nan)
    gd_labels = np.full((R, N), -1, dtype=np.int64)
    changed, diverged = np.zeros(R), np.zeros(R)
    for r, eta in enumerate(lrs):
        y = th0.copy()
        done = 0
        alive = np.ones(N, dtype=bool)
        seg_end = list(steps[r]) + [int(np.round(t_end / eta))]
        for idx, k in enumerate(seg_end):
            if k > done:
                res = solve_ensemble(flow, y, t_span=(0.0, (k - done) * eta), method="gd",
                                     dt=eta, max_steps=max_steps, threads=threads,
                                     **solve_kwargs)
                y = np.array(res.y_final, dtype=float)
                alive &= (np.asarray(res.status) != _DIVERGED) & np.all(np.isfinite(y), axis=1)
                done = k
            if idx < T:
                col = np.searchsorted(save, times[r, idx])
                d = np.linalg.norm(y - y_flow[:, col], axis=1)
                dist[r, :, idx] = np.where(alive, d, np.nan)
        lab = lp.assign(np.where(alive[:, None], y, np.nan))
        gd_labels[r] = lab
        changed[r] = np.mean(lab != lp.labels)
        diverged[r] = 1.0 - np.mean(alive)
    ci = wilson_interval(np.round(changed * N), np.full(R, N))
    return GDComparison(learning_rates=lrs, times=times, distance=dist, changed=changed,
                        changed_ci=ci, diverged=diverged, limit_points=lp, gd_labels=gd_labels,
                        t_end=float(t_end))
