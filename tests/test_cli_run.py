"""`narrowflow run`: the presets, the summary of where training ended (and the report on
its store), the example configs, refusals naming the key."""
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


# NF4 as in the default preset, but short enough for a test: dop853 (an explicit method
# reaches ||grad L|| < 1e-6 by t = 1e4 for about 40 % of the trajectories)
SHORT = """
[solver]
method = "dop853"
t_span = [0.0, 1e4]
gtol = 1e-6
"""


def _limit_rows(text):
    """{label: (count, fraction)} from the summary's limits table, and the total line."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("  limits"))
    rows = {}
    for line in lines[i + 1:]:
        if line.startswith("              ("):
            continue
        if not line.startswith("    "):
            break
        label, rest = line[4:].split("  ", 1) if "  " in line[4:] else (line[4:], "")
        parts = rest.split()
        rows[label.strip()] = (float(parts[0]), float(parts[1]))
    total = rows.pop("(total)")
    return rows, total


def test_summary_answers_the_question(tmp_path, capsys):
    """The main job's summary: where the trajectories ended (fractions adding up to 1, the
    global minimum among them), the time to converge."""
    cfg = tmp_path / "short.toml"
    cfg.write_text(SHORT)
    out_dir = tmp_path / "o"
    code, out, err = _run([str(cfg), "--out", str(out_dir), "-n", "64", "--threads", "1"],
                          capsys)
    assert code == 0, err
    text = (out_dir / "summary.txt").read_text()
    assert text.strip() in out
    ds = io.load(out_dir / "results.zarr")
    status, t_final = ds["status"].values, ds["t_final"].values
    assert ds.sizes["trajectory"] == 64 and ds.attrs["gtol"] == 1e-6
    rows, total = _limit_rows(text)
    assert total[0] == 64 and total[1] == pytest.approx(1.0, abs=1e-9)
    assert sum(c for c, _ in rows.values()) == 64
    assert sum(f for _, f in rows.values()) == pytest.approx(1.0, abs=len(rows) * 5e-5)
    glob = [f for label, (_, f) in rows.items() if label.startswith("global minimum")]
    assert len(glob) == 1 and glob[0] > 0
    # classification rows cover exactly the CONVERGED trajectories, status rows the rest
    n_conv = int(np.sum(status == 1))
    assert 0 < n_conv < 64
    status_rows = ("diverged", "not converged: still moving at t_max")
    assert rows["diverged"][0] == np.sum(status == 2)
    assert rows["not converged: still moving at t_max"][0] == np.sum(status == 0)
    assert sum(c for label, (c, _) in rows.items() if label not in status_rows) == n_conv
    # the median time to converge is that of the stored CONVERGED trajectories
    line = next(s for s in text.splitlines() if s.startswith("  converge"))
    med = float(line.split("median ")[1].split(",")[0])
    assert med == pytest.approx(np.median(t_final[status == 1]), rel=1e-3)
    assert "quartiles" in line and f"of the {n_conv} converged" in line
    frac = float(out.split("reached it")[1].split()[0])
    assert frac > 0 and frac == pytest.approx(np.mean(ds["loss_final"].values <= 1e-5), abs=1e-4)
    # a second run into the same folder is refused unless --overwrite
    code, out, err = _run([str(cfg), "--out", str(out_dir), "-n", "10"], capsys)
    assert code == 2 and "--overwrite" in err
    code, out, err = _run([str(cfg), "--out", str(out_dir), "-n", "10", "--overwrite",
                           "--no-figure", "--format", "netcdf", "--threads", "1"], capsys)
    assert code == 0 and io.load(out_dir / "results.nc").sizes["trajectory"] == 10


def _report_has_limit_points(store, out_dir, capsys):
    """`narrowflow report` on a stored run: a populated limit-point figure and Morse table."""
    code = main(["report", str(store), "--out", str(out_dir)])
    capsys.readouterr()
    assert code == 0
    assert (out_dir / "limit_points.png").stat().st_size > 1000
    md = (out_dir / "summary.md").read_text()
    table = md.split("## Limit points modulo symmetry")[1]
    assert "| 0 |" in table and "global minimum (zero loss)" in table
    assert "no trajectory reached a critical point" not in md
    return md


def test_summary_teacher_all_at_global_minimum(tmp_path, capsys):
    """A one-neuron student of a one-neuron teacher: every trajectory converges to the
    (certified, zero-loss) global minimum, the table says so, and so does the report."""
    cfg = tmp_path / "t.toml"
    cfg.write_text("[network]\nwidth = 1\n[data]\nx = {start = -2, stop = 2, num = 16}\n"
                   "teacher = {width = 1, theta = [1.0, 1.5]}\n"
                   "[solver]\nmethod = 'dop853'\nt_span = [0.0, 1e4]\n[output]\nfigure = false\n")
    code, out, err = _run([str(cfg), "--out", str(tmp_path / "o"), "-n", "32", "--threads", "1"],
                          capsys)
    assert code == 0, err
    rows, total = _limit_rows(out)
    assert rows["global minimum (zero loss)"] == (32, 1.0)
    assert rows["diverged"] == (0, 0.0) and rows["not converged: still moving at t_max"] == (0, 0.0)
    assert "time to ||grad L|| < 1e-08: median" in out
    _report_has_limit_points(tmp_path / "o" / "results.zarr", tmp_path / "r", capsys)


def test_default_preset(tmp_path, capsys):
    """The built-in default: NF4 to convergence with method auto (a small N here)."""
    code, out, err = _run(["--out", str(tmp_path / "o"), "-n", "64", "--threads", "1"], capsys)
    assert code == 0, err
    for key in ("method auto", "gtol 1e-08", "t in [0, 1e+07]", "reached it", "final loss",
                "median escape time", "global min  0", "limits", "converge    time to"):
        assert key in out
    ds = io.load(tmp_path / "o" / "results.zarr")
    assert ds.sizes["trajectory"] == 64 and ds.attrs["seed"] == 12345
    assert ds["time"].values[-1] == 1e7 and ds.sizes["time"] > 50
    rows, total = _limit_rows(out)
    assert rows["global minimum (zero loss)"][1] > 0.9
    assert (tmp_path / "o" / "loss_bands.png").stat().st_size > 1000
    assert (tmp_path / "o" / "config.toml").read_text().startswith('preset = "nf4"')
    md = _report_has_limit_points(tmp_path / "o" / "results.zarr", tmp_path / "r", capsys)
    assert "a1=1, w1=1.5, a2=0.7, w2=-0.4" in md  # the teacher, in canonical form


def test_bench_preset(tmp_path, capsys):
    """--preset nf4-bench: the old default (dop853, t in [0, 100], no gtol, the old grid)."""
    code, out, err = _run(["--preset", "nf4-bench", "--out", str(tmp_path / "o"), "-n", "16",
                           "--threads", "1", "--no-figure"], capsys)
    assert code == 0, err
    assert "built-in preset nf4-bench" in out and "method dop853, t in [0, 100]" in out
    assert "no gtol: convergence not tested" in out
    ds = io.load(tmp_path / "o" / "results.zarr")
    assert ds.attrs["method"] == "dop853" and ds.attrs["t1"] == 100.0 and "gtol" not in ds.attrs
    assert np.array_equal(ds["time"].values, np.concatenate([[0.0], np.geomspace(0.01, 100, 40)]))
    assert set(np.unique(ds["status"].values)) <= {0, 2}
    # the effective config names its preset (and writes gtol off as 0): it runs the same again
    eff = (tmp_path / "o" / "config.toml").read_text()
    assert eff.startswith('preset = "nf4-bench"') and "gtol = 0.0" in eff
    code, out, err = _run([str(tmp_path / "o" / "config.toml"), "--out", str(tmp_path / "p"),
                           "--no-figure", "--threads", "1"], capsys)
    assert code == 0, err
    again = io.load(tmp_path / "p" / "results.zarr")
    assert np.array_equal(again["y_final"].values, ds["y_final"].values)
    assert "gtol" not in again.attrs


@pytest.mark.parametrize("args,where", [
    (["--preset", "nf5"], "--preset"),
    (["--preset", "bench"], "--preset"),
])
def test_unknown_preset_refused(tmp_path, capsys, args, where):
    code, out, err = _run([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert where in err and "unknown preset" in err and "nf4, nf4-bench" in err
    assert not (tmp_path / "o").exists()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"preset = {args[1]!r}\n")
    code, out, err = _run([str(cfg), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "config key 'preset'" in err and "nf4, nf4-bench" in err


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
    rows, total = _limit_rows(out)
    assert total == (100_000, 1.0) and rows["global minimum (zero loss)"][1] > 0.5


# --- issue 11: output safety, bounds before work, one-line refusals --------------------------

TINY = "[solver]\nmethod = 'dop853'\nt_span = [0.0, 10.0]\n"


def _no_integration(monkeypatch):
    """Make any integration fail loudly: refusals must come before it."""
    import narrowflow.ensemble as ens

    def boom(*a, **k):
        raise AssertionError("integrated although the run should have been refused first")
    monkeypatch.setattr(ens, "solve_ensemble", boom)


def test_users_config_in_out_folder_is_not_overwritten(tmp_path, capsys):
    """`narrowflow run w/config.toml --out w`: the hand-written config stays as it is; the
    effective config goes to config.effective.toml; a rerun replaces only our files."""
    w = tmp_path / "w"
    w.mkdir()
    mine = "# my notes, keep them\n" + TINY
    (w / "config.toml").write_text(mine)
    args = [str(w / "config.toml"), "--out", str(w), "-n", "8", "--threads", "1"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert (w / "config.toml").read_text() == mine
    eff = (w / "config.effective.toml").read_text()
    assert "[solver]" in eff and "config.effective.toml" in out
    assert (w / "summary.txt").exists() and (w / "loss_bands.png").exists()
    assert not list(w.glob(".*partial*"))
    # the same again with --overwrite: our files replaced, the user's config still untouched
    code, out, err = _run(args + ["--overwrite"], capsys)
    assert code == 0, err
    assert (w / "config.toml").read_text() == mine
    # --overwrite does not make the run write over CONFIG either
    assert io.load(w / "results.zarr").sizes["trajectory"] == 8


def test_foreign_files_refused_before_integration(tmp_path, capsys, monkeypatch):
    """A summary.txt / config.toml / loss_bands.png the program did not write (or that was
    edited since) is refused by name before any integration; --overwrite replaces it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "summary.txt").write_text("my own summary\n")
    args = [str(cfg), "--out", str(out_dir), "-n", "8", "--threads", "1"]
    with monkeypatch.context() as m:
        _no_integration(m)
        code, out, err = _run(args, capsys)
    assert code == 2 and "summary.txt" in err and "--overwrite" in err
    assert (out_dir / "summary.txt").read_text() == "my own summary\n"
    assert not (out_dir / "results.zarr").exists()
    code, out, err = _run(args + ["--overwrite"], capsys)
    assert code == 0, err
    assert (out_dir / "summary.txt").read_text() != "my own summary\n"
    # our files are ours: replaced on --overwrite; one the user edited is theirs again
    (out_dir / "config.toml").write_text((out_dir / "config.toml").read_text() + "# edited\n")
    (out_dir / "results.zarr").rename(tmp_path / "moved.zarr")
    with monkeypatch.context() as m:
        _no_integration(m)
        code, out, err = _run(args, capsys)
    listed = err.split("edited since):")[1].split(";")[0]
    assert code == 2 and "config.toml" in listed and "summary.txt" not in listed
    assert (out_dir / "config.toml").read_text().endswith("# edited\n")


