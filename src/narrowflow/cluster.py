"""Dask clusters for distributed runs: local worker processes, or worker jobs on a batch queue.

    narrowflow run config.toml --cluster local:4
    narrowflow run config.toml --cluster slurm:jobs=4,cores=32,memory=64GB,walltime=04:00:00
    narrowflow run config.toml --cluster slurm          # options from the config's [cluster]

`open_cluster(spec, options, out_dir)` gives a `ClusterSession`: a connected
``distributed.Client``, the cluster it started (closed by ``session.close()``, also on Ctrl-C,
SIGTERM and errors: `narrowflow.cli.run.run_distributed` closes it in a ``finally``), the number of
worker slots the run is sized for (threads of the workers asked for, whether or not they have
arrived), and `watch()`, which `solve_distributed` calls every few seconds while it waits: it
raises `QueueError` with the queue's own message when a worker job was rejected at submission
(``sbatch: error: ...``), and when every worker job has ended while work is left (the tail of
a job's log is quoted). Batch kinds ("slurm", "pbs", "lsf") go through dask-jobqueue (the
``narrowflow[hpc]`` extra): one worker process per job by default, with ``cores`` threads,
each thread running one chunk at a time. Their job logs go to ``OUT/<kind>-logs`` (option
``log_directory``). The jobs this session submitted are cancelled when it closes (and any
job whose submission was still under way then, as soon as it has an id); workers started by
a client that was killed outright exit after dask-jobqueue's ``death_timeout`` (60 s) without
their scheduler, which ends their jobs.

SLURM is tested against a real one-node SLURM (tests/slurm/, tests/test_slurm.py); PBS and
LSF are built the same way through dask-jobqueue but were not run against a real queue.

Options (command line ``kind:key=value,key=value`` over the config's [cluster] table):
    jobs        worker jobs to submit (default 1)
    cores       threads per job = worker slots per job (default 1)
    processes   worker processes per job (default 1; cores are split between them)
    memory      memory per job, e.g. "4GB" (default 2GB per core)
    walltime    job time limit, e.g. "01:00:00" (default 01:00:00)
    queue       partition / queue (default: the queue's default)
    account     account to charge
    extra       an extra job directive, passed through verbatim (repeatable on the command
                line: extra=--qos=debug,extra=--exclusive; a list in the config)
    log_directory  where the job logs go (default OUT/<kind>-logs)
    interface   network interface the workers reach the scheduler on (e.g. ib0)
    wait        seconds to wait for the first worker before giving up (default: no limit;
                the queue may be busy)
For local: ``local`` (sized to this machine), ``local:N`` (N worker processes), or
``local:workers=N,threads=T``.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
KINDS = ("local",) + tuple(JOBQUEUE)
EXTRA = "hpc"                    # the extra that brings dask-jobqueue
# key -> (type, meaning); "extra" collects job directives
JOB_OPTIONS = {
    "jobs": int, "cores": int, "processes": int, "memory": str, "walltime": str,
    "queue": str, "account": str, "extra": list, "log_directory": str, "interface": str,
    "wait": float,
}
LOCAL_OPTIONS = {"workers": int, "threads": int}
MEMORY_PER_CORE = "2GB"
WALLTIME = "01:00:00"
# SLURM job states after which a job holds nothing any more
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
         "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
GONE_TIMEOUT = 60.0              # close() waits up to this for cancelled jobs to leave the queue


class QueueError(RuntimeError):
    """The batch queue rejected a worker job, or every worker job ended with work left."""


def _convert(kind: str, key: str, value, where: str):
    allowed = LOCAL_OPTIONS if kind == "local" else JOB_OPTIONS
    if key not in allowed:
        raise ValueError(f"{where}: unknown option {key!r} for {kind} (known: "
                         f"{', '.join(allowed)})")
    typ = allowed[key]
    if typ is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise ValueError(f"{where}: {key} must be a string or a list of strings, got "
                             f"{value!r}")
        return list(items)
    if typ is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            v = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} must be an integer, got {value!r}") from None
        if v < 1:
            raise ValueError(f"{where}: {key} must be >= 1, got {v}")
        return v
    if typ is float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} must be a number of seconds, got {value!r}") \
                from None
        if not v > 0:
            raise ValueError(f"{where}: {key} must be > 0, got {value!r}")
        return v
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def parse_spec(spec: str) -> tuple[str, dict]:
    """'local', 'local:4', 'slurm', 'slurm:jobs=2,cores=1,extra=--qos=x' -> (kind, options).

    Raises ValueError naming --cluster and what is wrong."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"--cluster must be one of {', '.join(KINDS)} (with :options), got "
                         f"{spec!r}")
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"--cluster must start with one of {', '.join(KINDS)}, got {spec!r}")
    opts: dict = {}
    if not rest:
        if _:
            raise ValueError(f"--cluster {spec!r}: nothing after ':'")
        return kind, opts
    if kind == "local" and "=" not in rest:
        try:
            n = int(rest)
        except ValueError:
            raise ValueError(f"--cluster: N in 'local:N' must be an integer, got {spec!r}") \
                from None
        if n < 1:
            raise ValueError(f"--cluster: N in 'local:N' must be >= 1, got {n}")
        return kind, {"workers": n}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise ValueError(f"--cluster {spec!r}: expected key=value, got {item!r}")
        v = _convert(kind, key, value.strip(), "--cluster")
        if key == "extra":
            opts.setdefault("extra", []).extend(v)
        else:
            opts[key] = v
    return kind, opts


