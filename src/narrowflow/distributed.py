"""Ensembles on a Dask cluster, written chunk by chunk into a resumable Zarr store.

For example::

    run = distributed.solve_distributed(flow, seed=1, n=10**6, store="runs/a.zarr",
                                        chunk=65536, t_span=(0, 100))
    ds = run.open()                  # xarray.Dataset in the narrowflow result schema

The ensemble is cut into chunks of `chunk` consecutive trajectories. One Dask task per chunk
rebuilds the compiled right-hand side on its worker from the picklable problem (a Numba
cfunc cannot be pickled; `narrowflow.rhs` compiles it once per worker process or loads it
from Numba's cache), makes the chunk's initial states (sampled from (seed, trajectory
index) by `narrowflow.initial`, or read from the store when the user gave an array), runs
the Cython kernel (`narrowflow.ensemble.solve_chunk`), writes the chunk's rows straight into
the store (the Zarr chunks along `trajectory` are exactly the task chunks, so no two tasks
ever write the same Zarr chunk) and only then sets ``chunk_complete[k]``.

Resume: the same call on an existing store computes only the chunks not marked complete.
The store's attributes hold the resolved configuration (problem, data digest, initial
states, N, chunk, narrowflow version, and how the right-hand sides are compiled: FMA on/off
and the Numba version, which change the last bits); a store made by another configuration
is refused unless overwrite=True, and a worker that compiles differently refuses its task. A worker that dies loses nothing: Dask reruns its tasks elsewhere
(tasks are idempotent: a chunk's bytes depend only on the configuration). An interrupted
client leaves every finished chunk marked; the rest is recomputed on the next call.

The store is a Zarr (v3) group that ``xarray.open_zarr`` / ``narrowflow.io.load`` read as
the schema of ``EnsembleResult.to_xarray()``, plus ``chunk_complete (chunk)`` and, when the
initial states were given as an array, ``theta0 (trajectory, parameter)``. Trajectories of
chunks not yet computed have status -1 and NaN floats.

The store must be on a file system that every worker can reach (a shared file system on a
cluster); run one client per store at a time. The guarantees cover killed processes
(workers, client); after a machine crash, data still in the OS cache may be lost although
its marker reached the disk (nothing is fsynced): rerun with --overwrite in that case.
dask, distributed and zarr are the ``narrowflow[dist]`` extra.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from narrowflow.io import DISTRIBUTED_FORMAT

FORMAT = DISTRIBUTED_FORMAT      # defined by narrowflow.io, which reads these stores too
DEFAULT_CHUNK = 65536           # largest default chunk (trajectories per task)
MIN_CHUNK = 4096                # smallest default chunk where N allows WAVES... waves
MIN_SPLIT = 256                 # smallest default chunk when N is split over the slots
WAVES = 8                       # tasks per worker slot by default (a tail of <= 1/8 of the run)
DEFAULT_SLOTS = 4               # slots assumed when the cluster's size is not known
WATCH_INTERVAL = 2.0            # seconds between watch() calls while waiting for tasks
CHUNK_BYTES = 64 << 20          # default chunk keeps one chunk's outputs under 64 MiB
STATUS_PENDING = -1             # status of trajectories whose chunk is not computed yet
# EnsembleProblem fields that cannot change a stored byte (the kernel is bitwise independent
# of the lane count); every other field is part of a store's configuration
_NOT_IN_CONFIG = ("flow", "lanes")
# solve_ensemble arguments without meaning for a distributed run (see solve_ensemble_dask)
LOCAL_ONLY = ("threads", "memory_limit", "profile")


def require_dask() -> None:
    """Check that dask.distributed is importable.

    Raises
    ------
    ImportError
        Naming the extra to install (``narrowflow[dist]``) when it is missing.
    """
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"distributed ensembles need dask.distributed ({exc}); install them "
                          f"with: pip install 'narrowflow[dist]'") from exc


# --- configuration -------------------------------------------------------------------------

def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else repr(v)   # JSON has no inf/nan
    return v


@dataclass(frozen=True)
class InitialStates:
    """Where the initial states come from (picklable; what the tasks need to make them).

    Parameters
    ----------
    kind : {"sampled", "array"}
        ``"sampled"``: `narrowflow.initial.sample` with ``distribution``, ``params`` and
        ``seed``; row i depends only on ``(seed, i)``. ``"array"``: the user's array, stored
        in the store as ``theta0`` and read back by each task.
    n : int
        Number of trajectories N.
    seed : int or None, optional
        The seed (sampled).
    distribution : str or None, optional
        ``"normal"`` or ``"uniform"`` (sampled).
    params : dict, optional
        ``mean``/``std`` or ``low``/``high`` (sampled).
    digest : str or None, optional
        SHA-256 of the array (array).
    """

    kind: str
    n: int
    seed: int | None = None
    distribution: str | None = None
    params: dict = field(default_factory=dict)
    digest: str | None = None

    def describe(self) -> dict:
        """Plain-data description, as recorded in the store's configuration.

        Returns
        -------
        dict
            ``kind``, ``n`` and either ``sha256`` or the seed, distribution and parameters.
        """
        if self.kind == "array":
            return {"kind": "array", "n": self.n, "sha256": self.digest}
        return {"kind": "sampled", "n": self.n, "seed": self.seed,
                "distribution": self.distribution, **_jsonable(self.params)}

    def rows(self, start: int, stop: int, p: int, group=None) -> np.ndarray:
        """Initial states of trajectories ``start .. stop − 1``.

        Parameters
        ----------
        start, stop : int
            The trajectory range.
        p : int
            Number of parameters.
        group : zarr.Group, optional
            The store's group, read when ``kind == "array"``.

        Returns
        -------
        ndarray of float64, shape (stop − start, p)
        """
        if self.kind == "array":
            return np.asarray(group["theta0"][start:stop], dtype=np.float64)
        from narrowflow import initial
        return initial.sample(stop - start, p, self.seed, self.distribution, start=start,
                              **self.params)


def resolve_initial(p: int, theta0=None, initial=None, seed=None, n=None):
    """Resolve where the initial states come from: an array or a distribution.

    Parameters
    ----------
    p : int
        Number of parameters.
    theta0 : array_like of float, shape (N, p), optional
        Given initial states (refused together with ``initial``, ``seed`` or ``n``).
    initial : None, str or dict, optional
        None (standard normal), ``"normal"``, ``"uniform"``, or ``{"distribution": ...,
        "mean"/"std" or "low"/"high": ...}``.
    seed : int, optional
        The seed of sampled states.
    n : int, optional
        Number of sampled trajectories.

    Returns
    -------
    init : InitialStates
        The description the tasks use.
    theta0 : ndarray of float64, shape (N, p), or None
        The checked array, or None for sampled states.

    Raises
    ------
    TypeError, ValueError
        For a bad or missing argument (named).
    """
    from narrowflow import ensemble
    if theta0 is not None:
        if initial is not None or seed is not None or n is not None:
            raise ValueError("theta0: give either an array theta0 or (initial, seed, n), not both")
        arr = ensemble.check_theta0(theta0, p)
        return InitialStates(kind="array", n=arr.shape[0], digest=_digest(arr)), arr
    if seed is None:
        raise ValueError("seed: required when theta0 is not given (initial states are sampled "
                         "from the seed and the trajectory index)")
    if n is None:
        raise ValueError("n: required when theta0 is not given (the number of trajectories)")
    n = _positive_int(n, "n")
    if initial is None:
        spec = {"distribution": "normal"}
    elif isinstance(initial, str):
        spec = {"distribution": initial}
    elif isinstance(initial, dict):
        spec = dict(initial)
    else:
        raise TypeError(f"initial must be None, a distribution name or a dict, got "
                        f"{type(initial).__name__}")
    dist = spec.pop("distribution", "normal")
    allowed = {"normal": ("mean", "std"), "uniform": ("low", "high")}
    if dist not in allowed:
        raise ValueError(f"initial: distribution must be one of {sorted(allowed)}, got {dist!r}")
    extra = set(spec) - set(allowed[dist])
    if extra:
        raise ValueError(f"initial: unknown keys {sorted(extra)} for distribution {dist!r} "
                         f"(allowed: {', '.join(allowed[dist])})")
    defaults = {"mean": 0.0, "std": 1.0, "low": -1.0, "high": 1.0}   # initial.sample's
    spec = {k: spec.get(k, defaults[k]) for k in allowed[dist]}
    params = {}
    for k, v in spec.items():
        try:
            params[k] = float(v) if np.ndim(v) == 0 else tuple(float(x) for x in np.ravel(v))
        except (TypeError, ValueError):
            raise ValueError(f"initial: {k} must be a number or a list of {p} numbers, got "
                             f"{v!r}") from None
    init = InitialStates(kind="sampled", n=n, seed=seed, distribution=dist, params=params)
    init.rows(0, 1, p)          # validates seed and parameters now, with the library's errors
    return init, None


def default_tasks(n: int, slots: int, cap: int = DEFAULT_CHUNK) -> int:
    """Number of tasks for n trajectories on ``slots`` worker slots (see `default_chunk`).

    Parameters
    ----------
    n : int
        Number of trajectories.
    slots : int
        Worker slots.
    cap : int, optional
        Largest chunk, in trajectories.

    Returns
    -------
    int
        A whole number of waves of ``slots`` tasks.
    """
    slots = max(1, int(slots))
    waves = max(1, min(WAVES, n // (slots * MIN_CHUNK)))
    tasks = slots * waves
    if -(-n // tasks) > cap:                     # chunks too large: more full waves
        tasks = slots * -(-n // (slots * cap))
    return tasks


def default_chunk(problem, n: int, slots: int | None = None) -> int:
    """Trajectories per task, from N, the worker slots and the problem's output size.

    Parameters
    ----------
    problem : EnsembleProblem
        The settings (their output size per trajectory).
    n : int
        Number of trajectories N.
    slots : int, optional
        Worker slots: the cluster's threads divided by ``threads_per_task``
        (``DEFAULT_SLOTS`` when None).

    Returns
    -------
    int
        The chunk, at most N.

    Notes
    -----
    The tasks are a whole number of waves of `slots` (every slot gets the same number of
    equal chunks, so the run ends without a partial last wave): WAVES (8) per slot, fewer
    where that would make chunks smaller than MIN_CHUNK (4096; tasks of about a second
    for NF4 against a few ms of overhead each), down to one wave of N/slots (never below
    MIN_SPLIT = 256 trajectories); more waves where a chunk would exceed 65536 trajectories
    or 64 MiB of outputs. The last chunk may be shorter (N is not always a multiple). The
    chunking does not change a stored bit (the kernel is bitwise independent of it); a store
    keeps its chunk when resumed on another cluster. Never more than N.
    """
    from narrowflow import ensemble
    per = max(1, ensemble.output_nbytes(problem, 1))
    cap = max(1, min(DEFAULT_CHUNK, CHUNK_BYTES // per))
    slots = DEFAULT_SLOTS if slots is None else max(1, int(slots))
    c = -(-n // default_tasks(n, slots, cap))
    c = max(c, min(MIN_SPLIT, cap))
    return max(1, min(c, cap, n))


def build_config() -> dict:
    """How this process compiles the right-hand sides, which changes the stored numbers:
    FMA contraction on or off (``narrowflow.jit.FMA``, env NARROWFLOW_NO_FMA; y_final differs
    in the last bits) and the Numba version. The CPU is left out: the client's CPU does not
    compute anything (workers compile for their own), and a cluster's login node often differs
    from its compute nodes; each task checks its worker against these values instead."""
    import numba

    from narrowflow import jit
    return {"rhs_fma": jit.fma_enabled(), "numba": numba.__version__}


def resolved_config(problem, init: InitialStates) -> dict:
    """Everything the stored bytes depend on, as JSON-able data (chunk kept apart)."""
    import narrowflow
    from narrowflow.model import GradientFlow
    flow = problem.flow
    if not isinstance(flow, GradientFlow):
        raise TypeError(f"flow must be a GradientFlow for distributed runs (a CompiledSystem "
                        f"holds process-local addresses), got {type(flow).__name__}")
    cfg = {
        "format": FORMAT,
        "narrowflow_version": narrowflow.__version__,
        "network": flow.network.describe(),
        "weight_decay": flow.weight_decay,
        "data_sha256": _digest(flow.data.x, flow.data.y),
        "initial": init.describe(),
        "build": build_config(),
    }
    # every solver setting the problem resolves (method, t_span, tolerances, save_at, ...):
    # taken from the dataclass so that a setting added to the solver is never left out
    for f in dataclasses.fields(problem):
        if f.name not in _NOT_IN_CONFIG:
            cfg[f.name] = getattr(problem, f.name)
    return _jsonable(cfg)


def _fingerprint(config: dict, chunk: int) -> str:
    text = json.dumps({"config": config, "chunk": chunk}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _versions() -> dict:
    import platform

    import numba
    import zarr

    import narrowflow
    out = {"narrowflow": narrowflow.__version__, "numpy": np.__version__,
           "numba": numba.__version__, "zarr": zarr.__version__,
           "python": platform.python_version()}
    try:
        import dask
        import distributed
        out.update(dask=dask.__version__, distributed=distributed.__version__)
    except ImportError:  # pragma: no cover
        pass
    return out


# --- the store -----------------------------------------------------------------------------

def _template(problem, init: InitialStates, chunk: int, config: dict, theta0):
    """The lazy (dask-backed) Dataset whose metadata becomes the store, and its encoding."""
    import dask.array as da

    from narrowflow import ensemble
    N, K = init.n, problem.n_save
    # EnsembleResult.to_xarray() defines the schema: fill it with lazy arrays of the right
    # shapes and dtypes so that the store has exactly its variables, coordinates and attrs.
    lazy = {k: da.full((N,) + v.shape[1:], STATUS_PENDING if k == "status"
                       else (0 if v.dtype.kind in "iu" else np.nan), dtype=v.dtype,
                       chunks=(chunk,) + v.shape[1:])
            for k, v in ensemble.allocate(problem, 1).items()}
    res = ensemble.EnsembleResult(
        y_final=lazy["y_final"], t_final=lazy["t_final"], status=lazy["status"],
        nfev=lazy["nfev"], n_accepted=lazy["n_accepted"], n_rejected=lazy["n_rejected"],
        loss_final=lazy["loss_final"],
        t_saved=problem.save_at.copy() if K else None, y_saved=lazy.get("y_saved"),
        loss_saved=lazy.get("loss_saved"), escape_threshold=problem.escape_threshold,
        escape_time=lazy.get("escape_time"), flow=problem.flow, method=problem.method,
        rtol=problem.rtol, atol=problem.atol, t_span=problem.t_span, elapsed=float("nan"),
        dt=problem.dt, gtol=problem.gtol, seed=init.seed, lanes=problem.lanes,
        njev=lazy["njev"])
    ds = res.to_xarray()
    n_chunks = -(-N // chunk)
    ds["chunk_complete"] = (("chunk",), da.zeros(n_chunks, dtype=bool, chunks=1))
    if theta0 is not None:
        ds["theta0"] = (("trajectory", "parameter"), theta0)
    ds.attrs.update(
        narrowflow_config=json.dumps(config, sort_keys=True),
        narrowflow_fingerprint=_fingerprint(config, chunk),
        narrowflow_store_id=uuid.uuid4().hex,   # this store, not another with the same config
        narrowflow_format=FORMAT, chunk_size=chunk, n_chunks=n_chunks,
        initial=json.dumps(init.describe(), sort_keys=True),
        versions=json.dumps(_versions(), sort_keys=True),
        status_pending=STATUS_PENDING)
    ds.attrs = {k: (int(v) if isinstance(v, (bool, np.bool_)) else v)
                for k, v in ds.attrs.items() if v is not None}
    for name in list(ds.coords) + list(ds.data_vars):
        if ds[name].dtype.kind == "U":       # Zarr v3 specifies variable-length strings only
            ds[name] = ds[name].astype(object)
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.dims and var.dims[0] == "trajectory":
            encoding[name] = {"chunks": (chunk,) + var.shape[1:]}
        elif name == "chunk_complete":
            encoding[name] = {"chunks": (1,)}   # one object per marker: no two tasks share one
    return ds, encoding


def _create_store(path: Path, ds, encoding) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # zarr's notes on v3 string dtypes
        ds.to_zarr(tmp, mode="w-", compute=False, consolidated=False, encoding=encoding)
        import zarr
        g = zarr.open_group(tmp, mode="r+")
        status = g["status"]
        step = status.chunks[0]
        for lo in range(0, status.shape[0], step * 64):   # pending status, written once
            hi = min(status.shape[0], lo + step * 64)
            status[lo:hi] = np.full(hi - lo, STATUS_PENDING, dtype=np.int8)
    try:
        os.replace(tmp, path)       # the store appears whole or not at all
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if path.exists():
            raise FileExistsError(f"store {str(path)!r} appeared while this run was creating "
                                  f"it (another run on the same store?); run again to "
                                  f"resume it") from None
        raise


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def _is_narrowflow_result(path: Path) -> bool:
    """True for a Zarr store written by narrowflow (io.save or a distributed run)."""
    import zarr
    try:
        return "narrowflow_version" in zarr.open_group(path, mode="r").attrs
    except Exception:  # noqa: BLE001 - unreadable: certainly not ours
        return False


def store_state(store) -> dict:
    """What an existing distributed store holds.

    Parameters
    ----------
    store : str or os.PathLike
        The Zarr store.

    Returns
    -------
    dict
        ``config`` (the resolved configuration), ``chunk``, ``n_chunks``, ``complete``
        (bool array, shape (n_chunks,)), ``fingerprint``, ``store_id`` and ``attrs``.

    Raises
    ------
    ValueError
        If ``store`` is not a narrowflow distributed store.
    """
    import zarr
    path = Path(store)
    if not _is_store(path):
        raise ValueError(f"store {str(path)!r} is not a Zarr store")
    g = zarr.open_group(path, mode="r")
    attrs = dict(g.attrs)
    if attrs.get("narrowflow_format") != FORMAT or "chunk_complete" not in g:
        raise ValueError(f"store {str(path)!r} is not a narrowflow distributed store "
                         f"(no {FORMAT} attributes)")
    return {"config": json.loads(attrs["narrowflow_config"]), "chunk": int(attrs["chunk_size"]),
            "n_chunks": int(attrs["n_chunks"]), "complete": np.asarray(g["chunk_complete"][:]),
            "fingerprint": attrs["narrowflow_fingerprint"],
            "store_id": attrs.get("narrowflow_store_id"), "attrs": attrs}


def _diff(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if old != new:
        o, n = json.dumps(old), json.dumps(new)
        if len(o) > 60:
            o = o[:57] + "..."
        if len(n) > 60:
            n = n[:57] + "..."
        return [f"{prefix[:-1]}: store has {o}, this run has {n}"]
    return []


def _prepare_store(path: Path, problem, init, chunk, config, theta0, overwrite: bool,
                   slots=None):
    """Create the store or check an existing one; returns (chunk, completed mask, store id).
    slots: worker slots for the default chunk of a new store (an int, or a callable asked
    only when a store is created without a chunk)."""
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        if not path.is_dir() or not _is_store(path):
            raise FileExistsError(
                f"store {str(path)!r} exists and is not a Zarr store; not touching it "
                f"(choose another path)")
        try:
            state = store_state(path)
        except ValueError:
            state = None
        if overwrite:
            if state is None and not _is_narrowflow_result(path):
                raise FileExistsError(f"store {str(path)!r} is a Zarr store not written by "
                                      f"narrowflow; refusing to delete it")
            shutil.rmtree(path)
        elif state is None:
            what = ("holds a narrowflow result written in one process (not resumable)"
                    if _is_narrowflow_result(path) else "is not a narrowflow store")
            raise ValueError(f"store {str(path)!r} {what}; pass overwrite=True (--overwrite) "
                             f"to replace it, or choose another path")
        else:
            diffs = _diff(state["config"], config)
            if chunk is not None and chunk != state["chunk"]:
                diffs.append(f"chunk: store has {state['chunk']}, this run has {chunk}")
            if diffs:
                raise ValueError(
                    f"store {str(path)!r} was made by a different configuration ("
                    + "; ".join(diffs) + "); pass overwrite=True (--overwrite) to replace it, "
                    "or choose another store")
            return state["chunk"], state["complete"], state["store_id"]
    elif path.exists():
        path.rmdir()                    # an empty directory: take its place
    if chunk is None:
        chunk = default_chunk(problem, init.n, slots() if callable(slots) else slots)
    ds, encoding = _template(problem, init, chunk, config, theta0)
    _create_store(path, ds, encoding)
    return chunk, np.zeros(-(-init.n // chunk), dtype=bool), ds.attrs["narrowflow_store_id"]


# --- the task ------------------------------------------------------------------------------

_WORKER_CACHE: dict = {}


def _problem_on_worker(fingerprint: str, problem_bytes: bytes):
    """The unpickled problem and its compiled right-hand side, once per worker process."""
    hit = _WORKER_CACHE.get(fingerprint)
    if hit is None:
        from narrowflow import ensemble
        problem = pickle.loads(problem_bytes)
        hit = (problem, ensemble._compiled(problem.flow, ensemble._needs_jacobian(problem.method)))
        _WORKER_CACHE.clear()          # one configuration at a time is plenty
        _WORKER_CACHE[fingerprint] = hit
    return hit


_ARRAY_CACHE: dict = {}


def _arrays_on_worker(group, store: str, store_id: str) -> dict:
    """The store's Zarr arrays by name, opened once per store and process (opening reads
    each array's metadata: ~1.5 ms apiece)."""
    key = (store, store_id)
    hit = _ARRAY_CACHE.get(key)
    if hit is None:
        hit = {name: arr for name, arr in group.arrays()}
        if len(_ARRAY_CACHE) > 8:
            _ARRAY_CACHE.clear()
        _ARRAY_CACHE[key] = hit
    return hit


