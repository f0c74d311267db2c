"""Monodromy groups in SL(2, C): statistics with error bars, classification, verdict.

docs/math.md §5.3. The generators are normalised ``M -> M / sqrt(det M)`` (a
Liouvillian change that does not affect ``G⁰`` being abelian/solvable) and the
subgroup of SL(2, C) they generate is classified as one of

    trivial, abelian, reducible-unipotent, reducible-borel,
    imprimitive-finite, imprimitive-infinite, finite-primitive, SL2   (or undecided)

from traces and commutator traces (never from eigenvectors of near-defective
matrices), each with a first-order error bound propagated from the matrices'
error estimates plus a rounding term. Every predicate is three-valued: a
quantity is *non-zero* only when it exceeds ``margin`` (default 100) times its
error, and *consistent with zero* when it is below that; predicates that rest on
the absence of small-order roots of unity are left undecided where they cannot
be proven. The kind is the class consistent with all predicates; when several
remain, the verdict is still given when they all agree about ``G⁰``.

Verdicts are :class:`~narrowflow.monodromy.verify.Verdict` values (``VERDICTS``; each equals
its text): a verdict never says "integrable", because the test is one-sided.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .verify import Verdict

__all__ = ["MonodromyGroup", "Classification", "Statistic", "sl2_normalize", "VERDICTS",
           "NON_ABELIAN", "NON_SOLVABLE", "CONSISTENT_ABELIAN", "INCONCLUSIVE",
           "UnverifiedLoopError"]

NON_ABELIAN = Verdict.NON_ABELIAN
NON_SOLVABLE = Verdict.NON_SOLVABLE
CONSISTENT_ABELIAN = Verdict.CONSISTENT_ABELIAN
INCONCLUSIVE = Verdict.INCONCLUSIVE
VERDICTS = tuple(Verdict)

KINDS = ("trivial", "abelian", "reducible-unipotent", "reducible-borel", "imprimitive-finite",
         "imprimitive-infinite", "finite-primitive", "SL2", "undecided")
# G0 of each kind: abelian? solvable?
_G0_ABELIAN = {"trivial": True, "abelian": True, "reducible-unipotent": True,
               "reducible-borel": False, "imprimitive-finite": True,
               "imprimitive-infinite": True, "finite-primitive": True, "SL2": False}
_G0_SOLVABLE = {k: True for k in _G0_ABELIAN}
_G0_SOLVABLE["SL2"] = False

_EPS = np.finfo(np.float64).eps


class UnverifiedLoopError(ValueError):
    """A group containing a matrix from a loop that failed verification cannot be classified."""


@dataclass(frozen=True)
class Statistic:
    """A computed number with an error bound.

    Parameters
    ----------
    name : str
        What the number is (printed by ``str``).
    value : complex or float
        The computed value.
    error : float
        Its absolute error bound.
    """
    name: str
    value: complex
    error: float

    def decide_zero(self, margin: float = 100.0, cap: float = 1e-4):
        """Three-valued zero test.

        Parameters
        ----------
        margin : float, optional
            Factor on the error.
        cap : float, optional
            Coarsest resolution at which "zero" is accepted.

        Returns
        -------
        bool or None
            False if ``|value| > margin*error`` (non-zero, proven with margin); True if
            ``|value| <= margin*error <= cap`` (zero to a resolution of at least cap); None
            when the error is too large to tell (``margin*error > cap`` and ``|value|``
            within it).
        """
        tol = margin * self.error
        if abs(self.value) > tol:
            return False
        return True if tol <= cap else None

    def significance(self) -> float:
        """How many errors the value is away from zero.

        Returns
        -------
        float
            ``|value| / error`` (inf when error is 0).
        """
        return abs(self.value) / self.error if self.error > 0 else math.inf

    def __str__(self):
        v = self.value
        vs = f"{v.real:.6g}{v.imag:+.3g}i" if isinstance(v, complex) and v.imag != 0 else \
            f"{(v.real if isinstance(v, complex) else v):.6g}"
        return f"{self.name} = {vs} ± {self.error:.1e}"


def _adj(M):
    """Adjugate of a 2x2 matrix (= inverse when det = 1; no division, no `inv`)."""
    return np.array([[M[1, 1], -M[0, 1]], [-M[1, 0], M[0, 0]]])


def sl2_normalize(M, error=0.0):
    """``M / sqrt(det M)`` (principal root) and the transferred error bound.

    Parameters
    ----------
    M : array_like of complex, shape (2, 2)
        The matrix.
    error : float, optional
        Absolute max-entry error of M.

    Returns
    -------
    N : ndarray of complex128, shape (2, 2)
        The normalised matrix, det N = 1.
    err : float
        Absolute max-entry error bound of N (first order, plus rounding).

    Raises
    ------
    ValueError
        If M is not 2x2, singular or not finite.
    """
    M = np.asarray(M, dtype=np.complex128)
    if M.shape != (2, 2):
        raise ValueError(f"matrix must be 2x2 for SL(2) normalisation, got shape {M.shape}")
    det = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    if det == 0 or not np.isfinite(det):
        raise ValueError("matrix is singular or not finite")
    s = np.sqrt(det)
    N = M / s
    nM = np.max(np.abs(M))
    # |d det| <= 2 * 2 * |M| * err ; d(1/sqrt det) = -1/2 det^{-3/2} d det
    ddet = 4 * nM * error + 4 * _EPS * nM * nM
    err = (error / abs(s) + nM * 0.5 * ddet / abs(det) ** 1.5 + 4 * _EPS * np.max(np.abs(N)))
    return N, float(err)


def _poly_stat(name, fn, mats, errs):
    """Statistic of a function polynomial of degree <= 2 in each matrix's entries.

    The first-order error bound sum |d fn / d M_ij| * err is computed by central differences,
    exact for such polynomials (up to rounding). Rounding: 64 eps * sum of |terms| estimate.
    """
    mats = [np.array(m, dtype=np.complex128) for m in mats]
    val = complex(fn(*mats))
    bound = 0.0
    size = 0.0
    for k, (M, e) in enumerate(zip(mats, errs)):
        h = max(1.0, float(np.max(np.abs(M)))) * 1e-3
        for idx in np.ndindex(M.shape):
            for unit in (1.0, 1j):
                Mp = [m.copy() for m in mats]
                Mm = [m.copy() for m in mats]
                Mp[k][idx] += h * unit
                Mm[k][idx] -= h * unit
                g = (fn(*Mp) - fn(*Mm)) / (2 * h)
                bound += abs(g) * e / math.sqrt(2)   # err bounds |dM_ij|; split into Re, Im parts
                size += abs(g) * abs(M[idx])
    rounding = 64 * _EPS * (size + abs(val))
    return Statistic(name, val, float(bound + rounding))


def _comm(A, B):
    return A @ B @ _adj(A) @ _adj(B)


@dataclass
class Classification:
    """Result of :meth:`MonodromyGroup.classify`.

    Parameters
    ----------
    kind : str
        One of "trivial", "abelian", "reducible-unipotent", "reducible-borel",
        "imprimitive-finite", "imprimitive-infinite", "finite-primitive", "SL2",
        "undecided".
    projective_order : int or None
        The order for finite kinds, else None.
    identity_component_abelian : bool or None
        Whether G⁰ is abelian (None: undecided).
    identity_component_solvable : bool or None
        Whether G⁰ is solvable (None: undecided).
    verdict : str
        One of `VERDICTS`.
    margin : float
        The margin factor used.
    statistics : list of Statistic, optional
        The numbers the decision rests on.
    candidates : tuple of str, optional
        Kinds consistent with the numbers.
    reasons : list of str, optional
        How it was decided.
    """
    kind: str
    projective_order: int | None
    identity_component_abelian: bool | None
    identity_component_solvable: bool | None
    verdict: str
    margin: float
    statistics: list = field(default_factory=list)
    candidates: tuple = ()
    reasons: list = field(default_factory=list)

    @property
    def implies_non_integrable(self) -> bool:
        """True when the verdict is non-abelian or non-solvable G⁰."""
        return self.verdict in (NON_ABELIAN, NON_SOLVABLE)

    def __str__(self):
        lines = [f"class: {self.kind}" + (f" (projective order {self.projective_order})"
                                          if self.projective_order else ""),
                 f"verdict: {self.verdict}"]
        if self.kind == "undecided" and self.candidates:
            lines.append("consistent classes: " + ", ".join(self.candidates))
        for s in self.statistics:
            sig = s.significance()
            lines.append(f"  {s}   (|value|/error = {sig:.3g})")
        for r in self.reasons:
            lines.append(f"  - {r}")
        return "\n".join(lines)


def _root_of_unity_trace(t: complex, err: float, margin: float, qmax: int, cap: float = 1e-4):
    """Is t = 2 cos(2 pi k / q) (q <= qmax) within margin*err? Returns (True/False/None, q).

    False only when proven (an eigenvalue off the unit circle beyond margin); True when within
    margin*err <= cap of such a value; None otherwise (undecidable at this accuracy).
    """
    tol = margin * err
    if abs(t.imag) > tol or abs(t.real) > 2 + tol:
        return False, None      # an eigenvalue off the unit circle: infinite order, proven
    if tol > cap:
        return None, None
    for q in range(1, qmax + 1):
        for k in range(0, q // 2 + 1):
            if math.gcd(k, q) != 1 and not (k == 0 and q == 1):
                continue
            if abs(t - 2 * math.cos(2 * math.pi * k / q)) <= tol:
                return True, q
    # real, on [-2, 2], but not near a root of unity of small order: cannot be proven either way
    return None, None


class MonodromyGroup:
    """The group generated by monodromy matrices.

    Parameters
    ----------
    mats : sequence of (array_like of complex, shape (n, n), or TransportResult)
        The generators: matrices, or results of ``transport_linear`` /
        ``variational_monodromy`` (these carry their error estimate and whether their loop
        was verified); one 2-D array or a 3-D array (k, n, n) also do.
    errors : float or sequence of float, optional
        Absolute max-entry error of each matrix (a scalar for all); default: the result's
        ``.error``, or 1e3·eps·max|M| for plain arrays.
    names : sequence of str, optional
        Labels of the generators (default "M0", "M1", ...).

    Raises
    ------
    TypeError
        If ``mats`` or ``errors`` are not of the types above.
    ValueError
        If ``mats`` is empty, a matrix is not square or not finite, the shapes differ, or
        ``errors`` or ``names`` do not match the generators (or an error is negative).
    """

    def __init__(self, mats: Sequence, errors=None, names=None):
        if isinstance(mats, np.ndarray) and mats.ndim == 2:
            mats = [mats]
        if not isinstance(mats, (list, tuple)) and not (isinstance(mats, np.ndarray) and mats.ndim == 3):
            raise TypeError("mats must be a sequence of square matrices or transport results")
        if len(mats) == 0:
            raise ValueError("mats must contain at least one matrix")
        self.results = []
        self.matrices = []
        self.alternates = []
        errs = []
        for i, m in enumerate(mats):
            if hasattr(m, "matrix") and hasattr(m, "verified"):
                self.results.append(m)
                M = np.asarray(m.matrix, dtype=np.complex128)
                errs.append(float(m.error))
                self.alternates.append({k: np.asarray(v, dtype=np.complex128)
                                        for k, v in getattr(m, "alternates", {}).items()})
            else:
                self.results.append(None)
                self.alternates.append({})
                try:
                    M = np.asarray(m, dtype=np.complex128)
                except (TypeError, ValueError):
                    raise TypeError(f"mats[{i}] is not a matrix") from None
                errs.append(1e3 * _EPS * float(np.max(np.abs(M))) if M.size else 0.0)
            if M.ndim != 2 or M.shape[0] != M.shape[1]:
                raise ValueError(f"mats[{i}] must be a square matrix, got shape {M.shape}")
            if not np.all(np.isfinite(M)):
                raise ValueError(f"mats[{i}] is not finite")
            self.matrices.append(M)
        n = self.matrices[0].shape[0]
        if any(M.shape != (n, n) for M in self.matrices):
            raise ValueError("all matrices must have the same shape")
        if errors is not None:
            try:
                earr = np.asarray(errors, dtype=float)
            except (TypeError, ValueError):
                raise TypeError("errors must be a number or a sequence of numbers") from None
            if earr.ndim == 0:
                earr = np.full(len(mats), float(earr))
            elif earr.shape != (len(mats),):
                raise ValueError(f"errors must be a scalar or have one entry per matrix "
                                 f"({len(mats)}), got shape {earr.shape}")
            errs = [float(e) for e in earr]
            if any(not (e >= 0) for e in errs):
                raise ValueError("errors must be non-negative")
        self.errors = errs
        self.n = n
        self.names = list(names) if names is not None else [f"M{i}" for i in range(len(mats))]
        if len(self.names) != len(self.matrices):
            raise ValueError("names must have one entry per matrix")

    def __len__(self):
        return len(self.matrices)

    # -- verification ---------------------------------------------------------
    def unverified(self) -> list[int]:
        """Indices of generators whose loop failed verification (closure or deformation).

        Returns
        -------
        list of int
            The indices (plain matrices count as verified).
        """
        return [i for i, r in enumerate(self.results) if r is not None and not r.verified]

    def _require_verified(self):
        bad = self.unverified()
        if bad:
            why = "; ".join(f"{self.names[i]}: {self.results[i].closure_note}" for i in bad)
            raise UnverifiedLoopError(
                "refusing to classify: the group contains matrices from loops that are not "
                f"verified closed loops ({why}). Exclude them (e.g. MonodromyGroup.verified_only).")

    @classmethod
    def verified_only(cls, results, names=None):
        """The group of those transport results that passed verification (others dropped).

        Parameters
        ----------
        results : sequence of TransportResult
            The transport results.
        names : sequence of str, optional
            One label per result.

        Returns
        -------
        MonodromyGroup or None
            The group of the verified results (None if none is).
        """
        keep = [i for i, r in enumerate(results) if r.verified]
        nm = None if names is None else [names[i] for i in keep]
        return cls([results[i] for i in keep], names=nm) if keep else None

    # -- statistics -----------------------------------------------------------
    def sl2(self):
        """SL(2)-normalised generators and their errors (see `sl2_normalize`).

        Returns
        -------
        list of (ndarray of complex128, shape (2, 2), float)
            ``(N, err)`` per generator.

        Raises
        ------
        ValueError
            If the matrices are not 2x2.
        """
        if self.n != 2:
            raise ValueError(f"SL(2) analysis needs 2x2 matrices, got {self.n}x{self.n}")
        return [sl2_normalize(M, e) for M, e in zip(self.matrices, self.errors)]

    def commutator_norm(self, i: int = 0, j: int = 1) -> Statistic:
        """Relative commutator ||M_i M_j - M_j M_i||_F / (||M_i|| ||M_j||) with error bound.

        Parameters
        ----------
        i, j : int, optional
            Indices of the two generators.

        Returns
        -------
        Statistic
            The relative commutator (float) and its first-order error bound.
        """
        A, B = self.matrices[i], self.matrices[j]
        eA, eB = self.errors[i], self.errors[j]
        nA, nB = np.linalg.norm(A), np.linalg.norm(B)
        C = A @ B - B @ A
        n = A.shape[0]
        dA, dB = eA * n, eB * n      # Frobenius bound of an error with max entry e
        err = 2 * (dA * nB + nA * dB) / (nA * nB) + 4 * n * _EPS
        return Statistic(f"||[{self.names[i]},{self.names[j]}]||/(|{self.names[i]}||{self.names[j]}|)",
                         float(np.linalg.norm(C) / (nA * nB)), float(err))

    def projective_commutator_norm(self, i: int = 0, j: int = 1) -> Statistic:
        """min over signs of ||N_i N_j -+ N_j N_i|| / (||N_i|| ||N_j||) for the SL2-normalised pair.

        Parameters
        ----------
        i, j : int, optional
            Indices of the two generators.

        Returns
        -------
        Statistic
            The value (float) and its error bound.

        Raises
        ------
        ValueError
            If the matrices are not 2x2.
        """
        (A, eA), (B, eB) = self.sl2()[i], self.sl2()[j]
        nA, nB = np.linalg.norm(A), np.linalg.norm(B)
        v = min(np.linalg.norm(A @ B - B @ A), np.linalg.norm(A @ B + B @ A)) / (nA * nB)
        err = 2 * (2 * eA * nB + 2 * eB * nA) / (nA * nB) + 8 * _EPS
        return Statistic(f"projective commutator ({self.names[i]},{self.names[j]})", float(v), float(err))

    def _stat(self, name, fn, idx, powers):
        """Statistic ``fn(N_i, ...)`` of SL2-normalised generators ``idx``.

        Error: the largest change of the statistic when the matrices are replaced by their
        alternates (the coarser-tolerance run, the deformed loop), which follows the
        correlated errors of a real computation, plus a rounding term
        1e3 * eps * prod ||N_i||^powers_i. Without alternates (plain arrays): the first-order
        bound from the entrywise errors (pessimistic for large matrices).
        """
        gens = self.sl2()
        mats = [gens[i][0] for i in idx]
        val = complex(fn(*mats))
        rounding = 1e3 * _EPS * float(np.prod([np.linalg.norm(M) ** pw for M, pw in zip(mats, powers)]))
        keys = set.intersection(*[set(self.alternates[i]) for i in idx]) if idx else set()
        if keys:
            worst = 0.0
            for key in sorted(keys):
                alt = []
                for i, N in zip(idx, mats):
                    Na, _ = sl2_normalize(self.alternates[i][key])
                    if np.linalg.norm(Na + N) < np.linalg.norm(Na - N):   # same sqrt branch
                        Na = -Na
                    alt.append(Na)
                worst = max(worst, abs(complex(fn(*alt)) - val))
            return Statistic(name, val, float(worst + rounding))
        st = _poly_stat(name, fn, mats, [gens[i][1] for i in idx])
        return Statistic(name, val, float(st.error + rounding))

    def commutator_trace(self, i: int = 0, j: int = 1) -> Statistic:
        """tr(A B A^-1 B^-1) - 2 for the SL2-normalised pair, with error bound (adjugates, no inv).

        The error is the largest change under the generators' alternates (coarser run,
        deformed loop) plus rounding, or the first-order bound for plain arrays.

        Parameters
        ----------
        i, j : int, optional
            Indices of the two generators.

        Returns
        -------
        Statistic
            The value (complex) and its error bound.

        Raises
        ------
        ValueError
            If the matrices are not 2x2.
        """
        return self._stat(f"tr[{self.names[i]},{self.names[j]}] - 2",
                          lambda X, Y: np.trace(_comm(X, Y)) - 2, [i, j], [2, 2])

    def trace(self, i: int) -> Statistic:
        """Trace of the SL2-normalised generator i (sign: principal sqrt of det).

        Parameters
        ----------
        i : int
            Index of the generator.

        Returns
        -------
        Statistic
            The trace (complex) and its error bound.

        Raises
        ------
        ValueError
            If the matrices are not 2x2.
        """
        return self._stat(f"tr {self.names[i]}", lambda X: np.trace(X), [i], [1])

    def product_trace(self, i: int, j: int) -> Statistic:
        """Trace of the product of the SL2-normalised generators i and j.

        Parameters
        ----------
        i, j : int
            Indices of the two generators.

        Returns
        -------
        Statistic
            The trace (complex) and its error bound.

        Raises
        ------
        ValueError
            If the matrices are not 2x2.
        """
        return self._stat(f"tr {self.names[i]}{self.names[j]}", lambda X, Y: np.trace(X @ Y),
                          [i, j], [1, 1])

    # -- finite closure -------------------------------------------------------
    def _closure(self, gens, tol, limit=130):
        """Enumerate the group generated by SL2 matrices, elements equal within tol.

        Returns (status, n_elements, contains_minus_identity): status True (closed: finite),
        False (more than ``limit`` clearly distinct elements), None (ambiguous comparisons).
        """
        elems = [np.eye(2, dtype=np.complex128)]
        frontier = [elems[0]]
        ambiguous = False
        while frontier:
            new = []
            for g in frontier:
                for h in gens:
                    x = g @ h
                    dmin = min(np.max(np.abs(x - e)) / max(1.0, np.max(np.abs(e))) for e in elems)
                    if dmin <= tol:
                        continue
                    if dmin <= 1e3 * tol:
                        ambiguous = True
                    elems.append(x)
                    new.append(x)
                    if len(elems) > limit:
                        return (None if ambiguous else False), len(elems), False
            frontier = new
        minus = any(np.max(np.abs(e + np.eye(2))) <= tol for e in elems)
        return True, len(elems), minus

    def _enumerate(self, gens, margin, cap, reasons):
        """Decide finiteness by enumerating the group (``_closure``), with a reason.

        gens: list of (N (2,2), err). Elements count as equal within
        ``tol = margin * max err + 1e-12``; when ``tol > cap`` the comparison cannot tell
        distinct elements apart, so nothing is decided. Returns (True/False/None, projective
        order or None).
        """
        tol = margin * max(e for _, e in gens) + 1e-12
        if tol > cap:
            reasons.append(f"finiteness undecided: elements are equal only to within {tol:.1e} "
                           f"(> cap {cap:.1e}), too coarse to enumerate the group")
            return None, None
        fin, nel, minus = self._closure([g for g, _ in gens], tol)
        if fin is True:
            order = nel // 2 if minus else nel
            reasons.append(f"the generators close into a finite group of {nel} elements "
                           f"(projective order {order})")
            return True, order
        if fin is False:
            reasons.append(f"more than {nel - 1} distinct elements: not a finite group of small "
                           "order")
            return False, None
        reasons.append("finiteness undecided (elements near-coincide)")
        return None, None

    def _finite(self, gens, trace_stats, margin, cap, imprimitive, reasons):
        """Is the group finite? (True/False/None, projective order or None).

        An element of a finite subgroup of SL(2, C) has a real trace in [-2, 2]; in a finite
        primitive group moreover one of 0, +-1, +-sqrt2, +-2, +-(1+-sqrt5)/2. A trace proven
        (beyond margin) to violate that excludes finiteness; otherwise the group is
        enumerated (``_enumerate``); every outcome appends its reason.
        """
        allowed = [0.0, 1.0, -1.0, 2.0, -2.0, math.sqrt(2), -math.sqrt(2)]
        allowed += [s * (1 + t * math.sqrt(5)) / 2 for s in (1, -1) for t in (1, -1)]
        for st in trace_stats:
            tol = margin * st.error
            v = st.value
            if abs(v.imag) > tol or abs(v.real) > 2 + tol:
                reasons.append(f"{st.name} is not real in [-2, 2] (beyond margin): an element of "
                               "infinite order, the group is infinite")
                return False, None
            if imprimitive is False and min(abs(v - a) for a in allowed) > tol:
                reasons.append(f"{st.name} is no trace of a finite primitive group (beyond margin)")
                return False, None
        return self._enumerate(gens, margin, cap, reasons)

    # -- classification -------------------------------------------------------
    def classify(self, margin: float = 100.0, qmax: int = 60, cap: float = 1e-4) -> Classification:
        """Classify the generated subgroup of SL(2, C) (docs/math.md §5.3).

        Parameters
        ----------
        margin : float, optional
            A quantity counts as non-zero only above margin × its error (>= 1).
        qmax : int, optional
            Largest order of root of unity accepted for unipotent/finite traces.
        cap : float, optional
            An equality (e.g. tr[A,B] = 2) is accepted only when margin × error <= cap; with
            larger errors it is undecided.

        Returns
        -------
        Classification
            The kind, the verdict and the statistics behind them.

        Raises
        ------
        UnverifiedLoopError
            If a generator comes from a loop that failed verification (a ValueError).
        ValueError
            If ``margin`` < 1.
        """
        self._require_verified()
        if not (margin >= 1):
            raise ValueError(f"margin must be >= 1, got {margin!r}")
        if self.n != 2:
            return self._classify_general(margin, cap)
        gens = self.sl2()
        k = len(gens)
        stats: list[Statistic] = []
        reasons: list[str] = []

        # trivial: every generator = +-I, three-valued like Statistic.decide_zero: +-I only
        # when within margin*err <= cap; not +-I when beyond margin*err; otherwise undecided
        # (the other predicates then carry the uncertainty; a trivial group is abelian)
        triv = []
        for i, (N, e) in enumerate(gens):
            dev = min(np.max(np.abs(N - np.eye(2))), np.max(np.abs(N + np.eye(2))))
            tol = margin * (e + 4 * _EPS)
            triv.append(False if dev > tol else (True if tol <= cap else None))
        if all(t is True for t in triv):
            reasons.append("every generator is +-I within margin")
            return self._result("trivial", 1, margin, stats, ("trivial",), reasons)
        # traces of generators
        traces = [self.trace(i) for i in range(k)]
        stats += traces
        if k == 1:
            reasons.append("one generator: cyclic group")
            return self._result("abelian", None, margin, stats, ("abelian",), reasons)

        if k > 2:
            return self._classify_many(margin, qmax, cap, stats, reasons)

        comm = self.commutator_norm(0, 1)
        ctr = self.commutator_trace(0, 1)
        tAB = self.product_trace(0, 1)
        stats += [tAB, comm, self.projective_commutator_norm(0, 1), ctr]
        commute = comm.decide_zero(margin, cap)
        reducible = ctr.decide_zero(margin, cap)
        # unipotent: every element of the (triangular) group has trace 2cos(2 pi k/q):
        # it suffices that the generators' diagonal characters are roots of unity
        unip_flags = [_root_of_unity_trace(t.value, t.error, margin, qmax, cap)[0] for t in traces]
        if any(f is False for f in unip_flags):
            unipotent = False
        elif all(f is True for f in unip_flags):
            unipotent = True
        else:
            unipotent = None
        zero_tr = [t.decide_zero(margin, cap) for t in (traces[0], traces[1], tAB)]
        n_true = sum(z is True for z in zero_tr)
        n_none = sum(z is None for z in zero_tr)
        imprimitive = True if n_true >= 2 else (False if n_true + n_none < 2 else None)

        def word(x):
            return {True: "yes", False: "no (beyond margin)", None: "undecided"}[x]
        reasons.append(f"generators commute: {word(commute)}; reducible (tr[A,B] = 2): "
                       f"{word(reducible)}; imprimitive (two of tr A, tr B, tr AB zero): "
                       f"{word(imprimitive)}; unipotent characters: {word(unipotent)}")

        cands = []
        order = None
        if commute is not False:
            cands.append("abelian")
        if commute is not True:
            if reducible is not False:
                if unipotent is not False:
                    cands.append("reducible-unipotent")
                if unipotent is not True:
                    cands.append("reducible-borel")
            if reducible is not True:
                fin, order = self._finite(gens, [traces[0], traces[1], tAB], margin, cap,
                                          imprimitive, reasons)
                if imprimitive is not False:
                    if fin is not False:
                        cands.append("imprimitive-finite")
                    if fin is not True:
                        cands.append("imprimitive-infinite")
                if imprimitive is not True:
                    if fin is not False:
                        cands.append("finite-primitive")
                    if fin is not True:
                        cands.append("SL2")
        cands = tuple(dict.fromkeys(cands))
        # precedence (docs/math.md §5.3): commuting generators are "abelian" first, whatever
        # their traces (a commuting unipotent pair is abelian, G0 additive); the decision
        # rests on the commutator norm and its error bar (three-valued, see decide_zero)
        kind = cands[0] if len(cands) == 1 else "undecided"
        if kind not in ("imprimitive-finite", "finite-primitive"):
            order = None
        return self._result(kind, order, margin, stats, cands, reasons)

    def subgroup(self, idx) -> "MonodromyGroup":
        """The group generated by the generators ``idx`` (errors, alternates and names kept).

        Parameters
        ----------
        idx : sequence of int
            Indices of the generators.

        Returns
        -------
        MonodromyGroup
            The subgroup.
        """
        g = MonodromyGroup([self.matrices[i] for i in idx], errors=[self.errors[i] for i in idx],
                           names=[self.names[i] for i in idx])
        g.results = [self.results[i] for i in idx]
        g.alternates = [self.alternates[i] for i in idx]
        return g

    def _classify_many(self, margin, qmax, cap, stats, reasons):
        """k > 2 generators, from the two-generator subgroups (a subgroup's G0 lies in G0).

        All commute: abelian. A pair with G0 = SL2: SL2. A pair that is finite primitive: the
        whole group is finite primitive or SL2 (the only algebraic subgroups of SL2 containing
        a primitive finite group), decided by enumerating it. A Borel pair: G0 non-abelian.
        Otherwise (pairs reducible / imprimitive) undecided.
        """
        k = len(self.matrices)
        all_comm = True
        subs = []
        for i in range(k):
            for j in range(i + 1, k):
                c = self.commutator_norm(i, j)
                stats.append(c)
                if c.decide_zero(margin, cap) is not True:
                    all_comm = False
                    subs.append((self.names[i], self.names[j],
                                 self.subgroup([i, j]).classify(margin, qmax, cap)))
        if all_comm:
            reasons.append("all generators commute within margin")
            return self._result("abelian", None, margin, stats, ("abelian",), reasons)
        for a, b, sub in subs:
            if sub.kind == "SL2":
                reasons.append(f"the subgroup <{a},{b}> is SL2")
                return self._result("SL2", None, margin, stats, ("SL2",), reasons)
        for a, b, sub in subs:
            if sub.kind == "finite-primitive":
                reasons.append(f"the subgroup <{a},{b}> is finite primitive: the group is finite "
                               "primitive or SL2")
                fin, order = self._enumerate(self.sl2(), margin, cap, reasons)
                if fin is True:
                    return self._result("finite-primitive", order, margin, stats,
                                        ("finite-primitive",), reasons)
                if fin is False:
                    return self._result("SL2", None, margin, stats, ("SL2",), reasons)
                return self._result("undecided", None, margin, stats, ("finite-primitive", "SL2"),
                                    reasons)
        for a, b, sub in subs:
            if sub.identity_component_abelian is False:
                reasons.append(f"the subgroup <{a},{b}> is {sub.kind}: G0 is non-abelian")
                return self._result("undecided", None, margin, stats, ("reducible-borel", "SL2"),
                                    reasons)
        reasons.append("non-commuting generators, every pair reducible, imprimitive or "
                       "undecided: more than two such generators are not classified")
        return self._result("undecided", None, margin, stats, tuple(KINDS[:-1]), reasons,
                            force_verdict=INCONCLUSIVE)

    def _classify_general(self, margin, cap):
        stats, reasons = [], []
        k = len(self.matrices)
        all_comm = True
        for i in range(k):
            for j in range(i + 1, k):
                c = self.commutator_norm(i, j)
                stats.append(c)
                all_comm &= c.decide_zero(margin, cap) is True
        if all_comm:
            reasons.append(f"{self.n}x{self.n} generators commute within margin")
            return self._result("abelian", None, margin, stats, ("abelian",), reasons)
        reasons.append(f"{self.n}x{self.n} matrices that do not commute: only 2x2 (normal) "
                       "variational equations are classified; pass the normal block")
        return self._result("undecided", None, margin, stats, tuple(KINDS[:-1]), reasons,
                            force_verdict=INCONCLUSIVE)

    def _result(self, kind, order, margin, stats, cands, reasons, force_verdict=None):
        ab = {_G0_ABELIAN.get(c) for c in cands}
        so = {_G0_SOLVABLE.get(c) for c in cands}
        g0_ab = ab.pop() if len(ab) == 1 else None
        g0_so = so.pop() if len(so) == 1 else None
        if force_verdict is not None:
            verdict = force_verdict
        elif g0_so is False:
            verdict = NON_SOLVABLE
        elif g0_ab is False:
            verdict = NON_ABELIAN
        elif g0_ab is True:
            verdict = CONSISTENT_ABELIAN
        else:
            verdict = INCONCLUSIVE
        return Classification(kind=kind, projective_order=order, identity_component_abelian=g0_ab,
                              identity_component_solvable=g0_so, verdict=verdict, margin=margin,
                              statistics=list(stats), candidates=tuple(cands), reasons=list(reasons))

    def __repr__(self):
        return f"MonodromyGroup({len(self)} generators, {self.n}x{self.n})"
