"""`narrowflow run [CONFIG] [--out DIR]`: the main job, an ensemble of gradient flows.

With --cluster local[:N] or --scheduler ADDRESS the same run goes to Dask
(`run_distributed`, options in narrowflow.cli.cluster_args) and writes a resumable Zarr
store.

Without CONFIG it runs the built-in NF4 preset (the NF4 problem of docs/design.md §6, 10^5
trajectories integrated to convergence: until ||grad L|| < 1e-8 or t = 1e7), prints a
summary that answers where training ended (the fraction at the global minimum, the other
limits by type and Morse index, divergence, the unconverged, the time to converge), and
writes into the output folder the results (a Zarr store or NetCDF file through xarray), the
loss quantile bands over time (PNG), the summary (summary.txt) and the effective config
(config.toml). `--preset nf4-bench` runs the t in [0, 100] throughput benchmark instead.
See narrowflow.config for the keys and presets.

The output folder is safe to point anywhere (OutputFolder):

- Before any integration: the config and the command line's values are checked (bounds
  included), the results path is checked (narrowflow.io.check_save_path), and --out must be
  a folder, or creatable, on a writable file system with room for the estimated output
  (narrowflow.ensemble.output_nbytes, an upper bound: Zarr compresses).
- Every file is written into a hidden temporary sibling and renamed into place once
  complete (the results by narrowflow.io.save, which also keeps an old result until the
  new one is complete).
- The program replaces only files it owns: those it wrote, recorded with their SHA-256 in
  the folder's ``.narrowflow-run.json``, and unchanged since. A summary.txt, config.toml or
  loss_bands.png of the same name that the program did not write (or that was edited since)
  is refused before any integration, naming the file; --overwrite replaces it. Folders of
  those names are never replaced. One exception: when CONFIG itself is OUT/config.toml and
  not a file of ours (``narrowflow run w/config.toml --out w``), it is left as it is, even
  with --overwrite, and the effective config is written as ``config.effective.toml``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="integrate an ensemble of gradient flows (default: the NF4 preset)",
        description="Integrate an ensemble of gradient flows from a TOML config (default: the "
                    "built-in NF4 preset, 10^5 trajectories) and write results, a summary and "
                    "a figure of the loss quantile bands.")
    p.add_argument("config", nargs="?", default=None, metavar="CONFIG",
                   help="TOML config (see narrowflow.config); default: the NF4 preset")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="built-in preset the config starts from: " + ", ".join(
                       f"{k} ({v})" for k, v in _preset_descriptions().items())
                   + " (default: nf4, or the config's preset key)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: output.dir of the config, 'narrowflow-out')")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all)")
    p.add_argument("-n", "--trajectories", type=int, default=None,
                   help="number of trajectories (overrides initial.n)")
    p.add_argument("--format", choices=("zarr", "netcdf"), default=None,
                   help="results format (overrides output.format)")
    p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results already in the output folder")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    from narrowflow.cli import cluster_args   # --cluster / --scheduler / --chunk: on Dask
    cluster_args.add_cli_arguments(p)
    p.set_defaults(func=run)


def _preset_descriptions() -> dict:
    from narrowflow import config
    return {k: config.PRESET_DESCRIPTIONS.get(k, "") for k in config.PRESETS}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def effective_toml(cfg: dict, preset: str | None = None) -> str:
    """The config with every default filled in, as TOML (None values left out, except
    solver.gtol: off is written as 0 so that no preset's gtol comes back; the initial keys
    of the distribution not used, e.g. low/high for "normal", left out); ``preset``
    (the preset it started from) is written as the top-level key."""
    lines = [f"preset = {_toml_value(preset)}", ""] if preset else []
    # the keys of the other initial distribution are left out (a config giving them is refused)
    unused = {"normal": ("low", "high"), "uniform": ("mean", "std")}.get(
        cfg.get("initial", {}).get("distribution"), ())
    for table, body in cfg.items():
        lines.append(f"[{table}]")
        for k, v in body.items():
            if table == "initial" and k in unused:
                continue
            if v is None and table == "solver" and k == "gtol":
                v = 0.0
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _global_minimum(rc, result) -> tuple[float, str]:
    """The global minimum loss if known (realizable target), else the best one found."""
    from narrowflow import model
    d = rc.cfg["data"]
    net = rc.cfg["network"]
    same_shape = net["input_dim"] == 1 and net["output_dim"] == 1
    # the NF4 teacher is a width-2 network of NF4_ACTIVATION without biases
    nf4_ok = (d.get("preset") == "nf4" and net["activation"] == model.NF4_ACTIVATION
              and net["width"] >= model.NF4_TEACHER.size // 2 and same_shape)
    t = d.get("teacher")
    teacher_ok = t is not None and (
        t.get("activation", net["activation"]) == net["activation"]
        and t.get("kappa", net["kappa"]) == net["kappa"]
        and t.get("width", net["width"]) <= net["width"]
        and (net["bias"] or not t.get("bias", False)))
    realizable = net["weight_decay"] == 0 and (nf4_ok or teacher_ok)
    if realizable:
        return 0.0, "0 (the target is realizable by the network)"
    finite = result.loss_final[np.isfinite(result.loss_final)]
    best = float(finite.min()) if finite.size else float("nan")
    return best, f"{best:.6g} (lowest final loss found; the true minimum is not known)"


def _limits_lines(rc, result) -> list[str]:
    """The table of where the trajectories ended (narrowflow.studies.summarize_limits)."""
    from narrowflow import studies
    flow = getattr(result, "flow", None)
    if flow is None:
        flow = rc.flow()
    tol = float(rc.cfg["output"].get("limit_tol", 1e-3))
    ls = studies.summarize_limits(result, flow, tol=tol, max_clusters=LIMIT_CLUSTERS,
                                   max_states=LIMIT_MAX_STATES)
    N = ls.n
    lines = [f"  limits      where the {N} trajectories ended; the {ls.n_converged} CONVERGED ones "
             f"classified by narrowflow.studies.limit_points",
             f"              (clustered modulo symmetry at scale {tol:g}, the {ls.max_clusters} "
             f"largest clusters refined to critical points and typed by Morse index; "
             f"{ls.seconds:.2g} s):"]
    if ls.subsampled:
        lines.insert(1, f"              (a random subsample of {ls.n_classified} of the "
                        f"{ls.n_converged} classified and its shares scaled up; the +- include "
                        f"the sampling)")
    width = max(len(r["label"]) for r in ls.rows)
    for r in ls.rows:
        whole = float(r["count"]).is_integer() or r["count"] >= 100
        cnt = f"{r['count']:.0f}" if whole else f"{r['count']:.1f}"
        line = (f"    {r['label']:<{width}}  {cnt:>7}  {r['fraction']:.4f} +- {r['se']:.4f}")
        if r["clusters"]:
            line += f"  {r['clusters']} cluster{'s' if r['clusters'] > 1 else ''}"
        if np.isfinite(r["loss_min"]):
            line += (f", loss {r['loss_min']:.3g}" if r["loss_min"] == r["loss_max"] else
                     f", loss {r['loss_min']:.3g} .. {r['loss_max']:.3g}")
        if np.isfinite(r["t_median"]) and r["key"] not in ("not_converged", "max_steps",
                                                            "step_too_small", "diverged"):
            line += f", median t {r['t_median']:.3g}"
        lines.append(line)
    total = sum(r["fraction"] for r in ls.rows)
    lines.append(f"    {'(total)':<{width}}  {N:>7}  {total:.4f}")
    ct = ls.converge_time
    t1 = float(result.t_span[1])
    if ls.gtol is None:
        lines.append("  converge    no gtol: convergence not tested (set solver.gtol, or use the "
                     "default preset nf4)")
    elif ct["n"]:
        lines.append(f"  converge    time to ||grad L|| < {ls.gtol:g}: median {ct['median']:.4g}, "
                     f"quartiles {ct['q25']:.4g} .. {ct['q75']:.4g} (of the {ct['n']} "
                     f"converged, {ct['n'] / N:.4f} of trajectories; t_max {t1:g})")
    else:
        lines.append(f"  converge    no trajectory reached ||grad L|| < {ls.gtol:g} by t_max "
                     f"{t1:g}: integrate longer")
    return lines


# the summary classifies at most this many CONVERGED final states (a random subsample
# beyond: clustering costs ~0.2 s per 10^5) and refines the largest LIMIT_CLUSTERS clusters
LIMIT_MAX_STATES = 200_000
LIMIT_CLUSTERS = 20


def summarize(rc, result) -> str:
    """Plain-text summary: statuses, success fraction, where the trajectories ended (limits
    by type and Morse index, divergence, not converged), the time to converge, loss
    quantiles, escape times, cost."""
    from narrowflow.ensemble import Status
    tol = float(rc.cfg["output"]["success_tol"])
    lmin, lmin_text = _global_minimum(rc, result)
    N = result.n_trajectories
    loss = result.loss_final
    hit = np.isfinite(loss) & (loss <= lmin + tol)
    frac = hit.mean() if N else float("nan")
    se = np.sqrt(frac * (1 - frac) / N) if N else float("nan")
    q = np.nanpercentile(np.where(np.isfinite(loss), loss, np.inf), [5, 25, 50, 75, 95]) \
        if N else [np.nan] * 5
    lines = [
        f"narrowflow run: {rc.source}",
        f"  problem     {result.flow!r}",
        f"  ensemble    {N} trajectories, method {result.method}, t in "
        f"[{result.t_span[0]:g}, {result.t_span[1]:g}], rtol {result.rtol:g}, atol {result.atol:g}"
        + (f", gtol {result.gtol:g}" if getattr(result, "gtol", None) else ""),
        "  status      " + ", ".join(f"{s.name.lower()} {int(np.sum(result.status == s))}"
                                     for s in Status),
        f"  global min  {lmin_text}",
        f"  reached it  {frac:.4f} +- {se:.4f} of trajectories (final loss <= min + {tol:g})",
        *_limits_lines(rc, result),
        "  final loss  quantiles 5/25/50/75/95 %: " + " ".join(f"{v:.3g}" for v in q),
    ]
    if result.escape_time is not None:
        esc = result.escape_time
        got = np.isfinite(esc)
        med = f"{np.median(esc[got]):.4g}" if got.any() else "n/a"
        lines.append(f"  escape      loss < {result.escape_threshold:g}: {got.mean():.4f} of "
                     f"trajectories; median escape time {med} (of those that escaped)")
    lines.append(f"  cost        {result.elapsed:.3g} s on {result.threads} thread(s), "
                 f"{N / max(result.elapsed, 1e-12):.4g} trajectories/s, "
                 f"{np.mean(result.nfev) if N else 0:.4g} RHS evaluations per trajectory"
                 + (f", {np.mean(result.njev):.4g} Jacobians" if N and getattr(
                     result, "njev", None) is not None else ""))
    return "\n".join(lines)


MARKER = ".narrowflow-run.json"       # files this program wrote in a folder, with SHA-256


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def check_out_dir(out_dir: Path, nbytes: int = 0, label: str = "--out") -> None:
    """Refuse (ValueError naming `label`), before any work, an output folder that cannot take
    the results: a file, a path under a file, a folder that is not writable (a read-only file
    system, permissions), or too little free space for `nbytes` (the estimated output)."""
    out_dir = Path(out_dir)
    where = f"{label} {str(out_dir)!r}"
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{where} is a file, not a folder; choose a folder")
    anc = out_dir
    while not (anc.exists() or anc.is_symlink()):
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{where}: {str(anc)!r} is a file (or a broken link), so no folder "
                         f"can be made under it")
    try:
        readonly = bool(os.statvfs(anc).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # pragma: no cover - no statvfs
        readonly = False
    if readonly:
        raise ValueError(f"{where}: {str(anc)!r} is on a read-only file system")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: {str(anc)!r} is not writable (permissions)")
    free = shutil.disk_usage(anc).free
    if nbytes > free:
        raise ValueError(f"{where}: the results need up to {nbytes / 2**30:.3g} GiB "
                         f"(estimated before compression), only {free / 2**30:.3g} GiB free on "
                         f"its file system; free space, choose another --out, or use fewer "
                         f"trajectories or save points")


class OutputFolder:
    """The files of a run folder (summary.txt, config.toml, loss_bands.png): written through
    temporary siblings, and only over files this program owns (see the module's doc)."""

    def __init__(self, path, overwrite: bool = False, config_path=None):
        self.dir = Path(path)
        self.overwrite = bool(overwrite)
        self.config_path = Path(config_path) if config_path is not None else None
        self.names = {"summary": "summary.txt", "config": "config.toml",
                      "figure": "loss_bands.png"}

    # the ownership record ------------------------------------------------------------
    def _marker(self) -> dict | None:
        """{name: [sha256, ...]} of the files we wrote; {} if none; None if a file of that
        name is not ours."""
        path = self.dir / MARKER
        if not (path.exists() or path.is_symlink()):
            return {}
        try:
            doc = json.loads(path.read_text())
            files = doc["narrowflow_run_files"]
            if isinstance(files, dict) and all(isinstance(v, list) for v in files.values()):
                return files
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def _write_marker(self, files: dict) -> None:
        path = self.dir / MARKER
        tmp = path.with_name(f"{MARKER}.{uuid.uuid4().hex[:8]}.partial")
        try:
            tmp.write_text(json.dumps({"narrowflow_run_files": files}, indent=1) + "\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def owns(self, name: str) -> bool:
        files = self._marker() or {}
        digest = _sha256(self.dir / name)
        return digest is not None and digest in files.get(name, [])

    def _is_config(self, path: Path) -> bool:
        try:
            return self.config_path is not None and path.exists() and \
                os.path.samefile(path, self.config_path)
        except OSError:
            return False

    def check(self, kinds=("summary", "config", "figure")) -> None:
        """Before any work: refuse (FileExistsError naming them) files of our names that we
        do not own, unless overwrite; folders of those names always. Picks the effective
        config's name (config.effective.toml when CONFIG is OUT/config.toml, not ours)."""
        foreign, folders = [], []
        marker = self.dir / MARKER
        if self._marker() is None:
            (folders if marker.is_dir() else foreign).append(MARKER)
        for kind in kinds:
            name = self.names[kind]
            path = self.dir / name
            if kind == "config" and self._is_config(path) and not self.owns(name):
                name = self.names["config"] = "config.effective.toml"
                path = self.dir / name
            if not (path.exists() or path.is_symlink()):
                continue
            if path.is_dir() and not path.is_symlink():
                folders.append(name)
            elif not self.owns(name):
                foreign.append(name)
        if folders:
            raise FileExistsError(f"output folder {str(self.dir)!r} has folders named "
                                  f"{', '.join(folders)}, where this run writes files; move "
                                  f"them away or choose another --out")
        if foreign and not self.overwrite:
            raise FileExistsError(f"output folder {str(self.dir)!r} has files this program "
                                  f"did not write (or that were edited since): "
                                  f"{', '.join(foreign)}; pass --overwrite to replace them, "
                                  f"or choose another --out")

    # writing ---------------------------------------------------------------------------
    def _put(self, kind: str, write) -> Path:
        """write(tmp) into a hidden sibling, then rename it to the kind's name."""
        self.check((kind,))                 # again: the folder may have changed meanwhile
        self.dir.mkdir(parents=True, exist_ok=True)
        name = self.names[kind]
        path = self.dir / name
        tmp = path.with_name(f".{name}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
        try:
            write(tmp)
            digest = _sha256(tmp)
            files = self._marker() or {}
            # recorded before the rename (old and new both ours, should we be killed between)
            files[name] = sorted(set(files.get(name, [])) | {digest})
            self._write_marker(files)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        files = self._marker() or {}
        files[name] = [digest]
        self._write_marker(files)
        return path

    def write_text(self, kind: str, text: str) -> Path:
        return self._put(kind, lambda tmp: tmp.write_text(text))

    def write_figure(self, fig) -> Path:
        from narrowflow import plots
        return self._put("figure", lambda tmp: plots.savefig(fig, tmp))


def estimate_nbytes(flow, kwargs: dict, n: int) -> int:
    """Upper bound of the bytes the results of n trajectories take on disk (uncompressed)."""
    from narrowflow import ensemble
    kw = {k: v for k, v in kwargs.items() if k not in ("threads", "chunk_size", "seed")}
    problem = ensemble.make_problem(flow, **kw)
    return ensemble.output_nbytes(problem, n) + 16 * flow.data.x.size + (1 << 20)


def run(args) -> int:
    from narrowflow import config, io
    from narrowflow.ensemble import solve_ensemble
    rc = config.load(args.config, preset=getattr(args, "preset", None))
    via = {}
    if args.trajectories is not None:
        if not 1 <= args.trajectories <= config.MAX_INT64:
            raise ValueError(f"--trajectories (-n) must be in [1, 2**63 - 1], got "
                             f"{args.trajectories}")
        rc.cfg["initial"]["n"] = args.trajectories
        via["initial.n"] = "-n"
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        rc.cfg["solver"]["threads"] = args.threads
        via["solver.threads"] = "--threads"
    if args.format is not None:
        rc.cfg["output"]["format"] = args.format
    if via:
        rc.check(via)                   # bounds (memory, threads) of the values given here
    from narrowflow.cli import cluster_args
    if cluster_args.wants_distributed(args):
        return run_distributed(args, rc)
    out_dir = Path(args.out if args.out is not None else rc.cfg["output"]["dir"])
    label = "--out" if args.out is not None else "config key 'output.dir'"
    fmt = rc.cfg["output"]["format"]
    results_path = out_dir / ("results.zarr" if fmt == "zarr" else "results.nc")
    # build everything (and fail on bad input or an unusable output folder) before integrating
    check_out_dir(out_dir, 0, label)
    try:
        io.check_save_path(results_path, args.overwrite)
    except FileExistsError as exc:     # in the command line's words
        raise FileExistsError(str(exc).replace("pass overwrite=True to replace it",
                                               "pass --overwrite to replace it, or --out to "
                                               "write elsewhere")) from None
    flow = rc.flow()
    kwargs = rc.solver_kwargs()
    figure = bool(rc.cfg["output"]["figure"] and not args.no_figure)
    folder = OutputFolder(out_dir, args.overwrite, args.config)
    folder.check(("summary", "config") + (("figure",) if figure else ()))
    check_out_dir(out_dir, estimate_nbytes(flow, kwargs, rc.cfg["initial"]["n"]), label)
    theta0 = rc.theta0(flow.n_params)
    t = time.perf_counter()
    result = solve_ensemble(flow, theta0, progress=args.progress, **kwargs)
    text = summarize(rc, result)
    print(text)
    io.save(result, results_path, overwrite=args.overwrite)
    folder.write_text("summary", text + "\n")
    cfg_path = folder.write_text("config", effective_toml(rc.cfg, rc.preset))
    print(f"  results     {results_path}")
    if cfg_path.name != "config.toml":
        print(f"  config      {cfg_path} (the effective config; {args.config} is left as it is)")
    if figure:
        _figure(result, folder)
    print(f"  wall time   {time.perf_counter() - t:.3g} s")
    ltol = float(rc.cfg["output"]["limit_tol"])
    print(f"  next        narrowflow report {results_path}"
          + (f" --tol {ltol:g}" if ltol != 1e-3 else "")
          + "   (limit points, Morse indices, escape times)")
    return 0


def _figure(result, out) -> None:
    """The loss bands figure into `out` (an OutputFolder, or a folder path)."""
    if result.loss_saved is None:
        print("  figure      skipped (no save points: set [save] at)")
        return
    from narrowflow import plots
    fig = plots.loss_bands(result)
    folder = out if isinstance(out, OutputFolder) else OutputFolder(out)
    path = folder.write_figure(fig)
    print(f"  figure      {path}")


def run_distributed(args, rc) -> int:
    """`narrowflow run [CONFIG] --cluster local[:N] | --scheduler ADDRESS [--overwrite]`.

    rc: the validated RunConfig (after the command line's overrides). Integrates into
    OUT/results.zarr (resuming it when it holds this configuration), then writes the same
    summary, effective config and figure as the in-process run. Returns the exit code.
    """
    import sys
    from narrowflow import distributed
    from narrowflow.cli import cluster_args as ca
    distributed.require_dask()
    if rc.cfg["output"]["format"] != "zarr":
        raise ValueError("output.format: distributed runs write a Zarr store; use format = "
                         "\"zarr\" (or drop --format netcdf)")
    out_dir = Path(args.out if getattr(args, "out", None) is not None else rc.cfg["output"]["dir"])
    store = out_dir / "results.zarr"
    label = "--out" if getattr(args, "out", None) is not None else "config key 'output.dir'"
    check_out_dir(out_dir, 0, label)
    flow = rc.flow()
    figure = bool(rc.cfg["output"]["figure"] and not getattr(args, "no_figure", False))
    folder = OutputFolder(out_dir, bool(getattr(args, "overwrite", False)),
                                  getattr(args, "config", None))
    folder.check(("summary", "config") + (("figure",) if figure else ()))
    if not store.exists():      # (a store being resumed already holds part of it)
        check_out_dir(out_dir, estimate_nbytes(
            flow, rc.solver_kwargs(), rc.cfg["initial"]["n"]), label)
    opts = ca.options_from_config(rc)
    if getattr(args, "chunk", None) is not None:
        opts["chunk"] = args.chunk
    table = rc.cfg.get("cluster")
    if getattr(args, "cluster", None) is not None:
        ca.cluster_options(args, table)        # a wrong option is refused before anything starts
    held = {}

    def connect():
        if "session" not in held:
            session = held["session"] = ca.session_from_args(args, table, out_dir)
            workers = session.client.scheduler_info().get("workers", {})
            held["threads"] = (session.slots
                               or sum(w.get("nthreads", 0) for w in workers.values()))
            print(f"{session.describe()}; store {store}", file=sys.stderr)
        return held["session"].client

    def slots():        # the slots asked for (batch workers may still be queued)
        connect()
        return held["session"].slots or held["threads"] or None

    stop = {}

    def watch():        # the job queue: rejected jobs, jobs all gone (narrowflow.cluster)
        if stop:        # a signal whose KeyboardInterrupt was swallowed (raised in a GC
            raise KeyboardInterrupt     # callback or __del__): stop now
        held["session"].watch()

    import signal
    import threading

    from narrowflow import cluster as cluster_mod
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):   # Ctrl-C, kill, scancel of the client: clean up
            stop["signal"] = signum
            raise KeyboardInterrupt
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        run = distributed.solve_distributed(flow, store=store, client=connect,
                                            overwrite=bool(getattr(args, "overwrite", False)),
                                            progress=True, slots=slots, watch=watch, **opts)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished chunks are kept in {store}; run the same command "
              f"again to resume", file=sys.stderr)
        return 130
    except cluster_mod.QueueError as exc:
        print(f"narrowflow run: error: {exc}\n(finished chunks are kept in {store}; run the "
              f"same command again to resume)", file=sys.stderr)
        return 2
    finally:
        if "session" in held:
            held["session"].close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = run.to_result()
    result.threads = max(1, held.get("threads", 1))
    text = summarize(rc, result)
    text += (f"\n  dask        {len(run.computed)} chunks computed now, {len(run.skipped)} "
             f"were already complete (of {run.n_chunks}, {run.chunk} trajectories each; "
             f"the cost line counts this call only)")
    print(text)
    folder.write_text("summary", text + "\n")
    folder.write_text("config", effective_toml(rc.cfg))
    print(f"  results     {store}")
    if figure:
        _figure(result, folder)
    return 0
