"""Built-in systems with known monodromy, for validation and teaching (docs/math.md §5.7).

- The Gauss hypergeometric equation ``z(1-z) w'' + (c - (a+b+1) z) w' - a b w = 0`` as the
  first-order system ``Y' = A(z) Y``, ``Y = (w, w')``; its exact local invariants; Kimura's
  theorem (exact rationals) saying when ``G⁰`` is solvable.
- Hénon–Heiles along its invariant plane ``q1 = p1 = 0`` (docs/math.md §5.7): elliptic base curve with
  real and imaginary periods from the energy, normal VE a Lamé equation with n(n+1) = 12/eps.

Convention for all monodromy matrices: ``Phi(base) = I`` and ``M_gamma = Phi(end of gamma)``,
so the loop ``gamma1 + gamma2`` (first gamma1) has the matrix ``M_gamma2 @ M_gamma1``.
"""
from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Number

import numpy as np
from numba import njit

from narrowflow import jit as _jit

from .fields import _hh_field_d, _hh_fj, _hh_jacobian_d, henon_heiles_derivs  # noqa: F401
from .groups import MonodromyGroup
from .pathint import NJ_DYNAMIC
from .paths import circle
from .transport import (field_state_rhs, linear_state_rhs, transport_linear,
                        variational_monodromy)

__all__ = ["LinearSystem", "hypergeometric", "hypergeometric_monodromy",
           "hypergeometric_invariants", "kimura_solvable", "KimuraResult", "HenonHeiles",
           "henon_heiles"]


# ---------------------------------------------------------------------------
# linear systems
# ---------------------------------------------------------------------------
@njit(**_jit.BASE)
def _hyp_matrix(z, d):
    a = d[0]
    b = d[1]
    c = d[2]
    M = np.empty((2, 2), dtype=np.complex128)
    den = z * (1.0 - z)
    M[0, 0] = 0.0
    M[0, 1] = 1.0
    M[1, 0] = a * b / den
    M[1, 1] = -(c - (a + b + 1.0) * z) / den
    return M


# the transport right-hand sides call transport.py's state builders: not cached on their own
# (Numba's cache of a function does not notice changes in another file); they are compiled
# into the disk-cached integrators of ``_cached``, whose name hashes both files
@njit(**NJ_DYNAMIC)
def _hyp_rhs(z, y, d):
    """[vec Y (4), ∫tr A] of Y' = A(z) Y for the hypergeometric system (the transport state)."""
    return linear_state_rhs(_hyp_matrix(z, d), y)


_CACHED: dict = {}


def _cached(label: str):
    """The disk-cached integrators of the built-in systems (compiled once per machine)."""
    if not _CACHED:
        import sys
        from .pathint import cached_integrators
        from . import fields, transport
        header = "from narrowflow.monodromy.systems import _hyp_rhs, _hh_rhs\n"
        _CACHED.update(cached_integrators(
            "systems", header, {"hyp": "_hyp_rhs", "hh": "_hh_rhs"},
            depends=(sys.modules[__name__], transport, fields)))
    return _CACHED[label]


@dataclass
class LinearSystem:
    """A linear system ``Y' = A(z, data) Y`` of size n with known singular points.

    Parameters
    ----------
    A : callable
        Numba njit function ``(z complex, data complex128 (q,)) -> complex128 (n, n)``.
    n : int
        The dimension.
    data : ndarray of complex128, shape (q,)
        Parameters passed to ``A``.
    singular_points : list of complex
        The finite singular points.
    name : str, optional
        Label.
    rhs : CachedIntegrator or callable, optional
        Integrator for the transport state (or a function returning one), passed to
        ``transport_linear`` as ``rhs``.
    """
    A: object
    n: int
    data: np.ndarray
    singular_points: list
    name: str = "linear system"
    rhs: object = None      # optional CachedIntegrator for the transport state

    def matrix(self, z) -> np.ndarray:
        """The coefficient matrix at one point.

        Parameters
        ----------
        z : complex
            The point.

        Returns
        -------
        ndarray of complex128, shape (n, n)
            A(z, data).
        """
        return self.A(complex(z), self.data)

    def transport(self, paths, **kw):
        """Fundamental matrices along path(s), by ``transport_linear``.

        Parameters
        ----------
        paths : Path, sequence of complex, or list of them
            One path or a list of paths.
        **kw
            Keywords of ``transport_linear`` (rtol, tol_ratio, deform, ...).

        Returns
        -------
        TransportResult or list of TransportResult
            One result for one path, else a list.
        """
        if self.rhs is not None:
            kw.setdefault("rhs", self.rhs() if callable(self.rhs) else self.rhs)
        return transport_linear(self.A, self.n, paths, self.data, **kw)


