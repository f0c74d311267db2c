"""`narrowflow run`: the default preset, the example configs, refusals naming the key."""
from pathlib import Path

import numpy as np
import pytest

from narrowflow import io
from narrowflow.cli import main

EXAMPLES = sorted(Path(__file__).resolve().parents[1].glob("examples/*.toml"))


def _run(args, capsys):
    code = main(["run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_preset(tmp_path, capsys):
    code, out, err = _run(["--out", str(tmp_path / "o"), "-n", "1500", "--threads", "2"], capsys)
    assert code == 0, err
    for key in ("reached it", "final loss", "escape", "median escape time", "global min  0"):
        assert key in out
    ds = io.load(tmp_path / "o" / "results.zarr")
    assert ds.sizes["trajectory"] == 1500 and ds.attrs["seed"] == 12345
    assert (tmp_path / "o" / "loss_bands.png").stat().st_size > 1000
    assert "reached it" in (tmp_path / "o" / "summary.txt").read_text()
    # the fraction printed is the one computed from the stored final losses
    frac = float(out.split("reached it")[1].split()[0])
    assert frac == pytest.approx(np.mean(ds["loss_final"].values <= 1e-5), abs=1e-4)
    # a second run into the same folder is refused unless --overwrite
    code, out, err = _run(["--out", str(tmp_path / "o"), "-n", "10"], capsys)
    assert code == 2 and "--overwrite" in err
    code, out, err = _run(["--out", str(tmp_path / "o"), "-n", "10", "--overwrite",
                           "--no-figure", "--format", "netcdf"], capsys)
    assert code == 0 and io.load(tmp_path / "o" / "results.nc").sizes["trajectory"] == 10


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples(tmp_path, capsys, path):
    code, out, err = _run([str(path), "--out", str(tmp_path / "o"), "-n", "40"], capsys)
    assert code == 0, err
    stored = list((tmp_path / "o").glob("results.*"))
    assert len(stored) == 1 and io.load(stored[0]).sizes["trajectory"] == 40
    # the effective config written next to the results runs again and reproduces them
    code, out, err = _run([str(tmp_path / "o" / "config.toml"), "--out", str(tmp_path / "p"),
                           "-n", "40", "--no-figure"], capsys)
    assert code == 0, err
    again = list((tmp_path / "p").glob("results.*"))[0]
    assert np.array_equal(io.load(again)["y_final"].values, io.load(stored[0])["y_final"].values)


@pytest.mark.parametrize("text,key", [
    ("[solver]\nrtoll = 1e-8\n", "solver.rtoll"),
    ("[network]\nwidth = 'two'\n", "network.width"),
    ("[solver]\nmethod = 'euler'\n", "method"),
])
def test_bad_config_refused_naming_key(tmp_path, capsys, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, out, err = _run([str(cfg), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert key in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_default_preset_full(tmp_path, capsys):
    code, out, err = _run(["--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert io.load(tmp_path / "o" / "results.zarr").sizes["trajectory"] == 100_000
