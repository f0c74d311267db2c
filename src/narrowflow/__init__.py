"""narrowflow: gradient flows of narrow two-layer networks as dynamical systems.

Fast ensembles of gradient flows (Cython kernels driving Numba-compiled
right-hand sides) and the monodromy of their variational equations along
complex integral curves.
"""
from __future__ import annotations

import importlib

try:  # the one version lives in pyproject.toml; installed metadata carries it
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("narrowflow")
except PackageNotFoundError:  # pragma: no cover - run from a source tree never installed
    __version__ = "0+unknown"

# name -> module that defines it; imported on first use so that
# `import narrowflow` stays cheap and each part loads only when asked for.
_LAZY = {
    "Network": "narrowflow.model",
    "Dataset": "narrowflow.model",
    "GradientFlow": "narrowflow.model",
    "solve_ensemble": "narrowflow.solve",
    "EnsembleResult": "narrowflow.ensemble",
    "Status": "narrowflow.ensemble",
    "log_times": "narrowflow.ensemble",
    "check_integrability": "narrowflow.monodromy",
}
_SUBMODULES = ("activations", "model", "rhs", "ensemble", "monodromy", "distributed",
               "io", "plots", "studies", "analysis", "cli")


def build_info() -> dict:
    """How this installation was built.

    Returns
    -------
    dict
        ``narrowflow``, ``numpy``, ``numba`` (version strings), ``openmp`` (bool: whether
        the kernels were built with OpenMP), ``max_threads`` (int), ``fma`` and
        ``wide_vectors`` (bool: how Numba compiles the right-hand sides in this process,
        see `narrowflow.jit`).
    """
    import numba
    import numpy

    from narrowflow import jit
    from narrowflow._ext import buildinfo
    return {
        "narrowflow": __version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "openmp": buildinfo.openmp_enabled(),
        "max_threads": buildinfo.max_threads(),
        "fma": jit.fma_enabled(),
        "wide_vectors": jit.wide_vectors(),
    }


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"narrowflow.{name}")
    raise AttributeError(f"module 'narrowflow' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
