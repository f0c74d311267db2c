"""Jet algebra: composition and inversion of truncated maps, and order-part norms.

Jets here are lists ``[Φ_0 (n,), Φ_1 (n, n), ..., Φ_k]`` of derivative tensors (or Jet
objects). Caveat (docs/math.md §5.6): composing jets with large entries in float64 loses the
digits of small higher-order parts; loop products are compared along loops integrated as one
path (``jet_commutator``), never composed.
"""
from __future__ import annotations

import numpy as np

from .kernel import MAX_ORDER, _chain, _shapes, _work


def _as_tensors(jet_or_list):
    """The tensor list of a Jet (anything with ``.tensors``) or a list of tensors."""
    return list(jet_or_list.tensors) if hasattr(jet_or_list, "tensors") else list(jet_or_list)


def compose(outer, inner):
    """Derivative tensors of ``outer ∘ inner`` (orders 1..k, Φ_0 = outer's end point).

    outer, inner: Jets or lists [Φ_0, Φ_1, ..., Φ_k] of the same order and dimension;
    the composition assumes inner's end point is outer's base point (closed loops).
    Caveat (docs/math.md §5.6): composing jets with large entries in float64 loses the digits of
    small higher-order parts; to compare loop products use loops integrated as one path.
    """
    G = _as_tensors(outer)
    P = _as_tensors(inner)
    if len(G) != len(P) or G[0].shape != P[0].shape:
        raise ValueError("outer and inner must have the same order and dimension")
    n = G[0].shape[0]
    K = len(G) - 1
    shp = _shapes(n, K)
    pad = lambda L: [np.ascontiguousarray(L[j], np.complex128) if j <= K else np.zeros(shp[j - 1], np.complex128)
                     for j in range(1, 5)]
    O = [np.zeros(s, np.complex128) for s in shp]
    _chain(n, K, MAX_ORDER, *pad(G), *pad(P), *O, *_work(n, K))
    return [G[0].copy()] + [O[j] for j in range(K)]


def inverse(jet):
    """Derivative tensors of the inverse map (orders 1..k), base and end point swapped.

    Solved order by order from ``jet ∘ inverse = id``: Ψ_1 = Φ_1⁻¹ and
    Ψ_j = −Φ_1⁻¹ [(Φ ∘ Ψ)_j with Ψ_j = 0]. Same float64 caveat as :func:`compose`.
    """
    F = _as_tensors(jet)
    n = F[0].shape[0]
    K = len(F) - 1
    Finv1 = np.linalg.inv(F[1])
    Psi = [F[0].copy(), Finv1] + [np.zeros((n,) * (j + 1), np.complex128) for j in range(2, K + 1)]
    for j in range(2, K + 1):
        Oj = compose(F, Psi)[j]          # Psi[j] is still zero here
        Psi[j] = -np.tensordot(Finv1, Oj, axes=(1, 0))
    return Psi


def _order_norms(tensors):
    """Frobenius norm of each order part; order 1 measured against the identity."""
    n = tensors[0].shape[0]
    out = [0.0, float(np.linalg.norm(tensors[1] - np.eye(n)))]
    out += [float(np.linalg.norm(t)) for t in tensors[2:]]
    return out
