"""Distributed (Dask + Zarr) against the in-process solver on the NF4 ensemble.

    python benchmarks/bench_distributed.py                 # N = 10^6, t in [0, 100]
    python benchmarks/bench_distributed.py -n 200000 --repeat 2

Measures, on the same machine and in the same run, alternating the two to spread the
noise of a shared machine over both:
  * in-process: ``solve_ensemble(flow, theta0, threads=T)`` (theta0 sampled beforehand);
  * distributed: ``solve_distributed(..., seed, n)`` on a LocalCluster of one worker process
    with T threads (tasks run their kernel on one thread each), into a fresh Zarr store;
    this includes sampling the initial states in the tasks, scheduling, and writing.
Prints throughput (trajectories/s) of both and their ratio, the CPU time of both (for the
distributed run: client + scheduler + worker processes; less sensitive than wall time to
other jobs on a shared machine), the time split of the tasks
(prepare = open store + sample initial states, solve, write), and the per-chunk overhead
measured end to end from many near-empty chunks (N = 1024, chunk = 1, t in [0, 1e-3]).
The results of both paths are checked bitwise equal.

    python benchmarks/bench_distributed.py --slots 2,4,8,16 -n 200000 --overhead-chunks 256

Scaling mode: for each S, a LocalCluster of S worker processes x 1 thread, the default chunk
for S slots (default_chunk), against the in-process run on --threads threads; prints the
efficiency (in-process wall / distributed wall, and the CPU-time ratio), the tasks' split, and
the per-chunk overhead (near-empty chunks). On a machine with fewer cores than S the slots
are oversubscribed: the figure then measures overhead and scheduling, not parallel speed-up.
Then the efficiency model (see `model`) predicts S slots on S cores from these measurements.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    """CPU seconds (user + system) used so far by this process, all threads."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def model(n: int, slots: int, c: float, overhead: float, cv: float, chunk: int | None = None,
          dispatch: float = 0.0) -> dict:
    """Predicted efficiency of a distributed run on `slots` dedicated cores against a perfectly
    scaling in-process run on as many threads (T_ideal = n c / slots).

    Tasks: the default chunking for `slots` (or `chunk`); task k costs size_k * c * (1 + cv
    z_k) + overhead thread-seconds (c: seconds per trajectory on one core; overhead: per-task
    thread-seconds outside the kernel; cv: the spread of a chunk's cost per trajectory,
    z_k = +-1 alternating in submission order, a pessimistic pattern), dispatched in order
    to the first free slot (Dask's default for independent tasks) after `dispatch` seconds
    of scheduling per task on the client/scheduler. Returns the waves (tasks / slots), the
    makespan, the ideal time, the efficiency and its three losses: overhead (all tasks'
    overhead / slots / T_ideal), tail (slot time idle at the end / slots / T_ideal) and
    the rest.
    """
    import heapq
    from narrowflow import distributed as D
    from narrowflow import ensemble
    from narrowflow.model import nf4_benchmark
    if chunk is None:
        chunk = D.default_chunk(ensemble.make_problem(nf4_benchmark()), n, slots)
    sizes = [min(chunk, n - lo) for lo in range(0, n, chunk)]
    free = [0.0] * slots
    heapq.heapify(free)
    ends = []
    for k, m in enumerate(sizes):
        start = max(heapq.heappop(free), k * dispatch)
        end = start + m * c * (1 + cv * (1 if k % 2 else -1)) + overhead
        heapq.heappush(free, end)
        ends.append(end)
    makespan = max(ends)
    ideal = n * c / slots
    over = len(sizes) * overhead / slots
    idle = sum(makespan - t for t in free) / slots
    return {"slots": slots, "tasks": len(sizes), "chunk": chunk,
            "waves": len(sizes) / slots, "makespan": makespan, "ideal": ideal,
            "efficiency": ideal / makespan, "overhead_loss": over / makespan,
            "tail_loss": idle / makespan}


