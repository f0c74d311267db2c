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
    args = ap.parse_args(argv)

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
