"""NF4 side by side: narrowflow's ensemble kernel against peer ODE solvers, at equal error.

    python benchmarks/peers.py                 # ~2-4 minutes on 2 cores
    python benchmarks/peers.py --quick         # fewer trajectories, one tolerance less
    python benchmarks/peers.py --out DIR       # where the table (peers.md), raw numbers
                                               # (peers.json) and the figure go
                                               # (default benchmarks/results/)
    python benchmarks/peers.py --taylor        # method="taylor" against heyoka's batch mode
                                               # at rtol 1e-6 ... 1e-13 (taylor.md/json/png)
    python benchmarks/peers.py --taylor --threads 2   # ... and both on 2 threads (wall time)
    python benchmarks/peers.py --taylor --threads 2 --only-threads   # only the 2-thread part
                                               # (taylor_threads2.md/json/png)

Every solver integrates the same NF4 trajectories (docs/design.md §6: x = linspace(-2, 2, 16),
y = tanh(1.5x) - 0.7 tanh(0.4x), theta0 ~ N(0, 1) from model.nf4_initial_states (seed 12345),
t in [0, 100]; data and states come from narrowflow.model, the peers' right-hand sides are
their own scalar code)
at rtol 1e-6, 1e-8, 1e-10 (atol = rtol / 100; heyoka takes one tol). The error of a run is
the max-norm distance of its final states to a reference computed by scipy's DOP853 at
rtol 1e-13, atol 1e-15 (cross-checked against narrowflow's dop853 at the same tolerance), over
the first `--ref` trajectories; errors are reported as the max and the median over them of each
trajectory's max-norm error. With --taylor the reference is scipy's DOP853 at rtol 2.3e-14,
atol 1e-16 (the tightest it accepts), cross-checked against heyoka at tol 1e-16 and narrowflow's
taylor at rtol 1e-15, and the table compares narrowflow's taylor with heyoka per core at the
same tolerance and at equal max error; with --threads T also narrowflow's taylor on T threads
against heyoka's batch integrator on T threads (its ensemble_propagate_until_batch, and T Python
threads sharing the batches), in wall time. Throughput is trajectories per second of wall time,
one thread unless marked. "Ratio at equal error" interpolates narrowflow's log(throughput) against
log(error) at each peer point (no extrapolation). Peers that are not importable are listed
and skipped: scipy (always), CyRK (nbsolve2_ivp, C++ DOP853, Numba cfunc RHS), heyoka
(taylor_adaptive_batch, SIMD batch), numbalsoda, diffrax.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
T1 = 100.0


# --- the problem ------------------------------------------------------------------------------

def nf4_data():
    """NF4's x (16,) and y (16,), from narrowflow.model (the one definition)."""
    from narrowflow import model
    data = model.nf4_dataset()
    return data.x.ravel(), data.y.ravel()


def nf4_theta0(n):
    """NF4 initial states (n, 4), from narrowflow.model (the seed scheme of narrowflow run)."""
    from narrowflow import model
    return model.nf4_initial_states(n, seed=model.NF4_SEED)


@njit(cache=True)
def nf4_field(theta, data, out):
    """-grad L of NF4, scalar code with math tanh (what a plain Numba RHS does)."""
    n = data.shape[0] // 2
    a1, w1, a2, w2 = theta[0], theta[1], theta[2], theta[3]
    g0 = g1 = g2 = g3 = 0.0
    for i in range(n):
        xi = data[i]
        s1 = math.tanh(w1 * xi)
        s2 = math.tanh(w2 * xi)
        r = a1 * s1 + a2 * s2 - data[n + i]
        g0 += r * s1
        g1 += r * a1 * (1.0 - s1 * s1) * xi
        g2 += r * s2
        g3 += r * a2 * (1.0 - s2 * s2) * xi
    out[0] = -g0 / n
    out[1] = -g1 / n
    out[2] = -g2 / n
    out[3] = -g3 / n


@njit(cache=True)
def _scipy_rhs(t, y, data):
    out = np.empty(4)
    nf4_field(y, data, out)
    return out


# --- solvers: each returns (y_final (n, 4), mean RHS evaluations per trajectory or None) ------

