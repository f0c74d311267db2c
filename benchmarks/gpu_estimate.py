"""16 cores against diffrax Dopri8 on an H200, estimated here at equal median and max error.

    python benchmarks/gpu_estimate.py             # ~5 min on 2 cores
    python benchmarks/gpu_estimate.py --ref 1024  # fewer trajectories in the error set
    python benchmarks/gpu_estimate.py --out DIR   # where gpu_estimate.md / .json go

Where a machine with the H200 and 16 cores is lent, ../shared/peers/ measures both sides there.
Where none is, this script estimates the 16-core rate of narrowflow's `taylor` at diffrax's
error from what can be measured here and the figures measured on that machine:

    N16(taylor at error e) = N16(dop853, rtol 1e-8, host) x T1(taylor at e) / T1(dop853, rtol 1e-8)

T1 is the one-thread rate per CPU second on this machine, T1(taylor at e) interpolated log-log
on taylor's curve (rtol 1e-5 ... 1e-9 in half decades), 16-thread scaling assumed equal for
both methods (the same workers and queue). e is diffrax Dopri8's median or max error at the
H200 run's settings (rtol 1e-8, atol 1e-10, t in [0, 100]). Errors do not depend on the
hardware beyond rounding, so diffrax runs here on the CPU (jax, float64, vmapped as on the
GPU) over the H200 run's own error set: its initial states (default_rng(12345), the first
`--ref` of them) and its right-hand side, written as that script writes it. The median it gives
here is checked against the H200 run's (3.1e-10). Its CPU rate is printed too; vmapped on a
CPU it steps every batch until its slowest trajectory is done, so it says little about diffrax
on a CPU. Errors of every solver: max-norm of the state at t = 100 against scipy's DOP853 at
rtol 2.3e-14, atol 1e-16 (cross-checked against narrowflow's taylor at rtol 1e-15), median,
99th percentile and max over the error set.

Needs jax and diffrax (`pip install jax diffrax`, CPU); without them it says so and stops.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (NF4 data, scipy reference, interpolation, machine)

# measured on the lent H200 + 16-core machine, 2026-11-30 (../shared/peers/README.md)
HOST_DOP853_16 = 97_414         # narrowflow dop853, 16 threads, rtol 1e-8, atol 1e-10, traj/s
HOST_DOP853_MEDIAN = 1.7e-10    # its median error there
H200_DOPRI8 = 114_711           # diffrax Dopri8 vmapped over 2^20 trajectories, traj/s
H200_DOPRI8_MEDIAN = 3.1e-10    # its median error there
DIFFRAX_RUNS = (("Dopri8", 1e-8, 1e-10), ("Dopri8", 1e-6, 1e-8), ("Tsit5", 1e-8, 1e-10))
T_END = 100.0


def h200_states(n):
    """The initial states of ../shared/peers/h200_diffrax.py's error set, (n, 4) float64."""
    return np.random.default_rng(12345).standard_normal((1_048_576, 4))[:n]


def errors(y, ref):
    """(median, 99th percentile, max) over trajectories of the max-norm error."""
    d = np.abs(y - ref).max(axis=1)
    return float(np.median(d)), float(np.percentile(d, 99)), float(d.max())


def scipy_reference(y0):
    """scipy DOP853 at its tightest rtol, one trajectory at a time (peers' Numba RHS)."""
    from scipy.integrate import solve_ivp
    x, yd = peers.nf4_data()
    data = np.concatenate([x, yd])
    return np.array([solve_ivp(peers._scipy_rhs, (0.0, T_END), y, method="DOP853",
                               rtol=2.3e-14, atol=1e-16, args=(data,)).y[:, -1] for y in y0])


