"""Monodromy of variational equations along complex paths (docs/math.md §5).

Submodules (imported on first use):

- ``paths``: complex paths and loops as functions of a real parameter.
- ``transport``: transport of linear systems and of a vector field with its
  variational equation along paths; closure verification.
- ``groups``: monodromy groups in SL(2, C), statistics with error bars, classification, verdict.
- ``systems``: built-in validation systems (Gauss hypergeometric, Kimura's list, Hénon–Heiles).
- ``network``: the network front end ``check_integrability``.
- ``jets``, ``koenigs``: higher-order variational equations (k-jets of flow maps).
"""
from __future__ import annotations

import importlib

# public name -> submodule that defines it
_LAZY = {
    # paths
    "Path": ".paths", "Segment": ".paths", "Arc": ".paths", "segment": ".paths",
    "arc": ".paths", "circle": ".paths", "polyline": ".paths", "polygon": ".paths",
    "lasso": ".paths", "loop_around": ".paths", "as_path": ".paths",
    # transport
    "TransportResult": ".transport", "transport_linear": ".transport",
    "transport_field": ".transport", "variational_monodromy": ".transport",
    "LoopMonodromy": ".transport",
    # groups
    "MonodromyGroup": ".groups", "Classification": ".groups", "Statistic": ".groups",
    "sl2_normalize": ".groups", "VERDICTS": ".groups",
    # systems
    "LinearSystem": ".systems", "hypergeometric": ".systems",
    "hypergeometric_monodromy": ".systems", "hypergeometric_invariants": ".systems",
    "kimura_solvable": ".systems", "KimuraResult": ".systems",
    "HenonHeiles": ".systems", "henon_heiles": ".systems",
    # network front end
    "check_integrability": ".network", "IntegrabilityReport": ".network",
    # higher-order VEs
    "jet_monodromy": ".jets", "jet_commutator": ".jets", "JetCommutator": ".jets",
    "koenigs_series": ".koenigs", "saddle_unstable_check": ".koenigs",
}
_SUBMODULES = ("paths", "transport", "groups", "systems", "network", "jets", "koenigs")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'narrowflow.monodromy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
