"""narrowflow.distributed on a real LocalCluster (2 worker processes, 1 thread each) with real
Zarr stores on disk: bitwise equality with the single-process solver, a worker killed mid-run,
interrupt and resume, configuration checks, awkward chunkings."""
from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

import narrowflow as nf  # noqa: E402
from narrowflow import distributed as D  # noqa: E402
from narrowflow import initial, io  # noqa: E402
from narrowflow.cli import cluster_args  # noqa: E402
from narrowflow.cli.run import run_distributed  # noqa: E402
from narrowflow.model import nf4_benchmark  # noqa: E402

# NF4 with N = 20,000 in 8 chunks; t_span shortened from (0, 100) to keep the file at a few
# tens of seconds on 2 cores (the comparison does not depend on the end time).
N, CHUNK, SEED = 20_000, 2_500, 2024
OPTS = dict(t_span=(0.0, 30.0), rtol=1e-8, atol=1e-10)
VARS = ("y_final", "t_final", "status", "nfev", "n_accepted", "n_rejected", "loss_final",
        "y_saved", "loss_saved", "escape_time")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    c = Client(cluster)
    c.wait_for_workers(2)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def flow():
    return nf4_benchmark()


@pytest.fixture(scope="module")
def reference(flow):
    theta0 = initial.sample(N, flow.n_params, SEED)
    return nf.solve_ensemble(flow, theta0, threads=2, seed=SEED, **OPTS)


def assert_store_equals(store, ref, rows=slice(None)):
    """Every result variable of the store equals the in-process result bitwise (NaN == NaN)."""
    ds = io.load(store)
    checked = 0
    for name in VARS:
        want = getattr(ref, name)
        if want is None:
            assert name not in ds
            continue
        got = ds[name].values[rows]
        want = want[rows]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        # bitwise, NaNs included
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), name
        checked += 1
    assert checked >= 7
    return ds


def _gated(gate, mode):
    """A stand-in for D.run_chunk that holds each task on its worker until the test allows it.

    A closure (cloudpickled by value, so the workers need not import this file); it runs the
    real ``narrowflow.distributed.run_chunk`` of the worker process. Each attempt first leaves
    ``started-<chunk>-<pid>`` in the folder `gate`, then, by `mode`:

    - "pair": waits until tasks have started in two different worker processes (so both
      workers of the cluster compute a chunk, whatever the scheduler's choices);
    - "hold": waits for the file ``release``; a process for which ``doomed-<pid>`` exists
      never computes (the test kills it; ``doomed`` is written before ``release``);
    - "first:M": the first M attempts to claim one of the files ``slot-0`` .. ``slot-<M-1>``
      compute their chunk; every other attempt waits for ``stop`` (written when the client
      is interrupted) and then fails without computing, so exactly M chunks ever complete.

    Synchronised on files, not on timing; the 600 s bound is only a net against a hang.
    """
    gate = str(gate)

    def path(name):
        return os.path.join(gate, name)

    def touch(name, exclusive=False):
        flags = os.O_CREAT | os.O_WRONLY | (os.O_EXCL if exclusive else 0)
        os.close(os.open(path(name), flags))

    def wait_for(cond, what):
        deadline = time.monotonic() + 600
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate: {what} never happened")
            time.sleep(0.01)

    def started_pids():
        return {name.split("-")[2] for name in os.listdir(gate) if name.startswith("started-")}

    def run_chunk(*args, **kw):
        from narrowflow import distributed
        pid = os.getpid()
        touch(f"started-{args[5]}-{pid}")
        if mode == "pair":
            wait_for(lambda: len(started_pids()) >= 2, "a task on a second worker")
        elif mode == "hold":
            wait_for(lambda: os.path.exists(path("release"))
                     and not os.path.exists(path(f"doomed-{pid}")), "the release")
        else:
            for i in range(int(mode.split(":")[1])):
                try:
                    touch(f"slot-{i}", exclusive=True)
                    break
                except FileExistsError:
                    pass
            else:
                wait_for(lambda: os.path.exists(path("stop")), "the interrupt")
                raise RuntimeError("held until the client was interrupted")
        return distributed.run_chunk(*args, **kw)

    return run_chunk


