"""method="taylor" on NF4: is Jorba & Zou's order and step rule the cheapest at equal error,
and where does the ratio to heyoka's batch mode come from?

    python benchmarks/taylor_rule.py               # ~3-5 minutes (orders compiled and cached)
    python benchmarks/taylor_rule.py --out DIR     # where taylor_rule.md / .json go
    python benchmarks/taylor_rule.py --blocks 16,8,4 --block-orders 6,8,10,13,16
                                                   # only 0.: lanes per block (taylor._B)
    python benchmarks/taylor_rule.py --neighbour   # only 3.: the other core idle or busy
    python benchmarks/taylor_rule.py --alignment   # only 4.: scratch alignment
    python benchmarks/taylor_rule.py --factor      # only 5.: factored output weights

0. With --blocks: the cost of one expansion per lane (16 lanes, CPU time, rounds over the
   variants, best of --repeats) of the order-specialised code generated with each number of
   lanes per block (narrowflow.taylor._B; each variant compiled once, then cached).
1. The rule. For every order p and step h = exp(-a) min(rho_{p-1}, rho_p) (the kernel's
   ``KernelOptions.taylor_factor``; Jorba & Zou's a = 2 + 0.7/(p - 1) among them): steps per
   trajectory and max / median error at t = 100 against peers.tight_reference (both
   deterministic), and the CPU time per lane-step at each order (the whole kernel, rounds
   over the orders, best of --repeats). Work per trajectory = steps x cost per lane-step. At
   each of heyoka's errors (peers.py --taylor) it prints the work on Jorba & Zou's curve (the
   points of orders p at their own a, log-log interpolation) against the best of every order's
   curve in a (likewise interpolated): choosing another order for a tolerance (order_for
   +- 1) only moves along Jorba & Zou's curve; another step fraction moves off it.
2. The decomposition. Per tolerance, in rounds (best of --repeats): heyoka's batch
   integrator (its SIMD batch, tol = rtol) and narrowflow's taylor (rtol, atol = rtol/100),
   one thread, CPU time. Ratio = (heyoka's CPU per lane-step / ours) x (heyoka's lane-steps per
   trajectory / ours): heyoka's batch takes as many steps as its slowest lane (the others
   idle), narrowflow refills a finished lane at once.
3. With --neighbour: taylor and heyoka per CPU second at rtol 1e-6 and 1e-10 (8192
   trajectories, best of 3, rounds), with the machine's other core left alone and with a
   process spinning on it: does a busy neighbour change the ratio?
4. With --alignment: the cost of one expansion per lane (orders 8 and 13, 16 lanes) with the
   scratch starting 0, 1, ..., 7 doubles after a 64-byte boundary (the kernel allocates it on
   one; malloc guarantees 16 bytes).
5. With --factor: the cost of one expansion per lane (orders --block-orders, 16 lanes) with
   NF4's output weights applied per data point or once after the sum over data points
   (``compile_taylor(..., factor=False / True)``; the kernel uses True for NF4).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (tight_reference, nf4 data and states, interp_throughput, machine)


@contextlib.contextmanager
def rule(order, a=None):
    """method="taylor" with this order and step fraction exp(-a) (None: Jorba & Zou's)."""
    from narrowflow import taylor
    from narrowflow._ext import ensemble as kernel
    order_for, integrate = taylor.order_for, kernel.integrate

    def patched(flow, loss, params, y, tab, opts, *args, **kw):
        if a is not None:
            opts = opts.replace(taylor_factor=math.exp(-a))
        return integrate(flow, loss, params, y, tab, opts, *args, **kw)
    taylor.order_for = lambda rtol: order
    kernel.integrate = patched
    try:
        yield
    finally:
        taylor.order_for, kernel.integrate = order_for, integrate


def solve(y0, rtol=1e-8):
    import narrowflow as nf
    from narrowflow import model
    res = nf.solve_ensemble(model.nf4_benchmark(), y0, method="taylor", rtol=rtol,
                            atol=rtol * 1e-2, threads=1)
    assert np.all(res.status == 0)
    return res


def jz(p):
    return 2.0 + 0.7 / (p - 1)


def interp_work(points, err):
    """log-log interpolation of work at err on [(err, work)], None outside."""
    w = peers.interp_throughput([(e, 1.0 / v) for e, v in points], err)
    return None if w is None else 1.0 / w


def heyoka_steps(run, y0, rtol):
    """heyoka's batch over y0: (mean steps per trajectory, mean over batches of the batch's
    largest step count, i.e. lane-steps per trajectory it pays for)."""
    B = run.batch
    ta = run.integrator(rtol)[0]
    steps, worst = [], []
    for k in range(0, len(y0), B):
        ta.set_time(0.0)
        ta.state[:] = y0[k:k + B].T
        ta.propagate_until(peers.T1)
        s = [r[3] for r in ta.propagate_res]
        steps += s
        worst.append(max(s))
    return float(np.mean(steps)), float(np.mean(worst))


def expansion_cost(order, fns, lanes=16, calls=1000, offset=0):
    """CPU seconds of one call of the Taylor function `fns` (order `order`) per lane, the
    scratch starting `offset` doubles after a 64-byte boundary."""
    import ctypes
    from narrowflow import model, rhs, taylor
    flow = model.nf4_benchmark()
    dp = ctypes.POINTER(ctypes.c_double)
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_int64, dp, dp, dp)(fns.address)
    params = rhs.pack_params(flow)
    size = fns.work_size(order, lanes, flow.data.n)
    work = taylor._aligned_zeros(size + 8)[offset:offset + size]
    X = np.zeros((order + 1, flow.n_params, lanes))
    X[0] = np.random.default_rng(0).standard_normal((flow.n_params, lanes))
    args = (lanes, order, X.ctypes.data_as(dp), work.ctypes.data_as(dp), params.ctypes.data_as(dp))
    fn(*args)
    t = time.process_time()
    for _ in range(calls):
        fn(*args)
    return (time.process_time() - t) / calls / lanes


