"""Matplotlib figures of ensemble studies. Headless: figures are built as
``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot, so no
display or GUI backend is touched. Each function returns the Figure it drew on."""
from __future__ import annotations

import numpy as np

from narrowflow import analysis

__all__ = ["loss_bands", "savefig"]


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


def loss_bands(result, ax=None, quantiles=analysis.DEFAULT_QUANTILES):
    """Quantile ribbons of the loss over time across trajectories (log scale), median line.

    result: EnsembleResult or Dataset with saved losses; ax: matplotlib Axes to draw on
    (a new Figure when None); quantiles: percentages, paired outside-in into ribbons
    (5-95, 25-75, ...), the middle one (or 50 if present) drawn as a line.
    Returns the Figure.
    """
    q = analysis._check_quantiles(quantiles)
    da = analysis.loss_quantiles(result, q)
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
    ax.set_xlabel("time t")
    ax.set_ylabel("loss L(θ(t))")
    n_traj = int(np.max(da["n_valid"].values)) if da.sizes["time"] else 0
    ax.set_title(f"loss across {n_traj} trajectories")
    ax.legend(loc="best", fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return fig