def _write_rows(arrays: dict, values: dict, lo: int, hi: int) -> None:
    """arrays[name][lo:hi] = values[name] for every name, concurrently in zarr's event loop
    (zarr >= 3); one array after the other where zarr lacks the async API."""
    try:
        import asyncio

        from zarr.core.sync import sync
        targets = [(arrays[name]._async_array, v) for name, v in values.items()]
    except (ImportError, AttributeError):
        for name, v in values.items():
            arrays[name][lo:hi] = v
        return

    async def write_all():
        await asyncio.gather(*(a.setitem(slice(lo, hi), v) for a, v in targets))
    sync(write_all())


def _store_id(store: str):
    """The store's narrowflow_store_id, read fresh from its group metadata (zarr.json, a
    ~0.1 ms read; through zarr where that file is not there)."""
    try:
        with open(os.path.join(store, "zarr.json"), "rb") as f:
            return json.load(f)["attributes"].get("narrowflow_store_id")
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        import zarr
        try:
            return zarr.open_group(store, mode="r").attrs.get("narrowflow_store_id")
        except Exception:  # noqa: BLE001 - gone or not a group: not this store
            return None


def _check_store(store: str, store_id: str) -> None:
    if _store_id(store) != store_id:
        raise RuntimeError(f"store {store!r} was replaced (overwrite) while this task ran; "
                           f"its chunk is not written")


