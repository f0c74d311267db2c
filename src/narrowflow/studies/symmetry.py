"""The symmetry group of a two-layer network (neuron permutations, sign flips of odd
activations) and canonical representatives of states modulo it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


_MAX_GROUP = 50_000  # largest symmetry group whose orbits are enumerated (m = 6, odd σ)


@dataclass(frozen=True)
class Symmetry:
    """The discrete symmetries of L for one architecture.

    Continuous symmetries (e.g. the rescaling of a linear network) are not quotiented out.

    Parameters
    ----------
    width : int
        The number of neurons m.
    block_size : int
        Entries per neuron block, B = k + d + bias.
    n_tail : int, optional
        Entries after the neuron blocks (the output bias c).
    permute : bool, optional
        Neurons may be permuted.
    odd : bool, optional
        σ is odd: a neuron's block may change sign.
    zero_at_zero : bool, optional
        σ(0) = 0: a zero block is a dead neuron, invariant.
    """
    width: int
    block_size: int
    n_tail: int = 0
    permute: bool = True
    odd: bool = False
    zero_at_zero: bool = False

    @property
    def n_params(self) -> int:
        """The number of parameters p = m·B + n_tail."""
        return self.width * self.block_size + self.n_tail

    @classmethod
    def of(cls, obj, symmetric: bool = True) -> "Symmetry":
        """The symmetry of a GradientFlow, Network, or result (Dataset attributes / .flow).

        Parameters
        ----------
        obj : GradientFlow, Network, EnsembleResult or xarray.Dataset
            Anything with a ``network``, a Network itself, a result with a ``flow``, or a
            Dataset whose attributes describe the network.
        symmetric : bool, optional
            False: the trivial group (states compared as they are; dead neurons are still
            identified where σ(0) = 0).

        Returns
        -------
        Symmetry
            The symmetry of that network's loss.

        Raises
        ------
        TypeError
            If no network can be found in ``obj``.
        """
        net = getattr(obj, "network", None)
        if net is None and hasattr(obj, "activation") and hasattr(obj, "block_size"):
            net = obj
        if net is None and getattr(obj, "flow", None) is not None:
            net = obj.flow.network
        if net is not None:
            m, B, bias = net.width, net.block_size, net.bias
            k, act = net.output_dim, net.activation
        else:
            attrs = getattr(obj, "attrs", None)
            if not attrs or "width" not in attrs:
                raise TypeError(f"cannot find the network of {type(obj).__name__}: pass a "
                                "GradientFlow, a Network or a result with its attributes")
            from narrowflow import activations
            kappa = attrs.get("kappa", None)
            act = activations.get(str(attrs["activation"]),
                                  kappa=None if kappa is None else float(kappa))
            m, k = int(attrs["width"]), int(attrs["output_dim"])
            bias = bool(int(attrs.get("bias", 0)))
            B = k + int(attrs["input_dim"]) + int(bias)
        return cls(width=m, block_size=B, n_tail=k if bias else 0, permute=symmetric,
                   odd=bool(act.odd) and symmetric, zero_at_zero=bool(act.zero_at_zero))

    @property
    def group_order(self) -> int:
        """The order of the group: m! (with permutations) times 2^m (odd σ)."""
        from math import factorial
        return (factorial(self.width) if self.permute else 1) * (2 ** self.width if self.odd else 1)

    def _check(self, theta, name="theta") -> np.ndarray:
        X = np.asarray(theta, dtype=float)
        if X.ndim not in (1, 2) or X.shape[-1] != self.n_params:
            raise ValueError(f"{name}: expected shape (N, {self.n_params}) or ({self.n_params},), "
                             f"got {X.shape}")
        return X

    def canonicalize(self, theta, dead_tol: float = 1e-8):
        """Canonical representatives of states modulo the symmetry group.

        Per neuron block: zeroed when its norm <= dead_tol and σ(0) = 0 (a dead neuron); for
        odd σ multiplied by the sign of its first entry larger than dead_tol in magnitude (so
        a_j > 0 unless a_j ≈ 0); then neurons sorted with live ones first, in descending
        lexicographic order of their blocks.

        Parameters
        ----------
        theta : array_like of float, shape (N, p) or (p,)
            States.
        dead_tol : float, optional
            Norm at or below which a block is a dead neuron.

        Returns
        -------
        canonical : ndarray of float64, shape (N, p) or (p,)
            The canonical states (a copy).
        n_dead : ndarray of int, shape (N,), or int
            Dead neurons per state.

        Raises
        ------
        ValueError
            If ``theta`` does not have p entries per state.
        """
        X = self._check(theta)
        single = X.ndim == 1
        X = np.array(np.atleast_2d(X), dtype=float, copy=True)
        N, m, B = X.shape[0], self.width, self.block_size
        blocks = X[:, :m * B].reshape(N, m, B)
        dead = np.zeros((N, m), dtype=bool)
        if self.zero_at_zero:
            dead = np.linalg.norm(blocks, axis=2) <= dead_tol
        if self.odd:
            big = np.abs(blocks) > dead_tol
            first = np.argmax(big, axis=2)
            ref = np.take_along_axis(blocks, first[..., None], axis=2)[..., 0]
            blocks *= np.where(ref < 0, -1.0, 1.0)[..., None]
        blocks[dead] = 0.0
        if self.permute and m > 1:
            # lexicographic sort by successive stable sorts, least significant key first
            order = np.broadcast_to(np.arange(m), (N, m)).copy()
            for col in range(B - 1, -1, -1):
                key = np.take_along_axis(-blocks[:, :, col], order, axis=1)
                order = np.take_along_axis(order, np.argsort(key, axis=1, kind="stable"), axis=1)
            key = np.take_along_axis(dead, order, axis=1)
            order = np.take_along_axis(order, np.argsort(key, axis=1, kind="stable"), axis=1)
            blocks[:] = np.take_along_axis(blocks, order[:, :, None], axis=1)
        n_dead = dead.sum(axis=1)
        return (X[0], int(n_dead[0])) if single else (X, n_dead)

    def orbit(self, theta) -> np.ndarray:
        """All images g·θ of one state θ under the group.

        Parameters
        ----------
        theta : array_like of float, shape (p,)
            One state.

        Returns
        -------
        ndarray of float64, shape (group_order, p)
            The images, with repeats where θ has a stabiliser.

        Raises
        ------
        ValueError
            If ``theta`` is not one state of shape (p,), or the group has more than 50 000
            elements.
        """
        import itertools
        th = self._check(theta)
        if th.ndim != 1:
            raise ValueError("theta: orbit takes one state of shape (p,)")
        if self.group_order > _MAX_GROUP:
            raise ValueError(f"the symmetry group has {self.group_order} elements; orbits are "
                             f"enumerated only up to {_MAX_GROUP}")
        m, B = self.width, self.block_size
        blocks = th[:m * B].reshape(m, B)
        perms = (np.array(list(itertools.permutations(range(m)))) if self.permute
                 else np.arange(m)[None])
        signs = (np.array(list(itertools.product((1.0, -1.0), repeat=m))) if self.odd
                 else np.ones((1, m)))
        img = blocks[perms][:, None, :, :] * signs[None, :, :, None]   # (P, S, m, B)
        img = img.reshape(-1, m * B)
        tail = np.broadcast_to(th[m * B:], (img.shape[0], self.n_tail))
        return np.concatenate([img, tail], axis=1)

    def distance(self, theta1, theta2) -> float:
        """The distance of two states modulo the group: min over g of ||g·θ1 − θ2||.

        Parameters
        ----------
        theta1, theta2 : array_like of float, shape (p,)
            The two states.

        Returns
        -------
        float
            The smallest Euclidean distance between θ2 and an image of θ1.
        """
        return float(np.min(np.linalg.norm(self.orbit(theta1) - np.asarray(theta2, float), axis=1)))
