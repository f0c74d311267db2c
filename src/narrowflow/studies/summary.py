"""Where an ensemble ended, by type of limit: the table of ``narrowflow run``'s summary
(`summarize_limits`, `LimitSummary`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from narrowflow.ensemble import Status
from narrowflow.studies.results import EnsembleFields, fields, _DIVERGED, _flow_of
from narrowflow.studies.limits import LimitPoints, limit_points


_STATUS_SUCCESS, _STATUS_CONVERGED, _STATUS_MAX_STEPS, _STATUS_STEP_TOO_SMALL = (
    Status.SUCCESS, Status.CONVERGED, Status.MAX_STEPS, Status.STEP_TOO_SMALL)


@dataclass
class LimitSummary:
    """Where the trajectories of an ensemble ended, by type of limit (see
    :func:`summarize_limits`).

    Parameters
    ----------
    rows : list of dict
        One dict per outcome, in reading order, with key, label, count (trajectories;
        estimated where subsampled, so possibly fractional), fraction (of all N), se
        (standard error of the fraction), clusters (number of clusters, None for status
        rows), loss_min, loss_max (NaN for status rows), t_median (median t_final of its
        trajectories, NaN where none).
    n : int
        Trajectories N.
    n_converged : int
        CONVERGED trajectories.
    n_classified : int
        How many of those went through :func:`limit_points` (all, or a random subsample
        of max_states).
    converge_time : dict
        ``n``, ``median``, ``q25``, ``q75`` of t_final over the CONVERGED trajectories (NaN
        where none).
    gtol : float or None
        The solver's (None: no convergence test).
    tol : float
        The clustering scale, as given.
    max_clusters : int
        As given.
    limit_points : LimitPoints or None
        The clusters of the classified states (None if none).
    seconds : float
        Wall time spent, in seconds.
    """
    rows: list
    n: int
    n_converged: int
    n_classified: int
    converge_time: dict
    gtol: float | None
    tol: float
    max_clusters: int
    limit_points: "LimitPoints | None"
    seconds: float

    @property
    def subsampled(self) -> bool:
        """True when only a subsample of the CONVERGED trajectories was classified."""
        return self.n_classified < self.n_converged

    def fraction(self, key: str) -> float:
        """Summed fraction of the rows whose key starts with ``key``.

        Parameters
        ----------
        key : str
            A row key or its start, e.g. "saddle" or "global_minimum".

        Returns
        -------
        float
            The summed fraction of all N.
        """
        return float(sum(r["fraction"] for r in self.rows if r["key"].startswith(key)))


def _solver_gtol(f: EnsembleFields):
    g = getattr(f.source, "gtol", None)
    if g is None:
        g = f.attrs.get("gtol", None)
    g = None if g is None else float(g)
    return g if g and np.isfinite(g) else None


def summarize_limits(result, flow=None, *, tol: float = 1e-3, gtol: float = 1e-6,
                     max_clusters: int = 20, max_states: int = 200_000, polish: bool = True,
                     seed: int = 0) -> LimitSummary:
    """Where the trajectories of ``result`` ended: the CONVERGED ones (‖∇L‖ < the solver's
    gtol) classified by :func:`limit_points` (clustered modulo symmetry at ``tol``, each of
    the ``max_clusters`` largest clusters refined to a critical point and typed by its Morse
    index; ``gtol`` as there), the others by status (diverged; not converged: still moving
    at t_max, max_steps, step too small).

    Rows by type: global minimum, local minimum, saddle of index k (one row per k),
    degenerate critical point of index k, converged but not near a critical point after
    refinement, converged in clusters beyond max_clusters (not classified), diverged (also
    converged states that are not finite), not converged. Fractions are of all N and add up
    to 1. With more than ``max_states`` CONVERGED trajectories a random subsample (``seed``)
    of that many is classified and its shares scaled up; the standard errors include the
    sampling. Cost: about 0.2 s per 10^5 states for the clustering, plus up to ~0.15 s per
    analysed cluster (the refinement).

    Parameters
    ----------
    result : EnsembleResult or xarray.Dataset
        The ensemble result, with a status per trajectory.
    flow : GradientFlow, optional
        The flow (default: the result's, or rebuilt from a Dataset).
    tol : float, optional
        Clustering scale in parameter units.
    gtol : float, optional
        Gradient norm above which a cluster's refined point is not critical.
    max_clusters : int, optional
        Clusters analysed, largest first.
    max_states : int, optional
        The most CONVERGED states classified (>= 1).
    polish : bool, optional
        Refine each representative to a critical point.
    seed : int, optional
        Seed of the subsample.

    Returns
    -------
    LimitSummary
        The rows and counts.

    Raises
    ------
    ValueError
        If the result has no status per trajectory, or ``max_states`` < 1.
    """
    import time
    t_start = time.perf_counter()
    f = fields(result)
    if f.status is None:
        raise ValueError("result: no status per trajectory; cannot tell converged ones")
    N = f.n_trajectories
    status = np.asarray(f.status, dtype=np.int64)
    t_final = f.t_final if f.t_final is not None else np.full(N, np.nan)
    loss = f.loss_final if f.loss_final is not None else np.full(N, np.nan)
    solver_gtol = _solver_gtol(f)
    conv = np.nonzero(status == _STATUS_CONVERGED)[0]
    n_conv = conv.size
    if int(max_states) < 1:
        raise ValueError(f"max_states: must be >= 1, got {max_states!r}")
    sample = conv
    if n_conv > max_states:
        sample = np.sort(np.random.default_rng(seed).choice(conv, int(max_states), replace=False))
    n_s = sample.size
    # a CONVERGED trajectory in the sample stands for n_conv / n_s of them
    scale = n_conv / n_s if n_s else 0.0
    c = n_conv / N if N else 0.0

    def se_conv(k):  # standard error of the fraction c·k/n_s of all N
        q = k / n_s
        var = q * q * c * (1 - c) / N
        if n_s < n_conv:  # sampling within the converged, finite-population corrected
            var += c * c * q * (1 - q) / n_s * (1 - n_s / n_conv)
        else:
            var = c * q * (1 - c * q) / N
        return float(np.sqrt(max(var, 0.0)))

    def tmed(idx):
        t = t_final[idx]
        t = t[np.isfinite(t)]
        return float(np.median(t)) if t.size else float("nan")

    rows = []

    def add(key, label, idx_or_count, se=None, clusters=None, losses=None, t_idx=None):
        if isinstance(idx_or_count, np.ndarray):
            count = float(idx_or_count.size)
        else:
            count = float(idx_or_count)
        frac = count / N if N else float("nan")
        if se is None:
            se = float(np.sqrt(frac * (1 - frac) / N)) if N else float("nan")
        L = np.asarray([] if losses is None else losses, float)
        L = L[np.isfinite(L)]
        rows.append(dict(key=key, label=label, count=count, fraction=frac, se=se,
                         clusters=clusters,
                         loss_min=float(L.min()) if L.size else float("nan"),
                         loss_max=float(L.max()) if L.size else float("nan"),
                         t_median=tmed(t_idx) if t_idx is not None and len(t_idx) else
                         float("nan")))

    lp = None
    bad_conv = 0
    if n_s:
        lp = limit_points(flow=flow if flow is not None else _flow_of(f),
                          theta=f.y_final[sample], loss=loss[sample], tol=tol, gtol=gtol,
                          polish=polish, max_clusters=max_clusters,
                          parameter_names=f.parameter_names)
        groups: dict = {}
        for cp in lp.clusters:
            if cp.kind in ("saddle", "degenerate"):
                key = f"{cp.kind} {cp.index}"
            else:
                key = cp.kind
            groups.setdefault(key, []).append(cp)

        def order(key):
            kind, _, idx = key.partition(" ")
            rank = {"global": 0, "local": 1, "saddle": 2, "degenerate": 3, "not": 4}
            return (rank.get(kind.split()[0], 5), int(idx) if idx.isdigit() else 0)

        for key in sorted(groups, key=order):
            cps = groups[key]
            members = np.concatenate([sample[lp.labels == cp.label] for cp in cps])
            k = members.size
            if key == "global minimum":
                label = "global minimum" + (" (zero loss)" if all(cp.global_certified
                                                                  for cp in cps)
                                            else " (lowest loss found)")
            elif key == "local minimum":
                label = "local minimum"
            elif key.startswith("saddle"):
                label = f"saddle, index {cps[0].index}"
            elif key.startswith("degenerate"):
                label = f"degenerate critical point, index {cps[0].index}"
            else:
                label = f"converged, not at a critical point (‖∇L‖ > {gtol:g} refined)"
            add(key.replace(" ", "_"), label, k * scale, se=se_conv(k), clusters=len(cps),
                losses=[cp.loss for cp in cps], t_idx=members)
        rest = sample[lp.labels >= len(lp.clusters)]
        if rest.size:
            K = int(lp.labels.max()) + 1 - len(lp.clusters)
            add("unclassified", f"converged, in {K} small clusters (not classified)",
                rest.size * scale, se=se_conv(rest.size), clusters=K, losses=loss[rest],
                t_idx=rest)
        bad_conv = int(np.sum(lp.labels < 0))
    if not any(r["key"] == "global_minimum" for r in rows):  # said, even when none
        add("global_minimum", "global minimum", 0.0)
        rows.insert(0, rows.pop())
    div = np.nonzero(status == _DIVERGED)[0]
    if bad_conv:  # converged but not finite: no limit point either
        n_div = div.size + bad_conv * scale
        add("diverged", "diverged (or a non-finite final state)", n_div)
    else:
        add("diverged", "diverged", div)
    moving = np.nonzero(status == _STATUS_SUCCESS)[0]
    if solver_gtol is None:
        add("not_converged", "not tested for convergence (no gtol): reached t_max", moving)
    else:
        add("not_converged", "not converged: still moving at t_max", moving)
    for key, code, label in (("max_steps", _STATUS_MAX_STEPS, "not converged: max_steps"),
                             ("step_too_small", _STATUS_STEP_TOO_SMALL,
                              "not converged: step too small")):
        idx = np.nonzero(status == code)[0]
        if idx.size:
            add(key, label, idx)
    known = {_STATUS_SUCCESS, _STATUS_CONVERGED, _DIVERGED, _STATUS_MAX_STEPS,
             _STATUS_STEP_TOO_SMALL}
    other = np.nonzero(~np.isin(status, list(known)))[0]
    if other.size:
        add("other_status", "other status", other)
    tc = t_final[conv]
    tc = tc[np.isfinite(tc)]
    ct = dict(n=int(n_conv), median=float("nan"), q25=float("nan"), q75=float("nan"))
    if tc.size:
        q25, med, q75 = np.percentile(tc, [25, 50, 75])
        ct.update(median=float(med), q25=float(q25), q75=float(q75))
    return LimitSummary(rows=rows, n=N, n_converged=int(n_conv), n_classified=int(n_s),
                        converge_time=ct, gtol=solver_gtol, tol=float(tol),
                        max_clusters=int(max_clusters), limit_points=lp,
                        seconds=time.perf_counter() - t_start)
