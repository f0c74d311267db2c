import numpy as np
import pytest
import xarray as xr

from narrowflow import analysis


def _loss_dataset(n=40, k=15, seed=0, nan_tail=True):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, k)
    loss = np.exp(-rng.uniform(0.1, 2.0, (n, 1)) * t) + rng.uniform(0, 1e-3, (n, k))
    if nan_tail:
        loss[0, 10:] = np.nan  # a trajectory that stopped early
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), rng.normal(size=(n, 4))),
                     "loss_saved": (("trajectory", "time"), loss)},
                    coords={"time": t, "parameter": ["a1", "w1", "a2", "w2"]})
    return ds, loss


class _Result:  # duck-typed EnsembleResult (attributes of the shared contract)
    def __init__(self, ds):
        self.y_final = ds.y_final.values
        self.loss_saved = ds.loss_saved.values
        self.t_saved = ds.time.values


def test_loss_quantiles_equal_numpy():
    ds, loss = _loss_dataset()
    q = (5, 25, 50, 75, 95)
    da = analysis.loss_quantiles(ds, q)
    assert da.dims == ("quantile", "time") and da.shape == (5, loss.shape[1])
    np.testing.assert_array_equal(da.values, np.nanpercentile(loss, q, axis=0))
    np.testing.assert_array_equal(da["n_valid"].values, np.sum(~np.isnan(loss), axis=0))
    # the same from a result object
    da2 = analysis.loss_quantiles(_Result(ds), q)
    np.testing.assert_array_equal(da2.values, da.values)
    # and different quantiles give different numbers (the comparison can fail)
    assert not np.allclose(analysis.loss_quantiles(ds, (10, 90)).values, da.values[[0, -1]])


def test_loss_quantiles_bad_input():
    ds, _ = _loss_dataset()
    with pytest.raises(ValueError, match="quantiles"):
        analysis.loss_quantiles(ds, (5, 150))
    with pytest.raises(ValueError, match="saved losses"):
        analysis.loss_quantiles(ds.drop_vars("loss_saved"))
    with pytest.raises(TypeError, match="result"):
        analysis.loss_quantiles(np.zeros(3))