def run_chunk(store: str, store_id: str, fingerprint: str, problem_bytes: bytes,
              init: InitialStates, k: int, lo: int, hi: int, threads: int = 1,
              build: dict | None = None) -> dict:
    """Compute chunk k (trajectories lo..hi-1) and write it into the store; then mark it.

    Runs on a Dask worker (or anywhere): idempotent, so a retry after a lost worker simply
    writes the same bytes again. Writes nothing into a store that was replaced (by an
    overwrite, from another client) since this task was submitted: the store's id is checked
    before the work and again, freshly read, between the solve and the writes (a task left
    running on an external cluster after Ctrl-C cannot mark a chunk of a new store).

    Parameters
    ----------
    store : str
        Path of the Zarr store.
    store_id : str
        The store's id when the task was submitted.
    fingerprint : str
        The configuration's fingerprint.
    problem_bytes : bytes
        The pickled `narrowflow.ensemble.EnsembleProblem`.
    init : InitialStates
        Where the initial states come from.
    k : int
        Chunk index.
    lo, hi : int
        The chunk's trajectories ``lo .. hi − 1``.
    threads : int, optional
        OpenMP threads of the kernel.
    build : dict, optional
        The store's ``build_config()``; a worker that compiles differently (FMA setting,
        Numba version) refuses rather than write other bits.

    Returns
    -------
    dict
        A report of the task: ``chunk``, ``n``, ``pid``, kernel counters and timings.

    Raises
    ------
    RuntimeError
        If the worker compiles differently (naming the key) or the store was replaced.
    """
    import zarr

    from narrowflow import ensemble
    start = time.perf_counter()
    if build is not None:
        diffs = _diff(build, build_config(), "build.")
        if diffs:
            raise RuntimeError(f"worker {os.getpid()} compiles differently from the store's "
                               f"configuration ({'; '.join(diffs)}); its chunk {k} is not "
                               f"written (start the workers with the same environment)")
    if _store_id(store) != store_id:
        raise RuntimeError(f"store {store!r} was replaced (overwrite) before this task ran")
    problem, compiled = _problem_on_worker(fingerprint, problem_bytes)
    arrays = _ARRAY_CACHE.get((store, store_id))
    if arrays is None:             # the group and its arrays: opened once per process
        arrays = _arrays_on_worker(zarr.open_group(store, mode="r+"), store, store_id)
    y0 = init.rows(lo, hi, problem.n_params, group=arrays)
    t_read = time.perf_counter()
    cpu = time.thread_time()
    out = ensemble.solve_chunk(problem, y0, threads=threads, _compiled_cache=compiled)
    cpu = time.thread_time() - cpu          # this thread's CPU (all of it with threads=1)
    t_solve = time.perf_counter()
    _check_store(store, store_id)
    # every per-trajectory output the schema stores, written concurrently (one round trip
    # of zarr's event loop instead of one per array)
    _write_rows(arrays, {name: values for name, values in out.items()
                         if name in arrays and name != "theta0"}, lo, hi)
    arrays["chunk_complete"][k] = True     # only after every array of the chunk is written
    stats = out.get("_stats", np.zeros(2, dtype=np.int64))
    return {"chunk": k, "n": hi - lo, "pid": os.getpid(), "rhs_calls": int(stats[0]),
            "lane_evaluations": int(stats[1]), "prepare_s": t_read - start,
            "solve_s": t_solve - t_read, "solve_cpu_s": cpu,
            "write_s": time.perf_counter() - t_solve}


