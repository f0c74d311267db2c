"""``narrowflow.solve_ensemble``: the one entry point of ensemble runs, in this process
(narrowflow.ensemble) or on Dask with a resumable Zarr store (narrowflow.distributed).

It sits above both so that the in-process solver never imports the distributed layer.
"""
from __future__ import annotations

import inspect

import numpy as np

from narrowflow import ensemble


def solve_ensemble(flow, theta0, *args, backend="local", client=None, store=None,
                   overwrite=False, **kwargs) -> ensemble.EnsembleResult:
    """Integrate an ensemble of gradient flows, in this process or on Dask.

    The arguments and the result are those of `narrowflow.ensemble.solve_ensemble`, plus
    the four below.

    Parameters
    ----------
    flow : GradientFlow or CompiledSystem
        The system to integrate.
    theta0 : array_like of float, shape (N, p)
        Initial states, one per row.
    t_span, save_at, method, rtol, atol, dt, max_steps, gtol, threads, progress : optional
        As for `narrowflow.ensemble.solve_ensemble`.
    escape_threshold, divergence_bound, lanes, chunk_size, memory_limit : optional
        As for `narrowflow.ensemble.solve_ensemble`.
    save_states, seed, profile, max_step : optional
        As for `narrowflow.ensemble.solve_ensemble`.
    backend : {"local", "dask"}, optional
        ``"local"`` runs `narrowflow.ensemble.solve_ensemble`. ``"dask"``
        (`narrowflow.distributed`, needs the ``[dist]`` extra) runs chunks of ``chunk_size``
        trajectories as tasks on ``client`` and writes them to the Zarr ``store``; the whole
        result is then read into this process, so ``memory_limit`` applies as for
        ``"local"``. ``threads`` and ``profile`` have no meaning there (each task runs its
        kernel on one thread) and are refused.
    client : distributed.Client, optional
        ``"dask"`` only; None starts a LocalCluster sized to the machine.
    store : str or os.PathLike, optional
        ``"dask"`` only, and required there: the Zarr store (resumable).
    overwrite : bool, optional
        ``"dask"`` only: replace a store made by another configuration (refused otherwise).

    Returns
    -------
    EnsembleResult
        As from `narrowflow.ensemble.solve_ensemble`.

    Raises
    ------
    TypeError, ValueError
        For a bad argument (named), ``client`` or ``store`` with ``"local"``, or ``threads``
        or ``profile`` with ``"dask"``.
    """
    if backend == "local":
        for name, value in (("client", client), ("store", store)):
            if value is not None:
                raise ValueError(f"{name} is only used with backend='dask'")
        return ensemble.solve_ensemble(flow, theta0, *args, **kwargs)
    if backend != "dask":
        raise ValueError(f"backend must be 'local' or 'dask', got {backend!r}")
    bound = inspect.signature(ensemble.solve_ensemble).bind(flow, theta0, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    if not isinstance(a["progress"], (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {a['progress']!r}")
    for name, used in (("threads", a["threads"] is not None), ("profile", bool(a["profile"]))):
        if used:
            raise ValueError(f"{name} is not used with backend='dask' (each Dask task runs "
                             f"the kernel on one thread; size the cluster instead)")
    solver = {k: a[k] for k in ("method", "t_span", "save_at", "rtol", "atol", "dt",
                                "max_steps", "gtol", "escape_threshold", "divergence_bound",
                                "lanes", "save_states", "max_step")}
    problem = ensemble.make_problem(flow, **solver)
    if np.ndim(theta0) == 2:        # otherwise theta0's own check names the problem
        ensemble._check_memory(problem, np.shape(theta0)[0], a["memory_limit"])
    from narrowflow.distributed import solve_ensemble_dask
    return solve_ensemble_dask(flow, theta0, store=store, client=client, chunk=a["chunk_size"],
                               overwrite=overwrite, progress=a["progress"], seed=a["seed"],
                               **solver)


# help() and inspect show the in-process solver's parameters and the Dask ones
solve_ensemble.__signature__ = inspect.signature(ensemble.solve_ensemble).replace(
    parameters=[*inspect.signature(ensemble.solve_ensemble).parameters.values(),
                *[inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d)
                  for n, d in (("backend", "local"), ("client", None), ("store", None),
                               ("overwrite", False))]])
