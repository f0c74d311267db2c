"""Two solvers of a longtime.py run compared at equal error, per horizon.

    python benchmarks/equal_error.py benchmarks/results/longtime_auto_bdf.json auto auto-rodas5p

For every row of A, A's throughput over B's interpolated log-log at A's error, and for every
row of B, A's interpolated at B's error over B's (peers.interp_throughput: never
extrapolated, n/a outside the other's measured range); once with the max and once with the
median error over the error set. Prints each ratio and, per horizon, their range. A and B
are longtime.py's method keys (auto, bdf, rodas5p, auto-rodas5p, lsoda, ...).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (interp_throughput)


def ratios(rows, a, b, stat):
    """{horizon: [(label, A÷B or None)]} at equal `stat` error ("err_max" or "err_median")."""
    out = {}
    for h in dict.fromkeys(r["horizon"] for r in rows):
        ra = [r for r in rows if r["horizon"] == h and r["key"] == a]
        rb = [r for r in rows if r["horizon"] == h and r["key"] == b]
        ca = [(r[stat], r["throughput"]) for r in ra]
        cb = [(r[stat], r["throughput"]) for r in rb]
        got = []
        for r in ra:
            t = peers.interp_throughput(cb, r[stat])
            got.append((f"{a} at rtol {r['rtol']:.0e} ({r[stat]:.1e})",
                        None if t is None else r["throughput"] / t))
        for r in rb:
            t = peers.interp_throughput(ca, r[stat])
            got.append((f"{b} at rtol {r['rtol']:.0e} ({r[stat]:.1e})",
                        None if t is None else t / r["throughput"]))
        out[h] = got
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="a longtime.py results file")
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args(argv)
    rows = json.loads(Path(args.json).read_text())["rows"]
    for stat in ("err_max", "err_median"):
        print(f"{args.a} ÷ {args.b} at equal {stat[4:]} error")
        for h, got in ratios(rows, args.a, args.b, stat).items():
            vals = [v for _, v in got if v is not None]
            span = f"{min(vals):.2f}-{max(vals):.2f}" if vals else "n/a"
            print(f"  {h}: {span}")
            for label, v in got:
                print(f"    {label}: {'n/a' if v is None else f'{v:.2f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