def _started(gate):
    """(chunk, pid) of every task attempt that reached the gate."""
    out = []
    for name in os.listdir(gate):
        if name.startswith("started-"):
            _, k, pid = name.split("-")
            out.append((int(k), int(pid)))
    return out


def test_bitwise_equal_to_single_process(client, flow, reference, tmp_path, monkeypatch):
    store = tmp_path / "run.zarr"
    gate = tmp_path / "gate"
    gate.mkdir()
    client.wait_for_workers(2)
    # both workers take part by construction: a task starts computing only once tasks have
    # started in two worker processes (not left to the scheduler's luck)
    with monkeypatch.context() as m:
        m.setattr(D, "run_chunk", _gated(gate, "pair"))
        run = D.solve_distributed(flow, seed=SEED, n=N, store=store, chunk=CHUNK,
                                  client=client, **OPTS)
    assert run.n_chunks == 8 and sorted(run.computed) == list(range(8)) and not run.skipped
    assert len({t["pid"] for t in run.tasks}) == 2
    ds = assert_store_equals(store, reference)
    assert ds["chunk_complete"].values.all()
    assert ds.attrs["seed"] == SEED and ds.attrs["chunk_size"] == CHUNK
    # the store is a result in the schema: the problem can be rebuilt from it
    f2 = io.flow_from_xarray(ds)
    th = reference.y_final[3]
    assert f2.loss(th) == flow.loss(th)
    assert list(ds["parameter"].values) == ["a1", "w1", "a2", "w2"]
    # a second identical call is a no-op resume
    again = D.solve_distributed(flow, seed=SEED, n=N, store=store, chunk=CHUNK, client=client,
                                **OPTS)
    assert again.computed == [] and sorted(again.skipped) == list(range(8))
    res = again.to_result()
    assert np.array_equal(res.y_final, reference.y_final)
    assert res.seed == SEED


def test_killed_worker_loses_nothing(client, flow, reference, tmp_path, monkeypatch):
    """A worker is SIGKILLed while it holds a chunk's task (held on the worker until the kill,
    so the kill always lands mid-task however fast the machine): the chunk is computed by
    another process and the store equals the single-process result bitwise."""
    import threading
    store = tmp_path / "killed.zarr"
    gate = tmp_path / "gate"
    gate.mkdir()
    killed = {}

    def kill_one():
        try:
            deadline = time.monotonic() + 600      # a net against a hang only
            while not _started(gate):
                assert time.monotonic() < deadline, "no task ever started"
                time.sleep(0.01)
            k, pid = _started(gate)[0]
            (gate / f"doomed-{pid}").touch()       # its task never computes, killed or not
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, chunk=k)
        except BaseException as exc:               # reported by the test below
            killed["error"] = exc
        finally:
            (gate / "release").touch()              # every other task may compute now

    killer = threading.Thread(target=kill_one, daemon=True)
    with monkeypatch.context() as m:
        m.setattr(D, "run_chunk", _gated(gate, "hold"))
        killer.start()
        try:
            run = D.solve_distributed(flow, seed=SEED, n=N, store=store, chunk=CHUNK,
                                      client=client, **OPTS)
        finally:
            (gate / "release").touch()
            killer.join()
    assert "error" not in killed, killed.get("error")
    assert killed, "the kill never happened"
    assert run.complete and sorted(run.computed) == list(range(8))
    # the chunk the dead worker was running was finished by another process
    by = {t["chunk"]: t["pid"] for t in run.tasks}
    assert by[killed["chunk"]] != killed["pid"]
    assert killed["pid"] not in by.values()
    assert killed["pid"] not in client.run(os.getpid).values()
    assert_store_equals(store, reference)
    # the nanny restarts it for the next tests (an event: the scheduler sees it register)
    client.wait_for_workers(2)


