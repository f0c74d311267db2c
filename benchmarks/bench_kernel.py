"""CPU time of the lane kernel's step loops on NF4, for before/after comparisons of a change.

    python benchmarks/bench_kernel.py --methods dp5,dop853 --repeats 3
    # before/after: run it in two checkouts (git worktree add ../before <rev>; build there
    # with `python setup.py build_ext --inplace`), alternating, with PYTHONPATH=<tree>/src

Prints, per method, the best of `--repeats` process-CPU times (threads=1) for N NF4
trajectories over t in [0, T] with save points, and the total RHS evaluations (equal
counts before and after say that the results are the same).

    python benchmarks/bench_kernel.py --methods bdf,rodas5p -T inf --profile -N 4000
    python benchmarks/bench_kernel.py --methods taylor --rtol 1e-6 --profile

``-T inf`` integrates to convergence (gtol, no save points). ``--profile`` adds one run with
the right-hand side timed (``profile=True``; its timers cost a few per cent, so it is kept
out of the throughput): the share of the worker's time inside the flow, and the worker's
time per lane-evaluation in ns, in all and outside the flow -- the kernel's own cost per
step, which is what separates a method's evaluation count from its speed.
"""
import argparse
import time

import numpy as np

import narrowflow as nf
from narrowflow import model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="dp5,dop853")
    ap.add_argument("-N", type=int, default=20000)
    ap.add_argument("-T", type=float, default=100.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gtol", type=float, default=1e-8, help="with -T inf")
    ap.add_argument("--rtol", type=float, default=None,
                    help="tolerance (atol = rtol/100); default: solve_ensemble's")
    ap.add_argument("--profile", action="store_true",
                    help="also time the right-hand side (one extra run)")
    args = ap.parse_args(argv)
    conv = np.isinf(args.T)
    run_kw = (dict(t_span=(0.0, np.inf), gtol=args.gtol) if conv else
              dict(t_span=(0.0, args.T), save_at=[0.0, args.T / 2, args.T]))
    if args.rtol is not None:
        run_kw.update(rtol=args.rtol, atol=args.rtol * 1e-2)
    flow = model.nf4_benchmark()
    y0 = np.random.default_rng(5).standard_normal((args.N, 4))
    for m in args.methods.split(","):
        nf.solve_ensemble(flow, y0[:64], method=m, threads=1, **run_kw)   # compile
        best = np.inf
        for _ in range(args.repeats):
            t = time.process_time()
            r = nf.solve_ensemble(flow, y0, method=m, threads=1, **run_kw)
            best = min(best, time.process_time() - t)
        print(f"{m}: {best:.4f} s CPU, {args.N / best:.0f} traj/s, nfev {int(r.nfev.sum())}, "
              f"njev {int(r.njev.sum())}")
        if args.profile:
            p = nf.solve_ensemble(flow, y0, method=m, threads=1, profile=True, **run_kw)
            per_eval = p.worker_seconds / p.nfev.sum() * 1e9
            print(f"  profiled: {100 * p.rhs_fraction:.0f} % of the worker's time in the flow; "
                  f"{per_eval:.0f} ns per lane-evaluation, {per_eval * (1 - p.rhs_fraction):.0f} "
                  "ns of it outside the flow (Jacobians, LU, step control, outputs)")


if __name__ == "__main__":
    main()
