"""Ctrl-C inside the kernel, and honest statuses for non-finite losses."""
import subprocess
import sys
import textwrap

import numpy as np

import narrowflow as nf
from narrowflow.ensemble import Status

_SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    import numpy as np
    import narrowflow as nf
    from narrowflow import model
    from narrowflow._ext import ensemble as kernel
    flow = model.nf4_benchmark()
    th = model.nf4_initial_states(400_000)
    nf.solve_ensemble(flow, th[:16], t_span=(0.0, 1.0), method="dop853", threads=1)
    sent = []

    def interrupt_once_running():
        # the event: 64 trajectories written out by this run (the warm-up wrote 16)
        while kernel.finished_count() < 64:
            time.sleep(0.001)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    try:
        nf.solve_ensemble(flow, th, t_span=(0.0, 1e4), method="{method}", threads=2,
                          chunk_size=400_000)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - sent[0], kernel.finished_count())
    else:
        print("finished")
""")


def _run(method):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.format(method=method)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_ctrl_c_stops_the_kernel_mid_chunk():
    """One chunk of 4e5 stiff trajectories (minutes of work): SIGINT once the kernel has
    written 64 of them raises KeyboardInterrupt long before the chunk is done."""
    for method in ("dop853", "auto"):
        out = _run(method)
        assert out[0] == "interrupted", out
        delay, finished = float(out[1]), int(out[2])
        assert 64 <= finished < 400_000
        print(f"{method}: KeyboardInterrupt {delay:.3f} s after SIGINT, {finished} finished")


def test_solve_chunk_marks_unfinished_rows_interrupted_only_on_interrupt():
    flow = nf.model.nf4_benchmark()
    out = nf.ensemble.solve_chunk(nf.ensemble.make_problem(flow, t_span=(0.0, 1.0)),
                                  nf.model.nf4_initial_states(20))
    assert not np.any(out["status"] == Status.INTERRUPTED)


def test_nonfinite_loss_at_a_finite_state_is_not_success():
    """Labels 1e160: the loss overflows to inf while state and gradient stay finite."""
    net = nf.Network(width=1, activation="linear")
    data = nf.Dataset(np.array([1.0, 2.0]), np.array([1e160, 1e160]))
    flow = nf.GradientFlow(net, data)
    res = nf.solve_ensemble(flow, np.ones((2, 2)), t_span=(0.0, 1.0), method="dop853",
                            max_steps=50, threads=1)
    assert np.all(~np.isfinite(res.loss_final))
    assert np.all(np.isfinite(res.y_final))
    assert np.all(res.status == Status.DIVERGED)
    # the same network on data of ordinary size: SUCCESS with a finite loss
    fine = nf.GradientFlow(net, nf.Dataset(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    ok = nf.solve_ensemble(fine, np.ones((2, 2)), t_span=(0.0, 1.0), method="dop853",
                           threads=1)
    assert np.all(ok.status == Status.SUCCESS) and np.all(np.isfinite(ok.loss_final))


_CLI = textwrap.dedent("""
    import os, signal, sys, threading, time
    from narrowflow._ext import ensemble as kernel
    from narrowflow.cli import main

    def interrupt_once_running():
        while kernel.finished_count() < 64:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    sys.exit(main(["run", "-n", "400000", "--preset", "nf4-bench", "--out", sys.argv[1],
                   "--threads", "2"]))
""")


def test_cli_run_exits_130_on_ctrl_c(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _CLI, str(out)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["narrowflow run: interrupted"]
    assert not (out / "results.zarr").exists()


def test_kernel_status_codes_are_the_status_enum():
    """One status enum: the Cython kernel's numbers are narrowflow.ensemble.Status's."""
    from narrowflow import ensemble
    from narrowflow._ext import ensemble as kernel
    codes = kernel.status_codes()
    internal = {"RUNNING", "STIFF"}
    assert {k: v for k, v in codes.items() if k not in internal} == {s.name: s.value
                                                                     for s in Status}
    assert codes["STIFF"] == ensemble._ST_STIFF and codes["STIFF"] not in {s.value for s in Status}