def solve_narrowflow(method, threads, profile=False):
    import narrowflow as nf
    from narrowflow import model

    flow = model.nf4_benchmark()

    def run(y0, rtol):
        res = nf.solve_ensemble(flow, y0, method=method, rtol=rtol, atol=rtol * 1e-2,
                                threads=threads, profile=profile)
        assert np.all(res.status == 0)
        run.last = res
        return res.y_final, float(res.nfev.mean())
    return run


def solve_scipy(y0, rtol, atol=None):
    from scipy.integrate import solve_ivp
    x, yd = nf4_data()
    data = np.concatenate([x, yd])
    out = np.empty_like(y0)
    nfev = 0
    for i, y in enumerate(y0):
        sol = solve_ivp(_scipy_rhs, (0.0, T1), y, method="DOP853", rtol=rtol,
                        atol=rtol * 1e-2 if atol is None else atol, args=(data,))
        out[i] = sol.y[:, -1]
        nfev += sol.nfev
    return out, nfev / len(y0)


def make_cyrk():
    import numba as nb
    from CyRK import nb_diffeq_addr, nbsolve2_ivp

    def diffeq(dy, t, y, args):
        n = 16
        a1, w1, a2, w2 = y[0], y[1], y[2], y[3]
        g0 = g1 = g2 = g3 = 0.0
        for i in range(n):
            xi = args[i]
            s1 = math.tanh(w1 * xi)
            s2 = math.tanh(w2 * xi)
            r = a1 * s1 + a2 * s2 - args[n + i]
            g0 += r * s1
            g1 += r * a1 * (1.0 - s1 * s1) * xi
            g2 += r * s2
            g3 += r * a2 * (1.0 - s2 * s2) * xi
        dy[0] = -g0 / n
        dy[1] = -g1 / n
        dy[2] = -g2 / n
        dy[3] = -g3 / n

    addr = nb_diffeq_addr(diffeq)

    @nb.njit
    def loop(y0, rtol, data, out):
        for i in range(y0.shape[0]):
            res = nbsolve2_ivp(addr, (0.0, T1), y0[i].copy(), method="DOP853", args=data,
                               rtol=rtol, atol=rtol * 1e-2)
            y = res.y
            for j in range(4):
                out[i, j] = y[j, y.shape[1] - 1]
            res.free()

    x, yd = nf4_data()
    data = np.concatenate([x, yd])

    def run(y0, rtol):
        out = np.empty_like(y0)
        loop(np.ascontiguousarray(y0), rtol, data, out)
        return out, None
    run(nf4_theta0(2), 1e-6)   # compile
    return run


_HEYOKA_WORKER = {}


def _heyoka_chunk(job):
    """Worker of make_heyoka's "processes" mode: (rtol, states) -> (final states, CPU s)."""
    rtol, y = job
    if "run" not in _HEYOKA_WORKER:
        _HEYOKA_WORKER["run"] = make_heyoka()
    c = time.process_time()
    out = _HEYOKA_WORKER["run"](y, rtol)[0]
    return out, time.process_time() - c