def _cnum(x, name):
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got bool")
    if isinstance(x, Fraction):
        return complex(float(x))
    if isinstance(x, str):
        try:
            return complex(float(Fraction(x)))
        except (ValueError, ZeroDivisionError):
            try:
                return complex(x)
            except ValueError:
                raise ValueError(f"{name} = {x!r} is not a number") from None
    if hasattr(x, "is_Rational") or hasattr(x, "is_number"):   # sympy numbers
        return complex(x)
    if not isinstance(x, (Number, np.number)):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    z = complex(x)
    if not (math.isfinite(z.real) and math.isfinite(z.imag)):
        raise ValueError(f"{name} must be finite")
    return z


def hypergeometric(a, b, c) -> LinearSystem:
    """The Gauss hypergeometric equation as ``Y' = A(z) Y`` with ``Y = (w, w')``.

    Singular points 0, 1 (and infinity).

    Parameters
    ----------
    a, b, c : complex, Fraction or str
        The parameters (numbers, Fractions, sympy numbers or strings like "1/4").

    Returns
    -------
    LinearSystem
        The 2x2 system, with a cached compiled integrator.

    Raises
    ------
    TypeError
        If a parameter is not a number.
    ValueError
        If a parameter is not finite or a string is not a number.
    """
    a, b, c = _cnum(a, "a"), _cnum(b, "b"), _cnum(c, "c")
    return LinearSystem(_hyp_matrix, 2, np.array([a, b, c], dtype=np.complex128), [0j, 1 + 0j],
                        f"hypergeometric(a={a:.6g}, b={b:.6g}, c={c:.6g})",
                        rhs=lambda: _cached("hyp"))


def hypergeometric_loops(base=0.5):
    """The standard loops: circles about 0 and 1 through the real base point 0 < base < 1."""
    base = float(base)
    if not (0 < base < 1):
        raise ValueError(f"base must lie in (0, 1), got {base!r}")
    return circle(0.0, base, 0.0), circle(1.0, 1.0 - base, math.pi)


def hypergeometric_monodromy(a, b, c, base=0.5, *, rtol=1e-12, results=True, **kw):
    """Local monodromies M0, M1 of the hypergeometric equation at base point ``base``.

    Loops: the counter-clockwise circles ``|z| = base`` and ``|z - 1| = 1 - base`` (through
    ``base``; with base = 1/2: ``|z| = 1/2`` and ``|z-1| = 1/2``).

    Parameters
    ----------
    a, b, c : complex, Fraction or str
        The parameters (see `hypergeometric`).
    base : float, optional
        The real base point, in (0, 1).
    rtol : float, optional
        Relative tolerance of the transport.
    results : bool, optional
        Return TransportResult objects (True) or plain matrices.
    **kw
        Other keywords of ``transport_linear``.

    Returns
    -------
    M0, M1 : TransportResult or ndarray of complex128, shape (2, 2)
        The monodromies about 0 and 1. TransportResult objects carry error estimates and
        checks and behave as 2x2 arrays (``np.asarray(M0)``, ``M1 @ M0``, ``M0[0, 1]``).

    Raises
    ------
    ValueError
        If ``base`` is not in (0, 1).
    """
    sys_ = hypergeometric(a, b, c)
    l0, l1 = hypergeometric_loops(base)
    r0, r1 = sys_.transport([l0, l1], rtol=rtol, **kw)
    if results:
        return r0, r1
    return r0.matrix, r1.matrix