def scaling(args, flow, opts, base):
    """--slots: efficiency and overhead per chunk at each slot count, then the model."""
    import os

    from distributed import Client, LocalCluster

    import narrowflow as nf
    from narrowflow import distributed as D
    from narrowflow import initial
    N, T, seed = args.n, args.threads, 12345
    theta0 = initial.sample(N, flow.n_params, seed)
    nf.solve_ensemble(flow, theta0[:64], threads=T, **opts)          # warm
    c0 = _cpu()
    t = time.perf_counter()
    ref = nf.solve_ensemble(flow, theta0, threads=T, seed=seed, **opts)
    t_in = time.perf_counter() - t
    cpu_in = _cpu() - c0
    c_core = cpu_in / N                     # CPU seconds per trajectory (one core)
    print(f"in-process: {t_in:.2f} s on {T} threads = {N / t_in:.0f} traj/s; "
          f"{1e6 * c_core:.1f} us of CPU per trajectory; {os.cpu_count()} cores here")
    rows = []
    for S in args.slots:
        cluster = LocalCluster(n_workers=S, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        try:
            client.wait_for_workers(S)
            D.solve_distributed(flow, seed=1, n=4 * S, chunk=1, store=base / f"w{S}.zarr",
                                client=client, overwrite=True, **opts)       # warm workers
            store = base / f"s{S}.zarr"
            c = _cpu() + sum(client.run(_cpu).values())
            t = time.perf_counter()
            run = D.solve_distributed(flow, seed=seed, n=N, store=store, client=client,
                                      overwrite=True, slots=S, **opts)
            t_d = time.perf_counter() - t
            cpu_d = _cpu() + sum(client.run(_cpu).values()) - c
            got = run.to_result()
            same = all(np.array_equal(getattr(got, k), getattr(ref, k), equal_nan=k != "status")
                       for k in ("y_final", "t_final", "status", "nfev", "loss_final"))
            # the spread of a chunk's cost from its thread's CPU time (not wall: load-proof)
            per = np.array([x["solve_cpu_s"] / x["n"] for x in run.tasks])
            cv = float(per.std() / per.mean()) if per.size > 1 else 0.0
            kernel = sum(x["solve_cpu_s"] for x in run.tasks) / cpu_in   # vs in-process
            M = args.overhead_chunks
            c = _cpu() + sum(client.run(_cpu).values())
            t = time.perf_counter()
            ov = D.solve_distributed(flow, seed=2, n=M, chunk=1, store=base / f"o{S}.zarr",
                                     client=client, overwrite=True, t_span=(0.0, 1e-3))
            wall_ov = time.perf_counter() - t
            cpu_ov = _cpu() + sum(client.run(_cpu).values()) - c
            inside = np.median([x["prepare_s"] + x["solve_s"] + x["write_s"]
                                for x in ov.tasks])
        finally:
            client.close()
            cluster.close()
        eff, eff_cpu = t_in / t_d, cpu_in / cpu_d
        thread_ov = cpu_ov / M          # CPU of client, scheduler and workers per chunk
        rows.append(dict(S=S, chunks=run.n_chunks, chunk=run.chunk, eff=eff, eff_cpu=eff_cpu,
                         ov_wall=wall_ov / M, ov_thread=thread_ov, ov_inside=inside, cv=cv,
                         kernel=kernel, same=same))
        print(f"S={S:2d}: {run.n_chunks} chunks of {run.chunk} ({run.n_chunks / S:.1f} "
              f"waves); distributed {t_d:.2f} s; efficiency (wall) {eff:.3f}, CPU-time ratio "
              f"{eff_cpu:.3f}; overhead per chunk {1e3 * wall_ov / M:.2f} ms wall = "
              f"{1e3 * thread_ov:.2f} ms of CPU ({1e3 * inside:.2f} ms wall inside the task); "
              f"cost spread between chunks {100 * cv:.1f} %; kernel CPU vs in-process "
              f"{kernel:.3f}; bitwise equal: {same}", flush=True)
    # the model: per-trajectory cost, overhead and spread measured here without
    # oversubscription (S <= cores; else the smallest S), for S dedicated cores
    fit = [r for r in rows if r["S"] <= (os.cpu_count() or 1)] or rows[:1]
    ov = float(np.median([r["ov_thread"] for r in fit]))
    cv = float(np.median([r["cv"] for r in fit]))
    kf = float(np.median([r["kernel"] for r in fit]))
    c_task = c_core * kf                    # a trajectory's CPU inside a task
    print(f"model inputs: c = {1e6 * c_core:.1f} us/trajectory (one core, in-process), "
          f"x {kf:.3f} inside tasks; overhead {1e3 * ov:.2f} ms of CPU per chunk; spread "
          f"{100 * cv:.1f} %")
    for S in sorted(set(args.slots) | {16}):
        for n in sorted({N, 4 * 10**5, 10**6}):
            m = model(n, S, c_task, ov, cv)
            m["efficiency"] *= c_core / c_task      # against in-process speed
            print(f"  predicted S={S:2d} N={n:>8d}: {m['tasks']} chunks of {m['chunk']} "
                  f"({m['waves']:.1f} waves): efficiency {m['efficiency']:.3f} (overhead "
                  f"{m['overhead_loss']:.3f}, tail {m['tail_loss']:.3f}); old chunking "
                  f"(N/32, power of 2): "
                  f"{model(n, S, c_task, ov, cv, chunk=_old_chunk(n))['efficiency'] * c_core / c_task:.3f}")
    return rows


def _old_chunk(n: int) -> int:
    c = min(65536, max(4096, n // 32))
    return min(1 << (c.bit_length() - 1), n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10**6, help="trajectories (default 10^6)")
    ap.add_argument("--chunk", type=int, default=None, help="trajectories per task "
                    "(default: solve_distributed's default_chunk, about N/32)")
    ap.add_argument("--t1", type=float, default=100.0, help="end time (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="threads of both paths (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="alternating repetitions")
    ap.add_argument("--task-threads", type=int, default=1,
                    help="OpenMP threads per task; the worker gets threads/task-threads Dask "
                         "threads (default 1: two 1-thread tasks at once on 2 threads)")
    ap.add_argument("--overhead-chunks", type=int, default=1024,
                    help="near-empty chunks for the per-chunk overhead (0: skip)")
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    ap.add_argument("--slots", default=None, help="scaling mode: comma-separated worker slot "
                    "counts (e.g. 2,4,8,16), each a LocalCluster of that many 1-thread workers")
    args = ap.parse_args(argv)
    if args.slots:
        args.slots = [int(x) for x in args.slots.split(",")]
        from narrowflow.model import nf4_benchmark
        base = Path(args.dir or tempfile.mkdtemp(prefix="nf-bench-dist-"))
        base.mkdir(parents=True, exist_ok=True)
        try:
            scaling(args, nf4_benchmark(), dict(method="dop853", t_span=(0.0, args.t1),
                                                rtol=1e-8, atol=1e-10), base)
        finally:
            if args.dir is None:
                shutil.rmtree(base, ignore_errors=True)
        return

    import distributed
    from distributed import Client, LocalCluster

    import narrowflow as nf
    from narrowflow import distributed as D
    from narrowflow import initial
    from narrowflow.model import nf4_benchmark

    flow = nf4_benchmark()
    N, T, seed = args.n, args.threads, 12345
    opts = dict(t_span=(0.0, args.t1), rtol=1e-8, atol=1e-10)
    base = Path(args.dir or tempfile.mkdtemp(prefix="nf-bench-dist-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"NF4 dp5 rtol 1e-8 atol 1e-10 t in [0, {args.t1:g}], N = {N}, {T} threads; "
          f"narrowflow {nf.__version__}, dask.distributed {distributed.__version__}; one worker "
          f"process running {T // args.task_threads} task(s) of {args.task_threads} thread(s)")

    TT = args.task_threads
    if T % TT:
        ap.error("--threads must be a multiple of --task-threads")
    cluster = LocalCluster(n_workers=1, threads_per_worker=T // TT, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        # warm up both paths (Numba cache load / compile, kernel import) on tiny problems
        warm = nf.solve_ensemble(flow, initial.sample(64, 4, 1), threads=T, **opts)
        D.solve_distributed(flow, seed=1, n=64, store=base / "warm.zarr", client=client,
                            overwrite=True, **opts)
        assert warm.n_trajectories == 64

        t = time.perf_counter()
        theta0 = initial.sample(N, flow.n_params, seed)
        t_sample = time.perf_counter() - t
        rows = []
        for r in range(args.repeat):
            c = _cpu()
            t = time.perf_counter()
            ref = nf.solve_ensemble(flow, theta0, threads=T, seed=seed, **opts)
            t_in = time.perf_counter() - t
            c_in = _cpu() - c
            store = base / f"dist{r}.zarr"
            if store.exists():
                shutil.rmtree(store)
            c = _cpu() + sum(client.run(_cpu).values())
            t = time.perf_counter()
            run = D.solve_distributed(flow, seed=seed, n=N, store=store, chunk=args.chunk,
                                      client=client, threads_per_task=TT, **opts)
            t_dist = time.perf_counter() - t
            c_dist = _cpu() + sum(client.run(_cpu).values()) - c
            got = run.to_result()
            same = all(np.array_equal(getattr(got, k), getattr(ref, k), equal_nan=k != "status")
                       for k in ("y_final", "t_final", "status", "nfev", "loss_final",
                                 "escape_time") if getattr(ref, k) is not None)
            tasks = run.tasks
            split = {k: sum(x[k] for x in tasks) for k in ("prepare_s", "solve_s", "write_s")}
            rows.append((t_in, t_dist, c_in, c_dist))
            print(f"[{r}] in-process {t_in:8.2f} s = {N / t_in:9.0f} traj/s | distributed "
                  f"{t_dist:8.2f} s = {N / t_dist:9.0f} traj/s ({run.n_chunks} chunks of "
                  f"{run.chunk}) | ratio {t_in / t_dist:.3f} | CPU s {c_in:.1f} vs {c_dist:.1f} "
                  f"(client + scheduler + worker), ratio {c_in / c_dist:.3f} | bitwise equal: "
                  f"{same}")
            print(f"     task time (summed over {len(tasks)} tasks): prepare "
                  f"{split['prepare_s']:.2f} s, solve {split['solve_s']:.2f} s, write "
                  f"{split['write_s']:.2f} s; sampling N states in one process: {t_sample:.2f} s")
        t_in, t_dist, c_in, c_dist = np.median(np.array(rows), axis=0)
        ratios = [a / b for a, b, _, _ in rows]
        print(f"median: in-process {N / t_in:.0f} traj/s, distributed {N / t_dist:.0f} traj/s, "
              f"distributed / in-process throughput = {t_in / t_dist:.3f} (per repetition: "
              f"{', '.join(f'{x:.3f}' for x in ratios)}); CPU time in-process / distributed = "
              f"{c_in / c_dist:.3f}")

        if args.overhead_chunks:
            M = args.overhead_chunks
            store = base / "overhead.zarr"
            t = time.perf_counter()
            run = D.solve_distributed(flow, seed=2, n=M, store=store, chunk=1, client=client,
                                      overwrite=True, t_span=(0.0, 1e-3))
            wall = time.perf_counter() - t
            prep = np.median([x["prepare_s"] for x in run.tasks])
            wr = np.median([x["write_s"] for x in run.tasks])
            sol = np.median([x["solve_s"] for x in run.tasks])
            print(f"per-chunk overhead: {M} near-empty chunks in {wall:.2f} s = "
                  f"{1e3 * wall / M:.2f} ms of wall time per chunk with {T} worker threads "
                  f"({1e3 * wall * T / M:.2f} ms of thread time); inside a task (median): "
                  f"prepare {1e3 * prep:.2f} ms, solve {1e3 * sol:.2f} ms, write "
                  f"{1e3 * wr:.2f} ms")
    finally:
        client.close()
        cluster.close()
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
