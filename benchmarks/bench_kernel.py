"""CPU time of the lane kernel's step loops on NF4, for before/after comparisons of a change.

    python benchmarks/bench_kernel.py --methods dp5,dop853 --repeats 3
    # before/after: run it in two checkouts (git worktree add ../before <rev>; build there
    # with `python setup.py build_ext --inplace`), alternating, with PYTHONPATH=<tree>/src

Prints, per method, the best of `--repeats` process-CPU times (threads=1) for N NF4
trajectories over t in [0, T] with save points, and the total RHS evaluations (equal
counts before and after say that the results are the same).
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
    args = ap.parse_args(argv)
    flow = model.nf4_benchmark()
    y0 = np.random.default_rng(5).standard_normal((args.N, 4))
    for m in args.methods.split(","):
        nf.solve_ensemble(flow, y0[:64], t_span=(0, args.T), method=m, threads=1)   # compile
        best = np.inf
        for _ in range(args.repeats):
            t = time.process_time()
            r = nf.solve_ensemble(flow, y0, t_span=(0, args.T), method=m, threads=1,
                                  save_at=[0.0, args.T / 2, args.T])
            best = min(best, time.process_time() - t)
        print(f"{m}: {best:.4f} s CPU, {args.N / best:.0f} traj/s, nfev {int(r.nfev.sum())}")


if __name__ == "__main__":
    main()