def test_interrupt_then_resume(client, flow, reference, tmp_path, monkeypatch):
    """KeyboardInterrupt in the client after 3 finished chunks: exactly those 3 are marked
    (every other task is held on its worker until the interrupt, then fails without
    computing, so no cancelled task can finish a chunk afterwards); the resume computes
    the other 5 and the store equals the single-process result bitwise."""
    store = tmp_path / "interrupted.zarr"
    gate = tmp_path / "gate"
    gate.mkdir()

    def interrupt(done, total):
        if done == 3:
            (gate / "stop").touch()
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(D, "run_chunk", _gated(gate, "first:3"))
        try:
            with pytest.raises(KeyboardInterrupt):
                D.solve_distributed(flow, seed=SEED, n=N, store=store, chunk=CHUNK,
                                    client=client, progress=interrupt, **OPTS)
        finally:
            (gate / "stop").touch()       # held tasks leave their workers, also on a failure
    # the store's state is final now: the held tasks write nothing, whenever they leave
    state = D.store_state(store)
    done = np.flatnonzero(state["complete"])
    missing = np.flatnonzero(~state["complete"])
    assert len(done) == 3 and len(missing) == 5
    # finished chunks already hold their final bytes; the others are marked pending
    ds = D.open_store(store).load()
    for k in range(8):
        rows = slice(k * CHUNK, (k + 1) * CHUNK)
        if state["complete"][k]:
            assert np.array_equal(ds["y_final"].values[rows], reference.y_final[rows])
        else:
            assert np.all(ds["status"].values[rows] == D.STATUS_PENDING)
    with pytest.raises(ValueError, match="incomplete"):
        D.load_result(store)

    run = D.solve_distributed(flow, seed=SEED, n=N, store=store, client=client, **OPTS)
    assert sorted(run.computed) == missing.tolist()          # only the missing chunks
    assert sorted(run.skipped) == done.tolist()
    assert sum(t["n"] for t in run.tasks) == len(missing) * CHUNK
    assert_store_equals(store, reference)


def test_other_configuration_refused_and_overwrite(client, flow, tmp_path, monkeypatch):
    store = tmp_path / "cfg.zarr"
    opts = dict(t_span=(0.0, 5.0))
    D.solve_distributed(flow, seed=1, n=64, store=store, chunk=16, client=client, **opts)
    with pytest.raises(ValueError, match=r"different configuration.*initial\.seed.*overwrite"):
        D.solve_distributed(flow, seed=2, n=64, store=store, chunk=16, client=client, **opts)
    with pytest.raises(ValueError, match=r"different configuration.*rtol"):
        D.solve_distributed(flow, seed=1, n=64, store=store, chunk=16, client=client,
                            rtol=1e-6, **opts)
    with pytest.raises(ValueError, match=r"chunk: store has 16, this run has 32"):
        D.solve_distributed(flow, seed=1, n=64, store=store, chunk=32, client=client, **opts)
    other = nf.GradientFlow(flow.network, nf.Dataset(flow.data.x, 2 * flow.data.y))
    with pytest.raises(ValueError, match="data_sha256"):
        D.solve_distributed(other, seed=1, n=64, store=store, chunk=16, client=client, **opts)
    # the compiler settings change the numbers (FMA: last bits of y_final): refused too, checked
    # before anything is compiled
    from narrowflow import jit
    assert D.store_state(store)["config"]["build"]["rhs_fma"] == bool(jit.FMA)
    with monkeypatch.context() as m:
        m.setattr(jit, "FMA", {} if jit.FMA else {"fastmath": {"contract"}})
        with pytest.raises(ValueError, match=r"different configuration.*build\.rhs_fma"):
            D.solve_distributed(flow, seed=1, n=64, store=store, chunk=16, client=client,
                                **opts)
    # the refused calls left the store as it was
    assert D.store_state(store)["config"]["initial"]["seed"] == 1

    run = D.solve_distributed(flow, seed=2, n=64, store=store, chunk=32, client=client,
                              overwrite=True, **opts)
    assert sorted(run.computed) == [0, 1]
    ref = nf.solve_ensemble(flow, initial.sample(64, 4, 2), threads=1, **opts)
    assert_store_equals(store, ref)
    assert D.store_state(store)["config"]["initial"]["seed"] == 2


