"""`narrowflow run --cluster slurm:...` against a real one-node SLURM on this machine.

tests/slurm/start.sh installs slurm-wlm and munge from Debian where missing (root only),
writes a one-node slurm.conf for localhost and starts munged, slurmctld and slurmd; the
module's fixture runs it (or uses the SLURM it already started: .ci/run starts it before the
suite) and tests/slurm/stop.sh stops the daemons afterwards. Where SLURM cannot start (not
root, no package index, no dask-jobqueue) every test here is skipped with the reason.

Checks: the store written by SLURM worker jobs equals the in-process result bit for bit, the
default chunk follows the slots asked for, squeue is empty when narrowflow returns (also
after Ctrl-C and after a job the queue rejected, whose message is quoted), logs land in
OUT/slurm-logs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent / "slurm"
STATE = Path(os.environ.get("NARROWFLOW_SLURM_DIR", "/tmp/narrowflow-slurm"))
CONFIG = """
[initial]
n = {n}
seed = 7
[output]
figure = false
"""
CLI = (sys.executable, "-c", "import sys; from narrowflow.cli import main; sys.exit(main())")
VARS = ("y_final", "t_final", "status", "nfev", "n_accepted", "n_rejected", "njev",
        "loss_final", "y_saved", "loss_saved", "escape_time")


def _env():
    env = dict(os.environ, SLURM_CONF=str(STATE / "slurm.conf"))
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


def _squeue() -> str:
    r = subprocess.run(["squeue", "-h", "-o", "%i %T %j"], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def slurm():
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        pytest.skip("dask-jobqueue is not installed: pip install '.[hpc]'")
    if os.environ.get("NARROWFLOW_NO_SLURM"):
        pytest.skip("NARROWFLOW_NO_SLURM is set")
    # one test SLURM per machine (fixed ports, one state folder): test sessions running at
    # the same time take turns
    import fcntl
    lock = open(f"{STATE}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _slurm_up()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _slurm_up():
    r = subprocess.run([str(HERE / "start.sh"), str(STATE)], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or ["start.sh failed"])[-1]
        print(f"SLURM not available: {reason}", file=sys.stderr)
        pytest.skip(f"SLURM could not be started here: {reason}")
    try:
        assert _squeue() == "", "the test SLURM has jobs already"
        yield STATE
    finally:
        subprocess.run([str(HERE / "stop.sh"), str(STATE)], capture_output=True, timeout=120)


def _run(args, cwd, **kw):
    return subprocess.run([*CLI, "run", *args], cwd=cwd,
                          capture_output=True, text=True, env=_env(), **kw)


def test_slurm_run_equals_in_process(slurm, tmp_path):
    from narrowflow import distributed as D
    from narrowflow import io
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(n=2000))
    ref = _run([str(cfg), "--out", "ref"], tmp_path, timeout=600)
    assert ref.returncode == 0, ref.stderr
    r = _run([str(cfg), "--out", "slurm", "--cluster",
              "slurm:jobs=2,cores=1,memory=1GB,walltime=00:10:00,interface=lo,"
              "extra=--comment=narrowflow-test"],
             tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "slurm: 2 job(s) of 1 core(s), 2 worker slots" in r.stderr
    # the jobs are gone when narrowflow returns
    assert _squeue() == ""
    store = tmp_path / "slurm" / "results.zarr"
    state = D.store_state(store)
    assert state["complete"].all()
    assert state["chunk"] == 1000            # default chunk for 2 slots: one wave of N/2
    a, b = io.load(tmp_path / "ref" / "results.zarr"), io.load(store)
    checked = 0
    for name in VARS:
        if name not in a:
            assert name not in b
            continue
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), name
        checked += 1
    assert checked >= 8
    logs = sorted(p.name for p in (tmp_path / "slurm" / "slurm-logs").iterdir())
    assert len([p for p in logs if p.endswith(".err")]) == 2, logs
    assert "dask" in r.stdout                 # the summary's dask line


def test_rejected_job_is_reported_and_nothing_left(slurm, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(n=500))
    r = _run([str(cfg), "--out", "out", "--cluster", "slurm:jobs=1,cores=1,memory=100TB,interface=lo"],
             tmp_path, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the slurm queue rejected the worker job" in r.stderr
    assert "Memory specification can not be satisfied" in r.stderr
    assert "Traceback" not in r.stderr
    assert _squeue() == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_cancels_the_jobs(slurm, tmp_path, sig):
    """SIGINT (Ctrl-C) or SIGTERM (kill, scancel of the client's own job) once the worker
    jobs run: exit 130, every job gone from squeue."""
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(n=400_000))       # minutes of work: never done before SIGINT
    p = subprocess.Popen([*CLI, "run", str(cfg), "--out",
                          "out", "--cluster", "slurm:jobs=2,cores=1,memory=1GB,interface=lo"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        # the session line on stderr comes once the jobs are submitted
        for line in p.stderr:
            if "worker slots" in line:
                break
        else:
            pytest.fail(f"no session line; exit {p.wait()}")
        # then wait (event: squeue) until both jobs run, i.e. workers are starting
        deadline_lines = 0
        while _squeue().count("RUNNING") < 2:
            deadline_lines += 1
            assert p.poll() is None and deadline_lines < 10_000
        p.send_signal(sig)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert _squeue() == ""


# --- without a queue: options, config table, the missing extra ------------------------------

def test_cluster_specs():
    from narrowflow import cluster
    assert cluster.parse_spec("local") == ("local", {})
    assert cluster.parse_spec("local:3") == ("local", {"workers": 3})
    kind, o = cluster.parse_spec("slurm:jobs=2,cores=4,memory=8GB,walltime=00:30:00,"
                                 "queue=debug,extra=--qos=low,extra=--exclusive,wait=60")
    assert kind == "slurm"
    assert o == {"jobs": 2, "cores": 4, "memory": "8GB", "walltime": "00:30:00",
                 "queue": "debug", "extra": ["--qos=low", "--exclusive"], "wait": 60.0}
    assert cluster.parse_spec("pbs") == ("pbs", {})
    for bad, words in [("slurm:jobs=0", "jobs must be >= 1"), ("slurm:cores=x", "integer"),
                       ("slurm:nodes=2", "unknown option 'nodes'"), ("yarn", "must start"),
                       ("local:0", ">= 1"), ("slurm:jobs", "key=value")]:
        with pytest.raises(ValueError, match=words):
            cluster.parse_spec(bad)


def test_cluster_table_and_command_line(tmp_path):
    import argparse

    from narrowflow import config
    from narrowflow.cli import cluster_args
    args = argparse.Namespace(cluster="slurm:jobs=3,extra=--qos=x")
    table = {"jobs": 1, "cores": 2, "extra": ["--constraint=cpu"], "workers": None,
             "memory": None}
    kind, o = cluster_args.cluster_options(args, table)
    assert kind == "slurm"
    assert o == {"jobs": 3, "cores": 2, "extra": ["--constraint=cpu", "--qos=x"]}
    rc = config.loads("[cluster]\njobs = 2\ncores = 4\nwalltime = \"01:00:00\"\n")
    assert rc.cfg["cluster"]["jobs"] == 2 and rc.cfg["cluster"]["cores"] == 4
    with pytest.raises(ValueError, match="cluster.jobs"):
        config.loads("[cluster]\njobs = 0\n")
    with pytest.raises((ValueError, TypeError), match="cluster.nodes"):
        config.loads("[cluster]\nnodes = 2\n")


def test_missing_dask_jobqueue_names_the_extra(monkeypatch):
    from narrowflow import cluster
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match=r"narrowflow\[hpc\]"):
        cluster.open_cluster("slurm", {"jobs": 1})
