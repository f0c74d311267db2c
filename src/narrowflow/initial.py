"""Initial states of an ensemble, reproducible per trajectory: the one scheme.

Every way of drawing initial states uses `sample`: the API (``model.nf4_initial_states``,
``initial.sample``), ``narrowflow run`` (its config's ``[initial]`` table) and the Dask
backend (each task draws its own chunk). The same seed gives the same states through all of
them, however the run is split into chunks, workers or machines.

The scheme. Trajectory `i`'s state is a function of (seed, i) only: its random numbers come
from the counter-based generator Philox4x32-10 (Salmon et al., SC'11), no state is carried
from one trajectory to the next. With key = (seed mod 2**32, seed >> 32) (seed in [0, 2**64))
and counter = (i mod 2**32, i >> 32, b, stream), block b gives four 32-bit words; component
j of trajectory i takes block j // 2, words 2(j % 2) and 2(j % 2) + 1, and keeps 27 + 26 of
their bits: a uniform u = (m + 0.5) 2**-53 in the open interval (0, 1). Normals are
mean + std · ndtri(u) (the inverse normal CDF), uniforms on [low, high) are
low + (high − low) u. So any block of rows start .. start+n−1 can be drawn alone and equals
the same rows of the whole.

    theta0 = initial.sample(n=100_000, p=4, seed=12345)                  # N(0, 1)
    theta0 = initial.sample(1000, 4, seed=1, distribution="uniform", low=-2, high=2)
    part   = initial.sample(1000, 4, seed=1, start=500)                  # rows 500..1499
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

from narrowflow.memory import default_memory_limit

DISTRIBUTIONS = ("normal", "uniform")
# the seed of the main job and of model.nf4_initial_states (config's initial.seed default)
DEFAULT_SEED = 12345

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32(counter, key) -> np.ndarray:
    """The Philox4x32-10 block function (Salmon et al., SC'11).

    Parameters
    ----------
    counter : array_like of uint32, shape (n, 4)
        Counters, one per row (any shape with a multiple of 4 entries is read as (n, 4)).
    key : array_like of int, shape (2,)
        The key; each entry is reduced mod 2**32.

    Returns
    -------
    ndarray of uint32, shape (n, 4)
        The four output words of each counter.
    """
    c = np.asarray(counter, dtype=np.uint64).reshape(-1, 4)
    c0, c1, c2, c3 = (c[:, j].copy() for j in range(4))
    k0, k1 = (int(v) & 0xFFFFFFFF for v in key)
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        p0 = _M0 * c0          # 32 x 32 -> 64 bits, exact in uint64
        p1 = _M1 * c2
        hi0, lo0 = p0 >> _S32, p0 & _MASK
        hi1, lo1 = p1 >> _S32, p1 & _MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def _seed_key(seed) -> tuple[int, int]:
    if isinstance(seed, bool) or not isinstance(seed, (Integral, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed & 0xFFFFFFFF, seed >> 32


def uniforms(seed, indices, n_draws: int, stream: int = 0) -> np.ndarray:
    """Uniform draws in the open interval (0, 1), reproducible per index.

    Parameters
    ----------
    seed : int
        The seed, in ``[0, 2**64)``.
    indices : array_like of int, shape (n,)
        Trajectory indices, non-negative.
    n_draws : int
        Draws per index.
    stream : int, optional
        An independent stream for the same (seed, index).

    Returns
    -------
    ndarray of float64, shape (n, n_draws)
        Row r depends only on ``(seed, indices[r], stream)``; each value has 53 random bits.

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        For a negative index or a seed out of range.
    """
    key = _seed_key(seed)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= 2**63):
        raise ValueError("indices must be non-negative")
    n_blocks = (n_draws + 1) // 2
    out = np.empty((idx.size, 2 * n_blocks))
    u = idx.astype(np.uint64)
    for b in range(n_blocks):
        ctr = np.zeros((idx.size, 4), dtype=np.uint64)
        ctr[:, 0] = u & _MASK
        ctr[:, 1] = u >> _S32
        ctr[:, 2] = b
        ctr[:, 3] = stream & 0xFFFFFFFF
        r = philox4x32(ctr, key).astype(np.uint64)
        for j in range(2):   # 27 + 26 bits -> one double with 53 random bits, never 0 or 1
            m = ((r[:, 2 * j] >> np.uint64(5)) << np.uint64(26)) | (r[:, 2 * j + 1] >> np.uint64(6))
            out[:, 2 * b + j] = (m.astype(np.float64) + 0.5) * 2.0**-53
    return out[:, :n_draws]


def sample(n: int, p: int, seed: int, distribution: str = "normal", start: int = 0, *,
           mean=0.0, std=1.0, low=-1.0, high=1.0) -> np.ndarray:
    """Initial states for trajectories ``start .. start + n − 1``, the one scheme.

    Row i is a function of ``(seed, start + i)`` only, so any block of rows equals the same
    rows of the whole.

    Parameters
    ----------
    n : int
        Number of trajectories.
    p : int
        Number of parameters, ``p >= 1``.
    seed : int
        The seed, in ``[0, 2**64)``.
    distribution : {"normal", "uniform"}, optional
        ``"normal"``: ``mean + std * N(0, 1)``; ``"uniform"``: uniform on ``[low, high)``
        componentwise.
    start : int, optional
        Index of the first trajectory.
    mean, std : float or array_like of shape (p,), optional
        Parameters of the normal distribution.
    low, high : float or array_like of shape (p,), optional
        Bounds of the uniform distribution.

    Returns
    -------
    ndarray of float64, shape (n, p)

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        Before anything is drawn, for a bad argument (named), ``start + n`` beyond
        ``2**63 − 1``, or states that would not fit in memory (naming ``n``).
    """
    for name, v in (("n", n), ("p", p), ("start", start)):
        if isinstance(v, bool) or not isinstance(v, (Integral, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if start + n > 2**63 - 1:
        raise ValueError(f"n: start + n must be <= 2**63 - 1 (trajectory indices are int64), "
                         f"got start={start}, n={n}")
    # the draws take about 3 float64 arrays of (n, p) while they are made: refused beyond
    # the memory limit the ensemble solver uses too (80 % of RAM) before anything is allocated
    need, limit = 3 * 8 * n * max(p, 2), default_memory_limit()
    if need > limit:
        raise ValueError(f"n: {n} initial states of {p} parameters need about "
                         f"{need / 2**30:.3g} GiB while drawn, over the memory limit of "
                         f"{limit / 2**30:.3g} GiB (80 % of RAM)")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    u = uniforms(seed, np.arange(start, start + n, dtype=np.int64), p)
    if distribution == "normal":
        from scipy.special import ndtri  # here: importing this module stays cheap for config
        mean = _vec(mean, p, "mean")
        std = _vec(std, p, "std")
        if np.any(std < 0):
            raise ValueError("std must be >= 0")
        return mean + std * ndtri(u)
    low = _vec(low, p, "low")
    high = _vec(high, p, "high")
    if np.any(high < low):
        raise ValueError("high must be >= low")
    return low + (high - low) * u


def _vec(value, p, name) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.ndim > 1 or (arr.ndim == 1 and arr.size != p):
        raise ValueError(f"{name} must be a number or a list of {p} numbers, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return np.broadcast_to(arr, (p,)).astype(np.float64)


__all__ = ["philox4x32", "uniforms", "sample", "DISTRIBUTIONS"]
