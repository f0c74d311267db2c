"""Matplotlib figures of ensemble studies. Headless: figures are built as
``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot, so no
display or GUI backend is touched. Each function returns the Figure it drew on."""
from __future__ import annotations

import numpy as np

from narrowflow import studies
from narrowflow.studies.results import _check_quantiles

__all__ = ["loss_bands", "limit_points", "escape_histogram", "basin_map", "gd_vs_flow",
           "cluster_colors", "savefig"]


def _figure_axes(ax, figsize=(6.4, 4.2)):
    if ax is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=figsize, dpi=100, layout="constrained")
        return fig, fig.add_subplot(1, 1, 1)
    return ax.figure, ax


def savefig(fig, path, dpi=100) -> str:
    """Save ``fig`` (a Figure from this module) as PNG at ``path``; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    if fig.canvas is None or not hasattr(fig.canvas, "print_png"):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return str(path)


def loss_bands(result, ax=None, quantiles=studies.DEFAULT_QUANTILES, xscale="auto"):
    """Quantile ribbons of the loss over time across trajectories (log scale), median line.

    result: EnsembleResult or Dataset with saved losses; ax: matplotlib Axes to draw on
    (a new Figure when None); quantiles: percentages, paired outside-in into ribbons
    (5-95, 25-75, ...), the middle one (or 50 if present) drawn as a line; xscale:
    "linear", "log", or "auto" (log when the save grid's positive times span over two
    decades, as a log-spaced grid does; symlog, linear near 0, when the grid also holds
    t = 0). Returns the Figure.
    """
    if xscale not in ("auto", "linear", "log"):
        raise ValueError(f"xscale must be 'auto', 'linear' or 'log', got {xscale!r}")
    q = _check_quantiles(quantiles)
    da = studies.loss_quantiles(result, q)
    fig, ax = _figure_axes(ax)
    t = np.asarray(da["time"].values)
    qs = np.sort(q)
    vals = {float(v): da.sel(quantile=v).values for v in qs}
    n = qs.size
    cmap_alpha = np.linspace(0.18, 0.45, max(n // 2, 1))
    for i in range(n // 2):
        lo, hi = float(qs[i]), float(qs[n - 1 - i])
        ax.fill_between(t, vals[lo], vals[hi], color="C0", alpha=cmap_alpha[i], linewidth=0,
                        label=f"{lo:g}–{hi:g}%")
    mid = 50.0 if 50.0 in vals else (float(qs[n // 2]) if n % 2 else None)
    if mid is not None:
        ax.plot(t, vals[mid], color="C0", lw=1.8, label="median" if mid == 50.0 else f"{mid:g}%")
    finite = np.concatenate([v[np.isfinite(v)] for v in vals.values()])
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    elif finite.size and np.any(finite > 0):
        ax.set_yscale("symlog", linthresh=float(np.min(finite[finite > 0])))
    pos = t[t > 0]
    if xscale == "auto" and pos.size > 1 and t.min() >= 0 and pos[-1] / pos[0] > 100:
        if t.min() > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(pos[0]))
            ax.set_xlim(0.0, float(t.max()))
    else:
        ax.set_xscale("linear" if xscale == "auto" else xscale)
    ax.set_xlabel("time t")
    ax.set_ylabel("loss L(θ(t))")
    n_traj = int(np.max(da["n_valid"].values)) if da.sizes["time"] else 0
    ax.set_title(f"loss across {n_traj} trajectories")
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------
# cluster colours shared by every figure
# ---------------------------------------------------------------------------

_OTHER = (0.55, 0.55, 0.55, 1.0)  # diverged / unassigned


def cluster_colors(n: int):
    """RGBA colours for clusters 0..n-1 (tab10, then tab20, then a hsv cycle)."""
    from matplotlib import colormaps
    if n <= 10:
        base = colormaps["tab10"]
        return [base(i) for i in range(n)]
    if n <= 20:
        base = colormaps["tab20"]
        return [base(i) for i in range(n)]
    base = colormaps["hsv"]
    return [base(i / n) for i in range(n)]


# ---------------------------------------------------------------------------
# limit points
# ---------------------------------------------------------------------------

def limit_points(lp, max_clusters: int = 12, figsize=(10.0, 4.6)):
    """Limit clusters: their sizes (left; states that are not at a critical point, small
    unanalysed clusters and diverged runs pooled into grey bars) and the Hessian spectra of
    the critical ones with the zero tolerance (right). lp: LimitPoints
    (``narrowflow.studies.limit_points``). Returns the Figure."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    if not isinstance(lp, studies.LimitPoints):
        raise TypeError(f"lp: expected a LimitPoints, got {type(lp).__name__}")
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.0, 1.2))
    crit = [cp for cp in lp.clusters if cp.kind != "not critical"]
    cps = crit[:max_clusters]
    colors = cluster_colors(max(len(lp.clusters), 1))
    bars = [(f"#{cp.label} {cp.description}", f"L={cp.loss:.3g}", cp.size, colors[cp.label])
            for cp in cps]
    pool = lp.pooled()
    hidden = sum(cp.size for cp in crit[max_clusters:])
    if hidden:
        bars.append((f"{len(crit) - max_clusters} smaller critical clusters", "", hidden, _OTHER))
    if pool["not_converged"][0]:
        bars.append((f"not converged ({pool['not_converged'][1]} clusters)", "",
                     pool["not_converged"][0], (0.98, 0.85, 0.55, 1.0)))
    if pool["not_analysed"][0]:
        bars.append((f"{pool['not_analysed'][1]} small clusters, not analysed", "",
                     pool["not_analysed"][0], (0.8, 0.8, 0.8, 1.0)))
    if pool["diverged"]:
        bars.append(("diverged", "", pool["diverged"], (0.3, 0.3, 0.3, 1.0)))
    ypos = np.arange(len(bars))[::-1]
    ax1.barh(ypos, [b[2] for b in bars], color=[b[3] for b in bars])
    for yv, b in zip(ypos, bars):
        ax1.text(0, yv, f"  {b[0]}", va="center", ha="left", fontsize="x-small")
    ax1.set_yticks(ypos, [b[1] for b in bars], fontsize="x-small")
    ax1.set_xlabel("trajectories")
    ax1.set_title(f"{lp.labels.size} trajectories: limits modulo symmetry", fontsize="medium")
    tol_max = 0.0
    for xi, cp in enumerate(cps):
        lam = cp.morse.eigenvalues
        col = np.where(lam < -cp.morse.tol, "C3", np.where(lam > cp.morse.tol, "C0", "k"))
        ax2.scatter(np.full(lam.size, xi), lam, c=list(col), s=22, zorder=3)
        ax2.plot([xi - 0.3, xi + 0.3], [cp.morse.tol] * 2, color="0.5", lw=0.8)
        ax2.plot([xi - 0.3, xi + 0.3], [-cp.morse.tol] * 2, color="0.5", lw=0.8)
        tol_max = max(tol_max, cp.morse.tol)
    if not cps:
        ax2.text(0.5, 0.5, "no trajectory reached a critical point", ha="center",
                 va="center", transform=ax2.transAxes)
    ax2.axhline(0.0, color="0.3", lw=0.6)
    finite = [abs(v) for cp in cps for v in cp.morse.eigenvalues if v != 0]
    lin = max(min(finite) if finite else 1e-8, tol_max, 1e-14)
    ax2.set_yscale("symlog", linthresh=lin)
    ax2.set_xticks(range(len(cps)), [f"#{cp.label}" for cp in cps], fontsize="small")
    ax2.set_xlim(-0.7, max(len(cps) - 0.3, 0.7))
    ax2.set_ylabel("Hessian eigenvalue")
    ax2.set_title("Hessian spectra (grey bars: ±tolerance)", fontsize="medium")
    ax2.legend(handles=[Patch(color="C3", label="negative"), Patch(color="k", label="zero (±tol)"),
                        Patch(color="C0", label="positive")], fontsize="x-small", loc="best")
    return fig


