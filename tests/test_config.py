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
    assert kw["method"] == "dop853" and kw["t_span"] == (0.0, 100.0)
    assert kw["save_at"][0] == 0.0 and np.all(np.diff(kw["save_at"]) > 0)
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
