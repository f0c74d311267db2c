"""io: round trips through Zarr and NetCDF, flow reconstruction, refusals."""
import contextlib
import threading

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
    assert ds.attrs["seed"] == 12345 and ds.attrs["method"] == result.method
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


# -- completion marker, schema, safe replacement ------------------------------------------

def _marker_attrs(path):
    import xarray as xr
    if path.suffix == ".zarr":
        import zarr
        return dict(zarr.open_group(path, mode="r").attrs)
    with xr.open_dataset(path) as ds:
        return dict(ds.attrs)


@pytest.mark.parametrize("name", ["run.zarr", "run.nc"])
def test_store_carries_completion_marker_and_schema(tmp_path, result, name):
    path = io.save(result, tmp_path / name)
    attrs = _marker_attrs(path)
    assert int(attrs[io.COMPLETE_ATTR]) == 1
    promised = io._variable_list(attrs[io.VARIABLES_ATTR])
    ref = result.to_xarray()
    assert set(promised) == set(ref.data_vars) | set(ref.coords)
    # nothing is left next to the store (the temporary sibling was renamed into place)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    # the in-memory Dataset keeps the marker and can be saved again
    io.save(io.load(path), tmp_path / ("again" + path.suffix))


def test_load_refuses_a_store_without_completion_marker(tmp_path, result):
    import zarr
    path = io.save(result, tmp_path / "run.zarr")
    g = zarr.open_group(path, mode="r+")
    attrs = dict(g.attrs)
    del attrs[io.COMPLETE_ATTR]                      # as if the write had stopped before it
    g.attrs.clear()
    g.attrs.update(attrs)
    with pytest.raises(ValueError, match="completion marker .*narrowflow_complete.* is absent"):
        io.load(path)


def test_load_refuses_a_store_missing_promised_variables(tmp_path, result):
    import shutil
    path = io.save(result, tmp_path / "run.zarr")
    for var in ("status", "nfev"):                   # a partial store: arrays never written
        shutil.rmtree(path / var)
    with pytest.raises(ValueError, match=r"missing.*nfev.*status|missing.*status.*nfev"):
        io.load(path)


def test_load_refuses_foreign_stores(tmp_path):
    import xarray as xr
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_zarr(foreign, consolidated=False)
    with pytest.raises(ValueError, match="not a narrowflow result"):
        io.load(foreign)
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a Zarr store"):
        io.load(folder)
    nc = tmp_path / "foreign.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(nc)
    with pytest.raises(ValueError, match="not a narrowflow result"):
        io.load(nc)


@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite_never_deletes_a_foreign_folder(tmp_path, result, overwrite):
    path = tmp_path / "results.zarr"
    path.mkdir()
    (path / "precious.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a narrowflow result"):
        io.save(result, path, overwrite=overwrite)
    with pytest.raises(FileExistsError, match="not a narrowflow result"):
        io.check_save_path(path, overwrite=overwrite)      # the same check, before any work
    assert (path / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.zarr"]
    # a foreign file named like a NetCDF result, likewise
    nc = tmp_path / "results.nc"
    nc.write_text("my notes")
    with pytest.raises(FileExistsError, match="not a narrowflow result"):
        io.save(result, nc, overwrite=overwrite)
    assert nc.read_text() == "my notes"


def _failing_dataset(result, ran=None):
    """The result's Dataset with one dask-backed variable whose second chunk raises when
    computed: the write fails midway through a real store. `ran` (a list) gets (chunk, thread
    id) for every chunk computed, in order."""
    da = pytest.importorskip("dask.array")
    ds = result.to_xarray()
    good = ds["y_final"].values

    def block(x, block_info=None):
        chunk = block_info[0]["chunk-location"][0]
        if ran is not None:
            ran.append((chunk, threading.get_ident()))
        if chunk == 1:
            raise OSError("injected failure: disk full")
        return x
    ds["y_final"] = (ds["y_final"].dims,
                     da.from_array(good, chunks=(5, good.shape[1])).map_blocks(block,
                                                                             dtype=good.dtype))
    return ds


@pytest.mark.parametrize("name", ["run.zarr", "run.nc"])
def test_failed_overwrite_keeps_the_old_result(tmp_path, result, name):
    path = io.save(result, tmp_path / name)
    before = io.load(path)
    with pytest.raises(OSError, match="injected failure"):
        io.save(_failing_dataset(result), path, overwrite=True)
    after = io.load(path)                             # the old result, whole
    for var in before.data_vars:
        assert np.array_equal(after[var].values, before[var].values, equal_nan=True), var
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]   # no debris
    assert io.check_save_path(path, overwrite=True) == path
    with pytest.raises(FileExistsError, match="overwrite"):
        io.check_save_path(path)
    # a failed first write leaves nothing behind at all
    with pytest.raises(OSError, match="injected failure"):
        io.save(_failing_dataset(result), tmp_path / ("new" + path.suffix))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    # and a good overwrite replaces it
    io.save(result, path, overwrite=True)
    assert np.array_equal(io.load(path)["y_final"].values, result.y_final)


@pytest.mark.parametrize("name", ["run.zarr", "run.nc"])
@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_failed_write_stops_at_once(tmp_path, result, name, scheduler):
    """Under Dask's default threads or with a distributed Client current, a dask-backed
    result is written one chunk after another in the calling thread: the failed chunk is the
    last one computed, so no other chunk can land in the temporary store after save removed
    it (with worker threads one sometimes did, leaving debris beside the result: seen in a
    full test run with threads, 4 times in 60 with a Client)."""
    path = io.save(result, tmp_path / name)
    ran = []
    with contextlib.ExitStack() as stack:
        if scheduler == "distributed":
            distributed = pytest.importorskip("distributed")
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None))
            stack.enter_context(distributed.Client(cluster))
        with pytest.raises(OSError, match="injected failure"):
            io.save(_failing_dataset(result, ran), path, overwrite=True)
    assert ran and ran[-1][0] == 1, ran
    assert {t for _, t in ran} == {threading.get_ident()}
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert np.array_equal(io.load(path)["y_final"].values, result.y_final)


def test_load_reads_distributed_stores_by_their_chunk_markers(tmp_path):
    pytest.importorskip("dask")
    import zarr

    from narrowflow import distributed as D, ensemble
    flow = model.nf4_benchmark()
    problem = ensemble.make_problem(flow, t_span=(0.0, 1.0))
    init, theta0 = D.resolve_initial(problem.n_params, seed=1, n=8)
    ds, enc = D._template(problem, init, 4, D.resolved_config(problem, init), theta0)
    store = tmp_path / "dist.zarr"
    D._create_store(store, ds, enc)
    with pytest.raises(ValueError, match=r"incomplete.*chunks \[0, 1\]"):
        io.load(store)
    g = zarr.open_group(store, mode="r+")
    g["chunk_complete"][0] = True
    with pytest.raises(ValueError, match=r"incomplete.*chunks \[1\]"):
        io.load(store)
    g["chunk_complete"][1] = True
    back = io.load(store)                              # complete by distributed's own rule
    assert back.sizes["trajectory"] == 8 and "chunk_complete" in back