def test_side_files_written_through_temporary_siblings(tmp_path, capsys, monkeypatch):
    """A figure that fails half-way leaves the previous figure whole and no partial file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out_dir = tmp_path / "o"
    args = [str(cfg), "--out", str(out_dir), "-n", "8", "--threads", "1"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    before = (out_dir / "loss_bands.png").read_bytes()
    from narrowflow import plots

    def half(fig, path, dpi=100):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(plots, "savefig", half)
    code, out, err = _run(args + ["--overwrite"], capsys)
    assert code == 2 and "disk full" in err
    assert (out_dir / "loss_bands.png").read_bytes() == before
    assert not [p for p in out_dir.iterdir() if "partial" in p.name]


@pytest.mark.parametrize("case", ["file", "under_file"])
def test_out_unusable_refused_before_integration(tmp_path, capsys, monkeypatch, case):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    f = tmp_path / "f"
    f.write_text("not a folder\n")
    out = f if case == "file" else f / "sub" / "o"
    _no_integration(monkeypatch)
    code, _, err = _run([str(cfg), "--out", str(out), "-n", "8"], capsys)
    assert code == 2 and "--out" in err and "Traceback" not in err
    assert f.read_text() == "not a folder\n"


def test_out_without_space_refused_before_integration(tmp_path, capsys, monkeypatch):
    """The estimated output (ensemble.output_nbytes) must fit in the free space."""
    import shutil
    from collections import namedtuple
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    _no_integration(monkeypatch)
    code, _, err = _run([str(cfg), "--out", str(tmp_path / "o"), "-n", "8"], capsys)
    assert code == 2 and "--out" in err and "free" in err


@pytest.fixture
def small_mount(tmp_path):
    """A real tmpfs (root can mount one; chmod does not stop root): yields mount(options)."""
    import subprocess
    mounted = []

    def mount(options):
        d = tmp_path / f"mnt{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "none", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): "
                        f"needs root with CAP_SYS_ADMIN")
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_out_read_only_filesystem_refused(tmp_path, capsys, monkeypatch, small_mount):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    ro = small_mount("ro,size=1m")
    _no_integration(monkeypatch)
    code, _, err = _run([str(cfg), "--out", str(ro / "o"), "-n", "8"], capsys)
    assert code == 2 and "read-only" in err and "--out" in err


def test_out_full_filesystem_refused(tmp_path, capsys, monkeypatch, small_mount):
    """A real small tmpfs: 20000 trajectories with 41 saved states each do not fit in 1 MiB."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + "[save]\nstates = true\n")
    small = small_mount("size=1m")
    _no_integration(monkeypatch)
    code, _, err = _run([str(cfg), "--out", str(small / "o"), "-n", "20000"], capsys)
    assert code == 2 and "GiB free" in err and not (small / "o").exists()