def run_diffrax(y0, name, rtol, atol):
    """diffrax as the H200 script runs it, vmapped, on this CPU: (y (n, 4), CPU seconds, wall
    seconds, mean and max steps), compilation outside the timing."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import diffrax as dfx
    x, yd = peers.nf4_data()
    xj, yj = jnp.asarray(x), jnp.asarray(yd)

    def vf(t, th, args):
        a1, w1, a2, w2 = th[0], th[1], th[2], th[3]
        t1, t2 = jnp.tanh(w1 * xj), jnp.tanh(w2 * xj)
        r = a1 * t1 + a2 * t2 - yj
        return -jnp.stack([jnp.mean(r * t1), a1 * jnp.mean(r * (1 - t1 * t1) * xj),
                           jnp.mean(r * t2), a2 * jnp.mean(r * (1 - t2 * t2) * xj)])
    term, solver = dfx.ODETerm(vf), getattr(dfx, name)()

    def solve1(th0):
        sol = dfx.diffeqsolve(term, solver, t0=0.0, t1=T_END, dt0=None, y0=th0,
                              stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
                              saveat=dfx.SaveAt(t1=True), max_steps=100_000)
        return sol.ys[-1], sol.stats["num_steps"]
    f = jax.jit(jax.vmap(solve1))
    y0j = jnp.asarray(y0)
    jax.block_until_ready(f(y0j))
    w, c = time.perf_counter(), time.process_time()
    y, steps = jax.block_until_ready(f(y0j))
    c, w = time.process_time() - c, time.perf_counter() - w
    steps = np.asarray(steps)
    return np.asarray(y), c, w, float(steps.mean()), int(steps.max())


def run_narrowflow(y0, method, rtol, min_time, repeats):
    """(y on y0, one-thread traj per CPU second): sized to one timing of min_time on
    NF4 states of the same distribution, best of `repeats`."""
    import narrowflow as nf
    from narrowflow import model
    flow = model.nf4_benchmark()
    kw = dict(method=method, t_span=(0.0, T_END), rtol=rtol, atol=rtol / 100, threads=1)
    y = nf.solve_ensemble(flow, y0, **kw).y_final
    n, best = 1024, math.inf
    while True:
        th0 = model.nf4_initial_states(n)
        c = time.process_time()
        nf.solve_ensemble(flow, th0, **kw)
        el = time.process_time() - c
        if el >= min_time:
            break
        n *= 2
    best = el
    for _ in range(repeats - 1):
        c = time.process_time()
        nf.solve_ensemble(flow, th0, **kw)
        best = min(best, time.process_time() - c)
    return y, n / best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", type=int, default=4096, help="trajectories in the error set")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per timing, at least")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    try:
        import diffrax
        import jax
    except ImportError as exc:
        print(f"diffrax not importable ({exc}): pip install jax diffrax")
        return 1
    import narrowflow as nf
    y0 = h200_states(args.ref)
    print(f"reference: scipy DOP853 rtol 2.3e-14 on {len(y0)} trajectories ...", flush=True)
    ref = scipy_reference(y0)
    check = errors(run_narrowflow(y0, "taylor", 1e-15, 0.0, 1)[0], ref)[2]
    print(f"  narrowflow taylor at rtol 1e-15 differs from it by at most {check:.1e}", flush=True)
    rows = []
    for name, rtol, atol in DIFFRAX_RUNS:
        y, cpu, wall, steps, steps_max = run_diffrax(y0, name, rtol, atol)
        rows.append(dict(solver=f"diffrax {name} (vmapped, CPU)", rtol=rtol, atol=atol,
                         errors=errors(y, ref), traj_per_cpu_s=len(y0) / cpu,
                         traj_per_s=len(y0) / wall, steps_mean=steps, steps_max=steps_max))
        print(f"  {rows[-1]}", flush=True)
    own = [("dop853", 1e-8)] + [("taylor", 10.0 ** -(e / 2)) for e in range(10, 19)]
    for method, rtol in own:
        y, t1 = run_narrowflow(y0, method, rtol, args.min_time, args.repeats)
        rows.append(dict(solver=f"narrowflow {method}", rtol=rtol, atol=rtol / 100,
                         errors=errors(y, ref), traj_per_cpu_s=t1))
        print(f"  {rows[-1]}", flush=True)

    dop = next(r for r in rows if r["solver"] == "narrowflow dop853")
    dx = next(r for r in rows if r["solver"].startswith("diffrax Dopri8") and r["rtol"] == 1e-8)
    tay = [r for r in rows if r["solver"] == "narrowflow taylor"]
    est = []
    for stat, i in (("median", 0), ("99th percentile", 1), ("max", 2)):
        # rtols that give the same order run the same computation: one point, the geometric
        # mean of their rates
        pts: dict = {}
        for r in tay:
            pts.setdefault(r["errors"][i], []).append(math.log(r["traj_per_cpu_s"]))
        t1 = peers.interp_throughput([(e, math.exp(sum(v) / len(v))) for e, v in pts.items()],
                                     dx["errors"][i])
        n16 = None if t1 is None else HOST_DOP853_16 * t1 / dop["traj_per_cpu_s"]
        est.append(dict(statistic=stat, diffrax_error=dx["errors"][i], taylor_t1=t1,
                        dop853_t1=dop["traj_per_cpu_s"], n16=n16,
                        ratio=None if n16 is None else n16 / H200_DOPRI8))
    m = peers.machine()
    lines = [f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores; narrowflow {nf.__version__}"
             f", jax {jax.__version__}, diffrax {diffrax.__version__}; error set: the first "
             f"{len(y0)} initial states of ../shared/peers/h200_diffrax.py; reference scipy "
             f"DOP853 rtol 2.3e-14 (narrowflow taylor at 1e-15: {check:.1e} from it)", "",
             "| solver | rtol / atol | median / p99 / max error | traj per CPU s here | "
             "steps mean / max |", "|---|---|---|---|---|"]
    for r in rows:
        e = " / ".join(f"{v:.2e}" for v in r["errors"])
        st = f"{r['steps_mean']:.1f} / {r['steps_max']}" if "steps_mean" in r else ""
        lines.append(f"| {r['solver']} | {r['rtol']:.1e} / {r['atol']:.0e} | {e} | "
                     f"{r['traj_per_cpu_s']:.0f} | {st} |")
    lines += ["", f"diffrax Dopri8's median error here {dx['errors'][0]:.2e} (on the H200: "
              f"{H200_DOPRI8_MEDIAN:.1e}); narrowflow dop853's {dop['errors'][0]:.2e} (on the "
              f"16-core host: {HOST_DOP853_MEDIAN:.1e}).", "",
              f"Estimate, N16(taylor at e) = {HOST_DOP853_16} x T1(taylor at e) / T1(dop853 1e-8)"
              f", against diffrax Dopri8 on the H200, {H200_DOPRI8} traj/s:", "",
              "| at diffrax's | e | T1 taylor at e | T1 dop853 | N16 taylor (estimate) | "
              "÷ H200 |", "|---|---|---|---|---|---|"]
    for x in est:
        if x["n16"] is None:
            lines.append(f"| {x['statistic']} | {x['diffrax_error']:.2e} | n/a (outside "
                         "taylor's curve) | | | |")
            continue
        lines.append(f"| {x['statistic']} | {x['diffrax_error']:.2e} | {x['taylor_t1']:.0f} | "
                     f"{x['dop853_t1']:.0f} | {x['n16']:.0f} | {x['ratio']:.2f} |")
    md = "\n".join(lines) + "\n"
    peers.write_report(args.out, "gpu_estimate", md, dict(
        rows=rows, estimate=est, machine=m, reference_check=check,
        host=dict(dop853_16=HOST_DOP853_16, dop853_median=HOST_DOP853_MEDIAN,
                  h200_dopri8=H200_DOPRI8, h200_dopri8_median=H200_DOPRI8_MEDIAN)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