def blocks(sizes, orders, repeats, out):
    """Expansion cost per lane by lanes per block (the generated code's _B)."""
    from narrowflow import model, taylor
    flow = model.nf4_benchmark()
    default = taylor._B
    fns = {}
    try:
        for b in sizes:
            taylor._B = b
            taylor._BUNDLES.clear()
            for p in orders:
                t = time.perf_counter()
                fns[b, p] = taylor.compile_taylor(flow, p)
                fns[b, p].address
                print(f"  {b} lanes per block, order {p}: compiled or loaded in "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
    finally:
        taylor._B = default
        taylor._BUNDLES.clear()
    cost = {}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for key, f in fns.items():
            cost[key] = min(cost.get(key, math.inf), expansion_cost(key[1], f))
        loads.append(os.getloadavg()[0])
    m = peers.machine()
    lines = [f"Machine: {m['cpu']} ({m['simd']}), one thread, CPU time, best of {repeats} rounds;"
             f" load average {min(loads):.1f}-{max(loads):.1f}. One expansion of NF4 at 16 lanes,"
             " microseconds per lane:", "",
             "| lanes per block | " + " | ".join(f"order {p}" for p in orders) + " |",
             "|---|" + "---|" * len(orders)]
    for b in sizes:
        lines.append(f"| {b} | " + " | ".join(f"{cost[b, p] * 1e6:.3f}" for p in orders) + " |")
    md = "\n".join(lines) + "\n"
    peers.write_report(out, "taylor_blocks", md, dict(
        cost_per_lane_s={f"{b},{p}": c for (b, p), c in cost.items()}, loads=loads, machine=m))


def alignment(orders=(8, 13), repeats=3):
    """Expansion cost per lane against the scratch's offset from a 64-byte boundary."""
    from narrowflow import model, taylor
    flow = model.nf4_benchmark()
    cost = {}
    for _ in range(repeats):
        for p in orders:
            for off in range(8):
                c = expansion_cost(p, taylor.compile_taylor(flow, p), offset=off)
                cost[p, off] = min(cost.get((p, off), math.inf), c)
    for p in orders:
        print(f"order {p}, microseconds per lane, scratch offset 0..7 doubles from a 64-byte "
              "boundary: " + ", ".join(f"{cost[p, o] * 1e6:.3f}" for o in range(8))
              + f" (load {os.getloadavg()[0]:.1f})")


def factored(orders=(6, 8, 10, 13, 16), repeats=5):
    """Expansion cost per lane with NF4's output weights applied per data point or after
    the sum over data points (compile_taylor's factor), alternating, best of `repeats`."""
    from narrowflow import model, taylor
    flow = model.nf4_benchmark()
    fns = {(p, f): taylor.compile_taylor(flow, p, factor=f) for p in orders for f in (False, True)}
    cost = {}
    for _ in range(repeats):
        for key, fn in fns.items():
            cost[key] = min(cost.get(key, math.inf), expansion_cost(key[0], fn))
    for p in orders:
        a, b = cost[p, False], cost[p, True]
        print(f"order {p}: {a * 1e6:.3f} us per lane, factored {b * 1e6:.3f} "
              f"({100 * (1 - b / a):.1f} % less; load {os.getloadavg()[0]:.1f})")


def neighbour(rounds=2, n=8192):
    """Per-CPU-second ratio taylor / heyoka with the other core idle or kept busy."""
    import subprocess
    y = peers.nf4_theta0(n)
    ours, hy = peers.solve_narrowflow("taylor", 1), peers.make_heyoka()
    tols = (1e-6, 1e-10)
    for tol in tols:
        ours(y[:64], tol)
        hy(y[:64], tol)

    def cpu(run, tol):
        c = time.process_time()
        run(y, tol)
        return time.process_time() - c
    for r in range(rounds):
        for busy in (False, True):
            spin = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy
                    else None)
            try:
                time.sleep(0.3)
                for tol in tols:
                    a = min(cpu(ours, tol) for _ in range(3))
                    b = min(cpu(hy, tol) for _ in range(3))
                    print(f"round {r}, other core {'busy' if busy else 'left alone'}, rtol "
                          f"{tol:.0e}: taylor {n / a:.0f}, heyoka {n / b:.0f} traj per CPU s, "
                          f"ratio {b / a:.2f} (load {os.getloadavg()[0]:.1f})", flush=True)
            finally:
                if spin is not None:
                    spin.kill()
                    spin.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", default="5,6,7,8,9,10,11,12,13,14,15,16")
    ap.add_argument("--alphas", default="1.5,1.75,2.0,2.25,2.5,2.75,3.0",
                    help="step fractions exp(-a) besides Jorba & Zou's")
    ap.add_argument("-n", type=int, default=1024, help="trajectories for steps and errors")
    ap.add_argument("--n-time", type=int, default=2048, help="trajectories per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref", type=int, default=64)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--blocks", default=None,
                    help="only the lanes-per-block comparison, e.g. 16,8,4 (writes taylor_blocks.md)")
    ap.add_argument("--block-orders", default="6,8,10,13,16")
    ap.add_argument("--neighbour", action="store_true",
                    help="only the check with the other core idle or busy")
    ap.add_argument("--factor", action="store_true",
                    help="only: expansion cost with and without factored output weights")
    ap.add_argument("--alignment", action="store_true",
                    help="only the expansion cost against the scratch's alignment")
    args = ap.parse_args(argv)
    if args.neighbour:
        neighbour()
        return 0
    if args.factor:
        factored([int(v) for v in args.block_orders.split(",")], args.repeats)
        return 0
    if args.alignment:
        alignment()
        return 0
    if args.blocks:
        blocks([int(v) for v in args.blocks.split(",")],
               [int(v) for v in args.block_orders.split(",")], args.repeats, Path(args.out))
        return 0
    from narrowflow import taylor
    orders = [int(v) for v in args.orders.split(",")]
    alphas = [float(v) for v in args.alphas.split(",")]
    print(f"reference: scipy DOP853 rtol 2.3e-14 on {args.ref} trajectories ...", flush=True)
    ref = peers.tight_reference(args.ref)
    y0 = peers.nf4_theta0(args.n)
    loads = [os.getloadavg()[0]]

    # 1. steps and errors per (order, a): deterministic
    grid = []
    for p in orders:
        for a in [None] + alphas:
            with rule(p, a):
                res = solve(y0)
            per = np.abs(res.y_final[:len(ref)] - ref).max(axis=1)
            grid.append(dict(order=p, a=jz(p) if a is None else a, jz=a is None,
                             steps=float(res.n_accepted.mean()), max_err=float(per.max()),
                             median_err=float(np.median(per))))
        last = grid[-len(alphas) - 1:]
        print(f"  order {p}: steps " + ", ".join("%.1f" % g["steps"] for g in last)
              + "; max errors " + ", ".join("%.1e" % g["max_err"] for g in last), flush=True)
    # CPU time per lane-step per order, in rounds over the orders
    yt = peers.nf4_theta0(args.n_time)
    cost = {}
    for _ in range(args.repeats):
        for p in orders:
            with rule(p, 2.0):
                t = time.process_time()
                res = solve(yt)
                dt = time.process_time() - t
            cost[p] = min(cost.get(p, math.inf), dt / res.n_accepted.sum())
        loads.append(os.getloadavg()[0])
    for g in grid:
        g["work_us"] = g["steps"] * cost[g["order"]] * 1e6
    # at heyoka's errors (peers.py --taylor) and at narrowflow's own order points
    targets = [1.73e-7, 3.9e-9, 4.2e-10, 2.2e-11, 4.1e-12, 8.3e-13, 1.4e-13]
    floor = 3 * max(g["max_err"] for g in grid if g["order"] == max(orders) and g["jz"])
    curve_jz = [(g["max_err"], g["work_us"]) for g in grid if g["jz"] and g["max_err"] > floor]
    frontier = []
    for e in targets:
        base = interp_work(curve_jz, e)
        best = []
        for p in orders:
            w = interp_work([(g["max_err"], g["work_us"]) for g in grid
                             if g["order"] == p and g["max_err"] > floor], e)
            if w is not None:
                best.append((w, p))
        best.sort()
        frontier.append(dict(error=e, jz_work_us=base,
                             best=[dict(order=p, work_us=w) for w, p in best[:3]]))

    # 2. decomposition against heyoka, rtol by rtol in rounds
    hy = peers.make_heyoka()
    tols = [10.0 ** -e for e in range(6, 14)]
    dec = {}
    for rtol in tols:
        hy(yt[:16], rtol)
        p = taylor.order_for(rtol)
        ours = solve(yt, rtol)
        hsteps, hworst = heyoka_steps(hy, yt, rtol)
        dec[rtol] = dict(rtol=rtol, order=p, steps=float(ours.n_accepted.mean()),
                         total_steps=int(ours.n_accepted.sum()), heyoka_steps=hsteps,
                         heyoka_batch_steps=hworst, t=math.inf, heyoka_t=math.inf)
    for _ in range(args.repeats):
        for rtol in tols:
            d = dec[rtol]
            t = time.process_time()
            solve(yt, rtol)
            d["t"] = min(d["t"], time.process_time() - t)
            t = time.process_time()
            hy(yt, rtol)
            d["heyoka_t"] = min(d["heyoka_t"], time.process_time() - t)
        loads.append(os.getloadavg()[0])
    for d in dec.values():
        d["us_per_lane_step"] = d["t"] / d["total_steps"] * 1e6
        d["heyoka_us_per_lane_step"] = d["heyoka_t"] / (len(yt) * d["heyoka_batch_steps"]) * 1e6
        d["ratio"] = d["heyoka_t"] / d["t"]
        d["cost_ratio"] = d["heyoka_us_per_lane_step"] / d["us_per_lane_step"]
        d["steps_ratio"] = d["heyoka_batch_steps"] / d["steps"]

    m = peers.machine()
    lines = [f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores, one thread, CPU time; "
             f"load average {min(loads):.1f}-{max(loads):.1f}; NF4, t = 100, atol = rtol/100; "
             f"errors on {args.ref} trajectories, steps on {args.n}, timings on {args.n_time}.",
             "", "Work per trajectory (steps x CPU per lane-step) at equal max error:", "",
             "| max error | Jorba & Zou (us/traj) | best order and step fraction (us/traj) | "
             "best / Jorba & Zou |", "|---|---|---|---|"]
    for f in frontier:
        b = f["best"][0] if f["best"] else None
        jzw = "n/a" if f["jz_work_us"] is None else f"{f['jz_work_us']:.1f}"
        rel = ("n/a" if b is None or f["jz_work_us"] is None
               else f"{b['work_us'] / f['jz_work_us']:.3f}")
        bs = "n/a" if b is None else f"order {b['order']}: {b['work_us']:.1f}"
        lines.append(f"| {f['error']:.1e} | {jzw} | {bs} | {rel} |")
    lines += ["", "CPU per lane-step (us), whole kernel: "
              + ", ".join(f"order {p}: {cost[p] * 1e6:.3f}" for p in orders), "",
              "| order | a | steps/traj | max error | median error | work (us/traj) |",
              "|---|---|---|---|---|---|"]
    for g in grid:
        lines.append(f"| {g['order']} | {g['a']:.2f}{' (J&Z)' if g['jz'] else ''} | "
                     f"{g['steps']:.1f} | {g['max_err']:.2e} | {g['median_err']:.2e} | "
                     f"{g['work_us']:.1f} |")
    lines += ["", "Against heyoka's batch mode (one thread, CPU time):", "",
              "| rtol | order | heyoka steps/traj (mean / its batch's max) | narrowflow steps/traj "
              "| heyoka us per lane-step | narrowflow us per lane-step | cost ratio | "
              "steps ratio | ratio (same rtol) |", "|---|---|---|---|---|---|---|---|---|"]
    for d in dec.values():
        lines.append(f"| {d['rtol']:.0e} | {d['order']} | {d['heyoka_steps']:.1f} / "
                     f"{d['heyoka_batch_steps']:.1f} | {d['steps']:.1f} | "
                     f"{d['heyoka_us_per_lane_step']:.3f} | {d['us_per_lane_step']:.3f} | "
                     f"{d['cost_ratio']:.2f} | {d['steps_ratio']:.2f} | {d['ratio']:.2f} |")
    md = "\n".join(lines) + "\n"
    peers.write_report(args.out, "taylor_rule", md, dict(
        grid=grid, cost_per_lane_step_s={str(p): c for p, c in cost.items()},
        frontier=frontier, heyoka=list(dec.values()), loads=loads, machine=m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