def options_from_table(kind: str, table: dict | None) -> dict:
    """The config's [cluster] table (keys None = unset) as options for `kind`, checked."""
    out = {}
    for key, value in (table or {}).items():
        if value is None:
            continue
        if kind == "local" and key in JOB_OPTIONS and key not in LOCAL_OPTIONS:
            continue                    # a batch table is no error for a local run
        if kind != "local" and key in LOCAL_OPTIONS and key not in JOB_OPTIONS:
            continue                    # nor local keys for a batch run
        out[key] = _convert(kind, key, value, f"config key 'cluster.{key}'")
    return out


def check_table(table: dict) -> None:
    """Check the config's [cluster] table (every key that is set), whichever kind it is for;
    ValueError naming the config key."""
    for key, value in (table or {}).items():
        if value is not None:
            _convert("local" if key in LOCAL_OPTIONS else "slurm", key, value,
                     f"config key 'cluster.{key}'")


def _require_jobqueue(kind: str):
    import signal
    import threading
    # dask_jobqueue.runner replaces the SIGINT handler on import (sys.exit() on Ctrl-C, which
    # would end the run silently with status 0): keep the one in place
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ImportError(f"--cluster {kind} needs dask-jobqueue ({exc}); install it with: "
                          f"pip install 'narrowflow[{EXTRA}]'") from exc
    finally:
        if main and before is not None:
            signal.signal(signal.SIGINT, before)
    return dask_jobqueue


@dataclass
class _Tracker:
    """What the worker jobs of one cluster did at submission (filled by _TrackedJob)."""

    job_ids: list = field(default_factory=list)
    rejected: list = field(default_factory=list)   # the submission command's errors
    closing: bool = False
    cancel_command: str | None = None


class _TrackedJob:
    """Mixin over a dask-jobqueue Job class: records job ids and rejected submissions, and
    cancels a job whose submission finished after its cluster began closing."""

    _tracker: _Tracker = None

    async def _submit_job(self, script_filename):
        try:
            out = await super()._submit_job(script_filename)
        except Exception as exc:
            self._tracker.rejected.append(str(exc))
            raise
        try:
            job_id = self._job_id_from_submit_output(out)
        except ValueError:
            return out
        self._tracker.job_ids.append(job_id)
        if self._tracker.closing:        # closed while sbatch ran: never let it outlive us
            await self._close_job(job_id, self.cancel_command)
        return out


class _RejectionFilter:
    """Drops tornado's traceback of a submission that the tracker recorded (watch() reports
    it as a QueueError with the queue's own message instead)."""

    def __init__(self, tracker: _Tracker):
        self.tracker = tracker

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and str(exc) in self.tracker.rejected)


def _stderr_lines(text: str) -> str:
    """The queue's own words from dask-jobqueue's 'Command exited ...' message."""
    if "stderr:" in text:
        tail = text.split("stderr:", 1)[1].strip()
        if tail:
            return tail
    return text.strip()