def hypergeometric_invariants(a, b, c) -> dict:
    """Exact local invariants of the loops of `hypergeometric_monodromy`.

    Parameters
    ----------
    a, b, c : complex, Fraction or str
        The parameters (see `hypergeometric`).

    Returns
    -------
    dict
        Complex values: ``"tr_M0"``, ``"det_M0"``, ``"tr_M1"``, ``"det_M1"``,
        ``"tr_M1M0"``, ``"det_M1M0"`` and ``"eig_M1M0"`` (a pair: the eigenvalues of
        M1 @ M0, those of the loop around infinity).
    """
    a, b, c = _cnum(a, "a"), _cnum(b, "b"), _cnum(c, "c")
    e = lambda x: complex(np.exp(2j * np.pi * x))
    return {"tr_M0": 1 + e(-c), "det_M0": e(-c), "tr_M1": 1 + e(c - a - b), "det_M1": e(c - a - b),
            "eig_M1M0": (e(-a), e(-b)), "tr_M1M0": e(-a) + e(-b), "det_M1M0": e(-a - b)}


# ---------------------------------------------------------------------------
# Kimura's theorem
# ---------------------------------------------------------------------------
_F = Fraction
# Schwarz's list as used by Kimura (1969): exponent differences (lambda, mu, nu) up to order,
# signs, and adding integers with even sum. Entries 2..15: finite primitive groups.
_SCHWARZ = [
    ((_F(1, 2), _F(1, 3), _F(1, 3)), "tetrahedral", 12),
    ((_F(2, 3), _F(1, 3), _F(1, 3)), "tetrahedral", 12),
    ((_F(1, 2), _F(1, 3), _F(1, 4)), "octahedral", 24),
    ((_F(2, 3), _F(1, 4), _F(1, 4)), "octahedral", 24),
    ((_F(1, 2), _F(1, 3), _F(1, 5)), "icosahedral", 60),
    ((_F(2, 5), _F(1, 3), _F(1, 3)), "icosahedral", 60),
    ((_F(2, 3), _F(1, 5), _F(1, 5)), "icosahedral", 60),
    ((_F(1, 2), _F(2, 5), _F(1, 5)), "icosahedral", 60),
    ((_F(3, 5), _F(1, 3), _F(1, 5)), "icosahedral", 60),
    ((_F(2, 5), _F(2, 5), _F(2, 5)), "icosahedral", 60),
    ((_F(2, 3), _F(1, 3), _F(1, 5)), "icosahedral", 60),
    ((_F(4, 5), _F(1, 5), _F(1, 5)), "icosahedral", 60),
    ((_F(1, 2), _F(2, 5), _F(1, 3)), "icosahedral", 60),
    ((_F(3, 5), _F(2, 5), _F(1, 3)), "icosahedral", 60),
]


@dataclass(frozen=True)
class KimuraResult:
    """Kimura's verdict for the hypergeometric equation (returned by `kimura_solvable`).

    Parameters
    ----------
    solvable : bool
        G0 solvable (Liouvillian solutions exist).
    case : str
        "reducible" (an odd-integer combination of exponent differences), "dihedral",
        "tetrahedral", "octahedral", "icosahedral" or "SL2".
    exponent_differences : tuple of Fraction
        (lambda, mu, nu).
    projective_order : int or None, optional
        The order for the finite primitive cases, else None.
    """
    solvable: bool
    case: str
    exponent_differences: tuple
    projective_order: int | None = None


def _frac(x, name) -> Fraction:
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a rational number, got bool")
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    if isinstance(x, str):
        try:
            return Fraction(x)
        except ValueError:
            raise ValueError(f"{name} = {x!r} is not a rational number") from None
    if hasattr(x, "p") and hasattr(x, "q"):     # sympy Rational
        return Fraction(int(x.p), int(x.q))
    if isinstance(x, (float, np.floating)):
        return Fraction(float(x))               # exact binary value
    raise TypeError(f"{name} must be rational (int, Fraction, 'p/q' string, float), "
                    f"got {type(x).__name__}")


def _is_int(f: Fraction) -> bool:
    return f.denominator == 1


