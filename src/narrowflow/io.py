"""Ensemble results on disk: xarray Datasets in Zarr stores or NetCDF files.

    io.save(result, "run.zarr")        # or "run.nc"; result: EnsembleResult or xarray.Dataset
    ds = io.load("run.zarr")           # xarray.Dataset (narrowflow schema, see ensemble)
    flow = io.flow_from_xarray(ds)     # the GradientFlow that produced it
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

FORMATS = {".zarr": "zarr", ".nc": "netcdf", ".nc4": "netcdf"}


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"path must end in .zarr (Zarr store) or .nc (NetCDF file), got "
                         f"{str(path)!r}")
    return fmt


def _dataset(result_or_ds):
    import xarray as xr
    if isinstance(result_or_ds, xr.Dataset):
        return result_or_ds
    if hasattr(result_or_ds, "to_xarray"):
        return result_or_ds.to_xarray()
    raise TypeError(f"result_or_ds must be an EnsembleResult or xarray.Dataset, got "
                    f"{type(result_or_ds).__name__}")


def save(result_or_ds, path, overwrite: bool = False) -> Path:
    """Write an EnsembleResult (via .to_xarray()) or Dataset to `path` (.zarr or .nc).

    Refuses to replace an existing file unless overwrite=True. Returns the path.
    """
    path = Path(path)
    fmt = _format(path)
    ds = _dataset(result_or_ds)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"path {str(path)!r} exists; pass overwrite=True to replace it")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    # attrs must be numbers or strings in both formats
    ds.attrs = {k: (int(v) if isinstance(v, (bool, np.bool_)) else v)
                for k, v in ds.attrs.items() if v is not None}
    if fmt == "zarr":
        # variable-length strings: the dtype Zarr v3 specifies (fixed-width UTF-32 it does not)
        for name in list(ds.coords) + list(ds.data_vars):
            if ds[name].dtype.kind == "U":
                ds[name] = ds[name].astype(object)
        ds.to_zarr(path, mode="w-", consolidated=False)
    else:
        ds.to_netcdf(path)
    return path


def load(path):
    """The Dataset stored at `path` (.zarr or .nc), read into memory."""
    import xarray as xr
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    if fmt == "zarr":
        with warnings.catch_warnings():
            # stores written here are not consolidated; others (Dask runs) may be: read both
            warnings.simplefilter("ignore", RuntimeWarning)
            with xr.open_zarr(path) as ds:
                return ds.load()
    with xr.open_dataset(path) as ds:
        return ds.load()


def flow_from_xarray(ds):
    """Rebuild the GradientFlow (network, data set, weight decay) described by a result Dataset."""
    from narrowflow.model import Dataset, GradientFlow, Network
    missing = [k for k in ("width", "input_dim", "output_dim", "activation", "bias")
               if k not in ds.attrs]
    if missing or "data_x" not in ds or "data_y" not in ds:
        raise ValueError(f"ds is not a narrowflow gradient-flow result (missing "
                         f"{missing or ['data_x/data_y']})")
    a = ds.attrs
    kappa = float(a.get("kappa", 0.0))
    net = Network(width=int(a["width"]), input_dim=int(a["input_dim"]),
                  output_dim=int(a["output_dim"]), activation=str(a["activation"]),
                  bias=bool(int(a["bias"])), kappa=kappa if a["activation"] == "quadratic" else None)
    data = Dataset(np.asarray(ds["data_x"].values, dtype=float),
                   np.asarray(ds["data_y"].values, dtype=float))
    return GradientFlow(net, data, weight_decay=float(a.get("weight_decay", 0.0)))
