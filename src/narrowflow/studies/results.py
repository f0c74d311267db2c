"""The result adapter: the arrays of an ensemble result, from an ``EnsembleResult`` or
from an ``xarray.Dataset`` (``EnsembleResult.to_xarray()``, ``narrowflow.io.load``) alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from narrowflow.ensemble import Status

DEFAULT_QUANTILES = (5, 25, 50, 75, 95)   # percent
_DIVERGED = Status.DIVERGED


@dataclass
class EnsembleFields:
    """The arrays of an ensemble result, whatever it came from (numpy, float64 unless noted).

    N trajectories of p parameters, K save times; built by `fields`.

    Parameters
    ----------
    y_final : ndarray of float64, shape (N, p)
        Final states.
    loss_final : ndarray of float64, shape (N,), or None
        Final losses.
    status : ndarray of int64, shape (N,), or None
        ``Status`` codes.
    t_final : ndarray of float64, shape (N,), or None
        Times where the trajectories stopped.
    t_saved : ndarray of float64, shape (K,), or None
        Save times.
    y_saved : ndarray of float64, shape (N, K, p), or None
        States on the save grid.
    loss_saved : ndarray of float64, shape (N, K), or None
        Losses on the save grid.
    escape_time : ndarray of float64, shape (N,), or None
        The solver's escape times (NaN: never).
    escape_threshold : float or None
        The loss level of ``escape_time``.
    parameter_names : list of str or None
        The p parameter names (from a Dataset's ``parameter`` coordinate; None for a result
        object).
    attrs : dict
        The Dataset's attributes (empty for a result object).
    source : object
        The object the arrays came from.
    """
    y_final: np.ndarray
    loss_final: np.ndarray | None
    status: np.ndarray | None
    t_final: np.ndarray | None
    t_saved: np.ndarray | None
    y_saved: np.ndarray | None
    loss_saved: np.ndarray | None
    escape_time: np.ndarray | None
    escape_threshold: float | None
    parameter_names: list | None
    attrs: dict
    source: object

    @property
    def n_trajectories(self) -> int:
        """The number of trajectories ``N``."""
        return int(self.y_final.shape[0])


def _arr(x, dtype=float):
    if x is None:
        return None
    return np.asarray(x, dtype=dtype)


def fields(result) -> EnsembleFields:
    """Return the arrays of ``result`` as an :class:`EnsembleFields`.

    Parameters
    ----------
    result : EnsembleResult, xarray.Dataset or EnsembleFields
        A result object (anything with ``y_final``), a Dataset in the result schema, or
        an `EnsembleFields` (returned as it is).

    Returns
    -------
    EnsembleFields
        The arrays, converted to numpy (float64; ``status`` int64).

    Raises
    ------
    ValueError
        If a Dataset has no ``y_final`` variable.
    TypeError
        If ``result`` is none of the above.
    """
    if isinstance(result, EnsembleFields):
        return result
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a hard dependency
        xr = None
    if xr is not None and isinstance(result, xr.Dataset):
        ds = result
        if "y_final" not in ds:
            raise ValueError("result: Dataset has no 'y_final' variable; not an ensemble result")

        def var(name, dtype=float):
            return _arr(ds[name].values, dtype) if name in ds else None

        has_time = "time" in ds.coords and ds.sizes.get("time", 0) > 0
        t_saved = _arr(ds["time"].values) if has_time else None
        names = [str(s) for s in ds["parameter"].values] if "parameter" in ds.coords else None
        thr = ds.attrs.get("escape_threshold", None)
        thr = None if thr is None or (isinstance(thr, float) and np.isnan(thr)) else float(thr)
        return EnsembleFields(
            y_final=var("y_final"), loss_final=var("loss_final"),
            status=var("status", np.int64), t_final=var("t_final"), t_saved=t_saved,
            y_saved=var("y_saved"), loss_saved=var("loss_saved"),
            escape_time=var("escape_time"), escape_threshold=thr, parameter_names=names,
            attrs=dict(ds.attrs), source=result)
    if hasattr(result, "y_final"):
        thr = getattr(result, "escape_threshold", None)
        return EnsembleFields(
            y_final=_arr(result.y_final), loss_final=_arr(getattr(result, "loss_final", None)),
            status=_arr(getattr(result, "status", None), np.int64),
            t_final=_arr(getattr(result, "t_final", None)),
            t_saved=_arr(getattr(result, "t_saved", None)),
            y_saved=_arr(getattr(result, "y_saved", None)),
            loss_saved=_arr(getattr(result, "loss_saved", None)),
            escape_time=_arr(getattr(result, "escape_time", None)),
            escape_threshold=None if thr is None else float(thr),
            parameter_names=None, attrs={}, source=result)
    raise TypeError(f"result: expected an EnsembleResult or an xarray.Dataset, "
                    f"got {type(result).__name__}")


def _check_quantiles(quantiles) -> np.ndarray:
    q = np.atleast_1d(np.asarray(quantiles, dtype=float))
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)) or np.any((q < 0) | (q > 100)):
        raise ValueError(f"quantiles: expected percentages in [0, 100], got {quantiles!r}")
    return q

def _flow_of(f: EnsembleFields):
    flow = getattr(f.source, "flow", None)
    if flow is None:
        from narrowflow import io
        flow = io.flow_from_xarray(f.source)
    return flow