def _matches(diffs, target) -> bool:
    """diffs (up to sign and order) = target + integers with even sum?"""
    import itertools
    for perm in itertools.permutations(diffs):
        for signs in itertools.product((1, -1), repeat=3):
            ints = [s * d - t for s, d, t in zip(signs, perm, target)]
            if all(_is_int(i) for i in ints) and sum(int(i) for i in ints) % 2 == 0:
                return True
    return False


def kimura_solvable(a, b, c) -> KimuraResult:
    """Kimura's theorem, in exact rational arithmetic, for real rational a, b, c.

    Exponent differences lambda = 1 - c, mu = c - a - b, nu = a - b. G0 is solvable iff
    (i) one of lambda + mu + nu, -lambda + mu + nu, lambda - mu + nu, lambda + mu - nu is an
    odd integer, or (ii) (±lambda, ±mu, ±nu) lie, in some order, in Schwarz's list
    (dihedral: 1/2 + l, 1/2 + m, arbitrary; or one of 14 finite primitive rows, up to
    integers with even sum).

    Parameters
    ----------
    a, b, c : int, Fraction, str or float
        Rational parameters (a float is taken at its exact binary value; strings like
        "1/4"; sympy Rationals).

    Returns
    -------
    KimuraResult
        Solvable or not, and the case.

    Raises
    ------
    TypeError
        If a parameter is not rational.
    ValueError
        If a string is not a rational number.
    """
    a, b, c = _frac(a, "a"), _frac(b, "b"), _frac(c, "c")
    lam, mu, nu = 1 - c, c - a - b, a - b
    diffs = (lam, mu, nu)
    for s in (lam + mu + nu, -lam + mu + nu, lam - mu + nu, lam + mu - nu):
        if _is_int(s) and int(s) % 2 != 0:
            return KimuraResult(True, "reducible", diffs, None)
    half = [d - Fraction(1, 2) for d in diffs]
    if sum(_is_int(h) for h in half) >= 2:
        return KimuraResult(True, "dihedral", diffs, None)
    for target, name, order in _SCHWARZ:
        if _matches(diffs, target):
            return KimuraResult(True, name, diffs, order)
    return KimuraResult(False, "SL2", diffs, None)


# ---------------------------------------------------------------------------
# Hénon–Heiles
# ---------------------------------------------------------------------------
@njit(**NJ_DYNAMIC)
def _hh_rhs(z, y, d):
    """[y (4), vec Phi (16), ∫tr J] of the Hénon–Heiles flow with its VE (data: A, B, eps)."""
    F, J = _hh_fj(y[:4].copy(), d, 1)
    return field_state_rhs(F, J, y)


def _hh_functions(A: float, B: float, eps: float):
    """``field(y)``, ``jacobian(y)`` with the parameters frozen in (the jets helper's form)."""
    d = np.array([A, B, eps], dtype=np.complex128)

    @njit(**NJ_DYNAMIC)
    def field(y):
        return _hh_field_d(y, d)

    @njit(**NJ_DYNAMIC)
    def jacobian(y):
        return _hh_jacobian_d(y, d)

    return field, jacobian


_HH_CACHE: dict = {}