def test_refuses_foreign_paths(client, flow, tmp_path):
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a Zarr store"):
            D.solve_distributed(flow, seed=1, n=4, store=plain, client=client,
                                overwrite=overwrite, t_span=(0.0, 1.0))
    assert (plain / "keep.txt").read_text() == "mine"
    import xarray as xr
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_zarr(foreign, consolidated=False)
    with pytest.raises(ValueError, match="not a narrowflow store"):
        D.solve_distributed(flow, seed=1, n=4, store=foreign, client=client, t_span=(0.0, 1.0))
    with pytest.raises(FileExistsError, match="refusing to delete"):
        D.solve_distributed(flow, seed=1, n=4, store=foreign, client=client, overwrite=True,
                            t_span=(0.0, 1.0))
    assert np.array_equal(xr.open_zarr(foreign, consolidated=False)["v"].values, np.arange(3.0))
    # a result saved by an in-process run (io.save): refused, but --overwrite may replace it
    single = tmp_path / "single.zarr"
    io.save(nf.solve_ensemble(flow, initial.sample(3, 4, 1), t_span=(0.0, 1.0), threads=1),
            single)
    with pytest.raises(ValueError, match="written in one process"):
        D.solve_distributed(flow, seed=1, n=4, store=single, client=client, t_span=(0.0, 1.0))
    run = D.solve_distributed(flow, seed=1, n=4, store=single, client=client, overwrite=True,
                              t_span=(0.0, 1.0))
    assert run.complete and D.store_state(single)["config"]["initial"]["n"] == 4


@pytest.mark.parametrize("n, chunk, n_chunks", [(50, 1000, 1), (103, 25, 5), (1, 8, 1),
                                                (7, 1, 7)])
def test_awkward_chunkings(client, flow, tmp_path, n, chunk, n_chunks):
    opts = dict(t_span=(0.0, 8.0), save_at=[0.0, 2.5, 8.0], escape_threshold=0.05)
    store = tmp_path / f"n{n}_c{chunk}.zarr"
    run = D.solve_distributed(flow, seed=11, n=n, store=store, chunk=chunk, client=client,
                              **opts)
    assert run.n_chunks == n_chunks and run.chunk == min(chunk, n)
    assert sum(t["n"] for t in run.tasks) == n
    ref = nf.solve_ensemble(flow, initial.sample(n, 4, 11), threads=1, **opts)
    ds = assert_store_equals(store, ref)
    assert ds.sizes["trajectory"] == n and ds.sizes["time"] == 3
    assert np.array_equal(ds["time"].values, ref.t_saved)


def test_array_initial_states_and_uniform_spec(client, flow, tmp_path):
    theta0 = np.random.default_rng(3).uniform(-2, 2, size=(37, 4))
    store = tmp_path / "array.zarr"
    opts = dict(t_span=(0.0, 6.0), method="dop853")
    D.solve_distributed(flow, theta0, store=store, chunk=10, client=client, **opts)
    ref = nf.solve_ensemble(flow, theta0, threads=1, **opts)
    ds = assert_store_equals(store, ref)
    assert np.array_equal(ds["theta0"].values, theta0)
    # the result read back holds the outputs, not the inputs and markers
    res = D.load_result(store)
    assert res.y_final.shape == (37, 4) and np.array_equal(res.y_final, ref.y_final)
    # a different array is a different configuration
    with pytest.raises(ValueError, match="initial.sha256"):
        D.solve_distributed(flow, theta0 + 1e-12, store=store, client=client, **opts)

    spec = {"distribution": "uniform", "low": -1.5, "high": [1.0, 2.0, 1.0, 2.0]}
    store2 = tmp_path / "uniform.zarr"
    D.solve_distributed(flow, initial=spec, seed=9, n=30, store=store2, chunk=7,
                        client=client, **opts)
    th = initial.sample(30, 4, 9, "uniform", low=-1.5, high=[1.0, 2.0, 1.0, 2.0])
    assert_store_equals(store2, nf.solve_ensemble(flow, th, threads=1, **opts))


