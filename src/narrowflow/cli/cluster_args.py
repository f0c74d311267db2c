"""The `narrowflow run` options of distributed runs (--cluster, --scheduler, --chunk) and the
Dask client or batch-queue session they ask for (narrowflow.cluster); the run itself is
`narrowflow.cli.run.run_distributed`, the store and tasks are narrowflow.distributed."""
from __future__ import annotations

from narrowflow import distributed as D


def add_cli_arguments(parser) -> None:
    """Add --cluster, --scheduler, --chunk (and --overwrite, --progress if the parser lacks
    them) to `narrowflow run`'s parser. Importing this module does not import Dask."""
    have = set(getattr(parser, "_option_string_actions", {}))
    g = parser.add_argument_group("distributed runs (Dask; the narrowflow[dist] extra)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--cluster", metavar="KIND[:OPTIONS]", default=None,
                   help="start a Dask cluster and write a resumable Zarr store (run the same "
                        "command again to finish an interrupted run): local (sized to this "
                        "machine), local:N (N worker processes), or a batch queue through "
                        "dask-jobqueue (narrowflow[hpc]): slurm, pbs or lsf, with options "
                        "key=value,... (jobs, cores, processes, memory, walltime, queue, "
                        "account, extra (a job directive, repeatable), log_directory, "
                        "interface, wait) over the config's [cluster] table, e.g. "
                        "slurm:jobs=4,cores=32,memory=64GB,walltime=04:00:00; the jobs are "
                        "cancelled when the run ends, also on Ctrl-C or an error; job logs "
                        "in OUT/slurm-logs")
    x.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on an existing Dask cluster (tcp://host:8786 or a scheduler "
                        "file, e.g. from dask-jobqueue on SLURM), writing a resumable Zarr "
                        "store on a file system the workers share")
    g.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="trajectories per Dask task (default: solver.chunk_size, else about N/32 "
                        "within [4096, 65536]; a resumed store keeps its own)")
    if "--overwrite" not in have:
        g.add_argument("--overwrite", action="store_true",
                       help="replace an existing store made by another configuration")
    if "--progress" not in have:
        g.add_argument("--progress", action="store_true", help="show a progress bar")


def parse_cluster(spec: str) -> int | None:
    """'local' -> None (sized to the machine), 'local:N' -> N workers; else ValueError.
    (The local case of `narrowflow.cluster.parse_spec`, which also reads batch kinds.)"""
    from narrowflow import cluster
    kind, opts = cluster.parse_spec(spec)
    if kind != "local" or set(opts) - {"workers"}:
        raise ValueError(f"--cluster must be 'local' or 'local:N', got {spec!r}")
    return opts.get("workers")


def wants_distributed(args) -> bool:
    """True when the parsed `narrowflow run` arguments ask for a Dask run."""
    return (getattr(args, "cluster", None) is not None
            or getattr(args, "scheduler", None) is not None)


def cluster_options(args, table: dict | None = None) -> tuple[str, dict]:
    """(kind, options) of --cluster: its options over the config's [cluster] table (job
    directives of both, the table's first). ValueError naming the key when one is wrong."""
    from narrowflow import cluster
    kind, opts = cluster.parse_spec(args.cluster)
    merged = cluster.options_from_table(kind, table)
    extra = merged.pop("extra", []) + opts.pop("extra", [])
    merged.update(opts)
    if extra:
        merged["extra"] = extra
    return kind, merged


def session_from_args(args, table: dict | None = None, out_dir=None):
    """A `narrowflow.cluster.ClusterSession` from --cluster / --scheduler; the caller closes
    it (which also cancels the batch jobs it submitted)."""
    try:
        import distributed  # noqa: F401
    except ImportError:  # pragma: no cover - the light install
        raise ValueError("--cluster/--scheduler need dask.distributed and zarr: "
                         "pip install 'narrowflow[dist]'") from None
    from narrowflow import cluster
    if getattr(args, "scheduler", None):
        return cluster.connect_scheduler(args.scheduler)
    kind, options = cluster_options(args, table)
    return cluster.open_cluster(kind, options, out_dir=out_dir)


def client_from_args(args):
    """(client, cluster or None) from --cluster / --scheduler; the caller closes both
    (session_from_args gives the session, whose close also cancels batch jobs)."""
    s = session_from_args(args)
    return s.client, s.cluster


def options_from_config(rc) -> dict:
    """solve_distributed keyword arguments from a validated `narrowflow.config.RunConfig`.

    solver.threads is not used: each task runs its kernel on one thread and the workers'
    Dask threads give the parallelism. solver.chunk_size becomes the task size.
    """
    kw = rc.solver_kwargs()
    for name in D.LOCAL_ONLY:
        kw.pop(name, None)
    chunk = kw.pop("chunk_size", None)
    seed = kw.pop("seed")
    i = rc.cfg["initial"]
    keys = ("mean", "std") if i["distribution"] == "normal" else ("low", "high")
    spec = {"distribution": i["distribution"], **{k: i[k] for k in keys}}
    return dict(initial=spec, seed=seed, n=i["n"], chunk=chunk, **kw)


__all__ = ["add_cli_arguments", "parse_cluster", "wants_distributed", "cluster_options",
           "session_from_args", "client_from_args", "options_from_config"]
