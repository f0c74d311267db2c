import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

from narrowflow import io, model, studies
from narrowflow.cli import main
from narrowflow.cli import report as report_cli
from narrowflow.ensemble import solve_ensemble


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A small stored ensemble (linear double well, one minimum modulo sign) as .zarr and .nc."""
    x = np.linspace(-1, 1, 9)
    flow = model.GradientFlow(model.Network(1, activation="linear"), model.Dataset(x, 2 * x),
                              weight_decay=0.1)
    th0 = np.random.default_rng(0).uniform(-2, 2, (120, 2))
    res = solve_ensemble(flow, th0, (0, 100), save_at=np.linspace(0, 100, 51),
                         escape_threshold=0.5)
    d = tmp_path_factory.mktemp("stored")
    paths = {}
    for ext in (".zarr", ".nc"):
        try:
            paths[ext] = io.save(res, d / f"run{ext}")
        except (ImportError, ValueError) as exc:  # a missing NetCDF backend
            paths[ext] = exc
    return res, paths


def _png_ok(path, min_w=300, min_h=200):
    img = mpimg.imread(path)
    assert img.shape[0] >= min_h and img.shape[1] >= min_w
    rgb = img[..., :3].reshape(-1, 3)
    assert np.mean(np.all(rgb > 0.99, axis=1)) < 0.97  # not a blank canvas
    return img.shape


def test_report_cli_zarr(stored, tmp_path, capsys):
    res, paths = stored
    out = tmp_path / "rep"
    assert main(["report", str(paths[".zarr"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("loss_bands.png", "limit_points.png", "escape_times.png"):
        assert str(out / name) in printed
        _png_ok(out / name)
    md = (out / "summary.md").read_text()
    assert "120 trajectories" in md and "global minimum" in md
    # the cluster table reports the computed minimum ±(r, r), r² = 2 − λ/m2
    r = np.sqrt(2 - 0.1 / np.mean(np.linspace(-1, 1, 9) ** 2))
    assert f"a1={r:.4g}, w1={r:.4g}" in md
    # the solver's escape median appears as computed from the stored escape times
    med = np.median(res.escape_time[np.isfinite(res.escape_time)])
    assert f"{med:.4g}" in md


def test_report_cli_netcdf_default_out_and_thresholds(stored):
    _, paths = stored
    p = paths[".nc"]
    if isinstance(p, Exception):
        pytest.skip(f"NetCDF not available: {p}")
    out = report_cli.default_out_dir(p)
    shutil.rmtree(out, ignore_errors=True)
    assert main(["report", str(p), "--thresholds", "1,0.3"]) == 0
    md = (out / "summary.md").read_text()
    assert "| 0.3 | all |" in md and "| 1 | all |" in md
    _png_ok(out / "escape_times.png")


def test_report_bad_input(stored, tmp_path, capsys):
    _, paths = stored
    assert main(["report", str(tmp_path / "missing.zarr")]) == 2
    assert "RESULTS" in capsys.readouterr().err
    assert main(["report", str(paths[".zarr"]), "--thresholds", "a,b"]) == 2
    assert "--thresholds" in capsys.readouterr().err
    assert main(["report", str(paths[".zarr"]), "--tol", "-1"]) == 2


def test_report_console_script(stored, tmp_path):
    """The installed entry point, as a user runs it."""
    _, paths = stored
    out = tmp_path / "cli"
    exe = shutil.which("narrowflow")
    cmd = [exe] if exe else [sys.executable, "-c",
                             "import sys; from narrowflow.cli import main; sys.exit(main())"]
    proc = subprocess.run(cmd + ["report", str(paths[".zarr"]), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.md").exists() and (out / "limit_points.png").exists()


def test_write_report_from_result_object(stored, tmp_path):
    res, _ = stored
    rep = report_cli.write_report(res, tmp_path / "obj")
    assert len(rep["figures"]) == 3
    assert isinstance(rep["limit_points"], studies.LimitPoints)
    assert len(rep["limit_points"]) == 1


def test_solver_escape_times_agree_with_saved_losses(stored):
    # two independent routes: the solver's root of the dense-output loss, and log-linear
    # interpolation of the saved losses, whose error is bounded by the save spacing and
    # shrinks with it
    res, _ = stored
    errs = []
    for n_save, spacing in ((51, 2.0), (401, 0.025)):
        r = solve_ensemble(res.flow, res.y_saved[:, 0], (0, 10 if n_save > 51 else 100),
                           save_at=np.linspace(0, 10 if n_save > 51 else 100, n_save),
                           escape_threshold=0.5)
        E = studies.escape_times(r, [0.5]).values[0]
        ok = np.isfinite(r.escape_time) & (r.escape_time > 0)
        assert ok.sum() > 50
        err = np.abs(E[ok] - r.escape_time[ok])
        assert np.all(err <= spacing)
        errs.append(np.max(err))
    assert errs[1] < errs[0] / 10


def test_report_writes_only_applicable_figures(tmp_path):
    # no save_at, no escape threshold: no loss bands, no escape times; clusters still
    x = np.linspace(-1, 1, 9)
    flow = model.GradientFlow(model.Network(1, activation="linear"), model.Dataset(x, 2 * x))
    res = solve_ensemble(flow, np.random.default_rng(3).uniform(-2, 2, (30, 2)), (0, 200))
    path = io.save(res, tmp_path / "plain.zarr")
    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["limit_points.png", "summary.md"]
    md = (tmp_path / "r" / "summary.md").read_text()
    assert "Escape times" not in md and "Loss over time" not in md
    # without weight decay a·w = 2 is a line of zero-loss minima: certified global, degenerate
    assert "global minimum (zero loss), degenerate (1 zero eigenvalue)" in md
    assert "one manifold of critical points" in md


def test_run_then_report_as_in_the_readme(tmp_path, capsys):
    """`narrowflow run -n N --out DIR` then `narrowflow report DIR/results.zarr`: the report
    lands next to the results and holds every applicable figure."""
    out = tmp_path / "narrowflow-out"
    if main(["run", "-n", "2000", "--out", str(out)]) != 0:
        pytest.fail(capsys.readouterr().err)
    stores = sorted(out.glob("results.*"))
    assert stores, list(out.iterdir())
    capsys.readouterr()
    assert main(["report", str(stores[0])]) == 0
    rep = report_cli.default_out_dir(stores[0])
    assert rep.parent == out
    for name in ("loss_bands.png", "limit_points.png", "summary.md"):
        assert (rep / name).exists()
    _png_ok(rep / "loss_bands.png")
    _png_ok(rep / "limit_points.png")
    assert "2000 trajectories" in (rep / "summary.md").read_text()


def test_report_gd_comparison(stored, tmp_path, capsys):
    _, paths = stored
    out = tmp_path / "gd"
    assert main(["report", str(paths[".zarr"]), "--out", str(out), "--gd", "0.01,0.1,1.6",
                 "--gd-trajectories", "40"]) == 0
    _png_ok(out / "gd_vs_flow.png")
    md = (out / "summary.md").read_text()
    rows = [ln.split("|") for ln in md.splitlines() if ln.startswith("| 0.01 |")
            or ln.startswith("| 0.1 |") or ln.startswith("| 1.6 |")]
    assert len(rows) == 3
    d = [float(r[2]) for r in rows]
    assert 7 < d[1] / d[0] < 13  # first order in η: ten times the rate, ten times the gap
    assert rows[2][4].strip().startswith("1.000")  # beyond 2/λ_max every limit changes
    assert rows[0][4].strip().startswith("0.000")
    capsys.readouterr()
    assert main(["report", str(paths[".zarr"]), "--out", str(out), "--gd", "0,1"]) == 2
    assert "--gd" in capsys.readouterr().err


@pytest.mark.parametrize("ext", [".zarr", ".nc"])
def test_report_accepts_the_run_folder(stored, tmp_path, capsys, ext):
    """`narrowflow report DIR` with DIR the folder `narrowflow run --out DIR` made (holding
    results.zarr or results.nc) reports on the store inside it."""
    res, paths = stored
    if isinstance(paths[ext], Exception):
        pytest.skip(f"NetCDF not available: {paths[ext]}")
    run_dir = tmp_path / "narrowflow-out"
    run_dir.mkdir()
    io.save(res, run_dir / f"results{ext}")
    (run_dir / "summary.txt").write_text("run summary\n")
    assert main(["report", str(run_dir)]) == 0, capsys.readouterr().err
    rep = run_dir / "results_report"            # where `report DIR/results.zarr` puts it
    assert (rep / "summary.md").exists() and (rep / "limit_points.png").exists()
    assert "120 trajectories" in (rep / "summary.md").read_text()


def test_report_folder_without_results_is_refused_by_name(stored, tmp_path, capsys):
    res, _ = stored
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "results.zarr" in err and "results.nc" in err
    assert sorted(p.name for p in empty.iterdir()) == ["notes.txt"]     # nothing written
    # a folder holding both: ambiguous, refused naming both
    both = tmp_path / "both"
    both.mkdir()
    io.save(res, both / "results.zarr")
    io.save(res, both / "results.nc")
    assert main(["report", str(both)]) == 2
    err = capsys.readouterr().err
    assert str(both / "results.zarr") in err and str(both / "results.nc") in err