@pytest.mark.parametrize("args,key", [
    (["-n", str(2**63 - 1)], "initial.n"),
    (["-n", "300000000"], "initial.n"),
    (["--threads", str(2**31)], "solver.threads"),
    (["--threads", "0"], "--threads"),
])
def test_cli_bounds_before_work(tmp_path, capsys, monkeypatch, args, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    _no_integration(monkeypatch)
    code, _, err = _run([str(cfg), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and key in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("setup,key", [
    ("folder", "data.file"),
    ("empty_npy", "data.file"),
    ("bad_csv", "d.csv"),
    ("complex_npy", "data.file"),
])
def test_data_file_errors_one_line(tmp_path, capsys, setup, key):
    """Unreadable data files: exit 2 with one line naming the key or file, no traceback."""
    import numpy as np
    name = "d.csv" if setup == "bad_csv" else "d.npy"
    path = tmp_path / name
    if setup == "folder":
        path.mkdir()
    elif setup == "empty_npy":
        path.write_bytes(b"")
    elif setup == "bad_csv":
        path.write_text("1,2\n3,abc\n")
    else:
        np.save(path, np.array([[1 + 1j, 2], [3, 4]]))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[data]\nfile = '{name}'\n" + TINY)
    code, _, err = _run([str(cfg), "--out", str(tmp_path / "o"), "-n", "4"], capsys)
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1
