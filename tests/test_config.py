"""config: TOML configs validated key by key; the data sources; defaults = the NF4 preset."""
import numpy as np
import pytest

from narrowflow import config, model


def test_default_is_the_nf4_preset():
    rc = config.load(None)
    flow = rc.flow()
    ref = model.nf4_benchmark()
    assert np.array_equal(flow.data.x, ref.data.x) and np.array_equal(flow.data.y, ref.data.y)
    assert flow.network.width == 2 and flow.network.activation.name == "tanh"
    assert rc.cfg["initial"]["n"] == 100_000
    kw = rc.solver_kwargs()
    # to convergence: auto, gtol 1e-8, t_max 1e7 as a finite guard, a log grid over the decades
    assert rc.preset == "nf4" and rc.cfg["solver"]["method"] == config.DEFAULT_METHOD == "auto"
    assert kw["method"] == "auto"
    assert kw["t_span"] == (0.0, 1e7) and kw["gtol"] == 1e-8
    assert kw["rtol"] == 1e-8 and kw["atol"] == 1e-10 and kw["escape_threshold"] == 1e-3
    at = kw["save_at"]
    assert at[0] == 0.0 and at[1] == 1e-2 and at[-1] == 1e7 and np.all(np.diff(at) > 0)
    assert 50 <= at.size <= 80
    assert np.allclose(np.diff(np.log10(at[1:])), 9 / (at.size - 2))  # log-spaced
    assert config.load(None, "nf4").cfg == rc.cfg
    th = rc.theta0(4, n=10)
    assert th.shape == (10, 4) and np.array_equal(th, rc.theta0(4, n=12)[:10])


@pytest.mark.parametrize("text,key,exc", [
    ("[solver]\nrtoll = 1e-8\n", "solver.rtoll", ValueError),
    ("[solvr]\nrtol = 1e-8\n", "solvr", ValueError),
    ("[solver]\nrtol = '1e-8'\n", "solver.rtol", TypeError),
    ("[network]\nwidth = 2.5\n", "network.width", TypeError),
    ("[network]\nbias = 1\n", "network.bias", TypeError),
    ("[initial]\nseed = true\n", "initial.seed", TypeError),
    ("[save]\nat = {start = 0, stop = 1, numb = 3}\n", "save.at.numb", ValueError),
    ("[data]\nteacher = {width = 1, theta = [1, 2], colour = 'red'}\nx = [1, 2]\n",
     "data.teacher.colour", ValueError),
    ("[output]\nformat = 'hdf5'\n", "output.format", ValueError),
    ("[solver]\nt_span = [0, 'a']\n", "solver.t_span", TypeError),
    ("solver = 3\n", "solver", TypeError),
])
def test_bad_keys_named(text, key, exc):
    with pytest.raises(exc, match=key.replace(".", r"\.")):
        config.loads(text)


def test_inline_teacher_and_file_data(tmp_path):
    rc = config.loads("[data]\nx = [-1.0, 0.0, 1.0]\ny = [0.5, 0.0, -0.5]\n")
    assert rc.dataset().n == 3
    rc = config.loads("[data]\nx = {start = -1, stop = 1, num = 5}\n"
                      "teacher = {width = 1, theta = [2.0, 0.5]}\n")
    data = rc.dataset()
    assert np.allclose(data.y[:, 0], 2.0 * np.tanh(0.5 * np.linspace(-1, 1, 5)))
    arr = np.column_stack([np.linspace(0, 1, 4), np.linspace(1, 2, 4)])
    np.save(tmp_path / "d.npy", arr)
    np.savetxt(tmp_path / "d.csv", arr, delimiter=",")
    for name in ("d.npy", "d.csv"):
        (tmp_path / "c.toml").write_text(f"[data]\nfile = '{name}'\n")
        data = config.load(tmp_path / "c.toml").dataset()
        assert np.allclose(data.x[:, 0], arr[:, 0]) and np.allclose(data.y[:, 0], arr[:, 1])
    (tmp_path / "c.toml").write_text("[data]\nfile = 'missing.npy'\n")
    with pytest.raises(FileNotFoundError, match="data.file"):
        config.load(tmp_path / "c.toml").dataset()
    with pytest.raises(ValueError, match="one source"):
        config.loads("[data]\npreset = 'nf4'\nfile = 'x.npy'\n")
    with pytest.raises(ValueError, match="teacher.theta"):
        config.loads("[data]\nx = [1.0]\nteacher = {width = 1, theta = [1.0]}\n").dataset()


