"""Cost of the monodromy engine (issue 4 targets: hypergeometric pair at 1e-12 < 50 ms after
compilation; one Hénon–Heiles case < 0.2 s). Timings are printed, never asserted.

    python benchmarks/bench_monodromy.py [--repeats 20]

For each case: the first-call time (compilation, or loading Numba's disk cache), then the
median wall time of the verified computation (two tolerances, the deformed loop and the loop
travelled backwards, as used by the classifier), the RHS evaluation count, and the accuracy
against the closed-form invariants; next to it scipy's DOP853 with complex states on the
same loops at the same tolerance (a Python right-hand side), one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.integrate import solve_ivp

import narrowflow.monodromy as mono
from narrowflow.monodromy.transport import integrate_path, linear_rhs

ABC = (0.3 + 0.1j, 0.45, 0.7 - 0.05j)


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _scipy_loop(sys_, path, rtol):
    def f(s, y):
        return (sys_.matrix(path.z(s)) @ y.reshape(2, 2)).ravel() * path.dz(s)
    Y = np.eye(2, dtype=complex).ravel()
    nfev = 0
    for lo, hi in zip(path.breakpoints[:-1], path.breakpoints[1:]):
        sol = solve_ivp(f, (lo, hi), Y, method="DOP853", rtol=rtol, atol=rtol)
        Y, nfev = sol.y[:, -1], nfev + sol.nfev
    return Y.reshape(2, 2), nfev


def bench_hypergeometric(repeats):
    a, b, c = ABC
    inv = mono.hypergeometric_invariants(a, b, c)
    t = time.perf_counter()
    r0, r1 = mono.hypergeometric_monodromy(a, b, c, results=True)
    compile_s = time.perf_counter() - t
    verified = _median_time(lambda: mono.hypergeometric_monodromy(a, b, c, results=True), repeats)
    sys_ = mono.hypergeometric(a, b, c)
    l0, l1 = mono.systems.hypergeometric_loops(0.5)
    rhs = linear_rhs(sys_.A, 2)
    y0 = np.zeros(5, complex)
    y0[:4] = np.eye(2).ravel()

    def bare():
        return [integrate_path(rhs, y0, lp, sys_.data, rtol=1e-12) for lp in (l0, l1)]
    single = _median_time(bare, repeats)
    nfev_single = sum(r[1] for r in bare())
    err = max(abs(np.trace(r0.matrix) - inv["tr_M0"]), abs(np.trace(r1.matrix) - inv["tr_M1"]))
    t = time.perf_counter()
    S0, n0 = _scipy_loop(sys_, l0, 1e-12)
    S1, n1 = _scipy_loop(sys_, l1, 1e-12)
    scipy_s = time.perf_counter() - t
    serr = max(abs(np.trace(S0) - inv["tr_M0"]), abs(np.trace(S1) - inv["tr_M1"]))
    print("hypergeometric pair (a,b,c) = (0.3+0.1i, 0.45, 0.7-0.05i), circles |z|=1/2, |z-1|=1/2, rtol 1e-12")
    print(f"  first call (compile + run)          {compile_s:8.3f} s")
    print(f"  verified pair (4 runs per loop)     {verified * 1e3:8.2f} ms   nfev {r0.nfev + r1.nfev}")
    print(f"  bare pair (one run per loop)        {single * 1e3:8.2f} ms   nfev {nfev_single}")
    print(f"  max |tr M - exact|                  {err:8.1e}   (error estimates {r0.error:.1e}, {r1.error:.1e})")
    print(f"  scipy DOP853, complex, Python rhs   {scipy_s * 1e3:8.2f} ms   nfev {n0 + n1}   "
          f"max |tr M - exact| {serr:.1e}   ratio {scipy_s / single:.0f}x the bare pair")


def bench_henon_heiles(repeats):
    hh = mono.henon_heiles(eps=3.0, ratio=1.0, energy=0.1)
    t = time.perf_counter()
    MR, MI = hh.period_monodromy()
    compile_s = time.perf_counter() - t
    med = _median_time(lambda: hh.period_monodromy(), repeats)
    tcls = _median_time(lambda: mono.MonodromyGroup([MR, MI]).classify(), repeats)
    ct = mono.MonodromyGroup([MR, MI]).commutator_trace().value + 2
    print("Henon-Heiles eps=3, ratio 1, energy 0.1: M_R, M_I along the periods, rtol 1e-12")
    print(f"  first call (compile + run)          {compile_s:8.3f} s")
    print(f"  verified M_R, M_I                   {med * 1e3:8.2f} ms   nfev {MR.nfev + MI.nfev}")
    print(f"  classification                      {tcls * 1e3:8.2f} ms")
    print(f"  |tr[M_R,M_I] - 2cos(2 pi n)|        {abs(ct - hh.lame_trace):8.1e}")


def bench_network(repeats):
    import narrowflow as nf
    from narrowflow.monodromy.network import check_integrability
    flow = nf.GradientFlow(nf.Network(width=2, activation="tanh"),
                           nf.Dataset(np.array([1.0]), np.array([0.5])))
    t = time.perf_counter()
    rep = check_integrability(flow, "twin", base=(0.8, 0.3))
    compile_s = time.perf_counter() - t
    med = _median_time(lambda: check_integrability(flow, "twin", base=(0.8, 0.3)),
                       max(1, repeats // 4))
    print("NF4, one data point, twin plane, default loops (branch points + 5 loops)")
    print(f"  first call (compile + run)          {compile_s:8.3f} s")
    print(f"  check_integrability                 {med * 1e3:8.2f} ms   "
          f"nfev {sum(r.result.nfev for r in rep.loops)}   verdict: {rep.verdict}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    bench_hypergeometric(args.repeats)
    bench_henon_heiles(args.repeats)
    bench_network(args.repeats)


if __name__ == "__main__":
    main()