# --- running -------------------------------------------------------------------------------

@dataclass
class DistributedRun:
    """What `solve_distributed` did: the store, its chunking, and which chunks this call computed.

    Parameters
    ----------
    store : pathlib.Path
        The Zarr store.
    n_trajectories : int
        Number of trajectories N.
    chunk : int
        Trajectories per chunk.
    n_chunks : int
        Number of chunks.
    computed : list of int
        Chunks computed by this call, in completion order.
    skipped : list of int
        Chunks already complete in the store.
    elapsed : float
        Wall time of the call, in seconds.
    tasks : list of dict
        The per-task reports of `run_chunk`.
    flow : GradientFlow, optional
        The system integrated.
    """

    store: Path
    n_trajectories: int
    chunk: int
    n_chunks: int
    computed: list
    skipped: list
    elapsed: float
    tasks: list
    flow: object = None

    @property
    def complete(self) -> bool:
        """Whether every chunk of the store is complete."""
        return len(self.computed) + len(self.skipped) == self.n_chunks

    def open(self):
        """The store as a lazy dataset.

        Returns
        -------
        xarray.Dataset
            In the narrowflow result schema, plus ``chunk_complete``.
        """
        return open_store(self.store)

    def to_result(self):
        """The store read into memory (see `load_result`).

        Returns
        -------
        EnsembleResult
        """
        return load_result(self.store, flow=self.flow, elapsed=self.elapsed)