def test_bad_input_named(flow, tmp_path):
    s = tmp_path / "x.zarr"
    with pytest.raises(ValueError, match="chunk"):
        D.solve_distributed(flow, seed=1, n=4, store=s, chunk=0)
    with pytest.raises(ValueError, match="seed"):
        D.solve_distributed(flow, n=4, store=s)
    with pytest.raises(ValueError, match="n: required"):
        D.solve_distributed(flow, seed=1, store=s)
    with pytest.raises(ValueError, match="theta0"):
        D.solve_distributed(flow, np.zeros((2, 4)), seed=1, store=s)
    with pytest.raises(ValueError, match="theta0"):
        D.solve_distributed(flow, np.full((2, 4), np.nan), store=s)
    with pytest.raises(TypeError, match="unknown solver options"):
        D.solve_distributed(flow, seed=1, n=4, store=s, rtoll=1e-3)
    with pytest.raises(ValueError, match="rtol"):
        D.solve_distributed(flow, seed=1, n=4, store=s, rtol=-1.0)
    with pytest.raises(ValueError, match="initial: distribution"):
        D.solve_distributed(flow, initial="cauchy", seed=1, n=4, store=s)
    with pytest.raises(ValueError, match="initial: unknown keys"):
        D.solve_distributed(flow, initial={"distribution": "normal", "low": 0}, seed=1, n=4,
                            store=s)
    with pytest.raises(TypeError, match="seed"):
        D.solve_distributed(flow, seed=1.5, n=4, store=s)
    with pytest.raises(TypeError, match="progress"):
        D.solve_distributed(flow, seed=1, n=4, store=s, progress="yes")
    from narrowflow import ensemble, rhs
    fns = rhs.compile_network(flow)
    cs = ensemble.CompiledSystem(fns.flow_address, fns.loss_address, rhs.pack_params(flow), 4)
    with pytest.raises(TypeError, match="GradientFlow"):
        D.solve_distributed(cs, seed=1, n=4, store=s)
    assert not s.exists()      # nothing was created by refused calls