# ---------------------------------------------------------------------------
# escape times
# ---------------------------------------------------------------------------

def escape_histogram(result, thresholds=None, lp=None, bins: int = 30, figsize=None,
                     max_clusters: int = 6, min_share: float = 0.02):
    """Histograms of the escape times (first time L < threshold), one panel per threshold:
    all trajectories as grey bars, and one step curve per limit cluster (lp: LimitPoints)
    holding at least ``min_share`` of the trajectories (at most ``max_clusters``).

    result: EnsembleResult or Dataset; thresholds: losses, None for the solver's own
    escape times. Log-spaced bins when the times span more than a decade; the legend
    counts the trajectories that never crossed. Returns the Figure.
    """
    from matplotlib.figure import Figure
    E = studies.escape_times(result, thresholds)
    thr = np.asarray(E["threshold"].values)
    n = thr.size
    N = E.shape[1]
    fig = Figure(figsize=figsize or (4.4 * min(n, 3), 3.9), dpi=100, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    groups = []
    if lp is not None:
        if lp.labels.size != N:
            raise ValueError(f"lp: {lp.labels.size} labels for {N} trajectories")
        colors = cluster_colors(max(len(lp.clusters), 1))
        groups = [cp for cp in lp.clusters[:max_clusters]
                  if cp.size >= max(2, min_share * N)]
    for ax, i in zip(axes, range(n)):
        e = E.values[i]
        fin = e[np.isfinite(e)]
        if fin.size == 0:
            ax.text(0.5, 0.5, "no trajectory crossed", ha="center", va="center",
                    transform=ax.transAxes)
            edges = np.linspace(0, 1, bins + 1)
        else:
            lo, hi = float(np.min(fin)), float(np.max(fin))
            if lo > 0 and hi > 10 * lo:
                edges = np.geomspace(lo, hi, bins + 1)
                ax.set_xscale("log")
            else:
                edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        ax.hist(fin, bins=edges, color="0.8",
                label=f"all (n={fin.size}, never {N - fin.size})")
        for cp in groups:
            mask = lp.labels == cp.label
            sel = e[mask & np.isfinite(e)]
            ax.hist(sel, bins=edges, histtype="step", lw=1.6, color=colors[cp.label],
                    label=f"#{cp.label} {cp.description[:28]} (n={sel.size}, "
                          f"never {int(np.sum(mask)) - sel.size})")
        ax.set_xlabel("escape time t")
        ax.set_ylabel("trajectories")
        ax.set_title(f"first time L < {thr[i]:.3g}", fontsize="medium")
        ax.legend(fontsize="xx-small", loc="best")
    return fig


# ---------------------------------------------------------------------------
# basin maps
# ---------------------------------------------------------------------------

def _display_classes(lp, max_classes: int = 9):
    """Colour classes for a map: the largest critical clusters (up to max_classes) each
    their own colour; unconverged clusters ("not critical") pooled; the remaining small
    or unanalysed clusters pooled. Returns (class_of_label (K,) int, names, colours)."""
    K = int(lp.labels.max()) + 1 if lp.labels.size and lp.labels.max() >= 0 else 0
    cls = np.empty(K, dtype=np.int64)
    names, colours = [], []
    palette = cluster_colors(10)
    own = [cp for cp in lp.clusters if cp.kind != "not critical"][:max_classes]
    for i, cp in enumerate(own):
        cls[cp.label] = i
        th = ", ".join(f"{v:.3g}" for v in cp.theta[:6]) + (", …" if cp.theta.size > 6 else "")
        names.append(f"#{cp.label} {cp.description}, L={cp.loss:.3g}\n    θ = ({th})")
        colours.append(palette[i % 10])
    unconv = [cp.label for cp in lp.clusters if cp.kind == "not critical"]
    rest = sorted(set(range(K)) - {cp.label for cp in own} - set(unconv))
    if unconv:
        cls[unconv] = len(names)
        names.append(f"not converged (‖∇L‖ > gtol at t1; {len(unconv)} clusters)")
        colours.append((0.98, 0.85, 0.55, 1.0))
    if rest:
        cls[rest] = len(names)
        names.append(f"other limit clusters ({len(rest)})")
        colours.append((0.75, 0.75, 0.75, 1.0))
    return cls, names, colours


def basin_map(bm, ax=None, max_classes: int = 9):
    """Image of a BasinMap coloured by limit cluster, with the cluster legend (description,
    loss, share of the grid). The largest critical clusters get their own colours;
    unconverged and small clusters are pooled; diverged points dark grey. Returns the Figure."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    if not isinstance(bm, studies.BasinMap):
        raise TypeError(f"bm: expected a BasinMap, got {type(bm).__name__}")
    fig, ax = _figure_axes(ax, figsize=(8.4, 5.4))
    cls, names, colours = _display_classes(bm.limit_points, max_classes)
    img = np.where(bm.labels >= 0, cls[np.maximum(bm.labels, 0)] if cls.size else -1, -1)
    cols = [(0.3, 0.3, 0.3, 1.0)] + colours
    cmap = ListedColormap(cols)
    norm = BoundaryNorm(np.arange(len(cols) + 1) - 1.5, cmap.N)
    dx = (bm.x[-1] - bm.x[0]) / (bm.x.size - 1) / 2
    dy = (bm.y[-1] - bm.y[0]) / (bm.y.size - 1) / 2
    ax.imshow(img, origin="lower", cmap=cmap, norm=norm, interpolation="nearest",
              extent=(bm.x[0] - dx, bm.x[-1] + dx, bm.y[0] - dy, bm.y[-1] + dy), aspect="auto")
    ax.set_xlabel(f"{bm.names[0]}(0)")
    ax.set_ylabel(f"{bm.names[1]}(0)")
    handles = [Patch(facecolor=c, edgecolor="0.4", label=f"{n} ({100 * np.mean(img == i):.1f}%)")
               for i, (n, c) in enumerate(zip(names, colours))]
    if np.any(img < 0):
        handles.append(Patch(facecolor=cols[0], label=f"diverged ({100 * np.mean(img < 0):.1f}%)"))
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    names = bm.limit_points.parameter_names
    fixed = [f"{n}={v:.3g}" for q, (n, v) in enumerate(zip(names, bm.base)) if q not in bm.params]
    ax.set_title(f"limit of the flow from each initial state ({bm.x.size}×{bm.y.size})"
                 + (f"\n{', '.join(fixed)}" if fixed else ""), fontsize="medium")
    return fig


# ---------------------------------------------------------------------------
# gradient descent against gradient flow
# ---------------------------------------------------------------------------

def gd_vs_flow(cmp, figsize=(10.0, 4.2)):
    """Left: median (10–90% band) distance between GD iterates and the flow at matching
    times, one curve per learning rate; right: fraction of trajectories whose limit
    cluster changes, with 95% Wilson intervals, and the fraction that diverged.
    cmp: GDComparison (``narrowflow.studies.gd_vs_flow``). Returns the Figure."""
    from matplotlib.figure import Figure
    if not isinstance(cmp, studies.GDComparison):
        raise TypeError(f"cmp: expected a GDComparison, got {type(cmp).__name__}")
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    q = cmp.distance_quantiles((10, 50, 90))
    positive = True
    for r, eta in enumerate(cmp.learning_rates):
        t = cmp.times[r]
        sel = t > 0
        col = f"C{r % 10}"
        ax1.fill_between(t[sel], q[0, r, sel], q[2, r, sel], color=col, alpha=0.2, lw=0)
        ax1.plot(t[sel], q[1, r, sel], color=col, lw=1.6, label=f"η = {eta:g}")
        vals = q[:, r, sel]
        positive &= bool(np.all(vals[np.isfinite(vals)] > 0))
    if positive:
        ax1.set_yscale("log")
    ax1.set_xlabel("time t = k η")
    ax1.set_ylabel("‖θ_GD − θ_flow‖")
    ax1.set_title("GD against the flow (median, 10–90%)", fontsize="medium")
    ax1.legend(fontsize="x-small")
    ci = cmp.changed_ci
    err = np.abs(np.stack([cmp.changed - ci[:, 0], ci[:, 1] - cmp.changed]))
    ax2.errorbar(cmp.learning_rates, cmp.changed, yerr=err, marker="o", capsize=3,
                 label="limit cluster changed")
    ax2.plot(cmp.learning_rates, cmp.diverged, marker="x", ls="--", color="C3", label="diverged")
    ax2.set_xscale("log")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel("learning rate η")
    ax2.set_ylabel("fraction of trajectories")
    ax2.set_title(f"limit at t = {cmp.t_end:g} (95% intervals)", fontsize="medium")
    ax2.legend(fontsize="x-small")
    return fig
