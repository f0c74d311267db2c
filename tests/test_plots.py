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
    assert len(ax.collections) == 2 and len(ax.lines) == 1  # two ribbons, the median
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.median(loss, axis=0))
    path = plots.savefig(fig, tmp_path / "bands.png")
    w, h = fig.get_size_inches() * 100
    _check_png(path, (round(w), round(h)))
