"""io: round trips through Zarr and NetCDF, flow reconstruction, refusals."""
import numpy as np
import pytest

import narrowflow as nf
from narrowflow import io, model


@pytest.fixture(scope="module")
def result():
    flow = model.nf4_benchmark()
    return nf.solve_ensemble(flow, model.nf4_initial_states(20), save_at=np.linspace(0, 100, 5),
                             escape_threshold=0.05, threads=1, seed=12345)


@pytest.mark.parametrize("name", ["run.zarr", "run.nc"])
def test_round_trip(tmp_path, result, name):
    path = io.save(result, tmp_path / name)
    ds = io.load(path)
    ref = result.to_xarray()
    for var in ("y_final", "t_final", "status", "nfev", "loss_final", "y_saved", "loss_saved",
                "escape_time", "data_x", "data_y"):
        assert np.array_equal(ds[var].values, ref[var].values, equal_nan=True), var
    assert list(ds["parameter"].values) == ["a1", "w1", "a2", "w2"]
    assert ds.attrs["seed"] == 12345 and ds.attrs["method"] == "dp5"
    with pytest.raises(FileExistsError, match="overwrite"):
        io.save(result, path)
    io.save(ds, path, overwrite=True)


def test_flow_from_xarray_rebuilds_the_problem(result):
    flow = io.flow_from_xarray(result.to_xarray())
    theta = np.array([0.3, -0.7, 1.1, 0.2])
    assert flow.loss(theta) == result.flow.loss(theta)
    assert np.array_equal(flow.grad(theta), result.flow.grad(theta))
    # a different problem is told apart
    other = nf.GradientFlow(nf.Network(width=2, activation="softplus"), result.flow.data)
    assert io.flow_from_xarray(nf.solve_ensemble(other, np.zeros((1, 4)), t_span=(0, 1),
                                                 threads=1).to_xarray()).loss(theta) != flow.loss(theta)


def test_quadratic_kappa_and_bias_survive(tmp_path):
    net = nf.Network(width=2, input_dim=2, activation="quadratic", kappa=0.25, bias=True)
    x = np.random.default_rng(0).standard_normal((5, 2))
    flow = nf.GradientFlow(net, nf.Dataset(x, x[:, :1] ** 2), weight_decay=0.01)
    res = nf.solve_ensemble(flow, np.full((2, net.n_params), 0.1), t_span=(0, 1), threads=1)
    back = io.flow_from_xarray(io.load(io.save(res, tmp_path / "q.nc")))
    th = np.linspace(-0.5, 0.5, net.n_params)
    assert back.loss(th) == pytest.approx(flow.loss(th), rel=1e-15)
    assert back.network.bias and back.weight_decay == 0.01


def test_bad_paths(tmp_path, result):
    with pytest.raises(ValueError, match="path"):
        io.save(result, tmp_path / "run.txt")
    with pytest.raises(FileNotFoundError, match="path"):
        io.load(tmp_path / "missing.zarr")
    with pytest.raises(TypeError, match="result_or_ds"):
        io.save([1, 2], tmp_path / "x.nc")
    with pytest.raises(ValueError, match="ds"):
        import xarray as xr
        io.flow_from_xarray(xr.Dataset())
