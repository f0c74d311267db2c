"""Compile time and speed of the order-specialised Taylor code, neurons written out or in loops.

    python benchmarks/taylor_compile.py                    # NF4 and widths 2, 3, 4, 8 (~13 min)
    python benchmarks/taylor_compile.py --widths 4,16 --order 12
    python benchmarks/taylor_compile.py --out DIR          # taylor_compile.json goes there

For each network and each form of `narrowflow.taylor.compile_taylor(flow, order,
compact=...)` (compact=False: every neuron's series written out, `_fixed_body`; True: the
neurons in a run-time loop, `_compact_body`), in a fresh process with an empty
NARROWFLOW_CACHE_DIR and NUMBA_CACHE_DIR: the wall time of the first compile (imports
excluded) and the CPU time of one expansion per lane (`taylor.time_per_lane`, 16 lanes,
best of 5 runs of 200 calls). Networks: NF4 (width 2, 1 input, no bias, 16 data points) at
`--nf4-order` (11: rtol 1e-8), and width m, 2 inputs, bias, 64 data points at `--order`
(12: rtol 1e-9) for every m in --widths; the output weights factored as the default
chooses (`_factor_for`). Prints a markdown table; every number goes to
<out>/taylor_compile.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys, time
import numpy as np
from narrowflow import model, taylor
m, order, compact = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if m == 0:
    flow = model.nf4_benchmark()
else:
    rng = np.random.default_rng(0)
    net = model.Network(width=m, input_dim=2, bias=True)
    flow = model.GradientFlow(net, model.Dataset(rng.normal(size=(64, 2)), rng.normal(size=(64, 1))))
t = time.perf_counter()
tf = taylor.compile_taylor(flow, order, compact=compact)
tf.address
compile_s = time.perf_counter() - t
ns = taylor.time_per_lane(flow, order, lanes=16, calls=200, repeats=5, compact=compact) * 1e9
print(json.dumps(dict(p=flow.n_params, factor=tf.factor, compile_s=compile_s, ns_per_lane=ns)))
"""


def measure(m: int, order: int, compact: bool) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NARROWFLOW_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
        out = subprocess.check_output([sys.executable, "-c", _CHILD, str(m), str(order),
                                       "1" if compact else "0"], env=env, text=True)
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="2,3,4,8", help="widths of the 2-input networks")
    ap.add_argument("--order", type=int, default=12)
    ap.add_argument("--nf4-order", type=int, default=11, help="0: leave NF4 out")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    cases = ([("NF4", 0, args.nf4_order)] if args.nf4_order else [])
    cases += [(f"width {m}, d=2, bias, n=64", int(m), args.order) for m in args.widths.split(",")]
    rows = []
    print("| network | p | order | written out: compile s | ns/lane | in loops: compile s "
          "| ns/lane | compile ratio | speed ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, m, order in cases:
        unrolled, compact = measure(m, order, False), measure(m, order, True)
        rows.append(dict(network=label, width=m or 2, order=order, unrolled=unrolled,
                         compact=compact))
        print(f"| {label} | {unrolled['p']} | {order} | {unrolled['compile_s']:.1f} | "
              f"{unrolled['ns_per_lane']:,.0f} | {compact['compile_s']:.1f} | "
              f"{compact['ns_per_lane']:,.0f} | "
              f"{unrolled['compile_s'] / compact['compile_s']:.2f} | "
              f"{unrolled['ns_per_lane'] / compact['ns_per_lane']:.2f} |", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "taylor_compile.json").write_text(json.dumps(
        dict(rows=rows, machine=platform.processor() or platform.machine(),
             python=sys.version.split()[0]), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
