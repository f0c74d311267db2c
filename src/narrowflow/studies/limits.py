"""Limit points of an ensemble: final states clustered modulo symmetry, each cluster
polished to a critical point and classified (`limit_points`, `LimitPoints`).
"""
from __future__ import annotations

import numpy as np

from narrowflow.studies.results import fields, _DIVERGED
from narrowflow.studies.statistics import wilson_interval
from narrowflow.studies.symmetry import Symmetry, _MAX_GROUP
from narrowflow.studies.clustering import (
    cluster_states, _group_indices, _medoid, _merge_symmetric, _relabel_by_size)
from narrowflow.studies.critical import CriticalPoint, classify, morse_index, polish_critical_point

class LimitPoints:
    """Final states of an ensemble clustered modulo symmetry, each cluster classified.

    Built by `limit_points`; the arguments are kept as attributes of the same names.

    Parameters
    ----------
    labels : ndarray of int64, shape (N,)
        Cluster of each trajectory, -1 for diverged / non-finite states.
    canonical : ndarray of float64, shape (N, p)
        Canonical representatives of the final states (NaN rows where excluded).
    clusters : list of CriticalPoint
        The analysed clusters, largest first (the first ``max_clusters``).
    symmetry : Symmetry
        The group the states were compared modulo.
    tol : float
        The clustering scale, in parameter units.
    flow : GradientFlow
        The flow whose limits these are.
    parameter_names : list of str, optional
        The p parameter names.
    assign_tol : float, optional
        Smallest radius within which `assign` matches a cluster (default 3·tol).
    theta : ndarray of float64, shape (N, p), optional
        The final states as given.
    gtol : float, optional
        Gradient norm above which a point is not critical.
    """

    def __init__(self, labels, canonical, clusters, symmetry, tol, flow, parameter_names=None,
                 assign_tol=None, theta=None, gtol=1e-6):
        self.labels = labels
        self.theta = theta
        self.gtol = gtol
        self.canonical = canonical
        self.clusters = clusters
        self.symmetry = symmetry
        self.tol = tol
        self.flow = flow
        self.parameter_names = parameter_names
        self.assign_tol = assign_tol if assign_tol is not None else 3.0 * tol

    @property
    def n_excluded(self) -> int:
        """Trajectories with label -1 (diverged or non-finite)."""
        return int(np.sum(self.labels < 0))

    def __len__(self) -> int:
        return len(self.clusters)

    def __repr__(self) -> str:
        return (f"LimitPoints({len(self.clusters)} clusters of {self.labels.size} trajectories, "
                f"{self.n_excluded} excluded, tol={self.tol:g})")

    def assign(self, theta) -> np.ndarray:
        """Cluster labels for new states θ.

        Parameters
        ----------
        theta : array_like of float, shape (N, p) or (p,)
            States.

        Returns
        -------
        ndarray of int64, shape (N,)
            The cluster whose representative (or a symmetric image of it) is nearest, if
            within max(assign_tol, 1.5·spread); else -1 (also for non-finite states).

        Raises
        ------
        ValueError
            If ``theta`` does not have p entries per state.
        """
        from scipy.spatial import cKDTree
        X = self.symmetry._check(theta)
        X = np.atleast_2d(X)
        out = np.full(X.shape[0], -1, dtype=np.int64)
        ok = np.all(np.isfinite(X), axis=1)
        if not self.clusters or not np.any(ok):
            return out
        C, _ = self.symmetry.canonicalize(X[ok])
        imgs, owner = [], []
        for cp in self.clusters:
            o = self.symmetry.orbit(cp.theta) if self.symmetry.group_order <= _MAX_GROUP \
                else cp.theta[None]
            imgs.append(o)
            owner.append(np.full(o.shape[0], cp.label))
        imgs, owner = np.concatenate(imgs), np.concatenate(owner)
        radius = np.array([max(self.assign_tol, 1.5 * cp.spread) for cp in self.clusters])
        order = np.argsort([cp.label for cp in self.clusters])
        radius = radius[order]
        dist, idx = cKDTree(imgs).query(C, k=1)
        lab = owner[idx]
        lab[dist > radius[lab]] = -1
        out[ok] = lab
        return out

    def table(self) -> list[dict]:
        """The analysed clusters as a table.

        Returns
        -------
        list of dict
            One dict per cluster, with keys label, size, fraction, kind, description, index,
            n_zero, loss, grad_norm, lambda_min, lambda_max, eig_tol (None without Morse
            data), n_dead, spread and theta (list of float).
        """
        rows = []
        for cp in self.clusters:
            m = cp.morse
            rows.append(dict(label=cp.label, size=cp.size, fraction=cp.fraction, kind=cp.kind,
                             description=cp.description, index=cp.index,
                             n_zero=None if m is None else m.n_zero, loss=cp.loss,
                             grad_norm=cp.grad_norm,
                             lambda_min=None if m is None else float(m.eigenvalues[0]),
                             lambda_max=None if m is None else float(m.eigenvalues[-1]),
                             eig_tol=None if m is None else m.tol, n_dead=cp.n_dead,
                             spread=cp.spread, theta=[float(v) for v in cp.theta]))
        return rows

    def pooled(self) -> dict:
        """Trajectories without an identified limit.

        Returns
        -------
        dict
            ``"not_converged"``: (trajectories, clusters) whose representative is not a
            critical point; ``"not_analysed"``: (trajectories, clusters) beyond
            max_clusters; ``"diverged"``: trajectories with label -1;
            ``"not_analysed_moving"``: None, or, with a flow and final states, ``(k, n,
            ci)``: of a random sample of n unanalysed states (at most 200), k have
            ||∇L|| > gtol, with the Wilson interval ci (shape (2,)) of k/n.
        """
        nc = [cp for cp in self.clusters if cp.kind == "not critical"]
        K = int(self.labels.max()) + 1 if np.any(self.labels >= 0) else 0
        rest = np.nonzero(self.labels >= len(self.clusters))[0]
        out = {"not_converged": (sum(cp.size for cp in nc), len(nc)),
               "not_analysed": (int(rest.size), K - len(self.clusters)),
               "diverged": self.n_excluded, "not_analysed_moving": None}
        if rest.size and self.flow is not None and self.theta is not None:
            # a random sample tells how many of the unanalysed states are still moving
            pick = np.random.default_rng(0).choice(rest, min(rest.size, 200), replace=False)
            g = np.array([np.linalg.norm(self.flow.grad(self.theta[i])) for i in pick])
            k = int(np.sum(g > self.gtol))
            out["not_analysed_moving"] = (k, pick.size, wilson_interval(k, pick.size))
        return out

    def to_markdown(self, max_rows: int = 20, pool_unconverged: bool = True) -> str:
        """The cluster table as Markdown, largest clusters first.

        Parameters
        ----------
        max_rows : int, optional
            The most cluster rows shown (a note counts the others).
        pool_unconverged : bool, optional
            Summarise the clusters whose representative is not a critical point in one line
            (they are states still moving, not limits).

        Returns
        -------
        str
            A Markdown table, with pooled rows for unconverged, unanalysed and diverged
            trajectories.
        """
        names = self.parameter_names
        th_name = "θ (canonical)" if self.symmetry.group_order > 1 else "θ"
        head = (f"| # | trajectories | type | loss | ‖∇L‖ | λ_min | λ_max | dead | "
                f"{th_name} |\n"
                "|---|---|---|---|---|---|---|---|---|\n")
        rows = self.table()
        if pool_unconverged:
            rows = [r for r in rows if r["kind"] != "not critical"]
        lines = []
        for r in rows[:max_rows]:
            th = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, r["theta"])) if names else \
                ", ".join(f"{v:.4g}" for v in r["theta"])
            lmin = "—" if r["lambda_min"] is None else f"{r['lambda_min']:.3g}"
            lmax = "—" if r["lambda_max"] is None else f"{r['lambda_max']:.3g}"
            lines.append(f"| {r['label']} | {r['size']} ({100 * r['fraction']:.1f}%) | "
                         f"{r['description']} | {r['loss']:.6g} | {r['grad_norm']:.2e} | "
                         f"{lmin} | {lmax} | {r['n_dead']} | {th} |")
        N = max(self.labels.size, 1)
        notes = []
        if len(rows) > max_rows:
            notes.append(f"{len(rows) - max_rows} smaller clusters not shown")
        pool = self.pooled()
        if pool_unconverged and pool["not_converged"][0]:
            nc = [cp for cp in self.clusters if cp.kind == "not critical"]
            g = np.array([cp.grad_norm for cp in nc])
            L = np.array([cp.loss for cp in nc])
            n, k = pool["not_converged"]
            lines.append(f"| — | {n} ({100 * n / N:.1f}%) | not converged: {k} clusters away "
                         f"from critical points | {L.min():.3g} – {L.max():.3g} | "
                         f"{np.median(g):.1e} (median) | | | | |")
        if pool["not_analysed"][0]:
            n, k = pool["not_analysed"]
            what = f"{k} small clusters, not analysed"
            if pool["not_analysed_moving"] is not None:
                km, nm, ci = pool["not_analysed_moving"]
                what += (f"; in a sample of {nm}, {km} still moving (‖∇L‖ > {self.gtol:g}; "
                         f"95% CI {100 * ci[0]:.0f}–{100 * ci[1]:.0f}%)")
            lines.append(f"| — | {n} ({100 * n / N:.1f}%) | {what} | | | | | | |")
        if pool["diverged"]:
            lines.append(f"| — | {pool['diverged']} ({100 * pool['diverged'] / N:.1f}%) | "
                         "diverged | | | | | | |")
        tail = "".join(f"\n\n({t})" for t in notes)
        return head + "\n".join(lines) + tail

