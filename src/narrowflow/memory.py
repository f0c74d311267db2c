"""The memory budget that large allocations are checked against before they are made.

A module of its own, importing nothing from narrowflow, so that every layer can use it: the
initial states (`narrowflow.initial`) sit below the ensemble solver, which checks its outputs
against the same limit.
"""
from __future__ import annotations

import os


def default_memory_limit() -> int:
    """The memory budget of large allocations.

    Returns
    -------
    int
        80 % of physical memory in bytes, or 8 GiB when it cannot be found out.
    """
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 << 30
