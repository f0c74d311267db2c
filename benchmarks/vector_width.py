"""512-bit against 256-bit lane loops (narrowflow.jit's vector width), side by side.

    python benchmarks/vector_width.py [--pairs 3] [-n 4096]

The vector width is fixed per process (Numba's CPU features are read once), so the two
settings run in two processes at the same time, each pinned to one core (``taskset``), the
wide one with narrowflow's default and the narrow one with ``NARROWFLOW_NO_WIDE_VECTORS=1``;
each pair runs twice with the cores swapped. On a shared virtual machine whose speed moves
by 1.5-2x from minute to minute, processes that run at the same moment see the same
machine, which runs one after the other do not. Each side measures, one thread, per CPU
second: the NF4 flow at 16 lanes (ns per lane-RHS, best of 7), and NF4 ensembles to T = 100
(dop853 and vern7 at rtol 1e-8, taylor at 1e-10, bdf at 1e-8; best of 5), and a checksum of
the final states, which must agree. Prints each pair's ratios and their geometric mean;
writes ``results/vector_width.json``. Linux only (taskset); needs 2 cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = (("dop853", 1e-8), ("vern7", 1e-8), ("taylor", 1e-10), ("bdf", 1e-8))


def side(n: int) -> dict:
    """One process's measurements (see the module docstring)."""
    import numpy as np

    import narrowflow as nf
    from narrowflow import jit, model, rhs
    from narrowflow._ext import rhscall

    flow = model.nf4_benchmark()
    F, prm, lanes = rhs.compile_network(flow), rhs.pack_params(flow), 16
    y = np.random.default_rng(2).normal(size=flow.n_params * lanes)
    out = {"wide": jit.wide_vectors(), "rhs_ns": min(
        rhscall.time_per_call(F.flow_address, lanes, y, prm, flow.n_params, 20_000) / lanes
        for _ in range(7)) * 1e9}
    theta0 = model.nf4_initial_states(n)
    for method, rtol in RUNS:
        kw = dict(t_span=(0.0, 100.0), method=method, rtol=rtol, atol=rtol / 100, threads=1)
        nf.solve_ensemble(flow, theta0[:64], **kw)             # compile outside the timing
        best = math.inf
        for _ in range(5):
            t = time.process_time()
            res = nf.solve_ensemble(flow, theta0, **kw)
            best = min(best, time.process_time() - t)
        out[method] = n / best
        out[method + "_checksum"] = float(np.abs(res.y_final).sum())
    return out


def pair(n: int, wide_core: int, narrow_core: int) -> tuple[dict, dict]:
    """The two sides at the same time, on the given cores."""
    env = {k: v for k, v in os.environ.items() if k != "NARROWFLOW_NO_WIDE_VECTORS"}
    cmd = [sys.executable, __file__, "--side", "-n", str(n)]
    procs = [subprocess.Popen(["taskset", "-c", str(core), *cmd], stdout=subprocess.PIPE, text=True,
                              env=dict(env, **extra))
             for core, extra in ((wide_core, {}), (narrow_core, {"NARROWFLOW_NO_WIDE_VECTORS": "1"}))]
    wide, narrow = (json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs)
    return wide, narrow


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="pairs of runs, each also with cores swapped")
    ap.add_argument("-n", type=int, default=4096, help="trajectories per ensemble")
    ap.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        print(json.dumps(side(args.n)))
        return
    rows = []
    for i in range(args.pairs):
        for cores in ((1, 0), (0, 1)):
            wide, narrow = pair(args.n, *cores)
            if not wide["wide"]:
                sys.exit("the default process did not get wide vectors (no AVX-512, or "
                         "NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set): nothing to compare")
            for method, _ in RUNS:
                key = method + "_checksum"
                if wide[key] != narrow[key]:
                    sys.exit(f"{method}: final states differ between the widths")
            ratio = {"rhs": narrow["rhs_ns"] / wide["rhs_ns"],
                     **{m: wide[m] / narrow[m] for m, _ in RUNS}}
            rows.append({"wide": wide, "narrow": narrow, "ratio": ratio})
            print(f"pair {i + 1}, wide on core {cores[0]}: RHS {wide['rhs_ns']:.1f} / "
                  f"{narrow['rhs_ns']:.1f} ns;  " +
                  "  ".join(f"{k} {v:.2f}" for k, v in ratio.items()), flush=True)
    keys = rows[0]["ratio"]
    gmean = {k: math.exp(sum(math.log(r["ratio"][k]) for r in rows) / len(rows)) for k in keys}
    span = {k: (min(r["ratio"][k] for r in rows), max(r["ratio"][k] for r in rows)) for k in keys}
    print("wide / narrow speed, geometric mean (min-max) over", len(rows), "pairs:")
    for k in keys:
        print(f"  {k:7s} {gmean[k]:.2f} ({span[k][0]:.2f}-{span[k][1]:.2f})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "vector_width.json").write_text(json.dumps(
        {"rows": rows, "geometric_mean": gmean, "span": span, "n": args.n,
         "cpu": _cpu_name()}, indent=1))


def _cpu_name() -> str:
    from llvmlite import binding as ll
    return ll.get_host_cpu_name()


if __name__ == "__main__":
    main()
