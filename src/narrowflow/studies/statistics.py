"""Statistics across trajectories: loss quantiles over time, escape times below loss
thresholds, and the Wilson interval of a binomial fraction.
"""
from __future__ import annotations

import numpy as np

from narrowflow.studies.results import DEFAULT_QUANTILES, fields, _check_quantiles


def loss_quantiles(result, quantiles=DEFAULT_QUANTILES):
    """Quantiles of the loss across trajectories at each save time.

    NaN entries (a save time a trajectory never reached) are left out; ``+inf`` (diverged)
    counts as a loss above every finite one. Uses numpy's default (linear) interpolation, so
    the values equal ``np.nanpercentile``.

    Parameters
    ----------
    result : EnsembleResult or xarray.Dataset
        A result with saved losses ``loss_saved`` (N, K) and save times (K,).
    quantiles : sequence of float, optional
        Percentages in [0, 100] (default 5, 25, 50, 75, 95).

    Returns
    -------
    xarray.DataArray
        float64, dimensions (quantile, time), named ``loss_quantile``; coordinates
        ``quantile`` (percent), ``time`` and ``n_valid`` (time,), int64: the number of
        trajectories whose loss at that time is not NaN. NaN where no loss is.

    Raises
    ------
    ValueError
        If the result has no saved losses, ``loss_saved`` does not match the save times, or
        a quantile is outside [0, 100].
    """
    import xarray as xr

    f = fields(result)
    q = _check_quantiles(quantiles)
    if f.loss_saved is None or f.t_saved is None:
        raise ValueError("result: no saved losses (run the ensemble with save_at=...)")
    loss = np.asarray(f.loss_saved, dtype=float)
    if loss.ndim != 2 or loss.shape[1] != f.t_saved.shape[0]:
        raise ValueError(f"result: loss_saved has shape {loss.shape}, "
                         f"expected (N, {f.t_saved.size})")
    n_valid = np.sum(~np.isnan(loss), axis=0)
    values = np.full((q.size, loss.shape[1]), np.nan)
    ok = n_valid > 0  # all-NaN columns stay NaN without a RuntimeWarning
    if np.any(ok):
        with np.errstate(invalid="ignore"):  # inf - inf in the interpolation of diverged runs
            values[:, ok] = np.nanpercentile(loss[:, ok], q, axis=0)
    return xr.DataArray(values, dims=("quantile", "time"),
                        coords={"quantile": q, "time": f.t_saved,
                                "n_valid": ("time", n_valid.astype(np.int64))},
                        name="loss_quantile",
                        attrs={"long_name": "loss quantile across trajectories",
                               "units": "percent (quantile coordinate)"})

# --- escape times ---

def escape_times(result, thresholds=None):
    """First time each trajectory's loss falls below each threshold.

    With thresholds given, crossings come from the saved losses: the first save time with
    L < threshold, interpolated linearly in log L from the save before (resolution: the
    largest save spacing); a trajectory already below at the first save time gets that time.

    Parameters
    ----------
    result : EnsembleResult or xarray.Dataset
        The ensemble result.
    thresholds : array_like of float, shape (T,), optional
        Loss levels. None uses the solver's own ``escape_time`` (exact crossing from dense
        output) for its ``escape_threshold`` (T = 1).

    Returns
    -------
    xarray.DataArray
        float64, dimensions (threshold, trajectory), named ``escape_time``, in the flow's
        time units; NaN where the loss never fell below the threshold. Attributes
        ``resolution`` (0 for the solver's times) and ``source``.

    Raises
    ------
    ValueError
        If ``thresholds`` is None and the result has no escape times, if a threshold is not
        finite, or if thresholds are given and the result has no saved losses.
    """
    import xarray as xr
    f = fields(result)
    N = f.n_trajectories
    if thresholds is None:
        if f.escape_time is None or f.escape_threshold is None:
            raise ValueError("thresholds: the result has no escape times; pass thresholds "
                             "(losses) to compute them from the saved losses")
        return xr.DataArray(np.asarray(f.escape_time, float)[None, :],
                            dims=("threshold", "trajectory"),
                            coords={"threshold": [f.escape_threshold]}, name="escape_time",
                            attrs={"resolution": 0.0, "source": "solver dense output"})
    thr = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)):
        raise ValueError(f"thresholds: expected finite losses, got {thresholds!r}")
    if f.loss_saved is None or f.t_saved is None:
        raise ValueError("result: no saved losses to compute escape times from "
                         "(run the ensemble with save_at=...)")
    L = np.asarray(f.loss_saved, float)
    t = np.asarray(f.t_saved, float)
    out = np.full((thr.size, N), np.nan)
    rows = np.arange(N)
    for i, c in enumerate(thr):
        below = L < c  # NaN compares False: unreached times never count
        hit = np.any(below, axis=1)
        k = np.argmax(below, axis=1)
        te = t[k].astype(float)
        inner = hit & (k > 0)
        k1 = k[inner]
        l0, l1 = L[rows[inner], k1 - 1], L[rows[inner], k1]
        t0, t1 = t[k1 - 1], t[k1]
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = (l0 > 0) & (l1 > 0) & (c > 0)
            frac = np.where(pos, (np.log(l0) - np.log(c)) / (np.log(l0) - np.log(l1)),
                            (l0 - c) / (l0 - l1))
        frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
        te[inner] = t0 + frac * (t1 - t0)
        te[~hit] = np.nan
        out[i] = te
    res = float(np.max(np.diff(t))) if t.size > 1 else 0.0
    return xr.DataArray(out, dims=("threshold", "trajectory"), coords={"threshold": thr},
                        name="escape_time",
                        attrs={"resolution": res, "source": "saved losses, log-linear"})


