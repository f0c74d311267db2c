"""initial: Philox4x32-10 against Random123's known answers, per-index reproducibility,
distribution checks with error bars."""
import numpy as np
import pytest
from scipy import stats

from narrowflow import initial

# Random123 kat_vectors for philox4x32_10 (counter, key, output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    got = initial.philox4x32(np.array([ctr], dtype=np.uint32), key)
    assert tuple(int(v) for v in got[0]) == want
    # and a one-bit change of the counter changes the output
    ctr2 = np.array([ctr], dtype=np.uint64)
    ctr2[0, 2] ^= 1
    assert tuple(int(v) for v in initial.philox4x32(ctr2, key)[0]) != want


def test_same_index_same_draws_however_split():
    whole = initial.sample(1000, 5, seed=42)
    parts = np.concatenate([initial.sample(300, 5, seed=42),
                            initial.sample(450, 5, seed=42, start=300),
                            initial.sample(250, 5, seed=42, start=750)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(initial.sample(7, 5, seed=42, start=993), whole[993:])
    assert not np.array_equal(initial.sample(10, 5, seed=43), whole[:10])
    # odd and even p share the first draws (blocks of two)
    assert np.array_equal(initial.sample(20, 3, seed=42), whole[:20, :3])


def test_uniforms_open_interval_and_uniform():
    u = initial.uniforms(7, np.arange(200_000), 2)
    assert u.min() > 0.0 and u.max() < 1.0
    # Kolmogorov-Smirnov both ways: uniform accepted, a skewed sample rejected
    assert stats.kstest(u[:, 0], "uniform").pvalue > 1e-3
    assert stats.kstest(u[:, 1] ** 1.05, "uniform").pvalue < 1e-6
    # independence of the two columns: correlation within 5 standard errors of 0
    r = np.corrcoef(u[:, 0], u[:, 1])[0, 1]
    assert abs(r) < 5 / np.sqrt(len(u))


def test_normal_and_uniform_moments():
    z = initial.sample(100_000, 4, seed=3, mean=[0, 1, 2, 3], std=2.0)
    se = 2.0 / np.sqrt(len(z))
    assert np.all(np.abs(z.mean(0) - [0, 1, 2, 3]) < 5 * se)
    assert np.all(np.abs(z.std(0) - 2.0) < 5 * 2.0 / np.sqrt(2 * len(z)))
    assert stats.kstest((z[:, 0]) / 2.0, "norm").pvalue > 1e-3
    x = initial.sample(50_000, 2, seed=3, distribution="uniform", low=-2, high=[2, 4])
    assert x[:, 0].min() >= -2 and x[:, 0].max() < 2 and x[:, 1].max() < 4
    assert stats.kstest((x[:, 1] + 2) / 6, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("kwargs,match", [
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(distribution="cauchy"), "distribution"),
    (dict(std=[1, 2]), "std"), (dict(n=-1), "n"), (dict(p=0), "p"),
    (dict(distribution="uniform", low=1, high=0), "high"), (dict(mean=np.nan), "mean"),
])
def test_bad_arguments(kwargs, match):
    args = dict(n=3, p=4, seed=1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        initial.sample(**args)


def test_sizes_refused_before_drawing():
    """n = 2**63 - 1 (or start + n past int64) is refused up front, naming n: never an empty
    or wrapped-around sample, never a MemoryError."""
    with pytest.raises(ValueError, match="^n: .*memory limit"):
        initial.sample(2**63 - 1, 4, seed=1)
    with pytest.raises(ValueError, match="^n: start \\+ n"):
        initial.sample(10, 4, seed=1, start=2**63 - 5)
    with pytest.raises(ValueError, match="^n: .*memory limit"):
        initial.sample(3 * 10**9, 4, seed=1)
    assert initial.sample(2, 4, seed=1, start=2**63 - 3).shape == (2, 4)


def test_block_alone_equals_rows_of_the_whole():
    """Any block start..start+n-1 drawn alone is those rows of the whole, for both
    distributions and for a seed above 2**32 (both key words used)."""
    seed = 2**40 + 17
    for kw in (dict(), dict(distribution="uniform", low=-3.0, high=[1.0, 2.0, 3.0])):
        whole = initial.sample(257, 3, seed, **kw)
        for start, n in ((0, 1), (5, 31), (128, 129), (256, 1)):
            assert np.array_equal(initial.sample(n, 3, seed, start=start, **kw),
                                  whole[start:start + n])
    # the first words of trajectory 0 under seed 0 are Philox of counter 0, key 0 (the KAT)
    w = KAT[0][2]
    m = ((w[0] >> 5) << 26) | (w[1] >> 6)
    assert initial.uniforms(0, [0], 1)[0, 0] == (m + 0.5) * 2.0**-53


def test_one_seed_one_set_of_states_api_cli_dask(tmp_path, capsys):
    """seed=7 gives the same NF4 initial states through model.nf4_initial_states, `narrowflow
    run` (stored as the states at t0) and the Dask backend (chunks of 5, drawn per task)."""
    from narrowflow import io, model
    from narrowflow.cli import main
    n, seed = 12, 7
    api = model.nf4_initial_states(n, seed=seed)
    assert np.array_equal(api, initial.sample(n, 4, seed))
    assert np.array_equal(model.nf4_initial_states(4, seed=seed, start=8), api[8:])
    assert not np.array_equal(model.nf4_initial_states(n, seed=seed + 1), api)
    assert model.NF4_SEED == initial.DEFAULT_SEED == 12345
    assert np.array_equal(model.nf4_initial_states(3), initial.sample(3, 4, 12345))

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[initial]\nseed = {seed}\n[solver]\nmethod = "dop853"\n'
                   't_span = [0.0, 1.0]\n[save]\nstates = true\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "-n", str(n),
                 "--threads", "1"]) == 0, capsys.readouterr().err
    ds = io.load(tmp_path / "o" / "results.zarr")
    assert ds["time"].values[0] == 0.0
    assert np.array_equal(ds["y_saved"].values[:, 0, :], api)

    pytest.importorskip("distributed")
    from distributed import Client

    from narrowflow import distributed as D
    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=None) as client:
        D.solve_distributed(model.nf4_benchmark(), seed=seed, n=n, chunk=5,
                            store=tmp_path / "d.zarr", client=client, method="dop853",
                            t_span=(0.0, 1.0), save_at=[0.0, 1.0], save_states=True)
    dd = io.load(tmp_path / "d.zarr")
    assert np.array_equal(dd["y_saved"].values[:, 0, :], api)
    # and the end states agree with the CLI's (same states, same solver)
    assert np.array_equal(dd["y_final"].values, ds["y_final"].values)


def test_memory_limit_is_the_solvers():
    """initial refuses draws against the same budget as the ensemble solver's outputs."""
    from narrowflow import ensemble, memory
    assert ensemble.default_memory_limit is memory.default_memory_limit   # one definition
    assert memory.default_memory_limit() > 0
