"""The distribution of the global error over an ensemble, per method and rtol (NF4, t = T).

A work-precision figure compares methods at one error per run (the max or the median over
the error set); two methods with the same median can still differ in their tails. This
prints, for each method and rtol, the mean flow evaluations per trajectory and the 50th, 90th,
99th percentile and the max of the max-norm error of the final state over N trajectories,
against scipy's DOP853 at rtol 1e-13, atol 1e-15 (about a minute for N = 400).

    python benchmarks/error_quantiles.py                      # dop853, vern7; N = 400, T = 100
    python benchmarks/error_quantiles.py --methods dp5,tsit5 --rtols 1e-6,1e-8
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import narrowflow as nf
from narrowflow import model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (NF4's initial states and the scipy reference)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="dop853,vern7", help="comma list of explicit methods")
    ap.add_argument("--rtols", default="1e-6,1e-7,1e-8,1e-9,1e-10",
                    help="comma list (atol = rtol/100)")
    ap.add_argument("--N", type=int, default=400, help="trajectories")
    ap.add_argument("--T", type=float, default=100.0, help="end time")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    flow = model.nf4_benchmark()
    y0 = peers.nf4_theta0(args.N)
    ref = peers.reference(args.N, args.T)
    rows = []
    print(f"NF4, N = {args.N}, T = {args.T:g}; error = max-norm of the final state")
    print("| method | rtol | nfev/traj | q50 | q90 | q99 | max |\n|---|---|---|---|---|---|---|")
    for m in args.methods.split(","):
        for rtol in (float(r) for r in args.rtols.split(",")):
            r = nf.solve_ensemble(flow, y0, t_span=(0.0, args.T), method=m, rtol=rtol,
                                  atol=rtol / 100, threads=1)
            err = np.abs(r.y_final - ref).max(axis=1)
            q50, q90, q99 = np.quantile(err, [0.5, 0.9, 0.99])
            rows.append(dict(method=m, rtol=rtol, nfev=float(r.nfev.mean()), q50=q50, q90=q90,
                             q99=q99, max=float(err.max())))
            print(f"| {m} | {rtol:.0e} | {r.nfev.mean():.0f} | {q50:.2e} | {q90:.2e} | "
                  f"{q99:.2e} | {err.max():.2e} |", flush=True)
    (out / "error_quantiles.json").write_text(json.dumps(
        dict(N=args.N, T=args.T, narrowflow=nf.__version__, rows=rows), indent=1))


if __name__ == "__main__":
    main()