def open_store(store):
    """Open a store written by `solve_distributed`.

    Parameters
    ----------
    store : str or os.PathLike
        The Zarr store.

    Returns
    -------
    xarray.Dataset
        Lazy (arrays are read on access).
    """
    import xarray as xr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # not consolidated: by design
        return xr.open_zarr(store, consolidated=False)


def load_result(store, flow=None, elapsed: float = float("nan")):
    """Read a complete store into memory.

    Parameters
    ----------
    store : str or os.PathLike
        The Zarr store.
    flow : GradientFlow, optional
        The system; rebuilt from the store when None.
    elapsed : float, optional
        Recorded as the result's wall time, in seconds.

    Returns
    -------
    EnsembleResult

    Raises
    ------
    ValueError
        If some chunk is not computed (naming them) or the store is not a narrowflow store.
    """
    from narrowflow import ensemble, io
    state = store_state(store)
    if not state["complete"].all():
        missing = np.flatnonzero(~state["complete"])
        raise ValueError(f"store {str(store)!r} is incomplete: chunks {missing[:10].tolist()}"
                         f"{'...' if missing.size > 10 else ''} ({missing.size} of "
                         f"{state['n_chunks']}) not computed; run the same command again")
    # the inputs (theta0: as large as y_final) and the markers are not part of the result
    ds = open_store(store)
    ds = ds.drop_vars([v for v in ("theta0", "chunk_complete") if v in ds]).load()
    flow = io.flow_from_xarray(ds) if flow is None else flow
    a = ds.attrs

    def get(name):
        return ds[name].values if name in ds else None

    cfg = state["config"]
    return ensemble.EnsembleResult(
        y_final=get("y_final"), t_final=get("t_final"), status=get("status"), nfev=get("nfev"),
        n_accepted=get("n_accepted"), n_rejected=get("n_rejected"),
        loss_final=get("loss_final"),
        t_saved=ds["time"].values if "time" in ds.coords else None,
        y_saved=get("y_saved"), loss_saved=get("loss_saved"),
        escape_threshold=a.get("escape_threshold"), escape_time=get("escape_time"),
        flow=flow, method=a["method"], rtol=float(a["rtol"]), atol=float(a["atol"]),
        t_span=(float(a["t0"]), float(a["t1"])), elapsed=elapsed, dt=a.get("dt"),
        gtol=a.get("gtol"), seed=cfg["initial"].get("seed"), njev=get("njev"))


