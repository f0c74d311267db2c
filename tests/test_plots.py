import numpy as np
import pytest
import xarray as xr
from matplotlib import image as mpimg

from narrowflow import plots


def _check_png(path, size_px):
    img = mpimg.imread(path)
    assert img.shape[:2] == (size_px[1], size_px[0])
    # non-empty: more than a blank canvas (many distinct colours, not all white)
    rgb = img[..., :3].reshape(-1, 3)
    assert np.mean(np.all(rgb > 0.99, axis=1)) < 0.97
    assert len(np.unique(np.round(rgb, 2), axis=0)) > 10


def test_loss_bands_png(tmp_path):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 10, 30)
    loss = np.exp(-rng.uniform(0.1, 1, (60, 1)) * t) + 1e-4
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), rng.normal(size=(60, 4))),
                     "loss_saved": (("trajectory", "time"), loss)}, coords={"time": t})
    fig = plots.loss_bands(ds)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_xscale() == "linear"           # the grid starts at t = 0
    assert len(ax.collections) == 2 and len(ax.lines) == 1  # two ribbons, the median
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.median(loss, axis=0))
    path = plots.savefig(fig, tmp_path / "bands.png")
    w, h = fig.get_size_inches() * 100
    _check_png(path, (round(w), round(h)))


def test_loss_bands_log_time_axis_for_log_spaced_grid():
    t = np.geomspace(0.1, 100, 20)
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), np.zeros((3, 4))),
                     "loss_saved": (("trajectory", "time"), np.exp(-np.outer([1, 2, 3], t)) + 1e-3)},
                    coords={"time": t})
    assert plots.loss_bands(ds).axes[0].get_xscale() == "log"
    assert plots.loss_bands(ds, xscale="linear").axes[0].get_xscale() == "linear"
    with_zero = ds.assign_coords(time=np.concatenate([[0.0], t[1:]]))
    assert plots.loss_bands(with_zero).axes[0].get_xscale() == "symlog"
    with pytest.raises(ValueError, match="xscale"):
        plots.loss_bands(ds, xscale="symlog")


# --- every figure, drawn headless from real runs, saved, read back --------------------

import re  # noqa: E402
from pathlib import Path  # noqa: E402

from narrowflow import model, studies  # noqa: E402
from narrowflow.ensemble import solve_ensemble  # noqa: E402


def _double_well(width=1):
    x = np.linspace(-1, 1, 9)
    return model.GradientFlow(model.Network(width, activation="linear"), model.Dataset(x, 2 * x),
                              weight_decay=0.1)


def _saved_size(fig, path):
    w, h = fig.get_size_inches() * fig.dpi
    _check_png(path, (round(w), round(h)))


@pytest.fixture(scope="module")
def run():
    flow = _double_well()
    th0 = np.random.default_rng(0).uniform(-2, 2, (60, 2))
    res = solve_ensemble(flow, th0, (0, 60), save_at=np.linspace(0, 60, 31))
    return res, studies.limit_points(res, symmetric=False)


def test_limit_points_png(run, tmp_path):
    res, lp = run
    fig = plots.limit_points(lp)
    assert len(fig.axes) == 2
    # one bar per cluster, sizes as computed
    assert sorted(b.get_width() for b in fig.axes[0].patches) == sorted(c.size for c in lp.clusters)
    _saved_size(fig, plots.savefig(fig, tmp_path / "lp.png"))
    with pytest.raises(TypeError, match="lp"):
        plots.limit_points(res)


def test_escape_histogram_png(run, tmp_path):
    res, lp = run
    thr = [1.0, 0.3]
    fig = plots.escape_histogram(res, thr, lp)
    assert len(fig.axes) == 2
    E = studies.escape_times(res, thr).values
    # grey "all" bars hold every trajectory that crossed
    from matplotlib.patches import Rectangle
    bars = [p.get_height() for p in fig.axes[1].patches if isinstance(p, Rectangle)]
    assert len(bars) == 30 and sum(bars) == np.sum(np.isfinite(E[1]))
    _saved_size(fig, plots.savefig(fig, tmp_path / "esc.png"))


def test_basin_map_png(tmp_path):
    flow = _double_well(2)
    bm = studies.basin_map(flow, np.zeros(4), ("a1", "w1"), ((-2, 2), (-2, 2)), 24,
                            t_span=(0, 120), symmetric=False)
    fig = plots.basin_map(bm)
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (24, 24)
    assert len(fig.axes[0].get_legend().get_texts()) == len(np.unique(bm.labels))
    _saved_size(fig, plots.savefig(fig, tmp_path / "basin.png"))


def test_gd_vs_flow_png(tmp_path):
    flow = _double_well()
    th0 = np.random.default_rng(1).uniform(-1.5, 1.5, (16, 2))
    cmp = studies.gd_vs_flow(flow, th0, [0.02, 0.1, 1.5], t_end=40, t_compare=5, n_times=6,
                              symmetric=False)
    fig = plots.gd_vs_flow(cmp)
    ax1, ax2 = fig.axes
    assert len(ax1.lines) == 3
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), cmp.changed)
    _saved_size(fig, plots.savefig(fig, tmp_path / "gd.png"))


# --- the README's figure example ---------------------------------------------------------

README_BASINS = '''
import numpy as np
import narrowflow as nf
from narrowflow import model, plots, studies

nf4 = model.nf4_benchmark()                    # the NF4 problem of docs/design.md §6, here with weight decay
flow = nf.GradientFlow(nf4.network, nf4.data, weight_decay=0.01)
bm = studies.basin_map(flow, base=np.array([1.0, 0.0, -0.5, 0.0]), params=("w1", "w2"),
                        ranges=((-3, 3), (-3, 3)), shape=(80, 80), t_span=(0, 2000),
                        gtol=1e-8, symmetric=False)   # symmetric=False: tell the copies apart
print(bm.limit_points.to_markdown())
plots.savefig(plots.basin_map(bm), "basins_nf4.png")
'''


def _run_snippet(code, cwd):
    import os
    old = os.getcwd()
    os.chdir(cwd)
    try:
        ns = {}
        exec(compile(code, "<README>", "exec"), ns)
        return ns
    finally:
        os.chdir(old)


def test_readme_basin_example(tmp_path):
    ns = _run_snippet(README_BASINS, tmp_path)
    _check_png(tmp_path / "basins_nf4.png", (840, 540))
    bm = ns["bm"]
    # every copy of the (weight-decayed) teacher is one global minimum modulo symmetry
    cps = bm.limit_points.clusters
    assert len(cps) == 8 and all(c.kind == "global minimum" for c in cps)
    sym = studies.Symmetry.of(ns["flow"])
    assert max(sym.distance(c.theta, cps[0].theta) for c in cps) < 1e-6


def _readme_figure_blocks():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        return []
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    return [b for b in blocks if "plots." in b and "savefig" in b]


@pytest.mark.parametrize("block", _readme_figure_blocks() or [None])
def test_readme_figure_blocks_run(block, tmp_path):
    """Every Python block of README.md that draws a figure with narrowflow.plots runs and
    writes non-empty PNGs."""
    if block is None:
        pytest.skip("README.md has no narrowflow.plots figure example yet")
    _run_snippet(block, tmp_path)
    pngs = list(tmp_path.glob("*.png"))
    assert pngs
    for p in pngs:
        img = mpimg.imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100
