"""`narrowflow report RESULTS [--out DIR]`: figures (PNG) and a Markdown summary of a
stored ensemble result (a .zarr directory or .nc file written by ``narrowflow.io.save``, or
the run folder ``narrowflow run --out`` made, holding results.zarr or results.nc)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="figures and a Markdown summary of a stored ensemble result",
        description="Write loss quantile bands, limit clusters modulo symmetry with their "
                    "critical-point types, escape-time histograms (PNG) and summary.md.")
    p.add_argument("results", metavar="RESULTS", help="a .zarr or .nc file from narrowflow run "
                   "/ narrowflow.io.save, or the folder narrowflow run --out made")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory (default: RESULTS without suffix + '_report')")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="clustering scale for final states, parameter units (default 1e-3)")
    p.add_argument("--thresholds", default=None, metavar="L1,L2,...",
                   help="loss thresholds for escape times (default: the stored escape times, "
                        "else decades between the initial and final median loss)")
    p.add_argument("--gd", default=None, metavar="ETA1,ETA2,...",
                   help="also compare gradient descent with these learning rates against the "
                        "flow, from the stored initial states (needs a save point at t0)")
    p.add_argument("--gd-trajectories", type=int, default=256, metavar="N",
                   help="trajectories (the first N) for --gd (default 256)")
    p.add_argument("--no-polish", action="store_true",
                   help="do not refine cluster representatives to critical points")
    p.set_defaults(func=run)


RUN_STORES = ("results.zarr", "results.nc")     # what `narrowflow run --out DIR` writes


def resolve_results(results) -> Path:
    """The store RESULTS names: a .zarr store or .nc file itself, or the run folder that
    ``narrowflow run --out`` made (holding exactly one of results.zarr, results.nc).

    Raises FileNotFoundError when nothing is at RESULTS, ValueError (naming the path) for a
    folder holding neither store, or both."""
    path = Path(results)
    if not path.exists():
        raise FileNotFoundError(f"RESULTS: no such file or directory: {path}")
    if path.is_dir() and path.suffix.lower() not in (".zarr", ".nc", ".nc4"):
        found = [path / name for name in RUN_STORES if (path / name).exists()]
        if not found:
            raise ValueError(f"RESULTS: {path} is a folder holding neither "
                             f"{' nor '.join(RUN_STORES)} (the output of narrowflow run "
                             f"--out), and not a .zarr store; pass the store itself")
        if len(found) > 1:
            raise ValueError(f"RESULTS: {path} holds both {found[0]} and {found[1]}; pass "
                             f"the one to report on")
        return found[0]
    return path


def default_out_dir(results) -> Path:
    path = Path(results)
    return path.with_name(path.name.rsplit(".", 1)[0] + "_report") if "." in path.name \
        else path.with_name(path.name + "_report")


def _parse_numbers(text, option="--thresholds", positive=False):
    if text is None:
        return None
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(np.isfinite(vals)) or (positive and min(vals) <= 0):
        raise ValueError(f"{option}: expected finite{' positive' if positive else ''} "
                         f"numbers, got {text!r}")
    return vals


def _status_names():
    try:
        from narrowflow.ensemble import Status
        return {int(s): s.name.lower() for s in Status}
    except ImportError:  # pragma: no cover
        return {}


def write_report(result, out_dir, flow=None, tol: float = 1e-3, thresholds=None,
                 polish: bool = True, source: str | None = None, gd_rates=None,
                 gd_trajectories: int = 256) -> dict:
    """Write the report of ``result`` (EnsembleResult or Dataset in the result schema)
    into ``out_dir`` (created). flow: the GradientFlow (default: result.flow or rebuilt
    with ``narrowflow.io.flow_from_xarray``); gd_rates: learning rates for a gradient
    descent comparison from the first ``gd_trajectories`` stored initial states (the
    save point at t0). Returns {"summary": path, "figures": [paths], "limit_points":
    LimitPoints}."""
    from narrowflow import plots, studies
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = studies.fields(result)
    if flow is None:
        flow = getattr(result, "flow", None)
    if flow is None:
        from narrowflow import io
        flow = io.flow_from_xarray(result)
    figures = []
    md = []
    attrs = dict(f.attrs)
    if not attrs and hasattr(result, "method"):
        attrs = {"method": result.method, "rtol": getattr(result, "rtol", None),
                 "atol": getattr(result, "atol", None)}
        if getattr(result, "t_span", None) is not None:
            attrs["t0"], attrs["t1"] = result.t_span
    N = f.n_trajectories
    net = flow.network
    md.append(f"# narrowflow report{': ' + source if source else ''}\n")
    md.append(f"- network: width {net.width}, input_dim {net.input_dim}, output_dim "
              f"{net.output_dim}, activation {net.activation.name}, bias {net.bias}; "
              f"{flow.n_params} parameters ({', '.join(net.parameter_names())})")
    md.append(f"- data: {flow.data.n} samples; weight decay {flow.weight_decay:g}")
    solver = ", ".join(f"{k} {attrs[k]}" for k in ("method", "rtol", "atol", "t0", "t1", "seed")
                       if attrs.get(k) is not None)
    md.append(f"- ensemble: {N} trajectories" + (f"; {solver}" if solver else ""))
    if f.status is not None:
        names = _status_names()
        vals, cnt = np.unique(f.status, return_counts=True)
        md.append("- status: " + ", ".join(f"{names.get(int(v), int(v))} {c}"
                                           for v, c in zip(vals, cnt)))
    if f.loss_final is not None:
        lf = f.loss_final[np.isfinite(f.loss_final)]
        if lf.size:
            q = np.percentile(lf, [5, 50, 95])
            md.append(f"- final loss: median {q[1]:.4g} (5%: {q[0]:.4g}, 95%: {q[2]:.4g}), "
                      f"min {lf.min():.4g}")
    md.append("")

    if f.loss_saved is not None and f.t_saved is not None and f.t_saved.size > 1:
        fig = plots.loss_bands(result)
        figures.append(plots.savefig(fig, out / "loss_bands.png"))
        da = studies.loss_quantiles(result)
        md.append("## Loss over time\n")
        md.append("Quantiles across trajectories (NaN-free trajectories at each save time):\n")
        cols = np.unique(np.round(np.linspace(0, f.t_saved.size - 1, 5)).astype(int))
        md.append("| t | " + " | ".join(f"{q:g}%" for q in da["quantile"].values) + " |")
        md.append("|---" * (1 + da.sizes["quantile"]) + "|")
        for c in cols:
            md.append(f"| {f.t_saved[c]:.4g} | " +
                      " | ".join(f"{v:.3e}" for v in da.values[:, c]) + " |")
        md.append("\n![loss bands](loss_bands.png)\n")

    lp = studies.limit_points(result, flow=flow, tol=tol, polish=polish)
    figures.append(plots.savefig(plots.limit_points(lp), out / "limit_points.png"))
    md.append("## Limit points modulo symmetry\n")
    sym = lp.symmetry
    quot = ["neuron permutations"] if sym.permute and sym.width > 1 else []
    if sym.odd:
        quot.append("sign flips (a_j, w_j, b_j) → −(a_j, w_j, b_j)")
    md.append(f"Final states brought to canonical form ({', '.join(quot) or 'no symmetry'}"
              f"{'; dead neurons zeroed' if sym.zero_at_zero else ''}), clustered at scale "
              f"{tol:g}; each representative refined to a critical point where possible and "
              "typed by the Hessian's eigenvalues (zero within the stated tolerance). "
              f"{lp.n_excluded} trajectories diverged and have no limit point.\n")
    md.append(lp.to_markdown())
    kinds = {}
    for cp in lp.clusters:
        if cp.kind != "not critical":
            kinds[cp.kind] = kinds.get(cp.kind, 0) + cp.size
    if kinds:
        md.append("\nTrajectories by type of limit: " +
                  ", ".join(f"{k} {v} ({100 * v / N:.1f}%)" for k, v in kinds.items()) + ".")
    pool = lp.pooled()
    unconv = pool["not_converged"][0]
    if pool["not_analysed_moving"] is not None:
        km, nm, _ = pool["not_analysed_moving"]
        unconv += int(round(pool["not_analysed"][0] * km / nm))
    if unconv:
        md.append(f"\n{'About ' if pool['not_analysed_moving'] else ''}{unconv} trajectories "
                  f"ended away from any critical point (‖∇L‖ > {lp.gtol:g} even after "
                  "refinement): they had not converged by t1; run longer (or with gtol) "
                  "before reading their limits.")
    degen = [cp for cp in lp.clusters if cp.morse is not None and cp.morse.n_zero
             and cp.kind != "not critical"]
    if len(degen) > 1:
        losses = np.array([cp.loss for cp in degen])
        same = np.abs(losses - losses[0]) <= 1e-8 * max(abs(losses[0]), 1e-300) + 1e-14
        if np.sum(same) > 1:
            md.append(f"\n{int(np.sum(same))} degenerate clusters share the loss "
                      f"{losses[0]:.6g}: probably points of one manifold of critical points "
                      "(zero Hessian eigenvalues along it), sampled where each trajectory "
                      "arrived, rather than distinct limits.")
    saddles = [cp for cp in lp.clusters if cp.kind in ("saddle", "degenerate")]
    if saddles:
        md.append(f"\n{sum(cp.size for cp in saddles)} trajectories ended at a saddle or a "
                  "degenerate critical point (a finding, not noise: run longer to see whether "
                  "they escape).")
    md.append("\n![limit points](limit_points.png)\n")

    thr = thresholds
    have_escape = f.escape_time is not None and f.escape_threshold is not None
    if thr is None and not have_escape:
        thr = studies.default_thresholds(result)
        thr = list(thr) if len(thr) else None
    if thr is not None or have_escape:
        if thr is not None and (f.loss_saved is None or f.t_saved is None):
            thr = None
        if thr is not None or have_escape:
            figures.append(plots.savefig(plots.escape_histogram(result, thr, lp),
                                         out / "escape_times.png"))
            E = studies.escape_times(result, thr)
            md.append("## Escape times\n")
            md.append("First time the loss falls below each threshold"
                      + (f" (from the saved losses; resolution {E.attrs['resolution']:.3g})"
                         if thr is not None else " (solver dense output)") + ".\n")
            md.append("| threshold | cluster | escaped / n | median [95% CI] | 10% – 90% |")
            md.append("|---|---|---|---|---|")
            # clusters big enough for a distribution (as in the figure); the rest pooled
            big = [cp.label for cp in lp.clusters[:6] if cp.size >= max(2, 0.02 * N)]
            labels = np.where(np.isin(lp.labels, big), lp.labels, -1)
            rows = [dict(r, cluster="all") for r in studies.escape_time_summary(E, None)]
            rows += studies.escape_time_summary(E, labels) if big else []
            rows.sort(key=lambda r: r["threshold"], reverse=True)
            for r in rows:
                name = r["cluster"] if r["cluster"] == "all" else \
                    ("other" if r["cluster"] < 0 else f"#{r['cluster']}")
                med = (f"{r['median']:.4g} [{r['median_lo']:.4g}, {r['median_hi']:.4g}]"
                       if r["escaped"] else "—")
                qq = f"{r['q10']:.4g} – {r['q90']:.4g}" if r["escaped"] else "—"
                md.append(f"| {r['threshold']:.3g} | {name} | {r['escaped']} / {r['n']} | "
                          f"{med} | {qq} |")
            md.append("\n![escape times](escape_times.png)\n")
    if gd_rates:
        md += _gd_section(result, f, flow, lp, gd_rates, gd_trajectories, tol, attrs, out,
                          figures)
    summary = out / "summary.md"
    summary.write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"summary": str(summary), "figures": figures, "limit_points": lp}


def _gd_section(result, f, flow, lp, rates, n, tol, attrs, out, figures) -> list:
    """Gradient descent against the flow from the stored initial states (first n)."""
    from narrowflow import plots, studies
    t0 = float(attrs.get("t0", 0.0)) if attrs.get("t0") is not None else 0.0
    t1 = attrs.get("t1")
    if f.y_saved is None or f.t_saved is None or f.t_saved[0] != t0 or t1 is None:
        raise ValueError("--gd: the result has no stored initial states (a save point at t0)")
    n = int(n)
    if n < 1:
        raise ValueError(f"--gd-trajectories: must be >= 1, got {n}")
    th0 = np.asarray(f.y_saved[:n, 0], dtype=float)
    th0 = th0[np.all(np.isfinite(th0), axis=1)]
    kw = {k: float(attrs[k]) for k in ("rtol", "atol") if attrs.get(k) is not None}
    cmp = studies.gd_vs_flow(flow, th0, rates, t_end=float(t1) - t0, tol=tol, **kw)
    figures.append(plots.savefig(plots.gd_vs_flow(cmp), out / "gd_vs_flow.png"))
    import warnings
    q = cmp.distance_quantiles((50, 90))
    with warnings.catch_warnings():  # all-NaN where every GD run diverged: NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        qmax = np.nanmax(q, axis=2)
    md = ["## Gradient descent against the flow\n",
          f"{th0.shape[0]} stored initial states; GD θ_(k+1) = θ_k − η∇L(θ_k) compared with the "
          f"flow at t = kη, and limits at t = {cmp.t_end:g} (clusters modulo symmetry).\n",
          "| η | max over t of the median ‖θ_GD − θ_flow‖ | max over t of the 90% quantile "
          "| limit changed [95% CI] | diverged |", "|---|---|---|---|---|"]
    for r, eta in enumerate(cmp.learning_rates):
        lo, hi = cmp.changed_ci[r]
        md.append(f"| {eta:g} | {qmax[0, r]:.3g} | {qmax[1, r]:.3g} | "
                  f"{cmp.changed[r]:.3f} [{lo:.3f}, {hi:.3f}] | {cmp.diverged[r]:.3f} |")
    md.append("\n![GD against the flow](gd_vs_flow.png)\n")
    return md


def run(args) -> int:
    path = resolve_results(args.results)
    if not (np.isfinite(args.tol) and args.tol > 0):
        raise ValueError(f"--tol: must be > 0, got {args.tol}")
    thresholds = _parse_numbers(args.thresholds, "--thresholds")
    gd_rates = _parse_numbers(args.gd, "--gd", positive=True)
    from narrowflow import io
    ds = io.load(path)
    out = Path(args.out) if args.out else default_out_dir(path)
    rep = write_report(ds, out, tol=args.tol, thresholds=thresholds,
                       polish=not args.no_polish, source=os.path.basename(str(path)),
                       gd_rates=gd_rates, gd_trajectories=args.gd_trajectories)
    for fig in rep["figures"]:
        print(fig)
    print(rep["summary"])
    return 0