def default_cluster_size() -> tuple[int, int]:
    """(workers, threads per worker) for a LocalCluster on this machine (Dask's own sizing)."""
    from distributed.deploy.utils import nprocesses_nthreads
    from narrowflow.ensemble import default_threads
    return nprocesses_nthreads(default_threads())


def local_cluster(n_workers: int | None = None, threads_per_worker: int | None = None):
    """A Dask LocalCluster of worker processes.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: Dask's sizing for this machine, or 1 when only
        ``threads_per_worker`` is given).
    threads_per_worker : int, optional
        Threads per worker (default: the cores divided among the workers).

    Returns
    -------
    distributed.LocalCluster
    """
    import logging

    from distributed import LocalCluster
    if n_workers is None and threads_per_worker is None:
        n_workers, threads_per_worker = default_cluster_size()
    elif threads_per_worker is None:
        from narrowflow.ensemble import default_threads
        threads_per_worker = max(1, default_threads() // n_workers)
    elif n_workers is None:
        n_workers = 1
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                        processes=True, dashboard_address=None, silence_logs=logging.ERROR)


def solver_option_names() -> tuple:
    """The solver options `solve_distributed` passes on.

    Returns
    -------
    tuple of str
        The keyword arguments of `narrowflow.ensemble.make_problem`.
    """
    import inspect

    from narrowflow import ensemble
    return tuple(k for k in inspect.signature(ensemble.make_problem).parameters if k != "flow")


