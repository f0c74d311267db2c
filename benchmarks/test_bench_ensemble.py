"""pytest-benchmark suite of the ensemble kernel (never part of the unit tests).

    pytest benchmarks/test_bench_ensemble.py --benchmark-only -p no:cacheprovider
    pytest benchmarks/test_bench_ensemble.py --benchmark-only -k nf4_methods   # a subset

Cases: NF4 at several N (one and two threads), every method on NF4, the lane count (8, 16,
32), a wider biased network, a softplus network, save points + escape times. Each case
records trajectories per second, RHS evaluations per trajectory and lane occupancy in
``extra_info`` (pytest-benchmark's JSON, ``--benchmark-json``). Timings on a shared machine
are noise: compare ratios measured in the same session.
"""
import numpy as np
import pytest

import narrowflow as nf
from narrowflow import model

pytest.importorskip("pytest_benchmark")


def _nf4(n):
    return model.nf4_benchmark(), model.nf4_initial_states(n)


def _record(benchmark, res, n):
    benchmark.extra_info.update(
        trajectories=n, traj_per_s=n / res.elapsed, nfev_per_traj=float(res.nfev.mean()),
        lane_occupancy=res.lane_occupancy, statuses=res.counts())


def _bench(benchmark, flow, y0, **kw):
    nf.solve_ensemble(flow, y0[:32], **kw)   # compile outside the timing
    res = benchmark.pedantic(nf.solve_ensemble, args=(flow, y0), kwargs=kw, rounds=3,
                             iterations=1)
    _record(benchmark, res, len(y0))
    return res


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("threads", [1, 2])
def test_nf4_size(benchmark, n, threads):
    flow, y0 = _nf4(n)
    _bench(benchmark, flow, y0, method="dp5", threads=threads)


@pytest.mark.parametrize("method,kw", [("dp5", {}), ("tsit5", {}), ("dop853", {}),
                                       ("rk4", {"dt": 0.05}), ("gd", {"dt": 0.05})])
def test_nf4_methods(benchmark, method, kw):
    flow, y0 = _nf4(5_000)
    _bench(benchmark, flow, y0, method=method, threads=1, **kw)


@pytest.mark.parametrize("lanes", [8, 16, 32])
def test_nf4_lanes(benchmark, lanes):
    flow, y0 = _nf4(5_000)
    _bench(benchmark, flow, y0, method="dop853", threads=1, lanes=lanes)


def test_nf4_save_and_escape(benchmark):
    flow, y0 = _nf4(5_000)
    _bench(benchmark, flow, y0, method="dp5", threads=1,
           save_at=np.concatenate([[0.0], np.geomspace(0.01, 100, 40)]), save_states=False,
           escape_threshold=1e-3)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_wide_biased(benchmark, activation):
    rng = np.random.default_rng(0)
    net = nf.Network(width=4, input_dim=2, activation=activation, bias=True)
    x = rng.uniform(-1, 1, (16, 2))
    flow = nf.GradientFlow(net, nf.Dataset.from_teacher(net, rng.standard_normal(net.n_params), x))
    y0 = rng.standard_normal((1_000, net.n_params)) * 0.5
    _bench(benchmark, flow, y0, method="dop853", t_span=(0, 50), threads=1)
