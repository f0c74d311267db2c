"""Ensemble results on disk: xarray Datasets in Zarr stores or NetCDF files.

    io.save(result, "run.zarr")        # or "run.nc"; result: EnsembleResult or xarray.Dataset
    ds = io.load("run.zarr")           # xarray.Dataset (narrowflow schema, see ensemble)
    flow = io.flow_from_xarray(ds)     # the GradientFlow that produced it

Safety (what a user who has lost data once expects):

- ``save`` writes into a hidden temporary sibling (``.NAME.<random>.partial``) and moves it
  to ``path`` only once it is complete; a write that fails or is interrupted leaves the
  previous content of ``path`` as it was (a SIGKILL may leave the hidden sibling behind; it
  is never read, and may be deleted).
- Every store carries the schema it promises, ``narrowflow_variables`` (the names of its
  variables and coordinates), and a completion marker ``narrowflow_complete = 1``: for Zarr
  both are written as the last step, after every array; for NetCDF they are in the file's
  attributes and the file is renamed into place only when complete.
- ``overwrite=True`` replaces only a narrowflow result (or an empty folder), and removes the
  old one only after the new one is complete; anything else at ``path`` (a user's folder
  named results.zarr, a foreign Zarr store or NetCDF file) is never deleted: refused with
  FileExistsError.
- ``load`` refuses with ValueError a store that is foreign, lacks the completion marker, or
  lacks a variable its schema promises. Stores of ``narrowflow.distributed`` are complete by
  their own rule: every ``chunk_complete`` flag set (they are refused, naming the chunks
  not computed, otherwise).

Nothing is fsynced: after a machine crash (not a killed process) data still in the OS cache
may be lost although the rename reached the disk.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

FORMATS = {".zarr": "zarr", ".nc": "netcdf", ".nc4": "netcdf"}
DISTRIBUTED_FORMAT = "narrowflow-distributed/1"   # the resumable stores of narrowflow.distributed
COMPLETE_ATTR = "narrowflow_complete"      # 1 once every variable is written
VARIABLES_ATTR = "narrowflow_variables"    # the variables and coordinates the store promises
# variables every narrowflow result has (EnsembleResult.to_xarray); checked for stores that
# predate the schema attribute (distributed stores)
CORE_VARIABLES = ("y_final", "t_final", "status", "nfev", "n_accepted", "n_rejected",
                  "loss_final")


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


def _variable_list(value) -> list | None:
    """The schema attribute as a list of names (a list in Zarr, a JSON string in NetCDF)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and ((path / "zarr.json").is_file() or (path / ".zgroup").is_file())


def _attrs_of(path: Path, fmt: str) -> dict | None:
    """The root attributes of the store at `path`, or None if it is no readable store."""
    try:
        if fmt == "zarr":
            if not _is_zarr_store(path):
                return None
            import zarr
            return dict(zarr.open_group(str(path), mode="r").attrs)
        if not path.is_file():
            return None
        import xarray as xr
        with xr.open_dataset(path) as ds:
            return dict(ds.attrs)
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return None


def _is_narrowflow_result(path: Path, fmt: str) -> bool:
    attrs = _attrs_of(path, fmt)
    return attrs is not None and any(k in attrs for k in ("narrowflow_version", COMPLETE_ATTR,
                                                          "narrowflow_format"))


def _check_replaceable(path: Path, fmt: str, overwrite: bool) -> None:
    """Refuse (FileExistsError) unless `path` is free, or overwrite and it is ours to replace."""
    if not (path.exists() or path.is_symlink()):
        return
    empty_dir = path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    ours = empty_dir or _is_narrowflow_result(path, fmt)
    if not ours:
        raise FileExistsError(f"path {str(path)!r} exists and is not a narrowflow result; "
                              f"not touching it (choose another path, or move it away)")
    if not overwrite:
        raise FileExistsError(f"path {str(path)!r} exists; pass overwrite=True to replace it")