def solve_distributed(flow, theta0=None, *, store, initial=None, seed=None, n=None, chunk=None,
                      client=None, overwrite: bool = False, progress=False, threads_per_task=1,
                      retries: int = 2, slots: int | None = None, watch=None,
                      **solver_options) -> DistributedRun:
    """Integrate an ensemble on a Dask cluster into a resumable Zarr store.

    Parameters
    ----------
    flow : GradientFlow
        The system to integrate.
    theta0 : array_like of float, shape (N, p), optional
        Initial states; otherwise they are sampled from ``initial``, ``seed`` and ``n``:
        trajectory i gets row i of ``narrowflow.initial.sample(n, p, seed, ...)``, however
        the run is split.
    store : str or os.PathLike
        Path of the Zarr store (created, or resumed when it holds this configuration).
    initial : None, str or dict, optional
        None (standard normal), ``"normal"``, ``"uniform"``, or ``{"distribution": ...,
        "mean"/"std" or "low"/"high": ...}``.
    seed : int, optional
        Seed of the sampled initial states.
    n : int, optional
        Number of trajectories N of the sampled initial states.
    chunk : int, optional
        Trajectories per task (default: `default_chunk` for the cluster's worker slots;
        when resuming, the store's).
    client : distributed.Client or callable, optional
        A client, or a callable returning one (called only if some chunk is left to compute
        or the new store's chunk needs the cluster's size; the caller closes it). None
        starts a LocalCluster sized to this machine and closes it afterwards.
    overwrite : bool, optional
        Delete an existing narrowflow store at ``store`` and start from scratch. Without it,
        a store made by another configuration is refused and one made by this configuration
        is resumed.
    progress : bool or callable, optional
        True for a tqdm bar over chunks, or a callable ``progress(done, total)`` called
        after each finished chunk.
    threads_per_task : int, optional
        OpenMP threads of the kernel in one task (default 1: each of a worker's Dask threads
        runs one task, which measured about 2-3 % less CPU per trajectory than one 2-thread
        task at a time).
    retries : int, optional
        Extra attempts for a task that raised (tasks lost with a dead worker are rerun by
        Dask regardless).
    slots : int or callable, optional
        Worker slots to size the default chunk for (default: the connected workers' threads
        divided by ``threads_per_task``); a callable is asked only when a new store is made
        without a chunk. Give it where workers are still on their way (queued batch jobs).
    watch : callable, optional
        Called every ``WATCH_INTERVAL`` (2 s) while waiting for tasks; it raises to abort
        the run (``narrowflow.cluster``'s job-queue checks).
    **solver_options
        The options of `narrowflow.ensemble.solve_ensemble` that define the problem
        (`solver_option_names`: method, t_span, save_at, rtol, atol, dt, max_steps,
        max_step, gtol, escape_threshold, divergence_bound, lanes, save_states).

    Returns
    -------
    DistributedRun
        The store and which chunks were computed now. The stored result equals
        ``solve_ensemble(flow, theta0, ...)`` bitwise.

    Raises
    ------
    ValueError
        For a bad argument (named), or a store made by another configuration without
        ``overwrite``.
    ImportError
        If dask.distributed is not installed.
    """
    require_dask()
    from narrowflow import ensemble
    known = solver_option_names()
    unknown = set(solver_options) - set(known)
    if unknown:
        raise TypeError(f"solve_distributed got unknown solver options {sorted(unknown)} "
                        f"(known: {', '.join(known)})")
    problem = ensemble.make_problem(flow, **solver_options)
    init, theta0 = resolve_initial(problem.n_params, theta0, initial, seed, n)
    config = resolved_config(problem, init)
    if chunk is not None:
        chunk = min(_positive_int(chunk, "chunk"), init.n)
    threads_per_task = _positive_int(threads_per_task, "threads_per_task")
    if isinstance(retries, bool) or not isinstance(retries, (Integral, np.integer)) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if store is None:
        raise ValueError("store: a path for the Zarr store is required")
    path = Path(store).expanduser().resolve()
    if not (progress is True or progress is False or progress is None or callable(progress)):
        raise TypeError(f"progress must be True, False or a callable(done, total), got "
                        f"{progress!r}")

    if slots is not None and not callable(slots):
        slots = _positive_int(slots, "slots")
    if watch is not None and not callable(watch):
        raise TypeError(f"watch must be a callable or None, got {watch!r}")

    start = time.perf_counter()
    held = {"client": client if hasattr(client, "submit") else None, "own": None}

    def connect():
        if held["client"] is None:
            if client is None:
                from distributed import Client
                held["own"] = local_cluster()
                held["client"] = Client(held["own"])
            else:
                held["client"] = client()   # connect only now that it is needed
        return held["client"]

    def cluster_slots():
        if callable(slots):
            return slots()
        if slots is not None:
            return slots
        workers = connect().scheduler_info().get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return max(1, threads // threads_per_task) if threads else None

    bar = None
    futures = []
    try:
        chunk, complete, store_id = _prepare_store(path, problem, init, chunk, config, theta0,
                                                   overwrite, slots=cluster_slots)
        fingerprint = _fingerprint(config, chunk)
        N = init.n
        n_chunks = complete.size
        todo = [k for k in range(n_chunks) if not complete[k]]
        skipped = [k for k in range(n_chunks) if complete[k]]
        run = DistributedRun(store=path, n_trajectories=N, chunk=chunk, n_chunks=n_chunks,
                             computed=[], skipped=skipped, elapsed=0.0, tasks=[], flow=flow)
        if not todo:
            run.elapsed = time.perf_counter() - start
            return run
        client = connect()
        problem_bytes = pickle.dumps(problem, protocol=pickle.HIGHEST_PROTOCOL)
        token = uuid.uuid4().hex[:8]
        futures = [client.submit(run_chunk, str(path), store_id, fingerprint, problem_bytes,
                                 init, k, k * chunk, min(N, (k + 1) * chunk), threads_per_task,
                                 config["build"], key=f"narrowflow-chunk-{k}-{token}",
                                 pure=False, retries=retries)
                   for k in todo]
        if progress is True:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), unit="chunk", desc="solve_distributed",
                       initial=0)
        for fut in _completed(futures, watch):
            report = fut.result()
            run.computed.append(report["chunk"])
            run.tasks.append(report)
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(len(run.computed), len(todo))
    except BaseException:
        # Ctrl-C, a failed task or the watch: stop the rest; finished chunks stay marked
        if futures:
            held["client"].cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.close()
        if held["own"] is not None:
            held["client"].close()
            held["own"].close()
    run.elapsed = time.perf_counter() - start
    return run