def test_cli_helpers(client, flow, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cluster_args.add_cli_arguments(parser)
    args = parser.parse_args(["--cluster", "local:2", "--overwrite", "--chunk", "5"])
    assert cluster_args.wants_distributed(args) and args.overwrite and args.chunk == 5
    assert cluster_args.parse_cluster("local:2") == 2 and cluster_args.parse_cluster("local") is None
    for bad in ("slurm", "local:0", "local:x"):
        with pytest.raises(ValueError, match="--cluster"):
            cluster_args.parse_cluster(bad)
    with pytest.raises(SystemExit):
        parser.parse_args(["--cluster", "local", "--scheduler", "tcp://x:1"])
    assert not cluster_args.wants_distributed(parser.parse_args([]))
    # next to `narrowflow run`'s own --overwrite/--progress: no clash
    run_parser = argparse.ArgumentParser()
    run_parser.add_argument("--overwrite", action="store_true")
    run_parser.add_argument("--progress", action="store_true")
    cluster_args.add_cli_arguments(run_parser)
    assert run_parser.parse_args(["--scheduler", "tcp://h:1", "--overwrite"]).overwrite


def test_run_cli_with_scheduler_and_resume(client, tmp_path, capsys):
    from narrowflow import config
    from narrowflow.cli import run as cli_run
    rc = config.loads("""
[initial]
n = 12
seed = 4
distribution = "uniform"
low = -2.0
high = 2.0
[solver]
t_span = [0.0, 4.0]
chunk_size = 5
[save]
at = [0.0, 1.0, 4.0]
[output]
figure = false
""")
    # --scheduler FILE (as written by `dask scheduler --scheduler-file` in a SLURM job): the
    # module's cluster stands in for one on an HPC system
    sched_file = tmp_path / "scheduler.json"
    # (Client.write_scheduler_file trips over tuple keys in the scheduler's metrics once tasks
    # have run, in distributed 2026.8; the file's only required entry is the address)
    import json
    sched_file.write_text(json.dumps({"type": "Scheduler",
                                      "address": client.scheduler.address}))
    args = argparse.Namespace(scheduler=str(sched_file), cluster=None, chunk=None,
                              out=str(tmp_path / "out"), overwrite=False, no_figure=True,
                              progress=False)
    assert run_distributed(args, rc) == 0
    text = capsys.readouterr().out
    assert "3 chunks computed now, 0 were already complete" in text
    args.scheduler = client.scheduler.address        # --scheduler tcp://host:port
    store = tmp_path / "out" / "results.zarr"
    flow = rc.flow()
    kw = {k: v for k, v in rc.solver_kwargs().items() if k not in ("chunk_size",)}
    ref = nf.solve_ensemble(flow, rc.theta0(flow.n_params), **kw)
    assert_store_equals(store, ref)
    assert (tmp_path / "out" / "summary.txt").read_text().startswith(
        cli_run.summarize(rc, ref).splitlines()[0])
    assert run_distributed(args, rc) == 0
    assert "0 chunks computed now, 3 were already complete" in capsys.readouterr().out
    # nothing left to do, or a refused store: no cluster is ever contacted
    args.scheduler = "tcp://127.0.0.1:9"
    assert run_distributed(args, rc) == 0
    assert "0 chunks computed now" in capsys.readouterr().out
    rc.cfg["solver"]["rtol"] = 1e-6
    with pytest.raises(ValueError, match="rtol"):
        run_distributed(args, rc)
    args.scheduler = client.scheduler.address
    args.overwrite = True
    assert run_distributed(args, rc) == 0
    assert D.store_state(store)["config"]["rtol"] == 1e-6
    rc.cfg["output"]["format"] = "netcdf"
    with pytest.raises(ValueError, match="Zarr"):
        run_distributed(args, rc)


SIGINT_SCRIPT = """
import os, signal, sys, time
from narrowflow import distributed as D
from narrowflow.model import nf4_benchmark

FIRST, STOP = %r, %r
_run_chunk = D.run_chunk


def gated_run_chunk(*args, **kw):
    # runs on the workers (cloudpickled by value from __main__): the first task to claim FIRST
    # computes its chunk; every other task is held until the client has been interrupted
    # (STOP, made by the SIGINT handler below) and then fails without computing, so no
    # other chunk can finish before or after the signal (the wait is bounded as a safety net)
    try:
        os.close(os.open(FIRST, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        deadline = time.monotonic() + 600
        while not os.path.exists(STOP) and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("held until the client was interrupted")
    return _run_chunk(*args, **kw)


D.run_chunk = gated_run_chunk      # solve_distributed submits D.run_chunk


def on_sigint(signum, frame):
    open(STOP, "w").close()
    raise KeyboardInterrupt


def progress(done, total):
    print("done", done, flush=True)   # the test's cue: one chunk is complete and marked

if __name__ == "__main__":
    signal.signal(signal.SIGINT, on_sigint)
    try:
        D.solve_distributed(nf4_benchmark(), seed=%d, n=%d, store=sys.argv[1], chunk=%d,
                            progress=progress, t_span=%r, rtol=1e-8, atol=1e-10)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    print("finished", flush=True)
"""


def test_ctrl_c_with_own_cluster_then_resume(client, flow, reference, tmp_path):
    """A real SIGINT to a client that started its own LocalCluster (client=None).

    Synchronised on events, not on timing: the subprocess reports on stdout when its first
    chunk is complete, and every other chunk's task is held on its worker until the client
    has been interrupted (then it fails without computing), so exactly one chunk is complete
    when the signal lands however fast the machine (a fresh clone once finished every chunk
    before a plain SIGINT arrived)."""
    import subprocess
    import sys
    script = tmp_path / "run.py"
    first, stop = tmp_path / "first-chunk-claimed", tmp_path / "client-interrupted"
    script.write_text(SIGINT_SCRIPT % (str(first), str(stop), SEED, N, CHUNK, OPTS["t_span"]))
    store = tmp_path / "ctrlc.zarr"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(store)],
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            first_line = proc.stdout.readline()
            assert first_line.startswith("done 1"), (first_line, log.read_text()[-3000:])
            proc.send_signal(signal.SIGINT)
            rest = proc.communicate(timeout=120)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "interrupted" in rest, (proc.returncode, rest,
                                                              log.read_text()[-3000:])
    assert "done" not in rest and "finished" not in rest
    state = D.store_state(store)
    missing = np.flatnonzero(~state["complete"])
    assert missing.size == N // CHUNK - 1          # exactly the first chunk was completed
    with pytest.raises(ValueError, match="incomplete"):
        io.load(store)                             # an interrupted store is never read as whole
    run = D.solve_distributed(flow, seed=SEED, n=N, store=store, client=client, **OPTS)
    assert sorted(run.computed) == missing.tolist()
    assert_store_equals(store, reference)


