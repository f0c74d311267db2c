"""`narrowflow run [CONFIG] [--out DIR]`: the main job, an ensemble of gradient flows.

With --cluster local[:N] or --scheduler ADDRESS the same run goes to Dask
(narrowflow.distributed.run_cli) and writes a resumable Zarr store.

Without CONFIG it runs the built-in NF4 preset (DESIGN.md's benchmark problem, 10^5
trajectories), prints a summary, and writes into the output folder the results (a Zarr
store or NetCDF file through xarray), the loss quantile bands over time (PNG), the summary
(summary.txt) and the effective config (config.toml). See narrowflow.config for the keys.
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


def effective_toml(cfg: dict) -> str:
    """The config with every default filled in, as TOML (None values left out)."""
    lines = []
    for table, body in cfg.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items() if v is not None]
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


def summarize(rc, result) -> str:
    """Plain-text summary: statuses, success fraction, loss quantiles, escape times, cost."""
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
        f"[{result.t_span[0]:g}, {result.t_span[1]:g}], rtol {result.rtol:g}, atol {result.atol:g}",
        "  status      " + ", ".join(f"{s.name.lower()} {int(np.sum(result.status == s))}"
                                     for s in Status),
        f"  global min  {lmin_text}",
        f"  reached it  {frac:.4f} +- {se:.4f} of trajectories (final loss <= min + {tol:g})",
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
                 f"{np.mean(result.nfev) if N else 0:.4g} RHS evaluations per trajectory")
    return "\n".join(lines)


def run(args) -> int:
    from narrowflow import config, io
    from narrowflow.ensemble import solve_ensemble
    rc = config.load(args.config)
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
    (out_dir / "config.toml").write_text(effective_toml(rc.cfg))
    print(f"  results     {results_path}")
    if rc.cfg["output"]["figure"] and not args.no_figure:
        _figure(result, out_dir)
    print(f"  wall time   {time.perf_counter() - t:.3g} s")
    print(f"  next        narrowflow report {results_path}   (limit points, Morse indices, "
          f"escape times)")
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