def _completed(futures, watch=None, poll: float = 0.02):
    """The futures as they complete (distributed.as_completed); with `watch`, calls it
    every WATCH_INTERVAL seconds while none completes (it raises to stop the run)."""
    from distributed import as_completed
    ac = as_completed(futures)
    if watch is None:
        yield from ac
        return
    due = time.monotonic() + WATCH_INTERVAL
    while not ac.is_empty():
        batch = ac.next_batch(block=False) if ac.has_ready() else []
        yield from batch
        if time.monotonic() >= due:
            watch()
            due = time.monotonic() + WATCH_INTERVAL
        if not batch:
            time.sleep(poll)


def solve_ensemble_dask(flow, theta0, *, store=None, client=None, chunk=None,
                        overwrite: bool = False, progress=False, seed=None, **solver_options):
    """``solve_ensemble(..., backend="dask")``: the same ensemble through `solve_distributed`.

    ``threads``, ``memory_limit`` and ``profile`` have no meaning here (each task runs its
    kernel on one thread, each worker holds one chunk at a time) and are dropped, so that all
    of ``solve_ensemble``'s arguments can be passed through.

    Parameters
    ----------
    flow : GradientFlow
        The system to integrate.
    theta0 : array_like of float, shape (N, p)
        Initial states, as for `narrowflow.ensemble.solve_ensemble`.
    store : str or os.PathLike
        The Zarr store path (required).
    client : distributed.Client or callable, optional
        As for `solve_distributed`.
    chunk : int, optional
        The task size (``solve_ensemble``'s ``chunk_size``).
    overwrite : bool, optional
        As for `solve_distributed`.
    progress : bool or callable, optional
        As for `solve_distributed`.
    seed : int, optional
        Recorded in the result (metadata).
    **solver_options
        The other arguments of ``solve_ensemble``.

    Returns
    -------
    EnsembleResult
        Read from the completed store.
    """
    if store is None:
        raise ValueError("store: a Zarr store path is required with backend='dask' "
                         "(results are written there chunk by chunk, and resumed)")
    for name in LOCAL_ONLY:
        solver_options.pop(name, None)
    run = solve_distributed(flow, theta0, store=store, client=client, chunk=chunk,
                            overwrite=overwrite, progress=progress, **solver_options)
    result = run.to_result()
    if seed is not None:
        result.seed = seed
    return result


__all__ = ["solve_distributed", "solve_ensemble_dask", "DistributedRun", "InitialStates",
           "resolve_initial", "run_chunk", "open_store", "load_result", "store_state",
           "local_cluster", "default_chunk", "solver_option_names", "default_tasks",
           "require_dask"]
