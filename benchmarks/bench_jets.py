"""Cost of the higher-order variational equations (issue 7 target: one Hénon–Heiles order-3
case in under 2 s). Timings are printed, never asserted.

    python benchmarks/bench_jets.py [--repeats 5]

Cases:
- Hénon–Heiles ε = 2, energy 0.1, order 3: the verified period jets J_R, J_I and their
  commutator along the pole loop (each loop at two tolerances and deformed: 9 transports),
  i.e. everything behind the verdict; and one bare transport of the pole loop, against scipy's
  DOP853 on the same VE_1..3 system written with einsum (a Python right-hand side, one run).
- NF4 three-point twin-plane saddle, order 2: the whole ``saddle_unstable_check`` (series,
  singularities, closing-turn search, jets and three commutators).
First-call times (compilation or Numba's disk cache) are printed separately.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.integrate import solve_ivp

import narrowflow as nf
from narrowflow.monodromy import jets, koenigs
from narrowflow.monodromy.paths import polyline


def _median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _scipy_pole_loop(h, rtol):
    eps = h.eps

    def rhs(s, st, dz):
        y = st[:4]
        P1 = st[4:20].reshape(4, 4)
        P2 = st[20:84].reshape(4, 4, 4)
        P3 = st[84:].reshape(4, 4, 4, 4)
        F, D1, D2 = jets.henon_heiles_system(eps).evaluate(y, order=2)
        dP1 = D1 @ P1
        dP2 = np.einsum("ij,jab->iab", D1, P2) + np.einsum("ijk,ja,kb->iab", D2, P1, P1)
        t = np.einsum("ijk,jab,kc->iabc", D2, P2, P1)
        dP3 = np.einsum("ij,jabc->iabc", D1, P3) + t + t.transpose(0, 1, 3, 2) + t.transpose(0, 3, 2, 1)
        return dz * np.concatenate([F, dP1.ravel(), dP2.ravel(), dP3.ravel()])

    T1, T2 = h.T_real, complex(h.T_imag)
    v = [0, T1, T1 + T2, T2, 0]
    st = np.zeros(340, complex)
    st[:4] = h.y0
    st[4:20] = np.eye(4).ravel()
    nfev = 0
    for a, b in zip(v[:-1], v[1:]):
        sol = solve_ivp(rhs, (0, 1), st, method="DOP853", rtol=rtol, atol=rtol * 1e-2, args=(b - a,))
        st, nfev = sol.y[:, -1], nfev + sol.nfev
    return np.linalg.norm(st[84:]), nfev


def bench_henon_heiles(repeats):
    h = nf.monodromy.henon_heiles(eps=2.0, ratio=1.0, energy=0.1)
    t = time.perf_counter()
    JR, JI = h.period_jets(order=3)
    C = jets.jet_commutator(JR, JI)
    first = time.perf_counter() - t

    def verified():
        a, b = h.period_jets(order=3)
        return jets.jet_commutator(a, b).verdict()

    tv = _median_time(verified, repeats)
    T1, T2 = h.T_real, complex(h.T_imag)
    loop = polyline([0, T1, T1 + T2, T2, 0])
    sysm = jets.henon_heiles_system(2.0)
    res = {}

    def bare():
        res["t"], res["info"] = jets.transport_jet(sysm, h.y0, loop, order=3, rtol=1e-12, atol=1e-14)

    tb = _median_time(bare, repeats)
    ts = time.perf_counter()
    ref, nfev_sp = _scipy_pole_loop(h, 1e-12)
    ts = time.perf_counter() - ts
    d3 = C.deviation(3)
    print(f"Hénon–Heiles eps=2, order 3: first call {first:.2f} s; verified period jets + commutator "
          f"+ verdict {tv * 1e3:.0f} ms (median of {repeats}); nfev {JR.nfev + JI.nfev + C.loop_jet.nfev}")
    print(f"  verdict: {C.verdict()}; order-3 part {d3.value:.6f} ± {d3.error:.1e}")
    print(f"  bare pole-loop transport at rtol 1e-12: {tb * 1e3:.1f} ms, nfev {res['info']['nfev']}; "
          f"scipy DOP853 (einsum RHS): {ts * 1e3:.0f} ms, nfev {nfev_sp}, "
          f"‖Φ3‖ {ref:.6f} (ours {np.linalg.norm(res['t'][3]):.6f})")


def bench_nf4(repeats):
    net = nf.Network(width=2, activation="tanh")
    flow = nf.GradientFlow(net, nf.Dataset.from_teacher(net, np.array([1, 1.5, 0.5, -0.7]),
                                                        np.array([-1.0, 0.5, 2.0])))
    t = time.perf_counter()
    rep = koenigs.saddle_unstable_check(flow, order=2)
    first = time.perf_counter() - t
    tv = _median_time(lambda: koenigs.saddle_unstable_check(flow, order=2), repeats)
    print(f"NF4 three points, saddle-unstable order 2: first call {first:.2f} s; whole check "
          f"{tv:.2f} s (median of {repeats}); series {rep.series.seconds * 1e3:.1f} ms (order "
          f"{rep.series.order}); verdict: {rep.verdict}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    bench_henon_heiles(args.repeats)
    bench_nf4(max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
