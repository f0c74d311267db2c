"""Ensemble studies, under their former name: a re-export of :mod:`narrowflow.studies`.

The studies live in ``narrowflow.studies`` (one module per job: results, statistics, symmetry,
clustering, critical, limits, basins, descent, summary); import them from there in new code.
``from narrowflow import analysis`` keeps working with the same public names.
"""
from __future__ import annotations

from narrowflow.studies import *  # noqa: F401,F403
from narrowflow.studies import __all__  # noqa: F401
