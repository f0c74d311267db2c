"""Verification of loops, estimates with error bars, and verdicts (docs/math.md §5.4–§5.5).

One protocol serves every transport (linear systems, a field with its VE, jets):

- **two tolerances**: every result is computed at ``rtol`` and at ``rtol · tol_ratio``; the
  difference is the error estimate (conservative: it measures the coarser run);
- **closure** (:func:`check_closure`): with the relative defect
  ``d = max|y(end) − y0| / max(1, max|y0|)`` of the base curve at both tolerances, a loop is
  closed when the fine defect is below the accuracy floor ``100 · rtol`` (a miss that small
  cannot be told from integration error), or when it is ``<= 1e-6`` and has shrunk by at
  least ``sqrt(tol_ratio)`` from the coarse run. A defect that stays put as the tolerance
  tightens is a path that does not close on the curve;
- **deformation** (:func:`deformation_stable`): on a closed loop the result is recomputed
  along a homotopic copy (``Path.deformed``) and must not change by more than
  ``max(10 × two-tolerance difference, sqrt(rtol) · max(1, size))``;
- **backwards**: the loop travelled in reverse must give the inverse (reported).

Verdicts are values: :class:`Verdict` (monodromy groups, first order) and
:class:`JetVerdict` (jet commutators, order k); their ``str`` is the text the reports print.
"""
from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .pathint import STATUS_OK, STATUS_TEXT

__all__ = ["CLOSURE_TOL", "FLOOR_FACTOR", "DEFORMATION_FACTOR", "SIGNIFICANCE", "Closure",
           "check_closure", "closure_defect", "deformation_stable", "inverse_residual", "maxabs",
           "Run", "LoopRuns", "verify_runs", "Deviation", "Verdict", "JetVerdict", "JET_TEXT"]

CLOSURE_TOL = 1e-6         # largest fine defect that may count as closed when it shrinks
FLOOR_FACTOR = 100.0       # the accuracy floor is FLOOR_FACTOR · rtol
DEFORMATION_FACTOR = 10.0  # a deformation change within 10 × the tolerance difference is noise
SIGNIFICANCE = 100.0       # a figure is significant above 100 × its error


def maxabs(a) -> float:
    """max |a_i| (0 for an empty array)."""
    return float(np.max(np.abs(a))) if np.size(a) else 0.0


def closure_defect(y_end, y0) -> float:
    """Relative defect ``max|y_end − y0| / max(1, max|y0|)`` of the base curve (float)."""
    return maxabs(np.asarray(y_end) - np.asarray(y0)) / max(1.0, maxabs(y0))


@dataclass(frozen=True)
class Closure:
    """Whether a loop closes on its curve: ``closed``, ``note`` (why), and the relative
    defects at the ``coarse`` and the ``fine`` tolerance."""

    closed: bool
    note: str
    coarse: float = 0.0
    fine: float = 0.0


def check_closure(d_coarse: float, d_fine: float, rtol_fine: float, tol_ratio: float,
                  floor_factor: float = FLOOR_FACTOR, closure_tol: float = CLOSURE_TOL) -> Closure:
    """The closure rule (module docstring) from the relative defects at two tolerances."""
    floor = floor_factor * rtol_fine
    if not (math.isfinite(d_fine) and math.isfinite(d_coarse)):
        return Closure(False, "base curve not finite", d_coarse, d_fine)
    if d_fine <= closure_tol and d_fine * math.sqrt(tol_ratio) <= d_coarse:
        return Closure(True, f"closure defect shrinks with the tolerance "
                             f"(x{d_coarse / max(d_fine, 1e-300):.0f})", d_coarse, d_fine)
    if d_fine <= floor:
        return Closure(True, f"closure defect below the accuracy floor {floor:.0e}", d_coarse, d_fine)
    if d_fine > closure_tol:
        return Closure(False, "base curve does not return to its start", d_coarse, d_fine)
    return Closure(False, "defect does not shrink with tolerance: not closed", d_coarse, d_fine)


def deformation_stable(change: float, tol_difference: float, size: float, rtol: float) -> bool:
    """The deformation rule: ``change <= max(10 · tol_difference, sqrt(rtol) · max(1, size))``."""
    return bool(change <= max(DEFORMATION_FACTOR * tol_difference,
                              math.sqrt(rtol) * max(1.0, size)))


def inverse_residual(M, M_back) -> float:
    """max |M_back M − I| / (max|M_back| max|M|): the loop travelled backwards must give M⁻¹."""
    M = np.asarray(M)
    return float(maxabs(M_back @ M - np.eye(M.shape[0])) / max(maxabs(M_back) * maxabs(M), 1e-300))


class Run(NamedTuple):
    """One integration: ``y_end`` (complex (n,) end of the base curve, or None), ``value``
    (what was transported: a matrix, a list of jet tensors), ``extra`` (e.g. ∮ tr A),
    ``nfev``, ``status`` (``pathint.STATUS_*``)."""

    y_end: object
    value: object
    extra: object
    nfev: int
    status: int


