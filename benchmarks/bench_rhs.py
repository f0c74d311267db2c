"""Cost of the compiled right-hand sides per lane, and their compile / cached-load times.

    python benchmarks/bench_rhs.py [--repeats 200000] [--wide]
    python benchmarks/bench_rhs.py --compile [--rounds 7]

Prints, for the NF4 benchmark problem (docs/design.md §6), the time per lane-RHS of the
flow and loss cfuncs called through their C address from nogil Cython, for
lane counts 1..64 (the per-lane cost must fall once the lane loop vectorizes),
next to the same evaluation by numpy (the model layer) and, as a scalar
reference, a Numba function calling math.tanh. Then the cost of the `jacobian`
cfunc (J = −∇²L per lane) at 16 lanes as a multiple of the flow's ("a Hessian
costs X RHS evaluations"; with --wide also for a p = 65 network: width 16, d = 2,
k = 1, bias), and the first-call compile time and the cached-load time of
`compile_network`, each in a fresh process.

--compile measures only the code-generation choice of narrowflow.rhs: the
first compile of flow + loss (fresh NARROWFLOW_CACHE_DIR and NUMBA_CACHE_DIR,
fresh process, imports excluded) for NF4 and two width-64 networks, and the ns
per lane-RHS of the flow at 16 lanes with neurons unrolled and with the neuron
loop, best of alternating rounds in one process (NF4, p = 4 unrolled by default,
and networks around the threshold `_UNROLL_MAX_PARAMS`).
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

from narrowflow import model, rhs
from narrowflow._ext import rhscall

_LOAD_JAC = ("import time; import narrowflow as nf; from narrowflow import rhs, model; "
             "F=rhs.compile_network(model.nf4_benchmark()); t=time.perf_counter(); F.jacobian_address; "
             "print(time.perf_counter()-t)")
_LOAD = ("import time; t=time.perf_counter(); import narrowflow as nf; from narrowflow import rhs, model; "
         "F=rhs.compile_network(model.nf4_benchmark()); F.flow_address; F.loss_address; "
         "print(time.perf_counter()-t)")


@njit(error_model="numpy")
def _scalar_libm_flow(th, x, y, out):
    a1, w1, a2, w2 = th[0], th[1], th[2], th[3]
    g = np.zeros(4)
    for i in range(x.size):
        s1, s2 = math.tanh(w1 * x[i]), math.tanh(w2 * x[i])
        r = a1 * s1 + a2 * s2 - y[i]
        g[0] -= r * s1
        g[1] -= r * a1 * (1 - s1 * s1) * x[i]
        g[2] -= r * s2
        g[3] -= r * a2 * (1 - s2 * s2) * x[i]
    for c in range(4):
        out[c] = g[c] / x.size


def _jacobian_vs_flow(flow, lanes: int, repeats: int, rng, rounds: int = 5):
    """Best-of-`rounds` seconds per lane-evaluation of flow and jacobian, measured alternately."""
    F, prm, p = rhs.compile_network(flow), rhs.pack_params(flow), flow.n_params
    y = rng.normal(size=p * lanes)
    reps_f = max(repeats // lanes, 10)
    reps_j = max(repeats // (lanes * p), 10)
    t_flow, t_jac = [], []
    for _ in range(rounds):
        t_flow.append(rhscall.time_per_call(F.flow_address, lanes, y, prm, p, reps_f) / lanes)
        t_jac.append(rhscall.time_per_call(F.jacobian_address, lanes, y, prm, p * p, reps_j) / lanes)
    return min(t_flow), min(t_jac)


_FIRST_COMPILE = ("import sys, time; from narrowflow import model, rhs; "
                  "d, m, k, b = map(int, sys.argv[1:]); "
                  "net = model.Network(width=m, input_dim=d, output_dim=k, activation='tanh', bias=bool(b)); "
                  "t = time.perf_counter(); F = rhs.compile_network(net); F.flow_address; F.loss_address; "
                  "print(time.perf_counter() - t, F.unrolled)")


def _compile_and_forms(rounds: int) -> None:
    """First compile per architecture (fresh process and caches); unrolled vs neuron loop speed."""
    import os
    print("first compile of flow + loss (fresh process, empty caches, imports excluded)")
    for d, m, k, b in ((1, 2, 1, 0), (1, 64, 1, 0), (2, 64, 1, 1)):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NARROWFLOW_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
            out = subprocess.check_output([sys.executable, "-c", _FIRST_COMPILE, *map(str, (d, m, k, b))],
                                          env=env, text=True).split()
        form = "unrolled" if out[1] == "True" else "neuron loop"
        print(f"  d={d} m={m:>2} k={k} bias={bool(b)!s:5} ({form}): {float(out[0]):6.2f} s")
    print(f"flow at 16 lanes, ns per lane-RHS, best of {rounds} alternating rounds (n = 16)")
    rng = np.random.default_rng(2)
    lanes = 16
    for d, m, k, b in ((1, 2, 1, 0), (1, 4, 1, 0), (2, 2, 1, 1), (1, 5, 1, 0), (1, 3, 1, 1), (1, 16, 1, 0)):
        if (d, m, k, b) == (1, 2, 1, 0):
            prob, name = model.nf4_benchmark(), "NF4"
        else:
            net = model.Network(width=m, input_dim=d, output_dim=k, activation="tanh", bias=bool(b))
            prob = model.GradientFlow(net, model.Dataset(rng.normal(size=(16, d)), rng.normal(size=(16, k))))
            name = f"d={d} m={m} k={k} bias={bool(b)}"
        prm, p = rhs.pack_params(prob), prob.n_params
        forms = {u: rhs.NetworkFunctions(prob.network, unroll=u).flow_address for u in (True, False)}
        y = rng.normal(size=p * lanes)
        reps = max(2_000_000 // (lanes * p), 10)
        best = {True: math.inf, False: math.inf}
        for _ in range(rounds):
            for u, address in forms.items():
                best[u] = min(best[u], rhscall.time_per_call(address, lanes, y, prm, p, reps) / lanes)
        default = "unrolled" if rhs._unrolls(d, m, k, bool(b)) else "loop"
        print(f"  {name:<24} p={p:>3}: unrolled {best[True] * 1e9:7.1f}  neuron loop {best[False] * 1e9:7.1f}"
              f"  loop/unrolled {best[False] / best[True]:.2f}  (default: {default})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200_000, help="lane-evaluations per measurement")
    ap.add_argument("--wide", action="store_true",
                    help="also the jacobian of a p = 65 network (compiling its flow takes ~10 s)")
    ap.add_argument("--compile", action="store_true",
                    help="only: first-compile times (NF4, width 64) and unrolled vs neuron-loop flow speed")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds for --compile's speed table")
    args = ap.parse_args(argv)
    if args.compile:
        _compile_and_forms(args.rounds)
        return
    flow = model.nf4_benchmark()
    F, prm = rhs.compile_network(flow), rhs.pack_params(flow)
    rng = np.random.default_rng(0)
    print("NF4 (n=16, p=4), ns per lane-evaluation, one thread")
    print(f"{'lanes':>6} {'flow':>8} {'loss':>8}")
    for lanes in (1, 2, 4, 8, 16, 32, 64):
        y = rng.normal(size=4 * lanes)
        reps = max(args.repeats // lanes, 10)
        t_flow = rhscall.time_per_call(F.flow_address, lanes, y, prm, 4, reps) / lanes
        t_loss = rhscall.time_per_call(F.loss_address, lanes, y, prm, 1, reps) / lanes
        print(f"{lanes:>6} {t_flow * 1e9:>8.1f} {t_loss * 1e9:>8.1f}")
    th = rng.normal(size=4)
    out = np.empty(4)
    x, yv = flow.data.x[:, 0].copy(), flow.data.y[:, 0].copy()
    _scalar_libm_flow(th, x, yv, out)
    reps = 20_000
    t0 = time.perf_counter()
    for _ in range(reps):
        _scalar_libm_flow(th, x, yv, out)
    t_libm = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(2000):
        flow.grad(th)
    t_np = (time.perf_counter() - t0) / 2000
    print(f"scalar Numba with math.tanh (incl. Python call overhead): {t_libm * 1e9:.0f} ns")
    print(f"numpy model layer flow.grad: {t_np * 1e9:.0f} ns")
    problems = [("NF4 (p=4)", flow)]
    if args.wide:
        wrng = np.random.default_rng(1)
        net = model.Network(width=16, input_dim=2, output_dim=1, activation="tanh", bias=True)
        problems.append(("width 16, d=2, k=1, bias (p=65, n=16)",
                         model.GradientFlow(net, model.Dataset(wrng.normal(size=(16, 2)),
                                                               wrng.normal(size=(16, 1))))))
    for name, prob in problems:
        t_flow, t_jac = _jacobian_vs_flow(prob, 16, args.repeats // 4, rng)
        print(f"jacobian (J = -Hessian) {name}, 16 lanes: {t_jac * 1e9:.0f} ns per lane vs flow "
              f"{t_flow * 1e9:.0f} ns: a Hessian costs {t_jac / t_flow:.2f} RHS evaluations")
    with tempfile.TemporaryDirectory() as cache:
        env = {"NARROWFLOW_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
        import os
        env = {**os.environ, **env}
        first = float(subprocess.check_output([sys.executable, "-c", _LOAD], env=env, text=True))
        again = float(subprocess.check_output([sys.executable, "-c", _LOAD], env=env, text=True))
        jac = float(subprocess.check_output([sys.executable, "-c", _LOAD_JAC], env=env, text=True))
    print(f"compile_network(NF4) flow+loss: first call {first:.2f} s, cached load {again:.2f} s "
          f"(each in a fresh process, incl. imports)")
    print(f"compile the NF4 jacobian cfunc: first call {jac:.2f} s (fresh process, flow and loss cached)")


if __name__ == "__main__":
    main()