def default_thresholds(result, n: int = 3) -> np.ndarray:
    """Up to n thresholds for escape-time studies.

    Parameters
    ----------
    result : EnsembleResult or xarray.Dataset
        The ensemble result (its saved losses).
    n : int, optional
        The most thresholds returned (evenly spread over the candidates).

    Returns
    -------
    ndarray of float64, shape (n,) or shorter
        Powers of ten strictly between the median loss at the first save time and the
        median over trajectories of each one's smallest finite saved loss, in decreasing
        order; empty without saved losses or if the loss never fell by a decade.
    """
    f = fields(result)
    if f.loss_saved is None:
        return np.array([])
    L = np.asarray(f.loss_saved, float)
    with np.errstate(all="ignore"):
        hi = np.nanmedian(L[:, 0])
        lo = np.nanmedian(np.nanmin(np.where(np.isfinite(L), L, np.nan), axis=1))
    if not (np.isfinite(hi) and np.isfinite(lo) and hi > 0 and hi > 10 * max(lo, 0)):
        return np.array([])
    lo = max(lo, hi * 1e-12)
    decades = np.arange(np.floor(np.log10(hi)), np.ceil(np.log10(lo)) - 1, -1)
    cand = 10.0 ** decades
    cand = cand[(cand < hi) & (cand > lo)]
    if cand.size > n:
        cand = cand[np.round(np.linspace(0, cand.size - 1, n)).astype(int)]
    return cand


def escape_time_summary(escape, labels=None) -> list[dict]:
    """Per threshold and cluster: count, how many escaped, median and 10/90% escape times.

    The median's error estimate is the bootstrap-free order-statistic interval (binomial
    ±1.96 sqrt(n)/2 ranks, about 95%).

    Parameters
    ----------
    escape : xarray.DataArray, shape (T, N)
        Escape times from :func:`escape_times`.
    labels : array_like of int, shape (N,), optional
        Cluster of each trajectory (None: one group, cluster 0).

    Returns
    -------
    list of dict
        One dict per threshold and cluster, with keys ``threshold``, ``cluster``, ``n``
        (trajectories), ``escaped`` (those with a finite escape time), ``median``,
        ``median_lo``, ``median_hi``, ``q10``, ``q90`` (escape times; NaN when none
        escaped).
    """
    E = np.asarray(escape.values, float)
    lab = np.zeros(E.shape[1], dtype=np.int64) if labels is None else np.asarray(labels)
    rows = []
    for i, thr in enumerate(np.asarray(escape["threshold"].values)):
        for c in np.unique(lab):
            e = E[i, lab == c]
            done = np.sort(e[np.isfinite(e)])
            n = done.size
            row = dict(threshold=float(thr), cluster=int(c), n=int(e.size), escaped=int(n),
                       median=np.nan, median_lo=np.nan, median_hi=np.nan, q10=np.nan, q90=np.nan)
            if n:
                half = 1.96 * np.sqrt(n) / 2
                row.update(median=float(np.median(done)),
                           median_lo=float(done[max(int(np.floor(n / 2 - half)), 0)]),
                           median_hi=float(done[min(int(np.ceil(n / 2 + half)), n - 1)]),
                           q10=float(np.quantile(done, 0.1)), q90=float(np.quantile(done, 0.9)))
            rows.append(row)
    return rows

# --- binomial fractions ---

def wilson_interval(k, n, z: float = 1.96):
    """Wilson score interval (about 95% for z = 1.96) of a binomial fraction k/n.

    Parameters
    ----------
    k : array_like of float
        Successes.
    n : array_like of float
        Trials (broadcast against ``k``).
    z : float, optional
        Normal quantile of the confidence level.

    Returns
    -------
    ndarray of float64, shape (..., 2)
        ``[lower, upper]`` bounds in [0, 1] along the last axis; NaN where n is 0.
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    p = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return np.clip(np.stack([mid - half, mid + half], axis=-1), 0.0, 1.0)