class HenonHeiles:
    """Hénon–Heiles ``H = (p1²+p2²)/2 + (A q1² + B q2²)/2 + q1² q2 + (eps/3) q2³``, B = 1,
    A = ratio, along the invariant plane q1 = p1 = 0 (docs/math.md §5.7).

    energy: of the scaled plane motion ``Q'' = -Q - Q²`` (Q = eps q2), 0 < energy < 1/6.
    Attributes: eps, ratio, energy, A, B; roots (Q1 < qa < qb of Q³/3 + Q²/2 = energy);
    y0 complex (4,) = (0, qa/eps, 0, 0) the base point (a turning point); T_real (float > 0),
    T_imag (purely imaginary complex): the periods of the base curve; lame_n: n with
    n(n+1) = 12/eps (the root with real part >= -1/2).

    eps: any real number except 0 (Yoshida's family). The scaled motion Q = eps q2 does not
    depend on eps, so negative eps only flips q2. For eps > 0 and eps <= -48, n is real (a
    float); for -48 < eps < 0, 1 + 48/eps < 0 and n = -1/2 + iy is complex (a complex), while
    the predicted ``lame_trace`` = 2 cos(2 pi n) = -2 cosh(2 pi y) stays real. State order (q1, q2, p1, p2); ``field(y)``, ``jacobian(y)`` are Numba
    functions on complex arrays.

    Parameters
    ----------
    eps : float, optional
        Coefficient of q2³ (finite, non-zero).
    ratio : float, optional
        A / B (positive).
    energy : float, optional
        Energy of the scaled plane motion, in (0, 1/6).

    Raises
    ------
    TypeError
        If a parameter is not a real number.
    ValueError
        If a parameter is outside its range.
    """

    def __init__(self, eps=1.0, ratio=1.0, energy=0.1):
        for nm, v in (("eps", eps), ("ratio", ratio), ("energy", energy)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (Number, np.number)) \
                    or isinstance(v, (complex, np.complexfloating)):
                raise TypeError(f"{nm} must be a real number, got {type(v).__name__}")
        self.eps = float(eps)
        self.ratio = float(ratio)
        self.energy = float(energy)
        if not (self.eps != 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a finite non-zero real number, got {eps!r}")
        if not (self.ratio > 0 and math.isfinite(self.ratio)):
            raise ValueError(f"ratio must be positive, got {ratio!r}")
        if not (0 < self.energy < 1.0 / 6.0):
            raise ValueError(f"energy must lie in (0, 1/6), got {energy!r}")
        self.B = 1.0
        self.A = self.ratio * self.B
        self._fj = None
        # roots of Q^3/3 + Q^2/2 - E: Q1 < -1 < qa < 0 < qb
        r = np.sort(np.roots([1.0 / 3.0, 0.5, 0.0, -self.energy]).real)
        self.roots = tuple(float(x) for x in r)
        Q1, qa, qb = self.roots
        from scipy.special import ellipk
        pref = 4.0 * math.sqrt(1.5) / math.sqrt(qb - Q1)
        self.T_real = float(pref * ellipk((qb - qa) / (qb - Q1)))
        self.T_imag = complex(0.0, pref * ellipk((qa - Q1) / (qb - Q1)))
        self.y0 = np.array([0.0, qa / self.eps, 0.0, 0.0], dtype=np.complex128)
        disc = 1.0 + 48.0 / self.eps
        if disc >= 0:
            self.lame_n = float((-1.0 + math.sqrt(disc)) / 2.0)
        else:                    # -48 < eps < 0: n = -1/2 + iy, y = sqrt(-disc)/2
            self.lame_n = complex(-0.5, math.sqrt(-disc) / 2.0)

    @property
    def field(self):
        """Numba ``field(y) -> (4,)`` complex (compiled on first call, cached per parameters)."""
        return self._functions()[0]

    @property
    def jacobian(self):
        """Numba ``jacobian(y) -> (4, 4)`` complex."""
        return self._functions()[1]

    def _functions(self):
        key = (self.A, self.B, self.eps)
        if key not in _HH_CACHE:
            _HH_CACHE[key] = _hh_functions(self.A, self.B, self.eps)
        return _HH_CACHE[key]

    @property
    def lame_trace(self) -> float:
        """The predicted tr[M_R, M_I] = 2 cos(2 pi n) of the normal VE (n(n+1) = 12/eps).

        Real for every eps: for complex n = -1/2 + iy it is -2 cosh(2 pi y)."""
        n = self.lame_n
        if isinstance(n, complex):
            return float((2.0 * cmath.cos(2.0 * math.pi * n)).real)
        return 2.0 * math.cos(2.0 * math.pi * n)

    def hamiltonian(self, y) -> complex:
        """The energy H at a state.

        Parameters
        ----------
        y : array_like of complex, shape (4,)
            (q1, q2, p1, p2).

        Returns
        -------
        complex
            H(y).
        """
        q1, q2, p1, p2 = np.asarray(y, dtype=np.complex128)
        return (p1 * p1 + p2 * p2) / 2 + (self.A * q1 * q1 + self.B * q2 * q2) / 2 \
            + q1 * q1 * q2 + self.eps / 3 * q2 ** 3

    def period_paths(self):
        """The time paths [0, T_real] and [0, T_imag] (segments in the complex t-plane).

        Returns
        -------
        list of list of complex
            ``[[0, T_real], [0, T_imag]]``, polylines for `as_path`.
        """
        return [[0.0, self.T_real], [0.0, self.T_imag]]

    def period_results(self, **kw):
        """Full 4x4 variational transport along both periods, with checks.

        Parameters
        ----------
        **kw
            Keywords of ``variational_monodromy`` (rtol, tol_ratio, deform, max_nfev, ...).

        Returns
        -------
        list of TransportResult
            Along the real and the imaginary period; ``.matrix`` 4x4 complex128.
        """
        # the parameter-array form compiles once for every (eps, ratio)
        data = np.array([self.A, self.B, self.eps], dtype=np.complex128)
        kw.setdefault("rhs", _cached("hh"))
        return variational_monodromy(_hh_field_d, _hh_jacobian_d, self.y0, self.period_paths(),
                                     data=data, **kw)

    def period_monodromy(self, **kw):
        """Normal VE monodromies ``(M_R, M_I)`` along the real and the imaginary period.

        Each is a TransportResult whose ``.matrix`` is the 2x2 normal block (q1, p1) of the VE
        (the plane q1 = p1 = 0 is invariant, so the VE is block-triangular),
        ``.full_matrix`` the 4x4 matrix; ``np.asarray(M)`` gives the 2x2 matrix.

        Parameters
        ----------
        **kw
            Keywords of ``variational_monodromy`` (rtol, tol_ratio, deform, max_nfev).

        Returns
        -------
        tuple of TransportResult
            ``(M_R, M_I)``.
        """
        out = []
        idx = np.ix_([0, 2], [0, 2])
        for r in self.period_results(**kw):
            full = r.matrix
            r.extra["full_matrix"] = full
            r.extra["block_coupling"] = float(np.max(np.abs(full[np.ix_([0, 2], [1, 3])])))
            r.matrix = full[idx].copy()
            r.alternates = {k: v[idx].copy() for k, v in r.alternates.items()}
            # the error estimate was of the full matrix: still an upper bound for the block
            out.append(r)
        return tuple(out)

    def group(self, **kw) -> MonodromyGroup:
        """MonodromyGroup of the normal VE generated by M_R, M_I.

        Parameters
        ----------
        **kw
            Keywords of ``variational_monodromy`` (see `period_monodromy`).

        Returns
        -------
        MonodromyGroup
            Generators named "M_R" and "M_I".
        """
        return MonodromyGroup(list(self.period_monodromy(**kw)), names=["M_R", "M_I"])

    def period_jets(self, order=3, **kw):
        """k-jets of the flow map along the periods (see ``monodromy.jets``).

        Parameters
        ----------
        order : int, optional
            The jet order k.
        **kw
            Keywords of `jet_monodromy`.

        Returns
        -------
        tuple of Jet
            ``(J_R, J_I)``: along [0, T_real] and [0, T_imag].
        """
        from .jets import henon_heiles_period_jets
        return henon_heiles_period_jets(self, order=order, **kw)

    def __repr__(self):
        return (f"HenonHeiles(eps={self.eps:g}, ratio={self.ratio:g}, energy={self.energy:g}; "
                f"T_real={self.T_real:.6g}, T_imag={self.T_imag.imag:.6g}i, n={self.lame_n:.6g})")


def henon_heiles(eps=1.0, ratio=1.0, energy=0.1) -> HenonHeiles:
    """Hénon–Heiles along its invariant plane (see `HenonHeiles`).

    Parameters
    ----------
    eps : float, optional
        Any finite real number != 0.
    ratio : float, optional
        A / B (positive).
    energy : float, optional
        Energy of the scaled plane motion, in (0, 1/6).

    Returns
    -------
    HenonHeiles
        The system.
    """
    return HenonHeiles(eps, ratio, energy)