def make_heyoka(threads=1, mode="serial"):
    """heyoka's taylor_adaptive_batch over the ensemble in batches of its SIMD size.

    mode "serial": one integrator, the batches one after the other (one thread).
    mode "ensemble": heyoka's own parallel mode, ``ensemble_propagate_until_batch`` (one
    iteration per batch, a copy of the integrator each, ``algorithm="thread"``,
    ``max_workers=threads``); "ensemble-process": the same with ``algorithm="process"`` (one
    chunk of iterations per worker). mode "threads": `threads` Python threads, each with its
    own copy of the integrator, taking the next batch from a shared counter. mode
    "processes": a pool of `threads` processes kept between calls, each with its own
    integrators (built when a tolerance is first used: outside the timing), the ensemble in
    4 x `threads` chunks of whole batches: heyoka at its best on `threads` cores (start-up
    and compilation excluded). heyoka releases the GIL while it integrates (its Python
    threads keep 2 cores busy when the machine has them free)."""
    import copy
    import threading
    import heyoka as hy
    x, yd = nf4_data()
    n = len(x)
    a1, w1, a2, w2 = hy.make_vars("a1", "w1", "a2", "w2")
    s1 = [hy.tanh(w1 * float(xi)) for xi in x]
    s2 = [hy.tanh(w2 * float(xi)) for xi in x]
    r = [a1 * p + a2 * q - float(yi) for p, q, yi in zip(s1, s2, yd)]
    c = -1.0 / n
    rhs = [c * hy.sum([ri * p for ri, p in zip(r, s1)]),
           c * hy.sum([ri * a1 * (1.0 - p * p) * float(xi) for ri, p, xi in zip(r, s1, x)]),
           c * hy.sum([ri * q for ri, q in zip(r, s2)]),
           c * hy.sum([ri * a2 * (1.0 - q * q) * float(xi) for ri, q, xi in zip(r, s2, x)])]
    B = hy.recommended_simd_size()
    cache = {}

    def integrator(rtol):
        if rtol not in cache:
            ta = hy.taylor_adaptive_batch(list(zip([a1, w1, a2, w2], rhs)), np.zeros((4, B)),
                                          tol=rtol)
            cache[rtol] = [ta] + [copy.deepcopy(ta) for _ in range(threads - 1)]
        return cache[rtol]

    def batches(ta, y, out, ks):
        for k in ks:
            ta.set_time(0.0)
            ta.state[:] = y[k:k + B].T
            ta.propagate_until(T1)
            out[k:k + B] = ta.state.T

    warm = set()
    executor = []

    def pool():
        if not executor:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            executor.append(ProcessPoolExecutor(threads,
                                                mp_context=multiprocessing.get_context("spawn")))
        return executor[0]

    def run(y0, rtol):
        tas = integrator(rtol) if mode != "processes" else None
        n_traj = len(y0)
        pad = (-n_traj) % B
        y = np.concatenate([y0, np.zeros((pad, 4))])
        out = np.empty_like(y)
        if mode == "serial":
            batches(tas[0], y, out, range(0, len(y), B))
        elif mode in ("ensemble", "ensemble-process"):
            nb = len(y) // B

            def gen(ta, i):
                ta.set_time(0.0)
                ta.state[:] = y[i * B:(i + 1) * B].T
                return ta
            kw = (dict(algorithm="thread") if mode == "ensemble" else
                  dict(algorithm="process", chunksize=max(1, -(-nb // threads))))
            res = hy.ensemble_propagate_until_batch(tas[0], T1, nb, gen, max_workers=threads,
                                                    **kw)
            for i, r in enumerate(res):
                out[i * B:(i + 1) * B] = r[0].state.T
        elif mode == "processes":
            if rtol not in warm:
                # every worker builds its integrator for rtol before any timing
                list(pool().map(_heyoka_chunk, [(rtol, y[:B])] * (4 * threads)))
                warm.add(rtol)
            nb = len(y) // B
            cut = [B * (nb * j // (4 * threads)) for j in range(4 * threads + 1)]
            parts = list(pool().map(_heyoka_chunk, [(rtol, y[a:b])
                                                    for a, b in zip(cut, cut[1:]) if b > a]))
            out = np.concatenate([q[0] for q in parts])
            run.last_cpu = sum(q[1] for q in parts)     # the workers' CPU time
        else:
            lock = threading.Lock()
            nxt = iter(range(0, len(y), B))

            def work(ta):
                while True:
                    with lock:
                        k = next(nxt, None)
                    if k is None:
                        return
                    batches(ta, y, out, (k,))
            workers = [threading.Thread(target=work, args=(ta,)) for ta in tas]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
        return out[:n_traj], None
    run.batch = B
    run.integrator = integrator
    run.last_cpu = 0.0
    run.own_cpu = mode != "ensemble-process"   # CPU time known (ours, or the pool's workers')
    return run


# --- the benchmark ----------------------------------------------------------------------------

def reference(n_ref, T=T1):
    """(n_ref, 4): scipy DOP853 at rtol 1e-13, atol 1e-15 from nf4_theta0(n_ref) to t = T."""
    from scipy.integrate import solve_ivp
    x, yd = nf4_data()
    data = np.concatenate([x, yd])
    y0 = nf4_theta0(n_ref)
    ref = np.empty_like(y0)
    for i, y in enumerate(y0):
        ref[i] = solve_ivp(_scipy_rhs, (0.0, T), y, method="DOP853", rtol=1e-13, atol=1e-15,
                           args=(data,)).y[:, -1]
    return ref


def measure(run, n, rtol, ref, min_time=1.0, max_n=None, repeats=3, clock=time.perf_counter):
    """(throughput traj/s, max error vs ref, RHS evals per trajectory, n used).

    The ensemble grows until one run takes min_time; the throughput is the best of `repeats`
    runs (the machine is shared: the best run is the one least disturbed by other work).
    Also sets measure.median (median error) and measure.cpu (CPU seconds of the process
    over `clock` seconds in the best run: the cores it got).
    """
    run(nf4_theta0(min(n, 16)), rtol)   # warm up: compilation and caches stay out of the timing
    y0 = nf4_theta0(n)

    def timed():
        t, c = clock(), time.process_time()
        out = run(y0, rtol)
        return out, clock() - t, time.process_time() - c + getattr(run, "last_cpu", 0.0)
    (y, nfev), el, cpu = timed()
    # grow the ensemble until the timing is long enough to mean something
    while el < min_time and (max_n is None or n < max_n):
        n = min(2 * n, max_n) if max_n else 2 * n
        y0 = nf4_theta0(n)
        (y, nfev), el, cpu = timed()
    best, best_cpu = el, cpu
    for _ in range(repeats - 1):
        _, el, cpu = timed()
        if el < best:
            best, best_cpu = el, cpu
    per = np.abs(y[:len(ref)] - ref).max(axis=1)
    measure.median = float(np.median(per))
    measure.cpu = best_cpu / best if best > 0 else float("nan")
    return n / best, float(per.max()), nfev, n


def write_report(out, stem, md, data) -> Path:
    """Write the markdown `md` to out/stem.md and `data` to out/stem.json, print `md`; returns
    `out` (a Path, created if missing)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    print()
    print(md)
    return out


def interp_throughput(points, err):
    """log-log interpolation of throughput at `err` on a curve [(err, thr)], None outside."""
    pts = sorted((math.log(e), math.log(t)) for e, t in points if e > 0 and t > 0)
    le = math.log(err)
    for (e0, t0), (e1, t1) in zip(pts, pts[1:]):
        if e0 <= le <= e1 and e1 > e0:
            return math.exp(t0 + (t1 - t0) * (le - e0) / (e1 - e0))
    return None


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
        simd = "avx512f" if "avx512f" in flags else ("avx2" if "avx2" in flags else "sse")
    except OSError:
        simd = "?"
    return dict(cpu=cpu, simd=simd, cores=os.cpu_count(), python=sys.version.split()[0],
                platform=platform.platform())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ref", type=int, default=64, help="trajectories in the error reference")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    ap.add_argument("--taylor", action="store_true",
                    help="narrowflow taylor against heyoka batch, rtol 1e-6 ... 1e-13")
    ap.add_argument("--threads", type=int, default=1,
                    help="with --taylor: also both on this many threads (wall time)")
    ap.add_argument("--only-threads", action="store_true",
                    help="with --taylor --threads T: only the T-thread solvers")
    ap.add_argument("--from-json", default=None,
                    help="with --taylor: write the tables again from a run's saved json")
    args = ap.parse_args(argv)
    if args.taylor and args.from_json:
        path = Path(args.from_json)
        write_taylor_report(json.loads(path.read_text()), path.parent, path.stem,
                            figures=not args.no_figure)
        return 0
    if args.taylor:
        return main_taylor(args)
    rtols = (1e-6, 1e-8) if args.quick else (1e-6, 1e-8, 1e-10)
    # narrowflow also at half decades, so that every peer's error falls inside its curve
    own_rtols = sorted(set(rtols) | {1e-5, 1e-7, 1e-9, 1e-11}, reverse=True)
    if args.quick:
        own_rtols = sorted(set(rtols) | {1e-5, 1e-7, 1e-9}, reverse=True)
    n_ref = 32 if args.quick else args.ref
    min_time = 0.5 if args.quick else 1.0
    import narrowflow as nf
    versions = {"narrowflow": nf.__version__}
    solvers = {}
    for method in ("dp5", "tsit5", "dop853", "vern7", "taylor"):
        solvers[f"narrowflow {method}"] = (solve_narrowflow(method, 1), 512, None)
    solvers["narrowflow dop853 (2 threads)"] = (solve_narrowflow("dop853", 2), 512, None)
    import scipy
    versions["scipy"] = scipy.__version__
    solvers["scipy DOP853 + Numba RHS"] = (solve_scipy, n_ref, n_ref * 4)
    skipped = {}
    for name, make, mod in (("CyRK DOP853 (nbsolve2_ivp)", make_cyrk, "CyRK"),
                            ("heyoka Taylor batch", make_heyoka, "heyoka")):
        try:
            run = make()
            versions[mod] = __import__(mod).__version__
            solvers[name] = (run, 128, None)
        except Exception as exc:  # noqa: BLE001 - a missing or broken peer is reported, not fatal
            skipped[name] = f"{type(exc).__name__}: {exc}"[:200]
    for mod in ("numbalsoda", "diffrax"):
        try:
            __import__(mod)
            skipped[mod] = "importable, but no driver written here yet"
        except Exception as exc:  # noqa: BLE001
            skipped[mod] = f"not importable ({type(exc).__name__})"

    print(f"reference: scipy DOP853 rtol 1e-13 on {n_ref} trajectories ...", flush=True)
    ref = reference(n_ref)
    own = solve_narrowflow("dop853", 1)(nf4_theta0(n_ref), 1e-13)[0]
    ref_check = float(np.abs(own - ref).max())
    print(f"  narrowflow dop853 at rtol 1e-13 differs from it by {ref_check:.2e}")

    rows = []
    for name, (run, n0, max_n) in solvers.items():
        for rtol in (own_rtols if name.startswith("narrowflow") else rtols):
            n0_eff = max(n0, n_ref)
            thr, err, nfev, n = measure(run, n0_eff, rtol, ref, min_time, max_n, args.repeats)
            row = dict(solver=name, rtol=rtol, throughput=thr, error=err, nfev=nfev, n=n,
                       median_error=measure.median)
            if name.startswith("narrowflow") and hasattr(run, "last"):
                row["lane_occupancy"] = run.last.lane_occupancy
            rows.append(row)
            print(f"  {name:34s} rtol {rtol:.0e}: {thr:9.0f} traj/s  err {err:.2e}  "
                  f"nfev {nfev if nfev is None else round(nfev)}  (n={n})", flush=True)

    # fraction of narrowflow's time spent inside the right-hand side (timed call by call in
    # a separate profiled run: the timers cost a few per cent, kept out of the throughputs)
    for row in rows:
        if row["solver"].startswith("narrowflow") and row["rtol"] in rtols:
            method = row["solver"].split()[1]
            threads = 2 if "2 threads" in row["solver"] else 1
            prof = solve_narrowflow(method, threads, profile=True)
            prof(nf4_theta0(min(row["n"], 2048)), row["rtol"])
            row["rhs_share"] = prof.last.rhs_fraction

    peers = [r for r in rows if not r["solver"].startswith("narrowflow")]
    ours = {}
    for r in rows:
        if r["solver"].startswith("narrowflow"):
            ours.setdefault(r["solver"], []).append((r["error"], r["throughput"]))
    ratios = []
    for p in peers:
        for label, pick in (("1 thread", lambda k: "threads" not in k),
                            ("2 threads", lambda k: "2 threads" in k)):
            best, best_name = None, None
            for name, pts in ours.items():
                if pick(name):
                    t = interp_throughput(pts, p["error"])
                    if t is not None and (best is None or t > best):
                        best, best_name = t, name
            ratios.append(dict(ours=best_name or f"narrowflow ({label})", peer=p["solver"],
                               rtol=p["rtol"], error=p["error"],
                               ratio=None if best is None else best / p["throughput"]))

    md = render([r for r in rows if r["rtol"] in rtols], ratios, skipped, versions, ref_check,
                n_ref)
    out = write_report(args.out, "peers", md, dict(
        rows=rows, ratios=ratios, skipped=skipped, versions=versions, machine=machine(),
        reference_check=ref_check))
    if not args.no_figure:
        figure(rows, out / "work_precision.png")
        print(f"figure: {out / 'work_precision.png'}")
    return 0


def tight_reference(n_ref):
    """Reference for tolerances down to 1e-13: scipy DOP853 at its tightest rtol."""
    y0 = nf4_theta0(n_ref)
    return solve_scipy(y0, 2.3e-14, atol=1e-16)[0]


def main_taylor(args) -> int:
    """narrowflow's taylor (and dop853) against heyoka's batch mode, one thread each, in one run;
    with args.threads > 1 also both on that many threads.

    One thread: throughput per CPU second of the process (time.process_time), i.e. per core (on
    a shared machine wall time mostly measures the other jobs). Threads: per second of wall
    time (what parallelism buys), with the cores the process got (CPU / wall) recorded. At
    each rtol every solver is sized to one timing of min_time, then timed once per round,
    best of `repeats` rounds: the ratios compare runs made seconds apart."""
    import narrowflow as nf
    rtols = [10.0 ** -e for e in range(6, 14)]
    own = sorted({10.0 ** -(e / 2) for e in range(10, 30)}, reverse=True)   # 1e-5 ... 10**-14.5
    n_ref = args.ref
    min_time = 0.5 if args.quick else 1.0
    repeats = 2 if args.quick else args.repeats
    T = args.threads
    print(f"reference: scipy DOP853 rtol 2.3e-14 on {n_ref} trajectories ...", flush=True)
    ref = tight_reference(n_ref)
    checks = {"narrowflow taylor rtol 1e-15":
              float(np.abs(solve_narrowflow("taylor", 1)(nf4_theta0(n_ref), 1e-15)[0] - ref).max())}
    hy = make_heyoka()
    checks["heyoka tol 1e-16"] = float(np.abs(hy(nf4_theta0(n_ref), 1e-16)[0] - ref).max())
    for k, v in checks.items():
        print(f"  {k} differs from it by {v:.2e}", flush=True)
    import heyoka
    versions = {"narrowflow": nf.__version__, "heyoka": heyoka.__version__}
    cpu, wall = time.process_time, time.perf_counter
    # name: (run, rtols, threads, clock)
    solvers = {}
    if not args.only_threads:
        solvers = {"narrowflow taylor": (solve_narrowflow("taylor", 1), own, 1, cpu),
                   "narrowflow dop853": (solve_narrowflow("dop853", 1), rtols[:6], 1, cpu),
                   "heyoka Taylor batch": (hy, rtols, 1, cpu)}
    hy_threaded = [f"heyoka batch, ensemble_propagate threads ({T})",
                   f"heyoka batch, {T} Python threads",
                   f"heyoka batch, pool of {T} processes",
                   f"heyoka batch, ensemble_propagate processes ({T})"]
    if T > 1:
        solvers[f"narrowflow taylor ({T} threads)"] = (solve_narrowflow("taylor", T), own, T, wall)
        for name, mode, tols in zip(hy_threaded, ("ensemble", "threads", "processes",
                                                  "ensemble-process"),
                                    (rtols, rtols, rtols, [1e-8])):
            solvers[name] = (make_heyoka(T, mode), tols, T, wall)
    def cores(r):
        return "n/a" if r["cores"] is None else f"{r['cores']:.2f}"
    rows = []
    for rtol in own:
        # the solvers of this rtol in rounds: each sized to min_time (its first timing), then
        # repeats - 1 rounds of one timed run each, so that all of them see the machine in the
        # same minute; best of the rounds
        here = [(name, run, threads, clock) for name, (run, tols, threads, clock)
                in solvers.items() if any(math.isclose(rtol, r, rel_tol=1e-9) for r in tols)]
        st = {}
        for name, run, threads, clock in here:
            thr, err, nfev, n = measure(run, max(128, n_ref), rtol, ref, min_time, None, 1,
                                        clock=clock)
            st[name] = dict(solver=name, rtol=rtol, throughput=thr, error=err,
                            median_error=measure.median, nfev=nfev, n=n, threads=threads,
                            clock="cpu" if clock is cpu else "wall",
                            cores=measure.cpu if getattr(run, "own_cpu", True) else None,
                            steps=(float(run.last.n_accepted.mean())
                                   if hasattr(run, "last") else None))
        for _ in range(repeats - 1):
            for name, run, threads, clock in here:
                r = st[name]
                y0 = nf4_theta0(r["n"])
                t, c = clock(), time.process_time()
                run(y0, rtol)
                el, c = clock() - t, time.process_time() - c + getattr(run, "last_cpu", 0.0)
                if r["n"] / el > r["throughput"]:
                    r["throughput"] = r["n"] / el
                    if r["cores"] is not None:
                        r["cores"] = c / el
        for name, *_ in here:
            r = st[name]
            r["load"] = os.getloadavg()[0]
            rows.append(r)
            print(f"  {name:44s} rtol {rtol:.1e}: {r['throughput']:9.0f} traj/s  max err "
                  f"{r['error']:.2e}  median {r['median_error']:.2e}  (n={r['n']}, {r['clock']}, "
                  f"cores {cores(r)}, load {r['load']:.1f})", flush=True)


    m = machine()
    report = dict(rows=rows, threads=T, checks=checks, versions=versions, machine=m,
                  n_ref=n_ref, solvers=list(solvers), peers_threads=hy_threaded)
    write_taylor_report(report, Path(args.out), "taylor_threads%d" % T if args.only_threads
                        else "taylor", figures=not args.no_figure)
    return 0


def _curve(rows, min_cores=None):
    """[(max error, throughput)] of one solver's rows; rows of equal error (the same order:
    the same computation) are one point, the geometric mean of their throughputs; with
    min_cores only the rows that got at least that many cores."""
    by_err = {}
    for r in rows:
        if min_cores is not None and (r["cores"] is None or r["cores"] < min_cores):
            continue
        by_err.setdefault(r["error"], []).append(r["throughput"])
    return [(e, math.exp(sum(map(math.log, ts)) / len(ts))) for e, ts in by_err.items()]


def compare_taylor(rows, ours, peers_, rtols, min_cores=None):
    """Per heyoka rtol: narrowflow (solver `ours`) at the same rtol and at the max error of the
    fastest of `peers_` (log-log interpolation of `ours`' curve, no extrapolation). With
    min_cores (threads): the curve uses only rows that got that many cores, and `valid` says
    whether both rows at this rtol did."""
    tay = [r for r in rows if r["solver"] == ours]
    curve = _curve(tay, min_cores)
    out = []
    for rtol in rtols:
        hs = [r for r in rows if r["solver"] in peers_ and math.isclose(r["rtol"], rtol)]
        if not hs:
            continue
        h = max(hs, key=lambda r: r["throughput"])
        same = min(tay, key=lambda r: abs(math.log(r["rtol"] / rtol)))
        at = interp_throughput(curve, h["error"])
        valid = min_cores is None or all(
            r["cores"] is None or r["cores"] >= min_cores for r in (h, same))
        out.append(dict(rtol=rtol, peer=h["solver"], heyoka=h["throughput"],
                        heyoka_all={r["solver"]: r["throughput"] for r in hs},
                        heyoka_cores=h["cores"], taylor_cores=same["cores"], valid=valid,
                        heyoka_max=h["error"], heyoka_median=h["median_error"],
                        taylor=same["throughput"], taylor_max=same["error"],
                        taylor_median=same["median_error"],
                        ratio_same_rtol=same["throughput"] / h["throughput"],
                        ratio_equal_max_error=None if at is None else at / h["throughput"]))
    return out


def write_taylor_report(report, out, stem, figures=True):
    """Tables (stem.md), raw numbers (stem.json) and figure of a --taylor run."""
    rows, T, m = report["rows"], report["threads"], report["machine"]
    rtols = [10.0 ** -e for e in range(6, 14)]
    solvers, hy_threaded = report["solvers"], report["peers_threads"]
    cmp = compare_taylor(rows, "narrowflow taylor", ["heyoka Taylor batch"], rtols)
    cmp_t = (compare_taylor(rows, f"narrowflow taylor ({T} threads)", hy_threaded, rtols,
                            min_cores=0.9 * T) if T > 1 else [])

    def cores(x):
        return "n/a" if x is None else f"{x:.2f}"

    def eq(c):
        return "n/a" if c["ratio_equal_max_error"] is None else f"{c['ratio_equal_max_error']:.2f}"
    loads = [r["load"] for r in rows]
    lines = [f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores; one thread: throughput "
             f"per CPU second (process_time), threads: per wall second; load average during the "
             f"run {min(loads):.1f}-{max(loads):.1f}; "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
             f"Reference: scipy DOP853 rtol 2.3e-14 atol 1e-16 on {report['n_ref']} "
             "trajectories; " + "; ".join(f"{k}: {v:.1e} from it"
                                          for k, v in report["checks"].items()), ""]
    if cmp:
        lines += ["| rtol | heyoka traj/s | heyoka max / median err | taylor traj/s | taylor max / "
                  "median err | ratio, same rtol | ratio at heyoka's max error |",
                  "|---|---|---|---|---|---|---|"]
    for c in cmp:
        lines.append(f"| {c['rtol']:.0e} | {c['heyoka']:.0f} | {c['heyoka_max']:.1e} / "
                     f"{c['heyoka_median']:.1e} | {c['taylor']:.0f} | {c['taylor_max']:.1e} / "
                     f"{c['taylor_median']:.1e} | {c['ratio_same_rtol']:.2f} | {eq(c)} |")
    if cmp_t:
        names = hy_threaded[:3]
        lines += ["", f"{T} threads, throughput per second of wall time; ratios against the "
                  f"fastest of heyoka's {T}-thread drivers (cores: CPU time over wall time of "
                  f"that row; the curve at heyoka's error uses only taylor rows with at least "
                  f"{0.9 * T:.1f} cores; *: a row of this rtol got fewer):", "",
                  "| rtol | " + " | ".join(f"{k} traj/s" for k in names)
                  + f" | heyoka max / median err | taylor {T} threads traj/s | taylor max / "
                  "median err | cores taylor / heyoka | ratio, same rtol | ratio at heyoka's max "
                  "error |", "|---|" + "---|" * (len(names) + 7)]
        for c in cmp_t:
            star = "" if c["valid"] else " *"
            lines.append(f"| {c['rtol']:.0e} | "
                         + " | ".join(f"{c['heyoka_all'].get(k, float('nan')):.0f}"
                                      for k in names)
                         + f" | {c['heyoka_max']:.1e} / {c['heyoka_median']:.1e} | "
                         f"{c['taylor']:.0f} | {c['taylor_max']:.1e} / {c['taylor_median']:.1e}"
                         f" | {cores(c['taylor_cores'])} / {cores(c['heyoka_cores'])} | "
                         f"{c['ratio_same_rtol']:.2f}{star} | {eq(c)}{star} |")
    lines += ["", "| solver | rtol | traj/s | clock | cores used | max error | median error | "
              "steps/traj |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (solvers.index(r["solver"]), -r["rtol"])):
        st = "" if r["steps"] is None else f"{r['steps']:.0f}"
        lines.append(f"| {r['solver']} | {r['rtol']:.1e} | {r['throughput']:.0f} | {r['clock']} | "
                     f"{cores(r['cores'])} | {r['error']:.2e} | {r['median_error']:.2e} | {st} |")
    md = "\n".join(lines) + "\n"
    write_report(out, stem, md, dict(report, compare=cmp, compare_threads=cmp_t))
    if figures:
        figure(rows, out / f"{stem}_work_precision.png",
               title="NF4 work-precision: taylor vs heyoka"
               + (" (one thread: per CPU s; threads: per wall s)" if T > 1 else " (one thread)"))
        print(f"figure: {out / f'{stem}_work_precision.png'}")


def render(rows, ratios, skipped, versions, ref_check, n_ref) -> str:
    m = machine()
    lines = [f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores, Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"Reference: scipy DOP853 rtol 1e-13 atol 1e-15 on {n_ref} trajectories "
             f"(narrowflow dop853 at 1e-13 agrees to {ref_check:.1e}).", "",
             "| solver | rtol | traj/s | max error | median error | RHS evals/traj | "
             "time outside RHS |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        nfev = "n/a" if r["nfev"] is None else f"{r['nfev']:.0f}"
        share = f"{1 - r['rhs_share']:.0%}" if "rhs_share" in r else ""
        lines.append(f"| {r['solver']} | {r['rtol']:.0e} | {r['throughput']:.0f} | "
                     f"{r['error']:.2e} | {r.get('median_error', float('nan')):.2e} | {nfev} | "
                     f"{share} |")
    lines += ["", "Throughput ratio of the fastest narrowflow method / peer at the peer's error "
              "(log-log interpolation of narrowflow's curve; n/a: outside its measured range). "
              "Peers run on one thread:", "",
              "| narrowflow | peer | peer rtol | peer error | ratio |", "|---|---|---|---|---|"]
    for r in ratios:
        val = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"| {r['ours']} | {r['peer']} | {r['rtol']:.0e} | {r['error']:.2e} | {val} |")
    if skipped:
        lines += ["", "Skipped peers: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())]
    return "\n".join(lines) + "\n"


def figure(rows, path, title="NF4 work-precision (rtol 1e-6, 1e-8, 1e-10)"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = list(dict.fromkeys(r["solver"] for r in rows))
    for i, name in enumerate(names):
        pts = sorted((r["error"], r["throughput"]) for r in rows if r["solver"] == name)
        style = "-o" if name.startswith("narrowflow") else "--s"
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], style, label=name, color=f"C{i}")
    ax.set_xlabel("max error of final states vs DOP853 reference")
    ax.set_ylabel("trajectories per second")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