def test_examples_are_valid():
    from pathlib import Path
    examples = sorted(Path(__file__).resolve().parents[1].glob("examples/*.toml"))
    assert len(examples) >= 2
    for path in examples:
        rc = config.load(path)
        flow = rc.flow()
        assert rc.theta0(flow.n_params, n=3).shape == (3, flow.n_params)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config"):
        config.load(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[solver\n")
    with pytest.raises(ValueError, match="TOML"):
        config.load(tmp_path / "bad.toml")


def test_bench_preset_reproduces_the_old_default():
    """--preset nf4-bench: the t in [0, 100] throughput benchmark, as the built-in default
    was before the run-to-convergence preset."""
    rc = config.load(None, "nf4-bench")
    kw = rc.solver_kwargs()
    at = kw.pop("save_at")
    assert kw == dict(method="dop853", t_span=(0.0, 100.0), rtol=1e-8, atol=1e-10, dt=None,
                      max_steps=10**6, max_step=None, gtol=None, escape_threshold=1e-3,
                      divergence_bound=1e10, lanes=16, chunk_size=None, threads=None,
                      save_states=False, seed=12345)
    assert np.array_equal(at, np.concatenate([[0.0], np.geomspace(0.01, 100.0, 40)]))
    assert rc.cfg["initial"]["n"] == 100_000 and rc.flow().network.width == 2
    # a config naming the preset starts from it; its keys override the preset's
    rc2 = config.loads("preset = 'nf4-bench'\n[initial]\nn = 10\n")
    assert rc2.preset == "nf4-bench" and rc2.solver_kwargs()["t_span"] == (0.0, 100.0)
    assert rc2.cfg["initial"]["n"] == 10
    assert config.loads("preset = 'nf4-bench'\n", preset="nf4-bench").preset == "nf4-bench"


@pytest.mark.parametrize("call,where", [
    (lambda: config.load(None, "nf5"), "--preset"),
    (lambda: config.loads("", preset="bench"), "--preset"),
    (lambda: config.loads("preset = 'nf5'\n"), "config key 'preset'"),
])
def test_unknown_preset_refused(call, where):
    with pytest.raises(ValueError, match="unknown preset") as exc:
        call()
    msg = str(exc.value)
    assert where in msg and "nf4, nf4-bench" in msg


def test_conflicting_presets_refused():
    with pytest.raises(ValueError, match="--preset 'nf4' conflicts"):
        config.loads("preset = 'nf4-bench'\n", preset="nf4")
    with pytest.raises(TypeError, match="'preset'"):
        config.loads("preset = 3\n")


@pytest.mark.parametrize("t_span,kind,first,num", [
    ([0.0, 5.0], "linear", 0.125, 41),        # refused before: the grid ignored t_span
    ([1.0, 3.0], "linear", 1.05, 41),
    ([0.0, 10.0], "linear", 0.25, 41),        # 3 decades above 0.01: still linear
    ([0.0, 1e4], "log", 0.01, 44),            # t0, then 6 decades at 7 points per decade
    ([2.0, 1e3], "log", 2.01, 37),
])
def test_default_save_grid_follows_t_span(t_span, kind, first, num):
    rc = config.loads(f"[solver]\nt_span = {t_span}\n")
    at = rc.solver_kwargs()["save_at"]
    t0, t1 = t_span
    assert at[0] == t0 and at[-1] == t1 and np.all(np.diff(at) > 0)
    assert at.size == num and at[1] == pytest.approx(first)
    off = at[1:] - t0
    if kind == "log":
        assert np.allclose(np.diff(np.log(off)), np.log(off[1] / off[0]))
    else:
        assert np.allclose(np.diff(at), at[1] - at[0])
    # an explicit grid is kept as given
    rc = config.loads(f"[solver]\nt_span = {t_span}\n[save]\nat = [{t1}]\n")
    assert np.array_equal(rc.save_at(), [t0, t1])


def test_t_span_inf_only_with_gtol():
    rc = config.loads("[solver]\nt_span = [0, inf]\ngtol = 1e-7\n")
    kw = rc.solver_kwargs()
    assert kw["t_span"] == (0.0, np.inf) and kw["gtol"] == 1e-7
    assert kw["save_at"][-1] == config.SAVE_INF_END and np.all(np.isfinite(kw["save_at"]))
    assert config.loads("[solver]\nt_span = [0, inf]\n").solver_kwargs()["gtol"] == 1e-8
    for text in ("[solver]\nt_span = [0, inf]\ngtol = 0\n",
                 "preset = 'nf4-bench'\n[solver]\nt_span = [0, inf]\n",
                 "[solver]\nt_span = [0, nan]\n", "[solver]\nt_span = [-inf, 1]\n",
                 "[solver]\nt_span = [1, 1]\n"):
        with pytest.raises(ValueError, match=r"solver\.t_span"):
            config.loads(text)
    with pytest.raises(ValueError, match=r"solver\.gtol"):
        config.loads("[solver]\ngtol = -1\n")
    assert config.loads("[solver]\ngtol = 0\n").solver_kwargs()["gtol"] is None  # 0: off
    with pytest.raises(ValueError, match=r"output\.limit_tol"):
        config.loads("[output]\nlimit_tol = 0\n")


# --- issue 11: every refusal names the dotted key, before anything is built ---------------

@pytest.mark.parametrize("text,key", [
    ("[save]\nat = [[1, 2]]\n", "save.at"),
    ("[save]\nat = [5.0, 1.0]\n", "save.at"),
    ("[save]\nat = {start = 0, stop = 1e9, num = 5}\n", "save.at"),
    ("[save]\nat = {start = 0, stop = 1, num = 0}\n", "save.at.num"),
    ("[data]\nx = [[1, 2], [3]]\ny = [1, 2]\n", "data.x"),
    ("[data]\nx = [1, 'a']\ny = [1, 2]\n", "data.x"),
    ("[data]\nx = [1, 2]\ny = [[1], [2, 3]]\n", "data.y"),
    ("[data]\nx = {start = 0, stop = 1, num = 0}\nteacher = {width = 1, theta = [1.0, 1.0]}\n",
     "data.x"),
    ("[data]\nx = {start = 0, stop = inf, num = 3}\nteacher = {width = 1, theta = [1.0, 1.0]}\n",
     "data.x"),
    ("[data]\nx = [1.0]\nteacher = {width = 1, theta = [1.0]}\n", "data.teacher.theta"),
    ("[output]\nsuccess_tol = nan\n", "output.success_tol"),
    ("[output]\nsuccess_tol = -1\n", "output.success_tol"),
    ("[initial]\nlow = -2.0\n", "initial.low"),
    ("[initial]\nhigh = 2.0\n", "initial.high"),
    ("[initial]\ndistribution = 'uniform'\nmean = 1.0\n", "initial.mean"),
    ("[initial]\ndistribution = 'uniform'\nstd = 1.0\n", "initial.std"),
    ("[initial]\ndistribution = 'cauchy'\n", "initial.distribution"),
    ("[initial]\nmean = [1.0, 2.0]\n", "initial.mean"),
    ("[initial]\nstd = -1.0\n", "initial.std"),
    ("[initial]\nseed = -1\n", "initial.seed"),
    ("[initial]\nn = 0\n", "initial.n"),
    ("[solver]\nrtol = -1.0\n", "solver.rtol"),
    ("[solver]\natol = nan\n", "solver.atol"),
    ("[solver]\nthreads = 0\n", "solver.threads"),
    ("[solver]\nthreads = -3\n", "solver.threads"),
    ("[solver]\nthreads = 2147483648\n", "solver.threads"),
    ("[solver]\nmax_steps = 0\n", "solver.max_steps"),
    ("[solver]\nlanes = 4096\n", "solver.lanes"),
    ("[solver]\nchunk_size = 0\n", "solver.chunk_size"),
    ("[solver]\nmethod = 'rk4'\n", "solver.dt"),
    ("[solver]\nmethod = 'euler'\n", "solver.method"),
    ("[solver]\ndivergence_bound = -1.0\n", "solver.divergence_bound"),
    ("[network]\nwidth = 10000000\n", "network.width"),
    ("[network]\ninput_dim = 100000\n", "network.input_dim"),
    ("[network]\nactivation = 'relu6'\n", "network.activation"),
    ("[network]\nweight_decay = -1.0\n", "network.weight_decay"),
])
def test_refusals_name_the_dotted_key(text, key):
    with pytest.raises((ValueError, TypeError)) as exc:
        config.loads(text)
    assert f"config key '{key}" in str(exc.value), str(exc.value)   # (or a key below it)


@pytest.mark.parametrize("text,key", [
    ("[save]\nat = {start = 0, stop = 1, num = 1000000000}\n", "save.at"),
    ("[initial]\nn = 300000000\n", "initial.n"),
    ("[initial]\nn = 9223372036854775807\n", "initial.n"),
])
def test_memory_refused_naming_the_key_before_allocating(text, key):
    """Refused at load, before the save grid or the initial states exist (no MemoryError)."""
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="memory limit") as exc:
            config.loads(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(exc.value).startswith(f"config key '{key}'") and peak < 50e6


def test_command_line_values_checked_naming_the_option():
    rc = config.loads("[initial]\nn = 10\n")
    rc.cfg["initial"]["n"] = 2**63 - 1
    with pytest.raises(ValueError, match=r"'initial\.n' \(set by -n\)"):
        rc.check({"initial.n": "-n"})


@pytest.mark.parametrize("setup,exc,match", [
    ("folder", ValueError, "is not a file"),
    ("empty_npy", ValueError, "cannot be read"),
    ("empty_csv", ValueError, "cannot be read"),
    ("text_csv", ValueError, "cannot be read"),
    ("complex_npy", TypeError, "complex"),
    ("object_npy", ValueError, "cannot be read"),
    ("nan_csv", ValueError, "NaN"),
])
def test_data_file_refusals_name_key_and_file(tmp_path, setup, exc, match):
    name = "d.csv" if setup.endswith("csv") else "d.npy"
    path = tmp_path / name
    if setup == "folder":
        path.mkdir()
    elif setup == "empty_npy":
        path.write_bytes(b"")
    elif setup == "empty_csv":
        path.write_text("")
    elif setup == "text_csv":
        path.write_text("x,y\n1,2\n")
    elif setup == "nan_csv":
        path.write_text("1,2\nnan,3\n")
    elif setup == "complex_npy":
        np.save(path, np.array([[1 + 1j, 2], [3, 4]]))
    else:
        np.save(path, np.array([[1, None]], dtype=object), allow_pickle=True)
    (tmp_path / "c.toml").write_text(f"[data]\nfile = '{name}'\n")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # cast with a warning: not accepted
        with pytest.raises(exc, match=match) as info:
            config.load(tmp_path / "c.toml").dataset()
    msg = str(info.value)
    assert "data.file" in msg and name in msg and "\n" not in msg


def test_complex_teacher_refused_not_cast():
    """Dataset.from_teacher took the real part of a complex teacher silently."""
    net = model.Network(width=1)
    with pytest.raises(TypeError, match="theta.*complex"):
        model.Dataset.from_teacher(net, np.array([1 + 1j, 1.0]), np.linspace(0, 1, 3))
    with pytest.raises(TypeError, match="x must be a real"):
        model.Dataset(np.array([1 + 0j, 2]), [1.0, 2.0])
    assert model.Dataset.from_teacher(net, [1, 2], [0.0, 1.0]).y.dtype == np.float64
