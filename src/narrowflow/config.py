"""TOML configurations of the main job (`narrowflow run`).

A config has up to six tables; every key is optional and has the default of the built-in
NF4 preset (the NF4 problem of docs/design.md §6 integrated to convergence: 10^5 trajectories,
method "auto", until ||grad L|| < gtol = 1e-8 or t = 1e7, a log-spaced save grid). Unknown
tables or keys and wrong types are refused with an error that names the key (e.g.
``solver.rtol``).

Presets (``narrowflow run --preset NAME``, or ``preset = "NAME"`` at the top of a config,
whose keys then override the preset's): see PRESETS.

    nf4         the default: NF4 to convergence (as above)
    nf4-bench   the throughput benchmark: dop853 on t in [0, 100], no gtol, 40 log-spaced
                save points from 0.01 to 100 (the built-in default before 0.x)

solver.gtol = 0 turns the convergence test off. solver.t_span may end at ``inf`` only with
a gtol (each trajectory then runs until ||grad L|| < gtol). Without [save] at, the save grid
follows t_span (default_save_grid): log-spaced from t0 + 0.01 when t_span spans more than
3 decades above 0.01, else 41 linear points.

    [network]   width, input_dim, output_dim, activation, kappa, bias, weight_decay
    [data]      preset = "nf4" | x, y (inline arrays, or x = {start, stop, num})
                | teacher = {width, activation, bias, kappa, theta} with x
                | file = "data.npy" or "data.csv" (columns: x then y)
    [initial]   n, seed, distribution ("normal" | "uniform"), mean, std, low, high
    [solver]    method, t_span, rtol, atol, dt, max_steps, max_step, gtol, escape_threshold,
                divergence_bound, lanes, chunk_size, threads
    [save]      at = [times] | {start, stop, num, spacing = "linear" | "log"}, states (bool)
    [output]    dir, format ("zarr" | "netcdf"), figure (bool), success_tol
    [cluster]   jobs, cores, processes, memory, walltime, queue, account, extra, log_directory,
                interface, wait (batch kinds); workers, threads (local): --cluster's options
"""
from __future__ import annotations

import copy
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from narrowflow.initial import DEFAULT_SEED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_NUM = (int, float)
_ARR = (list, dict)

# The method of the to-convergence presets: per trajectory, Vern7 until stiff, then BDF
# (narrowflow.ensemble, docs/integrators.md).
DEFAULT_METHOD = "auto"

# default save grid (default_save_grid): first positive save time after t0, log spacing
# beyond this many decades above it, points per decade, linear points, end for t1 = inf
SAVE_FIRST = 1e-2
SAVE_LOG_DECADES = 3.0
SAVE_PER_DECADE = 7
SAVE_LINEAR_NUM = 41
SAVE_INF_END = 1e7


def default_save_grid(t_span) -> np.ndarray:
    """Save times for t_span (t0, t1) when [save] at is not given.

    Offsets from t0: log-spaced from SAVE_FIRST (0.01) to t1 - t0, SAVE_PER_DECADE (7) points
    per decade, when that spans more than SAVE_LOG_DECADES (3) decades; else SAVE_LINEAR_NUM
    (41) linear points over [t0, t1]. An infinite t1 (run to gtol) ends the grid at
    t0 + SAVE_INF_END (1e7): save points after a trajectory converged hold its final state.
    """
    t0, t1 = (float(v) for v in t_span)
    end = t1 if np.isfinite(t1) else t0 + SAVE_INF_END
    span = end - t0
    decades = np.log10(span / SAVE_FIRST) if span > SAVE_FIRST else 0.0
    if decades > SAVE_LOG_DECADES:
        num = int(round(SAVE_PER_DECADE * decades)) + 1
        at = t0 + np.geomspace(SAVE_FIRST, span, num)
        at[-1] = end  # exactly t1 despite the rounding of t0 + span
        return at
    return np.linspace(t0, end, SAVE_LINEAR_NUM)


def preset_names() -> str:
    return ", ".join(PRESETS)