def check_save_path(path, overwrite: bool = False) -> Path:
    """Check, before any work, that ``save(..., path, overwrite)`` may write ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The target; its suffix (``.zarr``, ``.nc``, ``.nc4``) names the format.
    overwrite : bool, optional
        Whether an existing narrowflow result (or an empty folder) may be replaced.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the suffix names no format.
    FileExistsError
        If ``path`` exists and may not be replaced, as `save` would refuse it.
    """
    path = Path(path)
    _check_replaceable(path, _format(path), overwrite)
    return path


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.{tag}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _swap_in(tmp: Path, path: Path) -> None:
    """Move the complete `tmp` to `path`; an existing `path` (already checked to be ours) is
    moved aside first and deleted only once `tmp` is in its place (put back on failure)."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)
        return
    if tmp.is_file() and path.is_file() and not path.is_symlink():
        os.replace(tmp, path)           # atomic for files
        return
    aside = _sibling(path, "old")
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(aside, path)
        raise
    _remove(aside)


def save(result_or_ds, path, overwrite: bool = False) -> Path:
    """Write an ensemble result to a Zarr store or a NetCDF file.

    The store is written into a temporary sibling, marked complete (``narrowflow_complete``
    with the list of variables ``narrowflow_variables``) and only then moved to ``path``;
    an old result is removed only after the new one is complete.

    Parameters
    ----------
    result_or_ds : EnsembleResult or xarray.Dataset
        The result (an `EnsembleResult` is converted with ``to_xarray()``).
    path : str or os.PathLike
        The target; the suffix ``.zarr``, ``.nc`` or ``.nc4`` chooses the format.
    overwrite : bool, optional
        Replace an existing narrowflow result (or an empty folder) at ``path``; anything
        else is never replaced.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If the suffix names no format.
    FileExistsError
        If ``path`` exists and may not be replaced.
    """
    path = Path(path)
    fmt = _format(path)
    ds = _dataset(result_or_ds)
    _check_replaceable(path, fmt, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    # attrs must be numbers or strings in both formats; the marker and schema are written here
    ds.attrs = {k: (int(v) if isinstance(v, (bool, np.bool_)) else v)
                for k, v in ds.attrs.items()
                if v is not None and k not in (COMPLETE_ATTR, VARIABLES_ATTR)}
    variables = list(ds.data_vars) + [c for c in ds.coords if c not in ds.data_vars]
    tmp = _sibling(path, "partial" + (path.suffix if fmt == "netcdf" else ""))
    try:
        with _one_chunk_at_a_time(ds):
            _write(ds, tmp, fmt, variables)
        # the path may have changed while writing: check again just before the swap
        _check_replaceable(path, fmt, overwrite)
        _swap_in(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


@contextlib.contextmanager
def _one_chunk_at_a_time(ds):
    """Dask-backed variables are computed on Dask's synchronous scheduler while they are
    written. The threaded and distributed schedulers raise a failed chunk's error while other
    chunks are still being written, and a late one could land in the temporary file after
    `save` removed it, leaving debris beside the result (seen in a test run with Dask's
    threads, and 4 times in 60 with a distributed Client current). The price: lazy variables
    are computed one chunk after another."""
    if not any(type(v.data).__module__.startswith("dask") for v in ds.variables.values()):
        yield
        return
    import dask
    with dask.config.set(scheduler="synchronous"):
        yield


def _write(ds, tmp: Path, fmt: str, variables: list) -> None:
    """Write `ds` to `tmp` in format `fmt`, the completion marker last."""
    if fmt == "zarr":
        # variable-length strings: the dtype Zarr v3 specifies (fixed-width UTF-32 it does
        # not)
        for name in list(ds.coords) + list(ds.data_vars):
            if ds[name].dtype.kind == "U":
                ds[name] = ds[name].astype(object)
        ds.to_zarr(tmp, mode="w-", consolidated=False)
        import zarr
        # the marker, last: after every array and its metadata
        zarr.open_group(str(tmp), mode="r+").attrs.update(
            {VARIABLES_ATTR: variables, COMPLETE_ATTR: 1})
    else:
        ds.attrs[VARIABLES_ATTR] = json.dumps(variables)
        ds.attrs[COMPLETE_ATTR] = 1
        ds.to_netcdf(tmp)


def _incomplete(path: Path, what: str) -> ValueError:
    return ValueError(f"path {str(path)!r} {what}; it cannot be read as a result")


def _check_complete(ds, path: Path) -> None:
    """Refuse (ValueError, saying what is missing) a store that is foreign or incomplete."""
    attrs = ds.attrs
    present = set(ds.data_vars) | set(ds.coords)
    if COMPLETE_ATTR in attrs:
        try:
            done = int(attrs[COMPLETE_ATTR]) == 1
        except (TypeError, ValueError):
            done = False
        if not done:
            raise _incomplete(path, f"is an incomplete narrowflow result (completion marker "
                                    f"{COMPLETE_ATTR} = {attrs[COMPLETE_ATTR]!r}, not 1)")
        promised = _variable_list(attrs.get(VARIABLES_ATTR))
        if promised is None:
            raise _incomplete(path, f"has a completion marker but no readable list of its "
                                    f"variables ({VARIABLES_ATTR})")
        missing = sorted(v for v in promised if v not in present)
        if missing:
            raise _incomplete(path, f"is an incomplete narrowflow result: variables missing "
                                    f"from the schema it promises: {', '.join(missing)}")
        return
    fmt = attrs.get("narrowflow_format")
    if fmt is not None:
        if fmt != DISTRIBUTED_FORMAT:
            raise _incomplete(path, f"has the unknown store format {fmt!r} (this narrowflow "
                                    f"reads {DISTRIBUTED_FORMAT!r})")
        missing = sorted(v for v in CORE_VARIABLES + ("chunk_complete",) if v not in present)
        if missing:
            raise _incomplete(path, f"is an incomplete narrowflow distributed store: variables "
                                    f"missing: {', '.join(missing)}")
        flags = np.asarray(ds["chunk_complete"].values, dtype=bool)
        todo = np.flatnonzero(~flags)
        if todo.size:
            raise _incomplete(path, f"is an incomplete narrowflow distributed store: chunks "
                                    f"{todo[:10].tolist()}{'...' if todo.size > 10 else ''} "
                                    f"({todo.size} of {flags.size}) not computed (chunk_complete "
                                    f"unset); run the same command again to resume it")
        return
    if "narrowflow_version" in attrs:
        missing = sorted(v for v in CORE_VARIABLES if v not in present)
        raise _incomplete(path, f"is an incomplete narrowflow result: the completion marker "
                                f"{COMPLETE_ATTR} is absent (the write was interrupted, or a "
                                f"narrowflow older than the marker wrote it)"
                          + (f"; variables missing: {', '.join(missing)}" if missing else "")
                          + "; xarray can still open it, at your own risk")
    raise _incomplete(path, "is not a narrowflow result (no narrowflow attributes)")


def load(path):
    """Read a stored result into memory.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.zarr`` store or ``.nc`` / ``.nc4`` file written by `save` or by
        ``narrowflow.distributed``.

    Returns
    -------
    xarray.Dataset
        The result in the narrowflow schema (docs/design.md §8).

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ValueError
        If it is not a complete narrowflow result (foreign, completion marker absent,
        promised variables missing, or a distributed store with chunks not computed),
        naming what is missing.
    """
    import xarray as xr
    path = Path(path)
    fmt = _format(path)
    if not path.exists():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    if fmt == "zarr":
        if not _is_zarr_store(path):
            raise ValueError(f"path {str(path)!r} is not a Zarr store (no zarr.json or .zgroup)")
        with warnings.catch_warnings():
            # stores written here are not consolidated; others (Dask runs) may be: read both
            warnings.simplefilter("ignore", RuntimeWarning)
            with xr.open_zarr(path) as ds:
                _check_complete(ds, path)
                return ds.load()
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a NetCDF file")
    try:
        ds = xr.open_dataset(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"path {str(path)!r} is not a readable NetCDF file ({exc})") from None
    with ds:
        _check_complete(ds, path)
        return ds.load()


def flow_from_xarray(ds):
    """Rebuild the gradient flow that produced a result.

    Parameters
    ----------
    ds : xarray.Dataset
        A result in the narrowflow schema of a `GradientFlow` run.

    Returns
    -------
    GradientFlow
        The network, data set and weight decay recorded in ``ds``.

    Raises
    ------
    ValueError
        If ``ds`` lacks the network attributes or the data set.
    """
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