@dataclass(frozen=True)
class LoopRuns:
    """The runs of the protocol: ``fine`` (at rtol), ``coarse`` (at rtol · tol_ratio),
    ``closure``, ``deformed`` and ``backwards`` (Run, or None when not run: the loop did not
    close, a run failed, or the check was switched off); ``status`` (first failure of fine
    and coarse, else STATUS_OK), ``nfev`` (all runs), ``seconds``."""

    fine: Run
    coarse: Run
    closure: Closure
    deformed: Run | None
    backwards: Run | None
    status: int
    nfev: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def verify_runs(run, path, y0, *, rtol, tol_ratio, deform, backwards=True,
                floor_factor=FLOOR_FACTOR, closure_tol=CLOSURE_TOL) -> LoopRuns:
    """Run the protocol. ``run(path, tol) -> Run`` (or the same 5-tuple) integrates once.

    y0: the base point of the curve (closure from the defects), or None for a linear system
    in the z-plane (closure is that of the path). deform: relative size of the deformation
    (0 or None: skipped); backwards: also travel the loop in reverse.
    """
    t0 = time.perf_counter()
    fine = Run(*run(path, rtol))
    coarse = Run(*run(path, rtol * tol_ratio))
    nfev = fine.nfev + coarse.nfev
    status = fine.status if fine.status != STATUS_OK else coarse.status
    if status != STATUS_OK:
        closure = Closure(False, STATUS_TEXT[status])
    elif y0 is None:
        closed = path.is_closed
        closure = Closure(closed, "closed path in the z-plane" if closed
                          else "open path: a connection matrix")
    else:
        closure = check_closure(closure_defect(coarse.y_end, y0), closure_defect(fine.y_end, y0),
                                rtol, tol_ratio, floor_factor, closure_tol)
    deformed = back = None
    if status == STATUS_OK and closure.closed:
        if deform:
            deformed = Run(*run(path.deformed(deform), rtol))
            nfev += deformed.nfev
        if backwards:
            back = Run(*run(path.reversed(), rtol))
            nfev += back.nfev
    return LoopRuns(fine, coarse, closure, deformed, back, status, nfev, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# estimates and verdicts
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Deviation:
    """A measured non-negative figure with its error estimate.

    order: the jet order it belongs to; value: the figure (e.g. ‖order-k part of a
    commutator‖); error: its error estimate; margin = value / error (inf when error is 0).
    """

    order: int
    value: float
    error: float

    @property
    def margin(self) -> float:
        return math.inf if self.error == 0 else self.value / self.error

    def significant(self, factor=SIGNIFICANCE) -> bool:
        """True when value > factor · error (the project's 100× rule)."""
        return self.value > factor * self.error

    def __str__(self):
        return f"order {self.order}: {self.value:.6g} ± {self.error:.2g} (margin {self.margin:.3g})"


class Verdict(str, enum.Enum):
    """Verdict of a first-order monodromy group (never "integrable": the test is one-sided).

    A ``str`` enum: ``str(v)`` and ``format(v)`` give the text, and a member equals its text.
    """

    NON_ABELIAN = "G0 non-abelian (non-integrable)"
    NON_SOLVABLE = "G0 non-solvable (no Liouvillian solutions)"
    CONSISTENT_ABELIAN = "consistent with abelian G0 (no conclusion)"
    INCONCLUSIVE = "inconclusive"

    def __str__(self):
        return self.value

    def __format__(self, spec):
        return format(self.value, spec)

    @property
    def conclusive(self) -> bool:
        """True for the verdicts that prove non-integrability."""
        return self in (Verdict.NON_ABELIAN, Verdict.NON_SOLVABLE)


JET_TEXT = {True: "G⁰(VE_{k}) non-abelian ⇒ not integrable", False: "no conclusion at order {k}"}


@dataclass(frozen=True, eq=False)
class JetVerdict:
    """Verdict of jet commutators: ``non_abelian`` at ``order`` (the lowest order whose
    commutator part is significant), or no conclusion at ``order`` (the order tested).

    ``str(v)`` is the report text; a JetVerdict equals another with the same fields, and
    also its text (so that code comparing against the printed verdict keeps working).
    """

    order: int
    non_abelian: bool

    @property
    def conclusive(self) -> bool:
        return self.non_abelian

    @property
    def text(self) -> str:
        return JET_TEXT[self.non_abelian].format(k=self.order)

    def __str__(self):
        return self.text

    def __format__(self, spec):
        return format(self.text, spec)

    def __eq__(self, other):
        if isinstance(other, JetVerdict):
            return (self.order, self.non_abelian) == (other.order, other.non_abelian)
        if isinstance(other, str):
            return self.text == other
        return NotImplemented

    def __hash__(self):
        return hash(self.text)