def check_preset(name, where: str = "--preset") -> str:
    """The preset ``name`` if known; else a ValueError naming ``where`` and the presets."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} ({where}); known presets: "
                         f"{preset_names()} (narrowflow run --preset NAME)")
    return name

# table -> key -> (accepted types, default)
SCHEMA: dict[str, dict[str, tuple]] = {
    "network": {
        "width": ((int,), 2), "input_dim": ((int,), 1), "output_dim": ((int,), 1),
        "activation": ((str,), "tanh"), "kappa": (_NUM, None), "bias": ((bool,), False),
        "weight_decay": (_NUM, 0.0),
    },
    "data": {
        "preset": ((str,), None), "x": ((list, dict), None), "y": ((list,), None),
        "teacher": ((dict,), None), "file": ((str,), None),
    },
    "initial": {
        "n": ((int,), 100_000), "seed": ((int,), DEFAULT_SEED),
        "distribution": ((str,), "normal"), "mean": ((int, float, list), 0.0),
        "std": ((int, float, list), 1.0), "low": ((int, float, list), -1.0),
        "high": ((int, float, list), 1.0),
    },
    "solver": {
        "method": ((str,), DEFAULT_METHOD), "t_span": ((list,), [0.0, 1e7]),
        "rtol": (_NUM, 1e-8), "atol": (_NUM, 1e-10), "dt": (_NUM, None),
        "max_steps": ((int,), 10**6), "max_step": (_NUM, None),
        "gtol": (_NUM, 1e-8), "escape_threshold": (_NUM, 1e-3),
        "divergence_bound": (_NUM, 1e10), "lanes": ((int,), 16), "chunk_size": ((int,), None),
        "threads": ((int,), None),
    },
    "save": {
        "at": ((list, dict), None),  # None: default_save_grid(solver.t_span)
        "states": ((bool,), False),
    },
    # read by `narrowflow monodromy` (cli/monodromy.py, which holds the defaults);
    # accepted here so that one file serves both commands
    "monodromy": {
        "curve": ((str,), None), "order": ((int,), None), "base": ((list,), None),
        "parametrization": ((str,), None), "rtol": (_NUM, None),
    },
    "output": {
        "dir": ((str,), "narrowflow-out"), "format": ((str,), "zarr"),
        "figure": ((bool,), True), "success_tol": (_NUM, 1e-5),
        # clustering scale of the summary's limit points (as `narrowflow report --tol`)
        "limit_tol": (_NUM, 1e-3),
    },
    # options of `narrowflow run --cluster KIND` (narrowflow.cluster; --cluster's own
    # key=value options override them); unset keys take narrowflow.cluster's defaults
    "cluster": {
        "jobs": ((int,), None), "cores": ((int,), None), "processes": ((int,), None),
        "memory": ((str,), None), "walltime": ((str,), None), "queue": ((str,), None),
        "account": ((str,), None), "extra": ((list, str), None),
        "log_directory": ((str,), None), "interface": ((str,), None), "wait": (_NUM, None),
        "workers": ((int,), None), "threads": ((int,), None),
    },
}

# Named presets: overrides of the SCHEMA defaults (which are the "nf4" preset). A value None
# switches a key off (e.g. no gtol). The first entry is the default of `narrowflow run`.
PRESETS: dict[str, dict] = {
    "nf4": {},
    "nf4-bench": {
        "solver": {"method": "dop853", "t_span": [0.0, 100.0], "gtol": None},
        "save": {"at": {"start": 0.01, "stop": 100.0, "num": 40, "spacing": "log"}},
    },
}
DEFAULT_PRESET = "nf4"
PRESET_DESCRIPTIONS = {
    "nf4": "NF4 to convergence: 10^5 trajectories, method auto, gtol 1e-8, t <= 1e7",
    "nf4-bench": "NF4 throughput benchmark: 10^5 trajectories, dop853, t in [0, 100]",
}
_TEACHER_KEYS = {"width": (int,), "activation": (str,), "bias": (bool,), "kappa": _NUM,
                 "theta": (list,)}
_RANGE_KEYS = {"start": _NUM, "stop": _NUM, "num": (int,), "spacing": (str,)}


def _typename(types) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "true/false",
             list: "array", dict: "table"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_type(value, types, key):
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise TypeError(f"config key {key!r} must be a {_typename(types)}, got "
                        f"{type(value).__name__} {value!r}")


def _check_table(table: dict, allowed: dict, where: str):
    for key, value in table.items():
        if key not in allowed:
            raise ValueError(f"unknown config key {where + key!r}; allowed in "
                             f"[{where.rstrip('.') or 'top level'}]: {', '.join(allowed)}")
        _check_type(value, allowed[key], where + key)


# bounds of the config (beyond them: refused naming the key, before anything is allocated)
MAX_DATA_POINTS = 10**6        # data.x = {start, stop, num}: num <= this
MAX_INT64 = 2**63 - 1          # initial.n, solver.max_steps, solver.chunk_size


def _label(key: str, via: dict | None = None) -> str:
    """'key' as refusals name it, with the command-line option that set it if any."""
    return f"{key!r}" + (f" (set by {via[key]})" if via and key in via else "")


def _keyed_error(exc: Exception, default: str, names: dict, via: dict | None = None):
    """`exc` (from an API check naming its argument) as the same error naming the config key:
    the key of the argument named first in the message (``names``: argument -> dotted key),
    else ``default``. Messages that already name a config key pass through."""
    msg = str(exc)
    kind = TypeError if isinstance(exc, TypeError) else ValueError
    if "config key" in msg:
        return kind(msg)
    best, key = len(msg) + 1, default
    for arg, dotted in names.items():
        m = re.search(r"(?<![\w.'])" + re.escape(arg) + r"(?!\w)", msg)
        if m and m.start() < best:
            best, key = m.start(), dotted
    return kind(f"config key {_label(key, via)}: {msg}")


@contextmanager
def _as_key(default: str, names: dict | None = None, via: dict | None = None):
    """Re-raise ValueError / TypeError / OverflowError inside as a refusal naming a key."""
    try:
        yield
    except (ValueError, TypeError, OverflowError) as exc:
        raise _keyed_error(exc, default, names or {}, via) from None


def _numbers(value, key: str, max_ndim: int = 1, via: dict | None = None) -> np.ndarray:
    """A TOML array of numbers (nested up to max_ndim deep, rectangular) as float64, or a
    refusal naming `key` (strings, booleans, tables, ragged rows, too deep)."""
    def depth_ok(v, d):
        if isinstance(v, list):
            return d < max_ndim and all(depth_ok(x, d + 1) for x in v)
        return isinstance(v, _NUM) and not isinstance(v, bool)
    if not isinstance(value, list) or not depth_ok(value, 0):
        raise TypeError(f"config key {_label(key, via)} must be an array of numbers"
                        + (" (or of rows of numbers)" if max_ndim > 1 else "")
                        + f", got {value!r}"[:200])
    try:
        arr = np.asarray(value, dtype=np.float64)
    except ValueError:
        raise ValueError(f"config key {_label(key, via)}: rows of different lengths "
                         f"(ragged array)") from None
    if arr.dtype == object or arr.ndim > max_ndim:
        raise ValueError(f"config key {_label(key, via)}: rows of different lengths "
                         f"(ragged array)")
    return arr


_NETWORK_ARGS = {k: f"network.{k}" for k in ("width", "input_dim", "output_dim", "activation",
                                            "kappa", "bias")}
_SOLVER_ARGS = {**{k: f"solver.{k}" for k in (
    "method", "t_span", "rtol", "atol", "dt", "max_steps", "max_step", "gtol",
    "escape_threshold", "divergence_bound", "lanes", "chunk_size", "threads")},
    "save_at": "save.at", "save_states": "save.states", "flow": "solver.method"}
_INITIAL_ARGS = {k: f"initial.{k}" for k in ("n", "seed", "distribution", "mean", "std",
                                            "low", "high")}
_INITIAL_ARGS["p"] = "network.width"


def _save_count(cfg: dict) -> int:
    """Save points of the run (t0 included) without building the grid."""
    spec = cfg["save"]["at"]
    t0 = float(cfg["solver"]["t_span"][0])
    if spec is None:
        at = default_save_grid(cfg["solver"]["t_span"])
        return at.size + int(bool(at.size) and at[0] > t0)
    if isinstance(spec, list):
        return len(spec) + 1
    return int(spec["num"]) + int(spec["num"] > 0 and spec["start"] > t0)


def check_values(cfg: dict, raw: dict | None = None, via: dict | None = None) -> None:
    """Check every value of a validated config before anything is sampled, built or
    allocated; each refusal (ValueError / TypeError) names the dotted key (and ``via``:
    {key: command-line option} for values the command line set). ``raw``: the document as
    given (keys the user set), for the keys that only one distribution uses."""
    from narrowflow import ensemble, initial
    from narrowflow.memory import default_memory_limit
    from narrowflow.model import Network
    raw = raw or {}
    if cfg.get("cluster"):
        from narrowflow import cluster
        cluster.check_table(cfg["cluster"])
    net = cfg["network"]
    with _as_key("network.width", _NETWORK_ARGS, via):
        network = Network(width=net["width"], input_dim=net["input_dim"],
                          output_dim=net["output_dim"], activation=net["activation"],
                          bias=net["bias"], kappa=net["kappa"])
    wd = net["weight_decay"]
    if not (np.isfinite(wd) and wd >= 0):
        raise ValueError(f"config key 'network.weight_decay' must be finite and >= 0, got {wd!r}")
    p = network.n_params
    # data given inline (a file is read by RunConfig.dataset, relative to the config's folder)
    d = cfg["data"]
    if isinstance(d.get("x"), dict):
        num = d["x"]["num"]
        for k in ("start", "stop"):
            if not np.isfinite(d["x"][k]):
                raise ValueError(f"config key 'data.x.{k}' must be finite, got {d['x'][k]!r}")
        if not 1 <= num <= MAX_DATA_POINTS:
            raise ValueError(f"config key 'data.x.num' must be in [1, {MAX_DATA_POINTS}], "
                             f"got {num}")
    elif d.get("x") is not None:
        x = _numbers(d["x"], "data.x", 2)
        if x.size == 0:
            raise ValueError("config key 'data.x' must hold at least one data point")
    if d.get("y") is not None:
        if d.get("x") is None:
            raise ValueError("config key 'data.y' needs 'data.x'")
        if isinstance(d["x"], dict):
            x = np.empty(d["x"]["num"])          # (only its shape is used)
        y = _numbers(d["y"], "data.y", 2)
        if y.size == 0:
            raise ValueError("config key 'data.y' must hold at least one data point")
        # the shapes the network expects (1-D: one column)
        for arr, key, dim in ((x, "data.x", "input_dim"), (y, "data.y", "output_dim")):
            cols = 1 if arr.ndim == 1 else arr.shape[1]
            if cols != net[dim]:
                raise ValueError(f"config key {key!r} has {cols} column(s) but network.{dim} "
                                 f"is {net[dim]}")
        if len(x) != len(y):
            raise ValueError(f"config keys 'data.x' and 'data.y' must have the same number of "
                             f"rows, got {len(x)} and {len(y)}")
    if d.get("preset") == "nf4" and (net["input_dim"], net["output_dim"]) != (1, 1):
        raise ValueError(f"config key 'data.preset': the nf4 data set has input_dim = "
                         f"output_dim = 1, but network.input_dim = {net['input_dim']}, "
                         f"network.output_dim = {net['output_dim']}; give [data] for them")
    if d.get("teacher") is not None:
        t = d["teacher"]
        with _as_key("data.teacher.width", {k: f"data.teacher.{k}" for k in _TEACHER_KEYS}):
            teacher = Network(width=t.get("width", net["width"]), input_dim=net["input_dim"],
                              output_dim=net["output_dim"],
                              activation=t.get("activation", net["activation"]),
                              bias=t.get("bias", False), kappa=t.get("kappa"))
        theta = _numbers(t["theta"], "data.teacher.theta")
        if theta.shape != (teacher.n_params,):
            raise ValueError(f"config key 'data.teacher.theta' must have {teacher.n_params} "
                             f"entries for {teacher!r}, got {theta.size}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("config key 'data.teacher.theta' must be finite")
    # initial states: the keys of the other distribution are refused, not ignored
    i = cfg["initial"]
    given = raw.get("initial", {}) if isinstance(raw.get("initial"), dict) else {}
    with _as_key("initial.distribution", _INITIAL_ARGS, via):
        if i["distribution"] not in initial.DISTRIBUTIONS:
            raise ValueError(f"config key 'initial.distribution' must be one of "
                             f"{', '.join(initial.DISTRIBUTIONS)}, got {i['distribution']!r}")
        unused = ("low", "high") if i["distribution"] == "normal" else ("mean", "std")
        for k in unused:
            if k in given:
                raise ValueError(f"config key 'initial.{k}' is not used by "
                                 f"distribution = {i['distribution']!r} (it takes "
                                 f"{' and '.join(k2 for k2 in ('mean', 'std', 'low', 'high') if k2 not in unused)}); "
                                 f"remove it or set initial.distribution")
        for k in ("mean", "std", "low", "high"):
            if isinstance(i[k], list):
                _numbers(i[k], f"initial.{k}")
            vec = initial._vec(i[k], p, k)
            if k == "std" and np.any(vec < 0):
                raise ValueError(f"config key 'initial.std' must be >= 0, got {i['std']!r}")
        if np.any(initial._vec(i["high"], p, "high") < initial._vec(i["low"], p, "low")):
            raise ValueError(f"config key 'initial.high' must be >= initial.low, got "
                             f"low = {i['low']!r}, high = {i['high']!r}")
        initial._seed_key(i["seed"])
    n = i["n"]
    if not 1 <= n <= MAX_INT64:
        raise ValueError(f"config key {_label('initial.n', via)} must be in [1, 2**63 - 1], "
                         f"got {n}")
    # solver settings: the checks of narrowflow.ensemble, naming the keys
    s = cfg["solver"]
    if s["threads"] is not None:
        cap = ensemble.max_threads()
        if not 1 <= s["threads"] <= cap:
            raise ValueError(f"config key {_label('solver.threads', via)} must be in [1, {cap}] "
                             f"(4 x the {ensemble.default_threads()} cores here, at least "
                             f"{ensemble.MIN_THREAD_CAP}), got {s['threads']}")
    if s["chunk_size"] is not None and not 1 <= s["chunk_size"] <= MAX_INT64:
        raise ValueError(f"config key 'solver.chunk_size' must be >= 1, got {s['chunk_size']}")
    spec = cfg["save"]["at"]
    if isinstance(spec, dict) and spec["num"] < 1:
        raise ValueError(f"config key 'save.at.num' must be >= 1, got {spec['num']}")
    if isinstance(spec, list):
        _numbers(spec, "save.at")
    # memory before the save grid or the initial states exist
    K = _save_count(cfg)
    escape = s["escape_threshold"] is not None
    shape = SimpleNamespace(n_params=p, n_save=K, escape_threshold=1.0 if escape else None,
                            save_states=bool(cfg["save"]["states"]))
    need = ensemble.output_nbytes(shape, n) + 3 * 8 * n * p + 3 * 8 * K
    limit = default_memory_limit()
    if need > limit:
        bare = SimpleNamespace(n_params=p, n_save=0, escape_threshold=shape.escape_threshold,
                               save_states=False)
        # the trajectories alone too many: initial.n first; else the save points
        keys = (["initial.n", "save.at"] if ensemble.output_nbytes(bare, n) + 24 * n * p > limit
                else ["save.at", "initial.n"])
        raise ValueError(
            f"config key {_label(keys[0], via)}: {n} trajectories with {K} save points "
            f"(save.at{', save.states = true' if shape.save_states else ''}) and {p} "
            f"parameters need about {need / 2**30:.3g} GiB, over the memory limit of "
            f"{limit / 2**30:.3g} GiB (80 % of RAM); reduce {keys[0]} or {keys[1]}")
    with _as_key("solver", _SOLVER_ARGS, via):
        rc = RunConfig(cfg)
        kw = rc.solver_kwargs()
        for k in ("threads", "chunk_size", "seed"):
            kw.pop(k)
        # the network with placeholder data of its shape (the data are checked by dataset())
        from narrowflow.model import Dataset, GradientFlow
        placeholder = GradientFlow(network, Dataset(np.zeros((1, network.input_dim)),
                                                    np.zeros((1, network.output_dim))))
        ensemble.make_problem(placeholder, **kw)
    out = cfg["output"]
    tol = out["success_tol"]
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"config key 'output.success_tol' must be finite and >= 0, got {tol!r}")
    if not out["dir"].strip():
        raise ValueError("config key 'output.dir' must not be empty")


def validate(raw: dict, preset: str | None = None) -> dict:
    """Check a parsed TOML document against SCHEMA; returns it with the defaults of its preset
    filled in (``preset``, else the document's top-level ``preset`` key, else "nf4")."""
    return _validate(raw, preset)[0]


def _validate(raw: dict, preset: str | None = None) -> tuple[dict, str]:
    """(validated config, preset name); see validate."""
    if not isinstance(raw, dict):
        raise TypeError("config must be a table")
    raw = dict(raw)
    named = raw.pop("preset", None)
    if named is not None:
        _check_type(named, (str,), "preset")
        check_preset(named, "config key 'preset'")
    if preset is not None:
        check_preset(preset, "--preset")
        if named is not None and named != preset:
            raise ValueError(f"--preset {preset!r} conflicts with the config's preset = "
                             f"{named!r}; give one")
    name = preset or named or DEFAULT_PRESET
    for table, body in raw.items():
        if table not in SCHEMA:
            raise ValueError(f"unknown config table [{table}]; allowed: {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise TypeError(f"config key {table!r} must be a table ([{table}])")
        _check_table(body, {k: v[0] for k, v in SCHEMA[table].items()}, f"{table}.")
    cfg = {t: {k: copy.deepcopy(v[1]) for k, v in keys.items()} for t, keys in SCHEMA.items()}
    for table, body in PRESETS[name].items():
        cfg[table].update(copy.deepcopy(body))
    for table, body in raw.items():
        cfg[table].update(copy.deepcopy(body))
    data = raw.get("data", {})
    sources = [k for k in ("preset", "teacher", "file") if k in data]
    if "y" in data:
        sources.append("x/y")
    if len(sources) > 1:
        raise ValueError(f"config [data] must give one source, got {', '.join(sources)}")
    if not sources:
        if "x" in data:
            raise ValueError("config key 'data.x' needs 'data.y' or 'data.teacher'")
        cfg["data"]["preset"] = "nf4"
    if "teacher" in data:
        _check_table(data["teacher"], _TEACHER_KEYS, "data.teacher.")
        if "theta" not in data["teacher"]:
            raise ValueError("config key 'data.teacher.theta' is required for a teacher")
        if "x" not in data:
            raise ValueError("config key 'data.x' is required with data.teacher")
    if isinstance(data.get("x"), dict):
        _check_range(data["x"], "data.x")
    if "preset" in data and data["preset"] != "nf4":
        raise ValueError(f"config key 'data.preset' must be 'nf4', got {data['preset']!r}")
    at = cfg["save"]["at"]
    if isinstance(at, dict):
        _check_range(at, "save.at")
    t_span = cfg["solver"]["t_span"]
    if len(t_span) != 2 or not all(isinstance(v, _NUM) and not isinstance(v, bool) for v in t_span):
        raise TypeError(f"config key 'solver.t_span' must be an array of two numbers, got {t_span!r}")
    gtol = cfg["solver"]["gtol"]
    if gtol is not None and not (np.isfinite(gtol) and gtol >= 0):
        raise ValueError(f"config key 'solver.gtol' must be >= 0 (0: off), got {gtol!r}")
    t0, t1 = (float(v) for v in t_span)
    if not np.isfinite(t0) or np.isnan(t1) or not t1 > t0:
        raise ValueError(f"config key 'solver.t_span' must be [t0, t1] with t0 finite and "
                         f"t1 > t0, got {t_span!r}")
    if np.isinf(t1) and not gtol:
        raise ValueError(f"config key 'solver.t_span' ends at inf: that needs 'solver.gtol' "
                         f"(each trajectory then runs until ||grad L|| < gtol), got {t_span!r}")
    tol = cfg["output"]["limit_tol"]
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"config key 'output.limit_tol' must be > 0, got {tol!r}")
    if cfg["output"]["format"] not in ("zarr", "netcdf"):
        raise ValueError(f"config key 'output.format' must be 'zarr' or 'netcdf', got "
                         f"{cfg['output']['format']!r}")
    check_values(cfg, raw)
    return cfg, name


def _check_range(rng: dict, key: str):
    _check_table(rng, _RANGE_KEYS, key + ".")
    for k in ("start", "stop", "num"):
        if k not in rng:
            raise ValueError(f"config key {key + '.' + k!r} is required")
    if rng.get("spacing", "linear") not in ("linear", "log"):
        raise ValueError(f"config key {key + '.spacing'!r} must be 'linear' or 'log'")


def _grid(spec, key: str) -> np.ndarray:
    if isinstance(spec, list):
        return _numbers(spec, key)
    if spec.get("spacing", "linear") == "log":
        if not (spec["start"] > 0 and spec["stop"] > 0):
            raise ValueError(f"config key {key!r}: log spacing needs start, stop > 0")
        return np.geomspace(spec["start"], spec["stop"], spec["num"])
    return np.linspace(spec["start"], spec["stop"], spec["num"])


@dataclass
class RunConfig:
    """A validated config (dict `cfg` in the SCHEMA layout) and where it came from."""

    cfg: dict
    source: str = "built-in preset nf4"
    base_dir: Path = Path(".")
    preset: str = DEFAULT_PRESET

    def check(self, via: dict | None = None) -> None:
        """Check the values again (after the command line changed some: ``via`` = {dotted
        key: option}, named in refusals), before anything is built or allocated."""
        check_values(self.cfg, {}, via)

    def network(self):
        from narrowflow.model import Network
        n = self.cfg["network"]
        with _as_key("network.width", _NETWORK_ARGS):
            return Network(width=n["width"], input_dim=n["input_dim"],
                           output_dim=n["output_dim"], activation=n["activation"],
                           bias=n["bias"], kappa=n["kappa"])

    def dataset(self):
        """The training data; a refusal names the key (data.x, data.y, data.file, ...)."""
        from narrowflow.model import Dataset, Network, nf4_dataset
        d = self.cfg["data"]
        net = self.cfg["network"]
        if d.get("preset") == "nf4":
            return nf4_dataset()
        if d.get("file"):
            arr, path = self._data_file(d["file"])
            din, dout = net["input_dim"], net["output_dim"]
            if arr.ndim != 2 or arr.shape[1] != din + dout:
                raise ValueError(f"config key 'data.file': {str(path)!r}: expected {din + dout} "
                                 f"columns (x then y), got shape {arr.shape}")
            with _as_key("data.file", {}):
                try:
                    return Dataset(arr[:, :din], arr[:, din:])
                except (ValueError, TypeError) as exc:
                    raise type(exc)(f"{str(path)!r}: {exc}") from None
        names = {"x": "data.x", "y": "data.y", "theta": "data.teacher.theta",
                 "input_dim": "network.input_dim", "output_dim": "network.output_dim"}
        with _as_key("data.x", names):
            x = _grid(d["x"], "data.x") if isinstance(d["x"], dict) else _numbers(d["x"],
                                                                                   "data.x", 2)
            if d.get("teacher") is not None:
                t = d["teacher"]
                teacher = Network(width=t.get("width", net["width"]),
                                  input_dim=net["input_dim"], output_dim=net["output_dim"],
                                  activation=t.get("activation", net["activation"]),
                                  bias=t.get("bias", False), kappa=t.get("kappa"))
                theta = _numbers(t["theta"], "data.teacher.theta")
                if theta.shape != (teacher.n_params,):
                    raise ValueError(f"config key 'data.teacher.theta' must have "
                                     f"{teacher.n_params} entries for {teacher!r}, got "
                                     f"{theta.size}")
                return Dataset.from_teacher(teacher, theta, x.reshape(len(x), -1))
            return Dataset(x, _numbers(d["y"], "data.y", 2))

    def _data_file(self, name: str):
        """(array, path) of data.file (.npy or .csv); unreadable files refused naming the key
        and the path: a folder, an empty or damaged file, text that is not numbers, complex
        or object arrays (never cast)."""
        path = Path(name)
        if not path.is_absolute():
            path = self.base_dir / path
        where = f"config key 'data.file': {str(path)!r}"
        if not path.exists():
            raise FileNotFoundError(f"{where} does not exist")
        if not path.is_file():
            raise ValueError(f"{where} is not a file")
        if path.suffix not in (".npy", ".csv"):
            raise ValueError(f"config key 'data.file' must be a .npy or .csv file, got "
                             f"{path.name}")
        try:
            if path.suffix == ".npy":
                arr = np.load(path, allow_pickle=False)
            else:
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("error")      # "empty input file" and the like
                    arr = np.loadtxt(path, delimiter=",", ndmin=2)
        except Exception as exc:  # noqa: BLE001 - numpy's many ways to fail, all refused
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{where} cannot be read as {path.suffix[1:]} data: "
                             f"{msg}"[:400]) from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            kind = getattr(arr, "dtype", type(arr).__name__)
            raise TypeError(f"{where} must hold real numbers, got {kind} (complex or other "
                            f"data is refused, not cast)")
        return np.asarray(arr, dtype=np.float64), path

    def flow(self):
        from narrowflow.model import GradientFlow
        network, data = self.network(), self.dataset()
        with _as_key("data", {"input_dim": "network.input_dim", "output_dim":
                              "network.output_dim", "weight_decay": "network.weight_decay"}):
            return GradientFlow(network, data, weight_decay=self.cfg["network"]["weight_decay"])

    def theta0(self, n_params: int, n: int | None = None) -> np.ndarray:
        from narrowflow import initial
        i = self.cfg["initial"]
        with _as_key("initial.n", _INITIAL_ARGS):
            return initial.sample(i["n"] if n is None else n, n_params, i["seed"],
                                  distribution=i["distribution"], mean=i["mean"], std=i["std"],
                                  low=i["low"], high=i["high"])

    def save_at(self) -> np.ndarray:
        spec = self.cfg["save"]["at"]
        at = (default_save_grid(self.cfg["solver"]["t_span"]) if spec is None
              else _grid(spec, "save.at"))
        t0 = float(self.cfg["solver"]["t_span"][0])
        if at.size and at[0] > t0:
            at = np.concatenate([[t0], at])  # the bands start at the initial loss
        return at

    def solver_kwargs(self) -> dict:
        s = self.cfg["solver"]
        kw = dict(method=s["method"],
                  t_span=tuple(float(v) for v in s["t_span"]),
                  rtol=s["rtol"], atol=s["atol"], dt=s["dt"], max_steps=s["max_steps"],
                  max_step=s["max_step"],
                  gtol=s["gtol"] or None, escape_threshold=s["escape_threshold"],
                  divergence_bound=s["divergence_bound"], lanes=s["lanes"],
                  chunk_size=s["chunk_size"], threads=s["threads"],
                  save_states=self.cfg["save"]["states"], seed=self.cfg["initial"]["seed"])
        at = self.save_at()
        kw["save_at"] = at if at.size else None
        return kw


def load(path=None, preset: str | None = None) -> RunConfig:
    """Read and validate a TOML config (None: the built-in preset ``preset``, default nf4)."""
    if path is None:
        cfg, name = _validate({}, preset)
        return RunConfig(cfg, source=f"built-in preset {name}", preset=name)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    cfg, name = _validate(raw, preset)
    return RunConfig(cfg, source=str(path) + ("" if name == DEFAULT_PRESET else
                                              f" (preset {name})"),
                     base_dir=path.parent, preset=name)


def loads(text: str, preset: str | None = None) -> RunConfig:
    """Validate a config given as TOML text."""
    cfg, name = _validate(tomllib.loads(text), preset)
    return RunConfig(cfg, source="<string>", preset=name)
