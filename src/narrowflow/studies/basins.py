"""Basin maps: a 2-D slice of initial states integrated to their limits, coloured by the
limit point each reaches. Runs integrations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from narrowflow.studies.results import _DIVERGED
from narrowflow.studies.limits import LimitPoints, limit_points


def _param_index(flow, param, name="params") -> int:
    names = flow.network.parameter_names()
    if isinstance(param, str):
        if param not in names:
            raise ValueError(f"{name}: unknown parameter {param!r}; expected one of {names}")
        return names.index(param)
    if isinstance(param, (int, np.integer)) and not isinstance(param, bool) \
            and 0 <= int(param) < len(names):
        return int(param)
    raise ValueError(f"{name}: expected a parameter name or an index in 0..{len(names) - 1}, "
                     f"got {param!r}")


@dataclass
class BasinMap:
    """Limit cluster of each initial condition on a 2-D grid (returned by `basin_map`).

    Parameters
    ----------
    labels : ndarray of int64, shape (ny, nx)
        Cluster of each grid point (its label in ``limit_points``), -1 where the trajectory
        diverged or its final state is not finite.
    x : ndarray of float64, shape (nx,)
        Values of the first varied parameter (columns).
    y : ndarray of float64, shape (ny,)
        Values of the second varied parameter (rows).
    names : tuple of str
        The names of the two parameters.
    params : tuple of int
        Their indices in θ.
    base : ndarray of float64, shape (p,)
        The fixed state.
    status : ndarray of int8, shape (ny, nx)
        ``Status`` codes.
    loss_final : ndarray of float64, shape (ny, nx)
        Final losses.
    limit_points : LimitPoints
        The clusters of the final states of all grid points.
    settings : dict
        How it was run (times, method, tolerances, grid size).
    """
    labels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    names: tuple
    params: tuple
    base: np.ndarray
    status: np.ndarray
    loss_final: np.ndarray
    limit_points: LimitPoints
    settings: dict

    def to_xarray(self):
        """The map as an xarray.Dataset.

        Returns
        -------
        xarray.Dataset
            Variables ``cluster``, ``status``, ``loss_final`` on (y, x) coordinates named
            after the two parameters; the scalar settings and a ``clusters`` description
            as attributes.
        """
        import xarray as xr
        nx_, ny_ = self.names
        ds = xr.Dataset({"cluster": ((ny_, nx_), self.labels), "status": ((ny_, nx_), self.status),
                         "loss_final": ((ny_, nx_), self.loss_final)},
                        coords={nx_: self.x, ny_: self.y})
        ds.attrs.update({k: v for k, v in self.settings.items()
                         if isinstance(v, (int, float, str))})
        ds.attrs["clusters"] = "; ".join(f"{c.label}: {c.description}, loss {c.loss:.6g}"
                                         for c in self.limit_points.clusters)
        return ds


def basin_map(flow, base, params=(0, 1), ranges=((-2.0, 2.0), (-2.0, 2.0)), shape=(200, 200),
              *, t_span=(0.0, 100.0), method="dp5", rtol=1e-8, atol=1e-10, gtol=None,
              max_steps=10**6, chunk=65_536, tol=1e-3, symmetric=True, polish=True,
              threads=None, progress=False, **solve_kwargs) -> BasinMap:
    """Basins of attraction on a 2-D slice of initial conditions.

    The grid is integrated by ``narrowflow.solve_ensemble`` in chunks of ``chunk``
    trajectories (memory: the final states, N·p float64, N = nx·ny), so grids of 1000×1000
    and beyond fit. The final states are clustered modulo symmetry at scale ``tol`` and
    classified (:func:`limit_points`).

    Parameters
    ----------
    flow : GradientFlow
        The flow.
    base : array_like of float, shape (p,)
        The initial state whose other entries stay fixed (finite).
    params : pair of str or int, optional
        The two varied parameters (names such as "w1" or indices), x first.
    ranges : ((float, float), (float, float)), optional
        ``((x0, x1), (y0, y1))``, finite increasing intervals.
    shape : int or (int, int), optional
        ``(nx, ny)`` grid points (an int for a square grid), at least 2 per axis.
    t_span, method, rtol, atol, gtol, max_steps, threads, progress : optional
        Passed to ``solve_ensemble``.
    chunk : int, optional
        Trajectories per ``solve_ensemble`` call (>= 1).
    tol : float, optional
        Clustering scale in parameter units.
    symmetric : bool, optional
        Cluster modulo the network's symmetries.
    polish : bool, optional
        Refine each cluster's representative to a critical point.
    **solve_kwargs
        Other keywords for ``solve_ensemble``.

    Returns
    -------
    BasinMap
        The labels, statuses and final losses on the grid, and the clusters.

    Raises
    ------
    ValueError
        If ``base``, ``params``, ``shape``, ``ranges`` or ``chunk`` is invalid.
    """
    from narrowflow.ensemble import solve_ensemble
    p = flow.n_params
    base = np.asarray(base, dtype=float)
    if base.shape != (p,) or not np.all(np.isfinite(base)):
        raise ValueError(f"base: expected a finite state of shape ({p},), got {base.shape}")
    if len(params) != 2:
        raise ValueError(f"params: expected two parameters, got {params!r}")
    i, j = (_param_index(flow, q) for q in params)
    if i == j:
        raise ValueError(f"params: the two parameters must differ, got {params!r}")
    nx, ny = (shape, shape) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if int(nx) < 2 or int(ny) < 2:
        raise ValueError(f"shape: need at least 2 points per axis, got {shape!r}")
    nx, ny = int(nx), int(ny)
    try:
        (x0, x1), (y0, y1) = ranges
    except (TypeError, ValueError):
        raise ValueError(f"ranges: expected ((x0, x1), (y0, y1)), got {ranges!r}") from None
    if not all(np.isfinite([x0, x1, y0, y1])) or x0 >= x1 or y0 >= y1:
        raise ValueError(f"ranges: expected finite increasing intervals, got {ranges!r}")
    if int(chunk) < 1:
        raise ValueError(f"chunk: must be >= 1, got {chunk!r}")
    xs, ys = np.linspace(x0, x1, nx), np.linspace(y0, y1, ny)
    N = nx * ny
    finals = np.empty((N, p))
    status = np.empty(N, dtype=np.int8)
    loss = np.empty(N)
    for start in range(0, N, int(chunk)):
        k = np.arange(start, min(start + int(chunk), N))
        th0 = np.broadcast_to(base, (k.size, p)).copy()
        th0[:, i] = xs[k % nx]
        th0[:, j] = ys[k // nx]
        res = solve_ensemble(flow, th0, t_span=t_span, method=method, rtol=rtol, atol=atol,
                             gtol=gtol, max_steps=max_steps, threads=threads, progress=progress,
                             **solve_kwargs)
        finals[k] = res.y_final
        status[k] = res.status
        loss[k] = res.loss_final
    theta = np.where((status == _DIVERGED)[:, None], np.nan, finals)
    lp = limit_points(flow=flow, theta=theta, loss=loss, tol=tol, symmetric=symmetric,
                      polish=polish)
    names = tuple(flow.network.parameter_names()[q] for q in (i, j))
    settings = dict(t0=float(t_span[0]), t1=float(t_span[1]), method=str(method),
                    rtol=float(rtol), atol=float(atol), tol=float(tol),
                    symmetric=int(bool(symmetric)), nx=nx, ny=ny)
    return BasinMap(labels=lp.labels.reshape(ny, nx), x=xs, y=ys, names=names, params=(i, j),
                    base=base, status=status.reshape(ny, nx), loss_final=loss.reshape(ny, nx),
                    limit_points=lp, settings=settings)