def limit_points(result=None, flow=None, *, theta=None, loss=None, tol: float = 1e-3,
                 symmetric: bool = True, dead_tol: float | None = None, polish: bool = True,
                 eig_rtol: float = 1e-6, gtol: float = 1e-6, max_clusters: int = 50,
                 parameter_names=None) -> LimitPoints:
    """Cluster final states modulo the network's symmetries and classify each cluster.

    Parameters
    ----------
    result : EnsembleResult or xarray.Dataset, optional
        Its y_final (diverged trajectories excluded), loss_final, parameter names and flow
        (for a Dataset, the flow rebuilt by ``narrowflow.io.flow_from_xarray``).
    flow : GradientFlow, optional
        The flow (default: the result's).
    theta : array_like of float, shape (N, p), optional
        Final states, instead of the result's.
    loss : array_like of float, shape (N,), optional
        Final losses, instead of the result's.
    tol : float, optional
        Clustering scale in parameter units (see :func:`cluster_states`).
    symmetric : bool, optional
        Quotient by neuron permutations and sign flips.
    dead_tol : float, optional
        A block of norm <= dead_tol is a dead neuron (default tol/10).
    polish : bool, optional
        Refine each representative to a critical point (moving it at most 10·tol).
    eig_rtol : float, optional
        See :func:`morse_index`.
    gtol : float, optional
        See :func:`classify`.
    max_clusters : int, optional
        Clusters beyond this many (the smallest) keep their labels but get no Hessian
        analysis.
    parameter_names : list of str, optional
        The p parameter names (default: the result's, else the network's).

    Returns
    -------
    LimitPoints
        Labels of all N states and the analysed clusters.

    Raises
    ------
    ValueError
        If neither a result nor ``theta`` and ``flow`` are given, ``tol`` is not finite and
        positive, or ``theta`` does not have p entries per state.
    """
    if result is not None:
        f = fields(result)
        if theta is None:
            theta = f.y_final
            if f.status is not None:  # a diverged run has no limit point
                theta = np.where((f.status == _DIVERGED)[:, None], np.nan, theta)
        loss = f.loss_final if loss is None else loss
        parameter_names = parameter_names or f.parameter_names
        if flow is None:
            flow = getattr(f.source, "flow", None)
        if flow is None:
            from narrowflow import io
            flow = io.flow_from_xarray(f.source)
    if flow is None or theta is None:
        raise ValueError("limit_points: pass a result, or theta and flow")
    if not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol: must be finite and > 0, got {tol!r}")
    sym = Symmetry.of(flow, symmetric)
    X = sym._check(theta, "theta")
    X = np.atleast_2d(X)
    N = X.shape[0]
    if parameter_names is None:
        parameter_names = flow.network.parameter_names()
    dead_tol = tol / 10 if dead_tol is None else float(dead_tol)
    ok = np.all(np.isfinite(X), axis=1)
    canon = np.full(X.shape, np.nan)
    if np.any(ok):
        canon[ok] = sym.canonicalize(X[ok], dead_tol)[0]
    labels = cluster_states(canon, tol)
    # merge components the canonical form split (ties in the sort / sign choice)
    K = int(labels.max()) + 1 if np.any(labels >= 0) else 0
    if K > 1:
        groups = _group_indices(labels, min(K, 10 * max_clusters))
        reps = np.stack([_medoid(canon[g]) for g in groups])
        merged = _merge_symmetric(reps, sym, 3.0 * tol)
        full = np.arange(K)
        full[:merged.size] = merged
        full[merged.size:] = merged.max() + 1 + np.arange(K - merged.size)
        labels = _relabel_by_size(np.where(labels >= 0, full[np.maximum(labels, 0)], -1))
        K = int(labels.max()) + 1
    loss_arr = None if loss is None else np.asarray(loss, dtype=float)
    clusters = []
    for c, idx in enumerate(_group_indices(labels, min(K, max_clusters))):
        members = canon[idx]
        rep = _medoid(members)
        spread = float(np.max(np.linalg.norm(members - rep, axis=1)))
        th, polished = (polish_critical_point(flow, rep, max_shift=10 * tol) if polish
                        else (rep, False))
        th, n_dead = sym.canonicalize(th, dead_tol)  # the polish may cross a sign tie
        mi = morse_index(flow, th, eig_rtol=eig_rtol)
        lm = float(np.nanmedian(loss_arr[idx])) if loss_arr is not None else float("nan")
        clusters.append(CriticalPoint(
            label=c, size=int(members.shape[0]), fraction=members.shape[0] / N, theta=th,
            loss=float(np.real(flow.loss(th))), grad_norm=mi.grad_norm, loss_median=lm,
            spread=spread, n_dead=int(n_dead), polished=bool(polished),
            polish_shift=float(np.linalg.norm(th - rep)), morse=mi))
    classify(clusters, weight_decay=float(getattr(flow, "weight_decay", 0.0)), gtol=gtol)
    return LimitPoints(labels, canon, clusters, sym, float(tol), flow, list(parameter_names),
                       theta=X, gtol=gtol)