def test_default_chunk(flow):
    """Whole waves of equal chunks per worker slot, within [MIN_CHUNK, 65536] where N allows,
    one wave of N/slots for small N, more waves when a chunk would exceed the caps."""
    from narrowflow import ensemble
    prob = ensemble.make_problem(flow)

    def tasks(n, slots):
        c = D.default_chunk(prob, n, slots)
        return c, -(-n // c)

    assert D.default_chunk(prob, 1) == 1
    assert D.default_chunk(prob, 100, 16) == 100           # below MIN_SPLIT: one task
    assert tasks(10**6, 16) == (7813, 128)                 # 8 waves of 16
    assert tasks(10**6, 2) == (62500, 16)                  # 8 waves of 2
    assert tasks(4 * 10**5, 16) == (4167, 96)              # 6 waves: chunks >= ~MIN_CHUNK
    assert tasks(20_000, 2) == (5000, 4)                   # 2 waves
    assert tasks(50_000, 16) == (3125, 16)                 # one wave of N/slots
    c, m = tasks(10**8, 16)                                 # capped at 65536: more waves
    assert c <= D.DEFAULT_CHUNK and m % 16 == 0
    for n in (10**5, 3 * 10**5 + 17, 10**6, 10**7):
        for slots in (1, 2, 3, 4, 8, 16, 32):
            c, m = tasks(n, slots)
            assert m % slots == 0, (n, slots)
            # up to WAVES waves; more only where one wave fewer would exceed the cap
            assert m // slots <= D.WAVES or -(-n // (m - slots)) > D.DEFAULT_CHUNK
            assert n - (m - 1) * c <= c                     # the last chunk is the short one
    assert D.default_chunk(prob, 10**6) == D.default_chunk(prob, 10**6, D.DEFAULT_SLOTS)
    # many save points: a chunk's outputs stay under 64 MiB
    big = ensemble.make_problem(flow, save_at=np.linspace(0, 100, 2000))
    c = D.default_chunk(big, 10**8, 16)
    assert ensemble.output_nbytes(big, c) <= D.CHUNK_BYTES < ensemble.output_nbytes(big, 2 * c)


def test_solve_ensemble_dask_entry(client, flow, tmp_path):
    theta0 = initial.sample(40, 4, 8)
    opts = dict(t_span=(0.0, 5.0), save_at=[1.0, 5.0])
    ref = nf.solve_ensemble(flow, theta0, threads=1, seed=8, **opts)
    got = D.solve_ensemble_dask(flow, theta0, store=tmp_path / "se.zarr", client=client,
                                chunk=16, seed=8, threads=2, **opts)
    for name in VARS:
        a, b = getattr(got, name), getattr(ref, name)
        assert (a is None and b is None) or np.array_equal(a.view(np.uint8), b.view(np.uint8))
    assert got.seed == 8 and got.method == ref.method and got.t_span == ref.t_span
    assert np.array_equal(got.t_saved, ref.t_saved)
    with pytest.raises(ValueError, match="store"):
        D.solve_ensemble_dask(flow, theta0, client=client)
    via = nf.solve_ensemble(flow, theta0, backend="dask", store=tmp_path / "se2.zarr",
                            client=client, chunk_size=16, **opts)
    for name in VARS:
        a, b = getattr(via, name), getattr(ref, name)
        assert (a is None and b is None) or np.array_equal(a.view(np.uint8), b.view(np.uint8))
    with pytest.raises(ValueError, match="backend"):
        nf.solve_ensemble(flow, theta0, backend="mpi", **opts)
    with pytest.raises(ValueError, match="store is only used"):
        nf.solve_ensemble(flow, theta0, store=tmp_path / "x.zarr", **opts)
    # the result is read into this process: memory_limit applies before anything is computed;
    # threads and profile have no meaning there and are refused, not ignored
    from narrowflow import ensemble
    need = ensemble.output_nbytes(ensemble.make_problem(flow, **opts), 40)
    with pytest.raises(ValueError, match="memory_limit"):
        nf.solve_ensemble(flow, theta0, backend="dask", store=tmp_path / "se3.zarr",
                          client=client, memory_limit=need - 1, **opts)
    assert not (tmp_path / "se3.zarr").exists()
    for bad in (dict(threads=2), dict(profile=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            nf.solve_ensemble(flow, theta0, backend="dask", store=tmp_path / "se3.zarr",
                              client=client, **bad, **opts)
    ok = nf.solve_ensemble(flow, theta0, backend="dask", store=tmp_path / "se3.zarr",
                           client=client, memory_limit=need, **opts)
    assert np.array_equal(ok.y_final, ref.y_final)


def test_narrowflow_run_command(client, tmp_path, capsys):
    """`narrowflow run CONFIG --scheduler ADDRESS`, through the real command line."""
    from narrowflow import config
    from narrowflow.cli import main
    cfg = tmp_path / "small.toml"
    cfg.write_text('[initial]\nn = 30\nseed = 3\n[solver]\nt_span = [0.0, 3.0]\n'
                   '[save]\nat = [0.0, 3.0]\n')
    out = tmp_path / "out"
    argv = ["run", str(cfg), "--scheduler", client.scheduler.address, "--chunk", "8",
            "--out", str(out), "--no-figure"]
    assert main(argv) == 0
    assert "4 chunks computed now" in capsys.readouterr().out
    rc = config.load(cfg)
    flow = rc.flow()
    kw = {k: v for k, v in rc.solver_kwargs().items() if k != "chunk_size"}
    assert_store_equals(out / "results.zarr", nf.solve_ensemble(flow, rc.theta0(4), **kw))
    # another configuration on the same store: refused with a message naming the key
    assert main(argv + ["-n", "31"]) == 2
    assert "initial.n: store has 30, this run has 31" in capsys.readouterr().err
    assert main(argv + ["-n", "31", "--overwrite"]) == 0


def test_stale_task_never_writes_into_a_replaced_store(client, flow, tmp_path, monkeypatch):
    """A task of an old run (left running on an external cluster after Ctrl-C) must not mark
    or fill chunks of a store that --overwrite replaced meanwhile."""
    import pickle

    import zarr

    from narrowflow import ensemble
    store = tmp_path / "stale.zarr"
    opts = dict(t_span=(0.0, 2.0))
    D.solve_distributed(flow, seed=1, n=8, store=store, chunk=4, client=client, **opts)
    old = D.store_state(store)
    problem = ensemble.make_problem(flow, **opts)
    init, _ = D.resolve_initial(4, seed=1, n=8)
    args = (str(store), old["store_id"], old["fingerprint"], pickle.dumps(problem), init)
    # the same call succeeds on its own store (and rewrites identical bytes)
    D.run_chunk(*args, 1, 4, 8)

    # a worker that compiles differently (FMA setting) refuses to write its chunk
    build = D.build_config()
    other = dict(build, rhs_fma=not build["rhs_fma"])
    g0 = zarr.open_group(store, mode="r")
    before = g0["y_final"][:]
    with pytest.raises(RuntimeError, match="build.rhs_fma"):
        D.run_chunk(*args, 1, 4, 8, 1, other)
    assert np.array_equal(zarr.open_group(store, mode="r")["y_final"][:], before)
    D.run_chunk(*args, 1, 4, 8, 1, build)

    # replaced before the task starts
    D.solve_distributed(flow, seed=1, n=8, store=store, chunk=4, client=client,
                        overwrite=True, **opts)
    new_ds = D.open_store(store).load()
    with pytest.raises(RuntimeError, match="replaced"):
        D.run_chunk(*args, 0, 0, 4)

    # replaced while the task solves: simulated by changing the store's id mid-solve
    g = zarr.open_group(store, mode="r+")
    g["chunk_complete"][1] = False
    g["y_final"][4:8] = np.full((4, 4), -7.0)      # a sentinel the task must not overwrite
    real = ensemble.solve_chunk

    def solve_then_replace(*a, **kw):
        out = real(*a, **kw)
        zarr.open_group(store, mode="r+").attrs["narrowflow_store_id"] = "someone-else"
        return out

    monkeypatch.setattr(ensemble, "solve_chunk", solve_then_replace)
    new = D.store_state(store)
    with pytest.raises(RuntimeError, match="replaced"):
        D.run_chunk(str(store), new["store_id"], new["fingerprint"], pickle.dumps(problem),
                    init, 1, 4, 8)
    assert not D.store_state(store)["complete"][1]
    after = D.open_store(store).load()
    assert np.all(after["y_final"].values[4:8] == -7.0)
    assert np.array_equal(after["y_final"].values[:4], new_ds["y_final"].values[:4])
