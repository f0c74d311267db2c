"""Ensemble studies: what the trajectories of an ensemble did, and studies that run them.

One job per module:

- `results`: the result adapter (EnsembleResult or xarray.Dataset alike);
- `statistics`: loss quantiles over time, escape times, Wilson intervals;
- `symmetry`: the network's symmetry group, canonical states;
- `clustering`: clusters of final states, merged modulo symmetry;
- `critical`: Morse indices, Newton polishing, critical-point types;
- `limits`: limit points: clusters polished and classified;
- `basins`: basin maps (runs integrations);
- `descent`: gradient descent against gradient flow (runs integrations);
- `summary`: where an ensemble ended, by type of limit (narrowflow run's summary).

Every function accepts either an ``EnsembleResult`` or an ``xarray.Dataset`` written by
``EnsembleResult.to_xarray()`` / ``narrowflow.io.load`` (see `results.fields`). The names
below are the public API; ``narrowflow.analysis`` re-exports them for older code.
"""
from __future__ import annotations

from narrowflow.studies.results import EnsembleFields, fields, DEFAULT_QUANTILES
from narrowflow.studies.statistics import (
    loss_quantiles, escape_times, default_thresholds, escape_time_summary, wilson_interval)
from narrowflow.studies.symmetry import Symmetry
from narrowflow.studies.clustering import cluster_states
from narrowflow.studies.critical import (
    MorseInfo, morse_index, polish_critical_point, CriticalPoint, classify)
from narrowflow.studies.limits import LimitPoints, limit_points
from narrowflow.studies.basins import BasinMap, basin_map
from narrowflow.studies.descent import GDComparison, gd_vs_flow
from narrowflow.studies.summary import LimitSummary, summarize_limits

__all__ = [
    "EnsembleFields", "fields", "DEFAULT_QUANTILES", "loss_quantiles", "escape_times",
    "default_thresholds", "escape_time_summary", "wilson_interval", "Symmetry",
    "cluster_states", "MorseInfo", "morse_index", "polish_critical_point", "CriticalPoint",
    "classify", "LimitPoints", "limit_points", "BasinMap", "basin_map", "GDComparison",
    "gd_vs_flow", "LimitSummary", "summarize_limits"]