@dataclass
class ClusterSession:
    """A connected client and the cluster started for it (None for --scheduler)."""

    client: object
    cluster: object = None
    kind: str = "scheduler"
    slots: int | None = None      # worker threads the run is sized for
    log_dir: Path | None = None
    options: dict = field(default_factory=dict)
    _tracker: _Tracker | None = None
    _closed: bool = False
    _first_worker: float | None = None
    _started: float = field(default_factory=time.monotonic)
    _said: str = ""

    @property
    def job_ids(self) -> list:
        return list(self._tracker.job_ids) if self._tracker else []

    def describe(self) -> str:
        if self.kind in JOBQUEUE:
            o = self.options
            return (f"{self.kind}: {o.get('jobs', 1)} job(s) of {o.get('cores', 1)} core(s), "
                    f"{self.slots} worker slots, scheduler {self.client.scheduler.address}, "
                    f"job logs in {self.log_dir}")
        info = self.client.scheduler_info().get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in info.values())
        return (f"dask: {len(info)} workers, {threads} threads at "
                f"{self.client.scheduler.address}")

    # -- watching the queue ------------------------------------------------------------

    def _queue_states(self) -> dict | None:
        """{job id: (state, reason)} of this session's jobs the queue lists in a state
        other than ENDED (SLURM's squeue; COMPLETING included); None where the queue
        cannot be asked."""
        ids = self.job_ids
        if self.kind != "slurm" or not ids:
            return None
        try:
            r = subprocess.run(["squeue", "-h", "-o", "%i %T %r", "-j", ",".join(ids)],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode != 0:
            # squeue refuses ids it no longer knows ("Invalid job id specified"): all gone
            return {} if "Invalid job id" in r.stderr else None
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[1] not in ENDED:
                out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        return out

    def _log_tail(self, lines: int = 15) -> str:
        if self.log_dir is None or not self.log_dir.is_dir():
            return ""
        logs = sorted(self.log_dir.glob("*.err"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return ""
        text = logs[-1].read_text(errors="replace").splitlines()[-lines:]
        return f"\nlast lines of {logs[-1]}:\n" + "\n".join("  " + t for t in text)

    def watch(self) -> None:
        """Raise QueueError when the queue rejected a job or every job ended with work
        left; report (once per change) why jobs still wait. Cheap for non-batch kinds."""
        t = self._tracker
        if t is None:
            return
        if t.rejected:
            raise QueueError(
                f"the {self.kind} queue rejected the worker job: {_stderr_lines(t.rejected[0])}"
                f"\n(options: {self.options}; fix them with --cluster {self.kind}:... or the "
                f"config's [cluster] table)")
        workers = self.client.scheduler_info().get("workers", {})
        if workers and self._first_worker is None:
            self._first_worker = time.monotonic()
        states = self._queue_states()
        if states is not None and t.job_ids and not states and not workers \
                and len(t.job_ids) >= self.options.get("jobs", 1):
            raise QueueError(f"every {self.kind} worker job ended ({', '.join(t.job_ids)}) "
                             f"with work left and no worker connected now; job logs in "
                             f"{self.log_dir}{self._log_tail()}")
        if states:
            pending = sorted({r for s, r in states.values() if s == "PENDING"})
            said = ", ".join(pending)
            if pending and said != self._said:
                print(f"{self.kind}: jobs waiting in the queue ({said})", file=sys.stderr)
            self._said = said
        wait = self.options.get("wait")
        if wait is not None and self._first_worker is None and not workers \
                and time.monotonic() - self._started > wait:
            raise QueueError(f"no {self.kind} worker connected within wait={wait:g} s "
                             f"(jobs {', '.join(t.job_ids) or 'none'}: "
                             f"{states if states is not None else 'state unknown'}); job logs "
                             f"in {self.log_dir}{self._log_tail()}")

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the client and the cluster; cancel every job this session submitted.
        Idempotent; never raises (errors are reported on stderr)."""
        if self._closed:
            return
        self._closed = True
        t = self._tracker
        if t is not None:
            t.closing = True
        try:
            self.client.close()
        except Exception as exc:  # noqa: BLE001
            print(f"closing the Dask client: {exc}", file=sys.stderr)
        if self.cluster is not None:
            if t is not None:
                _forget_dead_jobs(self.cluster)
            try:
                self.cluster.close()
            except AssertionError:
                # SpecCluster's check that every job object it made is closed: the jobs are
                # cancelled below in any case; mark the cluster closed so that its atexit
                # hook does not try again
                from distributed.core import Status
                self.cluster.status = Status.closed
            except Exception as exc:  # noqa: BLE001
                print(f"closing the {self.kind} cluster: {exc}", file=sys.stderr)
        if t is not None and t.job_ids and t.cancel_command:
            # whatever dask-jobqueue did not cancel (it suppresses errors): cancel again;
            # the queue refuses ids of jobs already gone, which is fine
            try:
                subprocess.run(shlex.split(t.cancel_command) + list(t.job_ids),
                               capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                print(f"cancelling jobs {t.job_ids}: {exc}; cancel them by hand",
                      file=sys.stderr)
            self._wait_gone()

    def _wait_gone(self, timeout: float = GONE_TIMEOUT) -> None:
        """Return once the queue lists none of this session's jobs (SLURM: squeue), so that
        no job outlives the run; after `timeout` s, say which are left."""
        end = time.monotonic() + timeout
        while True:
            states = self._queue_states()
            if not states:              # gone, or a queue that cannot be asked
                return
            if time.monotonic() > end:
                print(f"{self.kind} jobs still listed after cancelling them: {states}",
                      file=sys.stderr)
                return
            time.sleep(0.25)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _forget_dead_jobs(cluster) -> None:
    """Job objects SpecCluster cannot close (a rejected submission leaves them 'created';
    one dropped from cluster.workers when its worker left stays 'running'): mark them failed
    (their jobs, if any, are cancelled by ClusterSession.close)."""
    from distributed.core import Status
    members = set(map(id, getattr(cluster, "workers", {}).values()))
    for name, job in list(getattr(cluster, "workers", {}).items()):
        if getattr(job, "job_id", "?") is None:
            cluster.workers.pop(name, None)
            job.status = Status.failed
    for job in list(getattr(cluster, "_created", ())):
        if id(job) not in members and job.status not in (Status.closing, Status.closed,
                                                          Status.failed):
            job.status = Status.failed


def _local(options: dict) -> ClusterSession:
    from distributed import Client

    from narrowflow.distributed import local_cluster
    workers, threads = options.get("workers"), options.get("threads")
    if workers is not None and threads is None:
        from narrowflow.ensemble import default_threads
        threads = max(1, default_threads() // workers)
    cluster = local_cluster(workers, threads)
    client = Client(cluster)
    slots = sum(w.get("nthreads", 0) for w in client.scheduler_info()["workers"].values())
    return ClusterSession(client=client, cluster=cluster, kind="local", slots=slots or None,
                          options=options)


def _jobqueue(kind: str, options: dict, out_dir: Path | None) -> ClusterSession:
    dj = _require_jobqueue(kind)
    from distributed import Client
    base = getattr(dj, JOBQUEUE[kind])
    tracker = _Tracker(cancel_command=base.job_cls.cancel_command)
    job_cls = type(f"Narrowflow{base.job_cls.__name__}", (_TrackedJob, base.job_cls),
                   {"_tracker": tracker})
    jobs = options.get("jobs", 1)
    cores = options.get("cores", 1)
    processes = options.get("processes", 1)
    if processes > cores:
        raise ValueError(f"--cluster {kind}: processes={processes} exceeds cores={cores} "
                         f"(each worker process needs at least one thread)")
    if options.get("log_directory"):
        log_dir = Path(options["log_directory"]).expanduser().resolve()
    else:
        log_dir = (Path(out_dir) if out_dir is not None else Path.cwd()).resolve() / \
            f"{kind}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    memory = options.get("memory")
    if memory is None:
        memory = f"{2 * cores}GB"
    kwargs = dict(cores=cores, processes=processes, memory=memory,
                  walltime=options.get("walltime", WALLTIME),
                  job_extra_directives=list(options.get("extra", [])),
                  log_directory=str(log_dir), job_name="narrowflow", job_cls=job_cls,
                  python=sys.executable)
    for key in ("queue", "account", "interface"):
        if options.get(key) is not None:
            kwargs[key] = options[key]
    if kind == "lsf":
        kwargs.pop("account", None)
        if options.get("account") is not None:
            kwargs["project"] = options["account"]
    import logging
    logging.getLogger("tornado.application").addFilter(_RejectionFilter(tracker))
    cluster = base(**kwargs)
    session = None
    try:
        client = Client(cluster)
        session = ClusterSession(client=client, cluster=cluster, kind=kind,
                                 slots=jobs * cores, log_dir=log_dir, options=options,
                                 _tracker=tracker)
        cluster.scale(jobs=jobs)
    except BaseException:
        if session is not None:
            session.close()
        else:
            tracker.closing = True
            cluster.close()
        raise
    return session


def open_cluster(kind: str, options: dict | None = None, out_dir=None) -> ClusterSession:
    """Start a cluster of `kind` ("local", "slurm", "pbs", "lsf") with `options` (see the
    module's docstring) and connect a client; the caller closes the session."""
    options = dict(options or {})
    if kind == "local":
        return _local(options)
    if kind in JOBQUEUE:
        return _jobqueue(kind, options, out_dir)
    raise ValueError(f"unknown cluster kind {kind!r} (known: {', '.join(KINDS)})")


def connect_scheduler(address: str) -> ClusterSession:
    """A session on an existing scheduler (tcp://host:port or a scheduler file)."""
    from distributed import Client
    if os.path.isfile(address):
        return ClusterSession(client=Client(scheduler_file=address))
    return ClusterSession(client=Client(address, timeout=30))


__all__ = ["ClusterSession", "QueueError", "open_cluster", "connect_scheduler", "parse_spec",
           "options_from_table", "KINDS", "JOBQUEUE"]
