"""`narrowflow run [CONFIG] [--out DIR]`: the main job, an ensemble of gradient flows.

With --cluster local[:N] or --scheduler ADDRESS the same run goes to Dask
(narrowflow.distributed.run_cli) and writes a resumable Zarr store.

Without CONFIG it runs the built-in NF4 preset (DESIGN.md's benchmark problem, 10^5
trajectories integrated to convergence: until ||grad L|| < 1e-8 or t = 1e7), prints a
summary that answers where training ended (the fraction at the global minimum, the other
limits by type and Morse index, divergence, the unconverged, the time to converge), and
writes into the output folder the results (a Zarr store or NetCDF file through xarray), the
loss quantile bands over time (PNG), the summary (summary.txt) and the effective config
(config.toml). `--preset nf4-bench` runs the t in [0, 100] throughput benchmark instead.
See narrowflow.config for the keys and presets.
"""
from __future__ import annotations

import json
import time
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
    try:  # --cluster / --scheduler / --chunk: the same run on Dask (narrowflow.distributed)
        from narrowflow import distributed
        distributed.add_cli_arguments(p)
    except ImportError:  # pragma: no cover - distributed module not present
        pass
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
    solver.gtol: off is written as 0 so that no preset's gtol comes back); ``preset``
    (the preset it started from) is written as the top-level key."""
    lines = [f"preset = {_toml_value(preset)}", ""] if preset else []
    for table, body in cfg.items():
        lines.append(f"[{table}]")
        for k, v in body.items():
            if v is None and table == "solver" and k == "gtol":
                v = 0.0
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _global_minimum(rc, result) -> tuple[float, str]:
    """The global minimum loss if known (realizable target), else the best one found."""
    d = rc.cfg["data"]
    net = rc.cfg["network"]
    same_shape = net["input_dim"] == 1 and net["output_dim"] == 1
    nf4_ok = (d.get("preset") == "nf4" and net["activation"] == "tanh" and net["width"] >= 2
              and same_shape)
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
    """The table of where the trajectories ended (narrowflow.analysis.summarize_limits)."""
    from narrowflow import analysis
    flow = getattr(result, "flow", None)
    if flow is None:
        flow = rc.flow()
    tol = float(rc.cfg["output"].get("limit_tol", 1e-3))
    ls = analysis.summarize_limits(result, flow, tol=tol, max_clusters=LIMIT_CLUSTERS,
                                   max_states=LIMIT_MAX_STATES)
    N = ls.n
    lines = [f"  limits      where the {N} trajectories ended; the {ls.n_converged} CONVERGED ones "
             f"classified by narrowflow.analysis.limit_points",
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
        *[f"  note        {n}" for n in getattr(rc, "notes", [])],
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


def run(args) -> int:
    from narrowflow import config, io
    from narrowflow.ensemble import solve_ensemble
    rc = config.load(args.config, preset=getattr(args, "preset", None))
    if args.trajectories is not None:
        if args.trajectories < 1:
            raise ValueError(f"--trajectories must be >= 1, got {args.trajectories}")
        rc.cfg["initial"]["n"] = args.trajectories
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        rc.cfg["solver"]["threads"] = args.threads
    if args.format is not None:
        rc.cfg["output"]["format"] = args.format
    if getattr(args, "cluster", None) is not None or getattr(args, "scheduler", None) is not None:
        from narrowflow import distributed
        return distributed.run_cli(args, rc)
    out_dir = Path(args.out if args.out is not None else rc.cfg["output"]["dir"])
    fmt = rc.cfg["output"]["format"]
    results_path = out_dir / ("results.zarr" if fmt == "zarr" else "results.nc")
    if results_path.exists() and not args.overwrite:
        raise FileExistsError(f"{results_path} exists; pass --overwrite to replace it or "
                              f"--out to write elsewhere")
    # build everything (and fail on bad input) before integrating
    flow = rc.flow()
    kwargs = rc.solver_kwargs()
    theta0 = rc.theta0(flow.n_params)
    t = time.perf_counter()
    result = solve_ensemble(flow, theta0, progress=args.progress, **kwargs)
    text = summarize(rc, result)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.save(result, results_path, overwrite=True)
    (out_dir / "summary.txt").write_text(text + "\n")
    (out_dir / "config.toml").write_text(effective_toml(rc.cfg, rc.preset))
    print(f"  results     {results_path}")
    if rc.cfg["output"]["figure"] and not args.no_figure:
        _figure(result, out_dir)
    print(f"  wall time   {time.perf_counter() - t:.3g} s")
    ltol = float(rc.cfg["output"]["limit_tol"])
    print(f"  next        narrowflow report {results_path}"
          + (f" --tol {ltol:g}" if ltol != 1e-3 else "")
          + "   (limit points, Morse indices, escape times)")
    return 0


def _figure(result, out_dir: Path) -> None:
    if result.loss_saved is None:
        print("  figure      skipped (no save points: set [save] at)")
        return
    from narrowflow import plots
    fig = plots.loss_bands(result)
    path = out_dir / "loss_bands.png"
    plots.savefig(fig, path)
    print(f"  figure      {path}")
