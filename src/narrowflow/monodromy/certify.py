"""Validated (ball-arithmetic) transport of flow-map jets along complex paths, for any field
given through a small interface, and certificates of non-integrability for one-data-point
width-2 tanh networks (order 2) and Hénon–Heiles ε = 2 (order 3) (docs/certification.md).

Everything here is computed in arb/acb ball arithmetic (python-flint, the optional extra
``narrowflow[certify]``): every number is a ball that provably contains the exact value.

The linear system
-----------------
Every field here is reduced to the linear system along a path s ↦ s0 + (s − s0) (s complex)

    P' = A(s) P,                 P(s0) = I          (n x n; the 1-jet, Φ1)
    Q' = A(s) Q + B(s)(P, P),    Q(s0) = 0          (n x n²; the 2-jet, Φ2; order >= 2)
    R' = A(s) R + S(Q, P) + C(s)(P, P, P),  R(s0) = 0  (n x n³; the 3-jet, Φ3; order 3)

whose coefficients may depend on a state y(s) solving y' = F(y) (autonomous fields: the
variational equations along an integral curve found on the way; S(Q, P) is
B(Q, P) + B(Q, P)(a c b) + B(Q, P)(b c a), the three placements of P's index). The fields:

- :class:`OnePointTwinField` — the one-point width-2 tanh network along its closed-form curve
  Γ(w), A = DF/g, B = D²F/g (w the independent variable);
- :class:`NetworkBallField` — F = −∇L of any narrowflow network with one output (every
  activation of ``narrowflow.activations.NAMES``, biases, weight decay) in complex time,
  A = DF(y), B = D²F(y);
- :class:`HenonHeilesBallField` — Hénon–Heiles (Yoshida's family) in complex time, with its
  normal variational equation (2 x 2, along the plane q1 = p1 = 0) or the full 4 x 4 one;
- :class:`HypergeometricBallField` — the Gauss hypergeometric equation as Y' = A(z) Y.

The field interface
-------------------
A field has ``n`` (size of P), ``order`` (1: P; 2: P and Q; 3: P, Q and R, autonomous
fields only) and ``state_dim`` (0, or the dimension of y), and one method, ``local(s0, y0, rho, K)``, that returns a :class:`LocalData`:
the Taylor coefficients at s0 (orders 0..K, balls) of A, B and y, and upper bounds
α ≥ sup ‖A‖_F, β ≥ sup ‖B‖_F, M_i ≥ sup ``|y_i − y_i(s0)|`` on the disc D(s0, ρ) — or None when
it cannot prove the disc free of singularities. Two base classes implement ``local`` from
the field's formulas written once for a generic ring (acb balls for bounds, acb_series for
Taylor coefficients):

- :class:`LinearBallField` (``coefficients(s)`` → A, B): the bounds come from evaluating A, B
  on a complex box containing the disc (a division by a ball containing 0 gives a non-finite
  ball, so a finite bound also proves the disc pole-free);
- :class:`AutonomousBallField` (``vector(y)`` → F, ``linear(y)`` → A, B): the a priori
  enclosure is a Picard box U ∋ y0 with y0 + D(0, 1.01ρ)·F(U) ⊂ U (then, along every ray
  from s0, the solution cannot leave U before ``|s| = ρ``, so it is analytic on the disc with
  values in U), and α = ‖A(U)‖_F, β = ‖B(U)‖_F, M_i = ρ sup ``|F_i(U)|``. The Taylor
  coefficients of y come from Picard iteration in power-series arithmetic (one more exact
  coefficient per iteration).

The validated step
------------------
Each step s_k → s_k + h, ``|h| <= ρ/κ`` (:func:`transport_ball_jet`):

- Taylor coefficients of P, Q from P = I, Q = 0 by their recurrences, to order K;
- Gronwall along rays: sup_D ‖P‖ <= ‖I‖ e^{αρ} = M_P and sup_D ‖Q‖ <= e^{αρ} ρ β M_P² = M_Q;
- Cauchy estimates: every entry's (and every y_i's) n-th coefficient is at most M/ρ^n, so the
  truncation remainder is at most M q^{K+1} / (1 − q), ``q = |h|/ρ``, added to every entry as a
  ball.

The steps' jets are composed by a product tree (binary splitting limits the wrapping effect).

The one-point curve
-------------------
For one data point (x, y) and ``f(θ) = a1 tanh(w1 x) + a2 tanh(w2 x)`` the gradient field is
``F = −(f − y) ∇f``; each neuron keeps ``I_j = a_j² − cosh(2 w_j x) / (2 x²)`` (proof:
``dI_j/dt = −2 (f − y) a_j [tanh(w_j x) − sinh(w_j x) cosh(w_j x) sech²(w_j x)] = 0``), the
twin plane ``{a1 = a2, w1 = w2}`` is invariant (neuron swap symmetry), and on it the level
set of the saddle θ = 0 is ``a = ± sinh(w x)/x``. The unstable manifold of the saddle is the
branch ``Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w)``: the integral curve is a graph over the
w-plane, known in closed form. A closed loop in the w-plane that avoids the singular points
(zeros of ``g(w) = F_w(Γ(w))`` and poles of F) is a closed loop on the curve, exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OnePointTwinField", "NetworkBallField", "HenonHeilesBallField",
           "HypergeometricBallField", "LinearBallField", "AutonomousBallField", "LocalData",
           "BallJet", "transport_ball_jet", "certify_integrability", "Certificate",
           "HenonHeilesCertificate", "HH_PREMISES",
           "commutator_enclosure", "polygon_circle", "lasso_polygon", "commutator_polygon",
           "jet_compose", "jet_inverse", "commutator_jet", "have_flint", "PREMISES",
           "BALL_ACTIVATIONS", "MAX_ALPHA_RHO"]


def have_flint() -> bool:
    """Whether python-flint (the optional extra ``narrowflow[certify]``) can be imported.

    Returns
    -------
    bool
        True when ``import flint`` succeeds.
    """
    try:
        import flint  # noqa: F401
    except ImportError:
        return False
    return True


def _flint():
    try:
        import flint
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("narrowflow.monodromy.certify needs python-flint: "
                          "pip install 'narrowflow[certify]'") from exc
    return flint




# ---------------------------------------------------------------------------------------
# the field interface
# ---------------------------------------------------------------------------------------

@dataclass
class LocalData:
    """What one validated step needs on the disc D = D(s0, ρ).

    Returned by the ``local`` method of a field; the entries below are attributes of the same
    names.

    Parameters
    ----------
    An : list of K + 1 flint.acb_mat, each (n, n)
        Taylor coefficients of A at s0, orders 0..K.
    Bn : list of K + 1 flint.acb_mat, each (n², n), or None
        Taylor coefficients of B at s0 (row ``n*i + j``, column k: B_ijk); None at order 1.
    yn : list of state_dim lists of K + 1 flint.acb, or None
        Taylor coefficients of the state y at s0; None for fields without a state.
    alpha : float
        Upper bound of sup_D ‖A‖_F (Frobenius norm).
    beta : float
        Upper bound of sup_D ‖B‖_F; 0.0 at order 1.
    y_bound : list of state_dim float, or None
        Per component, an upper bound of ``sup_D |y_i − y_i(s0)|``; None without a state.
    Cn : list of K + 1 flint.acb_mat, each (n³, n), or None, optional
        Taylor coefficients of C (the cubic term of the order-3 system, D³F for a VE; row
        ``n**2*i + n*j + k``, column l: C_ijkl); None below order 3, or when C ≡ 0.
    gamma : float, optional
        Upper bound of sup_D ‖C‖_F; 0.0 when C ≡ 0 or below order 3.
    """

    An: list
    Bn: list | None
    yn: list | None
    alpha: float
    beta: float
    y_bound: list | None
    Cn: list | None = None
    gamma: float = 0.0


def _acb(z):
    """An acb from an acb, an arb or an exact number (floats and complex taken exactly)."""
    flint = _flint()
    if isinstance(z, flint.acb):
        return z
    if isinstance(z, (complex, np.complexfloating)):
        return flint.acb(complex(z).real, complex(z).imag)
    return flint.acb(z)


def _is_series(z):
    return isinstance(z, _flint().acb_series)


def _coeffs(z, K):
    """K+1 acb Taylor coefficients of a ring element (acb_series, acb, arb or number)."""
    flint = _flint()
    if _is_series(z):
        c = list(z.coeffs())
        if z.prec < K + 1:
            raise RuntimeError(f"series truncated at length {z.prec} < K + 1 = {K + 1}")
        return c[:K + 1] + [flint.acb(0)] * (K + 1 - len(c[:K + 1]))
    return [_acb(z)] + [flint.acb(0)] * K


def _abs_up(z):
    """Float upper bound of |z| (inf when z is not a finite ball)."""
    if isinstance(z, (int, float)):
        return abs(float(z))
    v = float(_acb(z).abs_upper())
    return v if math.isfinite(v) else math.inf


def _fro_bound(entries):
    """Float upper bound of the Frobenius norm of an iterable of ring elements (inf when one
    is not finite)."""
    tot = 0.0
    for e in entries:
        v = _abs_up(e)
        if not math.isfinite(v):
            return math.inf
        tot += v * v
    return _up(math.sqrt(tot) * (1 + 1e-12))


def _disc(r):
    """A complex box (acb) containing the closed disc D(0, r)."""
    flint = _flint()
    b = flint.arb(0, r)
    return flint.acb(b, b)


def _pad_ball(z, r):
    """z (acb) with r added to both radii."""
    return z + _disc(r)


class _cap:
    """Context manager: python-flint truncates every series op at ctx.cap (default 10)."""

    def __init__(self, cap):
        self.cap = int(cap)

    def __enter__(self):
        flint = _flint()
        self.old = flint.ctx.cap
        flint.ctx.cap = self.cap
        return flint

    def __exit__(self, *exc):
        _flint().ctx.cap = self.old
        return False


def _matrices(rows_list, K, n_rows, n_cols):
    """K+1 acb_mat (n_rows, n_cols) from a flat row-major list of ring elements."""
    flint = _flint()
    C = [_coeffs(e, K) for e in rows_list]
    return [flint.acb_mat(n_rows, n_cols, [C[e][k] for e in range(n_rows * n_cols)])
            for k in range(K + 1)]


class LinearBallField:
    """Base class: a linear system P' = A(s) P (+ B(s)(P, P) at order 2) whose coefficients
    are explicit functions of the independent variable s.

    Subclasses set ``n``, ``order`` and implement ``coefficients(s)`` -> (A as n lists of n
    ring elements, B as a flat list of n³ ring elements (index n² i + n j + k) or None), for
    s an acb ball or an acb_series, using only ``+ − * / exp log`` (so that a division by a
    ball that contains 0 gives a non-finite ball)."""

    n = 0
    order = 1
    state_dim = 0

    def coefficients(self, s):  # pragma: no cover - abstract
        """A(s) and B(s), written once for every ring (implemented by subclasses).

        Parameters
        ----------
        s : flint.acb or flint.acb_series
            The independent variable: a ball or complex box (for bounds) or the power series
            ``s0 + t`` (for Taylor coefficients at s0).

        Returns
        -------
        A : list of n lists of n ring elements
            The rows of A(s) (numbers or elements of the ring of ``s``).
        B : list of n³ ring elements, or None
            B(s) flat, index ``n**2*i + n*j + k`` (B_ijk); None at order 1.

        Raises
        ------
        NotImplementedError
            In this base class.
        """
        raise NotImplementedError

    def local(self, s0, y0, rho, K):
        """The data of one validated step on the disc D(s0, ρ).

        The bounds α, β come from evaluating :meth:`coefficients` on a complex box containing
        the disc; the Taylor coefficients from evaluating it on a power series.

        Parameters
        ----------
        s0 : flint.acb or complex
            The expansion point (centre of the disc).
        y0 : object
            Unused (these fields have no state; :func:`transport_ball_jet` passes None).
        rho : float
            Radius ρ of the disc.
        K : int
            Taylor order (coefficients 0..K).

        Returns
        -------
        LocalData or None
            A, B (B only at order 2) at s0 and their bounds (``yn`` and ``y_bound`` None);
            None when a bound is not finite (A or B may have a pole on the disc).
        """
        flint = _flint()
        s0 = _acb(s0)
        A, B = self.coefficients(_pad_ball(s0, rho))
        alpha = _fro_bound(e for row in A for e in row)
        beta = _fro_bound(B) if B is not None else 0.0
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            return None
        n = self.n
        with _cap(K + 1):
            t = flint.acb_series([s0, flint.acb(1)], prec=K + 1)
            A, B = self.coefficients(t)
            An = _matrices([e for row in A for e in row], K, n, n)
            Bn = _matrices(B, K, n * n, n) if (B is not None and self.order >= 2) else None
        return LocalData(An, Bn, None, alpha, beta if Bn is not None else 0.0, None)


class AutonomousBallField:
    """Base class: an autonomous field y' = F(y) (complex time) with the linear system
    P' = A(y) P (+ B(y)(P, P)) along its solution; for the variational equations A = DF and
    B = D²F.

    Subclasses set ``n``, ``order``, ``state_dim`` and implement ``vector(y)`` (F, a list of
    state_dim ring elements) and ``linear(y)`` ((A, B) as in :class:`LinearBallField`), both
    for y a list of acb balls or of acb_series; at order 3 also ``cubic(y)`` (C = D³F, or
    None when it vanishes identically). The order-3 system is
    R' = A R + B(Q, P) + B(Q, P)(a c b) + B(Q, P)(b c a) + C(P, P, P) (the third variational
    equation, B symmetric in its last two indices)."""

    n = 0
    order = 1
    state_dim = 0

    def vector(self, y):  # pragma: no cover - abstract
        """The field F(y) (implemented by subclasses).

        Parameters
        ----------
        y : list of state_dim flint.acb or flint.acb_series
            The state: balls or boxes (for enclosures) or power series (Picard iteration).

        Returns
        -------
        list of state_dim ring elements
            F(y), in the ring of ``y``.

        Raises
        ------
        NotImplementedError
            In this base class.
        """
        raise NotImplementedError

    def linear(self, y):  # pragma: no cover - abstract
        """A(y) and B(y) of the linear system (implemented by subclasses).

        Parameters
        ----------
        y : list of state_dim flint.acb or flint.acb_series
            The state.

        Returns
        -------
        A : list of n lists of n ring elements
            The rows of A(y).
        B : list of n³ ring elements, or None
            B(y) flat, index ``n**2*i + n*j + k`` (B_ijk); None at order 1.

        Raises
        ------
        NotImplementedError
            In this base class.
        """
        raise NotImplementedError

    def cubic(self, y):  # pragma: no cover - abstract
        """C(y) = D³F(y), the cubic term of the order-3 system (implemented by subclasses).

        Parameters
        ----------
        y : list of state_dim flint.acb or flint.acb_series
            The state.

        Returns
        -------
        list of n⁴ ring elements, or None
            C flat, index ``n**3*i + n**2*j + n*k + l`` (C_ijkl); None when C ≡ 0.

        Raises
        ------
        NotImplementedError
            In this base class.
        """
        raise NotImplementedError

    def variational(self, y):
        """A, B and (at order 3) C at y.

        The default calls :meth:`linear` and, at order 3, :meth:`cubic`; subclasses may
        compute all three in one pass.

        Parameters
        ----------
        y : list of state_dim flint.acb or flint.acb_series
            The state.

        Returns
        -------
        A : list of n lists of n ring elements
            The rows of A(y).
        B : list of n³ ring elements, or None
            B(y) flat, index ``n**2*i + n*j + k``; None at order 1.
        C : list of n⁴ ring elements, or None
            C(y) flat, index ``n**3*i + n**2*j + n*k + l``; None below order 3 or when
            C ≡ 0.
        """
        A, B = self.linear(y)
        return A, B, (self.cubic(y) if self.order >= 3 else None)

    def state_jacobian(self, y):
        """DF(y), used for the mean-value enclosure of F on a box.

        The default is A of :meth:`linear` (right for a VE field, where A = DF).

        Parameters
        ----------
        y : list of state_dim flint.acb
            The state (a box).

        Returns
        -------
        list of state_dim lists of state_dim ring elements
            The rows of DF(y).
        """
        return self.linear(y)[0]

    def enclose_vector(self, U, y0, F0):
        """A ball enclosure of F on the box U ∋ y0.

        Componentwise the tighter (smaller upper bound of the modulus) of the direct
        evaluation F(U) and the mean-value form F(y0) + DF(U)(U − y0) (the direct one suffers
        from the dependency problem on wide boxes).

        Parameters
        ----------
        U : list of state_dim flint.acb
            The box.
        y0 : list of state_dim flint.acb
            A point of the box.
        F0 : list of state_dim ring elements
            F(y0).

        Returns
        -------
        list of state_dim flint.acb
            An enclosure of F(U), component by component.
        """
        direct = [_acb(f) for f in self.vector(U)]
        J = self.state_jacobian(U)
        dU = [u - y for u, y in zip(U, y0)]
        out = []
        for i, f0 in enumerate(F0):
            mv = _acb(f0)
            for j, d in enumerate(dU):
                if not (isinstance(J[i][j], int) and J[i][j] == 0):
                    mv = mv + J[i][j] * d
            out.append(mv if _abs_up(mv) < _abs_up(direct[i]) else direct[i])
        return out

    def picard_box(self, y0, rho, iterations=12):
        """A Picard box U ∋ y0 for the disc of radius ρ, and the enclosure F(U).

        The boxes are U_i = y0_i + [−δ_i, δ_i](1 + i) with ``1.01 ρ sup |F_i(U)| <= δ_i``, so
        that y0 + D(0, 1.01ρ)·F(U) ⊂ U. The δ_i start at ``1.5 ρ |F_i(y0)|`` (plus a tiny
        margin) and are widened until the inclusion holds.

        Parameters
        ----------
        y0 : list of state_dim flint.acb
            The state at the centre of the disc.
        rho : float
            Radius ρ of the disc (in the time variable).
        iterations : int, optional
            Number of widenings tried.

        Returns
        -------
        tuple of (list of state_dim flint.acb, list of state_dim flint.acb), or None
            ``(U, FU)``: the box and the enclosure of F on it; None when no box is found
            within ``iterations`` or an enclosure is not finite.
        """
        F0 = self.vector(y0)
        delta = [1.5 * rho * _abs_up(f) + 1e-30 * (1 + _abs_up(y)) for f, y in zip(F0, y0)]
        if not all(map(math.isfinite, delta)):
            return None
        for _ in range(iterations):
            U = [_pad_ball(y, d) for y, d in zip(y0, delta)]
            FU = self.enclose_vector(U, y0, F0)
            need = [1.01 * rho * _abs_up(f) for f in FU]
            if not all(map(math.isfinite, need)):
                return None
            if all(r <= d for r, d in zip(need, delta)):
                return U, FU
            delta = [max(d, 1.2 * r) for d, r in zip(delta, need)]
        return None

    def local(self, s0, y0, rho, K):
        """The data of one validated step from the state y0 on the disc D(s0, ρ).

        The bounds come from the Picard box (:meth:`picard_box`): α = ‖A(U)‖_F,
        β = ‖B(U)‖_F, γ = ‖C(U)‖_F (order 3), M_i = ρ ``sup |F_i(U)|``; the Taylor
        coefficients of y from Picard iteration in power-series arithmetic, those of A, B
        (and C) from :meth:`variational` on them.

        Parameters
        ----------
        s0 : flint.acb or complex
            The expansion point; unused (the field is autonomous).
        y0 : list of state_dim flint.acb or numbers
            The state at s0.
        rho : float
            Radius ρ of the disc.
        K : int
            Taylor order (coefficients 0..K).

        Returns
        -------
        LocalData or None
            None when no Picard box is found or α or β is not finite on it.
        """
        flint = _flint()
        y0 = [_acb(v) for v in y0]
        box = self.picard_box(y0, rho)
        if box is None:
            return None
        U, FU = box
        A, B, C = self.variational(U)
        alpha = _fro_bound(e for row in A for e in row)
        beta = _fro_bound(B) if (B is not None and self.order >= 2) else 0.0
        gamma = _fro_bound(C) if (C is not None and self.order >= 3) else 0.0
        if not (math.isfinite(alpha) and math.isfinite(beta) and math.isfinite(gamma)):
            return None
        y_bound = [_up(rho * _abs_up(f)) for f in FU]
        # Taylor coefficients of y by Picard iteration: iteration m makes coefficient m exact
        Y = [flint.acb_series([v], prec=K + 1) for v in y0]
        for m in range(1, K + 1):
            with _cap(m + 1):
                Fy = self.vector(Y)
                Y = [flint.acb_series(_coeffs(f, m - 1), prec=m).integral() + v
                     for f, v in zip(Fy, y0)]
        n = self.n
        with _cap(K + 1):
            Y = [flint.acb_series(_coeffs(v, K), prec=K + 1) for v in Y]
            A, B, C = self.variational(Y)
            An = _matrices([e for row in A for e in row], K, n, n)
            Bn = _matrices(B, K, n * n, n) if (B is not None and self.order >= 2) else None
            Cn = (_matrices(C, K, n ** 3, n) if (C is not None and self.order >= 3
                                                 and gamma > 0) else None)
        yn = [_coeffs(v, K) for v in Y]
        return LocalData(An, Bn, yn, alpha, beta, y_bound, Cn, gamma if Cn is not None else 0.0)


# ---------------------------------------------------------------------------------------
# the one-point network along its closed-form curve: A = DF/g, B = D2F/g as functions of w
# ---------------------------------------------------------------------------------------

def _entries(w, x, y, one):
    """(A entries (16, row-major), B entries (64, index 16 i + 4 j + k)) at w for the
    one-point twin-plane tanh field; w: an acb or an acb_series (anything with exp, +, *, /).
    ``one``: the unit of that type."""
    u = w * x
    e = u.exp()
    em = one / e
    sh = (e - em) * 0.5
    ch = (e + em) * 0.5
    s = sh / ch                       # tanh(u)
    s1 = one - s * s                  # sech²
    s2 = s * s1 * (-2)                # tanh''
    s3 = s1 * (s * s * 6 - 2)         # tanh'''
    a = sh / x
    r = a * s * 2 - y                 # f − y on the twin plane
    fa, fw = s, a * s1 * x            # ∂f/∂a_j, ∂f/∂w_j
    faw, fww = s1 * x, a * s2 * (x * x)
    faww, fwww = s2 * (x * x), a * s3 * (x * x * x)
    g = -(r * fw)                     # F_w on the curve
    ig = one / g
    grad = [fa, fw, fa, fw]
    zero = one * 0

    def hess(i, j):
        if i // 2 != j // 2:
            return zero
        if i % 2 == 0 and j % 2 == 0:
            return zero
        if i % 2 != j % 2:
            return faw
        return fww

    def third(i, j, k):
        if not (i // 2 == j // 2 == k // 2):
            return zero
        nw = (i % 2) + (j % 2) + (k % 2)
        return {0: zero, 1: zero, 2: faww, 3: fwww}[nw]

    A = []
    for i in range(4):
        for j in range(4):
            h = hess(i, j)
            A.append(-(grad[i] * grad[j] + r * h) * ig)
    B = []
    for i in range(4):
        for j in range(4):
            for k in range(4):
                t = hess(i, j) * grad[k] + hess(i, k) * grad[j] + hess(j, k) * grad[i]
                t3 = third(i, j, k)
                B.append(-(t + r * t3) * ig)
    return A, B


@dataclass
class OnePointTwinField(LinearBallField):
    """The one-data-point width-2 tanh gradient field along its twin-plane unstable manifold.

    The curve is Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w); the linear system is in w, with
    A = DF/g (4 x 4) and B = D²F/g (16 x 4), g = F_w(Γ(w)) (n = 4, order 2, no state).

    Parameters
    ----------
    x, y : float
        The data point, taken as exact binary numbers.

    Raises
    ------
    ValueError
        When x is 0 or not finite, or y is not finite.
    """

    x: float
    y: float
    n = 4
    order = 2

    def __post_init__(self):
        if not (math.isfinite(self.x) and self.x != 0 and math.isfinite(self.y)):
            raise ValueError(f"need a finite non-zero x and finite y, got x={self.x}, y={self.y}")

    def _xy(self):
        flint = _flint()
        return flint.arb(self.x), flint.arb(self.y)

    def coefficients(self, s):
        """A = DF/g and B = D²F/g at Γ(s).

        Parameters
        ----------
        s : flint.acb or flint.acb_series
            The point w (a ball or box) or a power series in w.

        Returns
        -------
        A : list of 4 lists of 4 ring elements
            The rows of A, in the ring of ``s``.
        B : list of 64 ring elements
            B flat, index ``16*i + 4*j + k`` (B_ijk).
        """
        flint = _flint()
        x, y = self._xy()
        one = flint.acb_series([flint.acb(1)], prec=s.prec) if _is_series(s) else flint.acb(1)
        A, B = _entries(s, x, y, one)
        return [A[4 * i:4 * i + 4] for i in range(4)], B

    def local(self, s0, y0, rho, K):
        """The data of one validated step on the disc D(s0, ρ).

        α and β bound the Taylor polynomials of A, B on the disc plus Cauchy tails from
        :meth:`crude_bounds` on D(s0, 2ρ) (tighter than a box evaluation near the poles of
        tanh).

        Parameters
        ----------
        s0 : flint.acb or complex
            The expansion point; an exact point (a ball of radius 0).
        y0 : object
            Unused (no state).
        rho : float
            Radius ρ of the disc.
        K : int
            Taylor order (coefficients 0..K).

        Returns
        -------
        LocalData or None
            None when :meth:`crude_bounds` is not finite on D(s0, 2ρ) (a pole of A or B
            may lie there).

        Raises
        ------
        ValueError
            When s0 is not exact.
        """
        flint = _flint()
        s0 = _acb(s0)
        if s0.rad() != 0:
            raise ValueError("OnePointTwinField steps need exact expansion points")
        wk = complex(s0.mid())
        mA2, mB2 = self.crude_bounds(wk, 2 * rho * 1.000001)
        if not (math.isfinite(mA2) and math.isfinite(mB2)):
            return None
        An, Bn, Ac, Bc = self.series(wk, K)
        tailfac = 2.0 ** (-(K + 1)) * 2.0       # sum_{n>K} (1/2)^n = 2^{-K}
        rr = flint.arb(rho)

        def sup_entries(C, m2):
            tot = 0.0
            for c in C:
                acc = flint.arb(0)
                pw = flint.arb(1)
                for n in range(K + 1):
                    acc += c[n].abs_upper() * pw
                    pw *= rr
                v = float((acc + m2 * math.sqrt(2) * tailfac).upper())
                tot += v * v
            return _up(math.sqrt(tot))
        # the crude box of half-width 2ρ contains the disc D(wk, 2ρ), so m2 bounds |entry|
        # there, and the Cauchy tail on D(wk, ρ) is m2 * sum_{n>K} 2^{-n} = m2 2^{-K}; the
        # extra factor √2 above is only a margin
        return LocalData(An, Bn, None, sup_entries(Ac, mA2), sup_entries(Bc, mB2), None)

    def point(self, w, prec=160):
        """The point Γ(w) of the curve.

        Parameters
        ----------
        w : complex or flint.acb
            The point in the w-plane (numbers taken exactly).
        prec : int, optional
            Working precision in bits.

        Returns
        -------
        list of 4 flint.acb
            (sinh(wx)/x, w, sinh(wx)/x, w).
        """
        with _prec(prec) as flint:
            x, _ = self._xy()
            w = flint.acb(w)
            a = (w * x).sinh() / x
            return [a, w, a, w]

    def series(self, wk, K):
        """Taylor coefficients of A and B at wk, orders 0..K.

        Parameters
        ----------
        wk : complex
            The expansion point (taken exactly).
        K : int
            Taylor order.

        Returns
        -------
        An : list of K + 1 flint.acb_mat, each (4, 4)
            Coefficients of A.
        Bn : list of K + 1 flint.acb_mat, each (16, 4)
            Coefficients of B (row ``4*i + j``, column k).
        Ac : list of 16 lists of K + 1 flint.acb
            The same per entry of A (row-major).
        Bc : list of 64 lists of K + 1 flint.acb
            The same per entry of B (index ``16*i + 4*j + k``).

        Raises
        ------
        RuntimeError
            When a series came out shorter than K + 1 coefficients.
        """
        flint = _flint()
        x, y = self._xy()
        old_cap = flint.ctx.cap
        flint.ctx.cap = K + 1       # python-flint truncates every series op at ctx.cap (default 10)
        try:
            t = flint.acb_series([flint.acb(wk), flint.acb(1)], prec=K + 1)
            one = flint.acb_series([flint.acb(1)], prec=K + 1)
            A, B = _entries(t, x, y, one)
        finally:
            flint.ctx.cap = old_cap
        short = [ser.prec for ser in A + B if ser.prec < K + 1]
        if short:
            raise RuntimeError(f"series truncated at length {min(short)} < K + 1 = {K + 1}")

        def coeffs(ser):
            c = list(ser.coeffs())
            return c + [flint.acb(0)] * (K + 1 - len(c))

        Ac = [coeffs(a) for a in A]
        Bc = [coeffs(b) for b in B]
        An = [flint.acb_mat(4, 4, [Ac[e][n] for e in range(16)]) for n in range(K + 1)]
        Bn = [flint.acb_mat(16, 4, [Bc[e][n] for e in range(64)]) for n in range(K + 1)]
        return An, Bn, Ac, Bc

    def crude_bounds(self, wk, radius, grid=4):
        """Upper bounds of the entries of A and B on the disc ``|w − wk| <= radius``.

        The disc's square is covered by grid x grid boxes (boxes missing the disc skipped); on
        each box, with u = w x = X + iY, the moduli ``|sinh u|² = sinh²X + sin²Y`` and
        ``|cosh u|² = sinh²X + cos²Y`` are enclosed in real interval arithmetic (tight), hence
        the moduli of tanh, sech², the 2nd and 3rd derivatives of tanh and a = sinh(u)/x;
        ``|r| = |f − y|`` is bounded below by ``|r(c)| − sup |r'| · (box half-diagonal)``,
        r' = 2 sinh u (1 + sech² u), and the entries of A = DF/g, B = D²F/g by the triangle
        inequality over their terms. A box where ``|cosh u|`` or ``|g| = |r a x sech²|`` is not
        bounded away from 0 gives inf (so finite bounds also prove A and B analytic on the
        disc).

        Parameters
        ----------
        wk : complex
            Centre of the disc.
        radius : float
            Radius of the disc.
        grid : int, optional
            Boxes per side of the disc's square.

        Returns
        -------
        mA, mB : float
            Upper bounds of ``max |A_ij|`` and ``max |B_ijk|`` (enlarged for float rounding);
            both inf when a pole may lie on the disc.
        """
        flint = _flint()
        arb = flint.arb
        wk = complex(wk)
        hw = radius / grid
        xa, ya = abs(self.x), abs(self.y)
        mA = mB = 0.0
        for ia in range(grid):
            for ib in range(grid):
                cx = -radius + (2 * ia + 1) * hw
                cy = -radius + (2 * ib + 1) * hw
                nx = max(abs(cx) - hw, 0.0)
                ny = max(abs(cy) - hw, 0.0)
                if nx * nx + ny * ny > radius * radius:
                    continue
                c = complex(wk.real + cx, wk.imag + cy)
                hwx = hw * (1 + 1e-12)
                X = arb(c.real, hwx) * self.x
                Y = arb(c.imag, hwx) * self.x
                shX, sY, cY = X.sinh(), Y.sin(), Y.cos()
                sh2 = shX * shX                    # (** 2 gives nan on balls around 0)
                S2 = sh2 + sY * sY                 # |sinh u|²
                C2 = sh2 + cY * cY                 # |cosh u|²
                S2u, S2l = float(S2.upper()), float(S2.lower())
                C2u, C2l = float(C2.upper()), float(C2.lower())
                if not (C2l > 0 and S2l > 0) or not all(map(math.isfinite, (S2u, C2u))):
                    return math.inf, math.inf
                sinh_u, sinh_l = math.sqrt(S2u), math.sqrt(S2l)
                t_u = math.sqrt(S2u / C2l)          # |tanh|
                s1_u, s1_l = 1 / C2l, 1 / C2u       # |sech²|
                s2_u = 2 * t_u * s1_u
                s3_u = s1_u * (6 * t_u * t_u + 2)
                a_u, a_l = sinh_u / xa, sinh_l / xa
                r_u = 2 * a_u * t_u + ya
                # |r(c)| at the box centre, in balls
                uc = flint.acb(c) * self.x
                rc = float(((uc.sinh() * uc.tanh()) * 2 / self.x - self.y).abs_lower())
                rp_u = 2 * sinh_u * (1 + s1_u)
                r_l = rc - rp_u * math.sqrt(2) * hwx * xa
                # near poles of tanh: |r| = |2 sinh² u / x − y cosh u| / |cosh u|
                r_l = max(r_l, (2 * S2l / xa - ya * math.sqrt(C2u)) / math.sqrt(C2u))
                g_l = r_l * a_l * xa * s1_l
                if not g_l > 0:
                    return math.inf, math.inf
                grad = [t_u, a_u * xa * s1_u]
                faw, fww = xa * s1_u, a_u * xa * xa * s2_u
                third = [xa * xa * s2_u, a_u * xa ** 3 * s3_u]
                hmax = max(faw, fww)
                gmax = max(grad)
                # |A_ij| <= (|f_i||f_j| + |r||f_ij|)/|g|; |B_ijk| <= (3|f_..||f_.| + |r||f_...|)/|g|
                bA = (gmax * gmax + r_u * hmax) / g_l
                bB = (3 * hmax * gmax + r_u * max(third)) / g_l
                mA, mB = max(mA, bA), max(mB, bB)
        # float rounding in the lines above: a relative margin far above it
        return mA * (1 + 1e-9), mB * (1 + 1e-9)




# ---------------------------------------------------------------------------------------
# activations in ball arithmetic: (σ, σ', σ'', σ''', σ'''') on a generic ring
# ---------------------------------------------------------------------------------------

def _nan_like(u):
    flint = _flint()
    nan = flint.acb(float("nan"))
    if _is_series(u):
        return flint.acb_series([nan], prec=u.prec)
    return nan


def _ball_sigmoid_chain(u):
    s = 1 / (1 + (-u).exp())
    q = s * (1 - s)
    v = 1 - 2 * s
    # s' = q, q' = q v, v' = −2 q
    return s, q, q * v, q * (v * v - 2 * q), q * v * (v * v - 8 * q)


def _ball_tanh_chain(t):
    t1 = 1 - t * t
    return t, t1, -2 * t * t1, t1 * (6 * t * t - 2), 8 * t * t1 * (2 - 3 * t * t)


def _ball_tanh(u):
    # on balls arb's own tanh (tighter on wide boxes; non-finite where a pole may lie); on
    # series tanh u = 1 − 2/(e^{2u} + 1)
    if not _is_series(u):
        return _acb(u).tanh()
    return 1 - 2 / ((2 * u).exp() + 1)


def _act_tanh(u, kappa):
    return _ball_tanh_chain(_ball_tanh(u))


def _act_sigmoid(u, kappa):
    return _ball_sigmoid_chain(u)


def _act_softplus(u, kappa):
    # log(1 + e^u) on the principal branch, continued only where Re(1 + e^u) > 0: there it is
    # analytic; elsewhere the value would straddle the cut (arb returns a finite ball holding
    # both branches), so a non-finite ball is returned and the step is refused
    w = 1 + u.exp()
    w0 = _coeffs(w, 0)[0]
    if not w0.real > 0:
        return (_nan_like(u),) * 5
    s = _ball_sigmoid_chain(u)
    return (w.log(),) + s[:4]


def _act_silu(u, kappa):
    s0, s1, s2, s3, s4 = _ball_sigmoid_chain(u)
    return u * s0, s0 + u * s1, 2 * s1 + u * s2, 3 * s2 + u * s3, 4 * s3 + u * s4


def _act_gelu_tanh(u, kappa):
    from narrowflow.activations import _GELU_A, _GELU_C    # the package's binary constants
    flint = _flint()
    C, A = flint.arb(_GELU_C), flint.arb(_GELU_A)
    v = C * (u + A * u * u * u)
    t, t1, t2, t3, t4 = _ball_tanh_chain(_ball_tanh(v))
    v1 = C * (1 + 3 * A * u * u)
    v2 = 6 * C * A * u
    v3 = 6 * C * A
    T1 = t1 * v1
    T2 = t2 * v1 * v1 + t1 * v2
    T3 = t3 * v1 * v1 * v1 + 3 * t2 * v1 * v2 + t1 * v3
    # Faà di Bruno with v'''' = 0
    T4 = t4 * v1 * v1 * v1 * v1 + 6 * t3 * v1 * v1 * v2 + t2 * (3 * v2 * v2 + 4 * v1 * v3)
    return (0.5 * u * (1 + t), 0.5 * (1 + t) + 0.5 * u * T1, T1 + 0.5 * u * T2,
            1.5 * T2 + 0.5 * u * T3, 2 * T3 + 0.5 * u * T4)


def _act_quadratic(u, kappa):
    k = _flint().arb(kappa)
    return u + k * u * u, 1 + 2 * k * u, 2 * k + 0 * u, 0 * u, 0 * u


def _act_linear(u, kappa):
    return u, 1 + 0 * u, 0 * u, 0 * u, 0 * u


BALL_ACTIVATIONS = {"tanh": _act_tanh, "sigmoid": _act_sigmoid, "softplus": _act_softplus,
                    "silu": _act_silu, "gelu_tanh": _act_gelu_tanh,
                    "quadratic": _act_quadratic, "linear": _act_linear}


# ---------------------------------------------------------------------------------------
# network gradient fields in complex time
# ---------------------------------------------------------------------------------------

class NetworkBallField(AutonomousBallField):
    """F = −∇L of a narrowflow GradientFlow with one output, in complex time.

    The linear system is its variational equations, A = DF (p x p) and B = D²F, with p the
    number of parameters (``n = state_dim = p``, order 2). Every activation of
    ``BALL_ACTIVATIONS`` (all of ``narrowflow.activations.NAMES``), any width and input
    dimension, biases and weight decay; the data (float64) are taken as exact binary numbers.

    Parameters
    ----------
    flow : GradientFlow
        The flow; its network must have one output.
    order : int, optional
        The jet order transported: 1 (P), 2 (P, Q; A and B) or 3 (P, Q, R; also
        C = D³F, which needs the fourth derivatives of the activation).

    Raises
    ------
    TypeError
        When ``flow`` has no ``network`` or ``data`` (not a GradientFlow).
    ValueError
        For more than one output, an activation without a ball-arithmetic form, or an order
        outside 1..3.
    """

    order = 2

    def __init__(self, flow, order=2):
        net = getattr(flow, "network", None)
        data = getattr(flow, "data", None)
        if net is None or data is None:
            raise TypeError(f"flow must be a GradientFlow or a HenonHeiles system, got "
                        f"{type(flow).__name__}")
        name = net.activation.name
        if name not in BALL_ACTIVATIONS:
            raise ValueError(f"activation {name!r} has no ball-arithmetic form; supported: "
                             + ", ".join(BALL_ACTIVATIONS))
        if net.output_dim != 1:
            raise ValueError(f"NetworkBallField needs one output, got output_dim = {net.output_dim}")
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        self.order = int(order)
        self.flow = flow
        self.act = BALL_ACTIVATIONS[name]
        self.kappa = float(net.activation.kappa)
        self.x = np.asarray(data.x, dtype=float).reshape(data.n, net.input_dim)
        self.y = np.asarray(data.y, dtype=float).reshape(data.n)
        self.lam = float(flow.weight_decay)
        self.n = self.state_dim = net.n_params
        bs, d = net.block_size, net.input_dim
        # per neuron: (index of a, indices of w, index of b or None)
        self.blocks = [(j * bs, [j * bs + 1 + l for l in range(d)],
                        j * bs + 1 + d if net.bias else None) for j in range(net.width)]
        self.c_index = net.width * bs if net.bias else None

    def _block_params(self, blk, xd):
        """[(index, kind, factor)]: kind 'a' | 'z' (inside σ), factor ∂u/∂θ (arb, exact)."""
        flint = _flint()
        ia, iw, ib = blk
        out = [(ia, "a", None)] + [(i, "z", flint.arb(xd[l])) for l, i in enumerate(iw)]
        if ib is not None:
            out.append((ib, "z", flint.arb(1)))
        return out

    @staticmethod
    def _dfn(params, aj, sig):
        """∂^k f/∂θ_S for a multiset S of one neuron's parameters: with n_a a's and m entries
        inside σ, f = a σ(u) gives σ^(m)(u)·Π ∂u/∂θ (n_a = 1), a σ^(m)(u)·Π ∂u/∂θ (n_a = 0),
        0 (n_a >= 2)."""
        n_a = sum(1 for _, kind, _ in params if kind == "a")
        if n_a >= 2:
            return None
        fac = None
        for _, kind, f in params:
            if kind == "z":
                fac = f if fac is None else fac * f
        m = len(params) - n_a
        v = sig[m] if fac is None else sig[m] * fac
        return v if n_a == 1 else v * aj

    def _terms(self, th, order):
        """Σ_d over the data of (r ∂f, ∂f ∂fᵀ + r ∂²f, third-order terms, fourth-order terms)
        of L_d = r²/2 (unscaled); the third- and fourth-order ones as dicts over sorted index
        tuples (order >= 2, order >= 3)."""
        import itertools
        p = self.n
        g = [0] * p
        H = [[0] * p for _ in range(p)] if order >= 1 else None
        T = {} if order >= 2 else None
        V = {} if order >= 3 else None
        for xd, yd in zip(self.x, self.y):
            f = 0
            f1 = [0] * p
            f2, f3, f4 = {}, {}, {}
            for blk in self.blocks:
                prm = self._block_params(blk, xd)
                aj = th[blk[0]]
                u = 0
                for i, kind, fac in prm[1:]:
                    u = u + th[i] * fac
                sig = self.act(u, self.kappa)
                f = f + aj * sig[0]
                for q in prm:
                    f1[q[0]] = self._dfn([q], aj, sig)
                if order >= 1:
                    for q1, q2 in itertools.combinations_with_replacement(prm, 2):
                        v = self._dfn([q1, q2], aj, sig)
                        if v is not None:
                            f2[(q1[0], q2[0])] = f2[(q2[0], q1[0])] = v
                if order >= 2:
                    for qs in itertools.combinations_with_replacement(prm, 3):
                        v = self._dfn(list(qs), aj, sig)
                        if v is not None:
                            f3[tuple(sorted(q[0] for q in qs))] = v
                if order >= 3:
                    for qs in itertools.combinations_with_replacement(prm, 4):
                        v = self._dfn(list(qs), aj, sig)
                        if v is not None:
                            f4[tuple(sorted(q[0] for q in qs))] = v
            if self.c_index is not None:
                f = f + th[self.c_index]
                f1[self.c_index] = 1
            r = f - _flint().arb(yd)
            for i in range(p):
                g[i] = g[i] + r * f1[i]
            if order >= 1:
                for i in range(p):
                    for j in range(i, p):
                        v = f1[i] * f1[j]
                        if (i, j) in f2:
                            v = v + r * f2[(i, j)]
                        H[i][j] = H[i][j] + v
            if order >= 2:
                for i, j, k in itertools.combinations_with_replacement(range(p), 3):
                    v = 0
                    for (a, b), c in (((i, j), k), ((i, k), j), ((j, k), i)):
                        if (a, b) in f2:
                            v = v + f2[(a, b)] * f1[c]
                    if (i, j, k) in f3:
                        v = v + r * f3[(i, j, k)]
                    if not (isinstance(v, int) and v == 0):
                        T[(i, j, k)] = T.get((i, j, k), 0) + v
            if order >= 3:
                # ∂⁴(r²/2) = Σ_4 f_ijk f_l + Σ_3 f_ij f_kl + r f_ijkl
                def d2(a, b):
                    return f2.get((a, b) if a <= b else (b, a))

                for i, j, k, l in itertools.combinations_with_replacement(range(p), 4):
                    v = 0
                    for (a, b, c), d in (((i, j, k), l), ((i, j, l), k), ((i, k, l), j),
                                         ((j, k, l), i)):
                        if (a, b, c) in f3 and not (isinstance(f1[d], int) and f1[d] == 0):
                            v = v + f3[(a, b, c)] * f1[d]
                    for (a, b), (c, d) in (((i, j), (k, l)), ((i, k), (j, l)), ((i, l), (j, k))):
                        x1, x2 = d2(a, b), d2(c, d)
                        if x1 is not None and x2 is not None:
                            v = v + x1 * x2
                    if (i, j, k, l) in f4:
                        v = v + r * f4[(i, j, k, l)]
                    if not (isinstance(v, int) and v == 0):
                        V[(i, j, k, l)] = V.get((i, j, k, l), 0) + v
        return g, H, T, V

    def vector(self, y):
        """F = −∇L at y: ``−(1/N) Σ_d r_d ∇f_d − λ y``.

        N is the number of data points, r_d = f_d − y_d the residuals and λ the weight decay.

        Parameters
        ----------
        y : list of p flint.acb or flint.acb_series
            The parameters.

        Returns
        -------
        list of p ring elements
            F(y), in the ring of ``y``.
        """
        g = self._terms(y, 0)[0]
        inv_n = _flint().arb(1) / len(self.y)
        return [-(gi * inv_n) - self.lam * yi for gi, yi in zip(g, y)]

    def linear(self, y):
        """DF and D²F at y.

        Parameters
        ----------
        y : list of p flint.acb or flint.acb_series
            The parameters.

        Returns
        -------
        A : list of p lists of p ring elements
            The rows of DF(y) (symmetric).
        B : list of p³ ring elements
            D²F(y) flat, index ``p**2*i + p*j + k`` (symmetric in i, j, k).
        """
        A, B, _ = self._derivatives(y, 2)
        return A, B

    def variational(self, y):
        """DF, D²F and (at order 3) D³F at y, from one pass over the data.

        Parameters
        ----------
        y : list of p flint.acb or flint.acb_series
            The parameters.

        Returns
        -------
        A : list of p lists of p ring elements
            The rows of DF(y).
        B : list of p³ ring elements
            D²F(y) flat, index ``p**2*i + p*j + k``.
        C : list of p⁴ ring elements, or None
            D³F(y) flat, index ``p**3*i + p**2*j + p*k + l`` (symmetric); None below
            order 3.
        """
        return self._derivatives(y, 3 if self.order >= 3 else 2)

    def cubic(self, y):
        """D³F at y.

        Parameters
        ----------
        y : list of p flint.acb or flint.acb_series
            The parameters.

        Returns
        -------
        list of p⁴ ring elements
            D³F(y) flat, index ``p**3*i + p**2*j + p*k + l`` (symmetric in i, j, k, l).
        """
        return self._derivatives(y, 3)[2]

    def _derivatives(self, y, order):
        import itertools
        p = self.n
        _, H, T, Vt = self._terms(y, order)
        inv_n = _flint().arb(1) / len(self.y)
        A = [[0] * p for _ in range(p)]
        for i in range(p):
            for j in range(i, p):
                A[i][j] = A[j][i] = -(H[i][j] * inv_n) - (self.lam if i == j else 0)
        B = [0] * (p ** 3)
        for (i, j, k), v in T.items():
            for a, b, c in set(itertools.permutations((i, j, k))):
                B[p * p * a + p * b + c] = -(v * inv_n)
        C = None
        if order >= 3:
            C = [0] * (p ** 4)
            for idx, v in Vt.items():
                w = -(v * inv_n)
                for a, b, c, d in set(itertools.permutations(idx)):
                    C[p ** 3 * a + p * p * b + p * c + d] = w
        return A, B, C


# ---------------------------------------------------------------------------------------
# Hénon–Heiles (Yoshida's family) and the hypergeometric equation
# ---------------------------------------------------------------------------------------

class HenonHeilesBallField(AutonomousBallField):
    """Hénon–Heiles H = (p1² + p2²)/2 + (A q1² + q2²)/2 + q1² q2 + (ε/3) q2³ in complex time.

    Yoshida's family, A = ratio, B = 1 (docs/math.md §5.7); eps, ratio and energy are taken
    as exact binary numbers.

    ``normal=True``: state (q2, p2) on the invariant plane q1 = p1 = 0, linear system the
    normal VE in (q1, p1), A = [[0, 1], [−(ratio + 2 q2), 0]] (n = 2, order 1).
    ``normal=False``: state (q1, q2, p1, p2), A = DF (4 x 4), B = D²F (n = 4, order 2 or,
    with ``order=3``, 3; F is quadratic, so D³F = 0).

    Parameters
    ----------
    eps : float, optional
        ε, the coefficient of q2³/3; finite and non-zero.
    ratio : float, optional
        A, the coefficient of q1²/2.
    energy : float, optional
        The energy of the plane motion, in (0, 1/6).
    normal : bool, optional
        Whether the linear system is the normal VE (else the full VE).
    order : int, optional
        The jet order of the full VE, 1, 2 (default) or 3; ignored (1) when ``normal``.

    Raises
    ------
    ValueError
        When eps is 0 or not finite, energy is outside (0, 1/6), or order is outside 1..3.
    """

    def __init__(self, eps=1.0, ratio=1.0, energy=0.1, normal=True, order=2):
        self.eps, self.ratio, self.energy = float(eps), float(ratio), float(energy)
        if not (self.eps != 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a finite non-zero real number, got {eps!r}")
        if not (0 < self.energy < 1 / 6):
            raise ValueError(f"energy must lie in (0, 1/6), got {energy!r}")
        self.normal = bool(normal)
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
        self.n = self.state_dim = 2 if self.normal else 4
        self.order = 1 if self.normal else int(order)

    def roots(self):
        """Enclosures of the roots of Q³/3 + Q²/2 = energy (Q = eps q2).

        Computed at the current flint working precision (rigorous root isolation).

        Returns
        -------
        tuple of 3 flint.arb
            ``(Q1, qa, qb)``, sorted by midpoint (the real parts of the roots).

        Raises
        ------
        RuntimeError
            When the root finder does not return three roots.
        """
        flint = _flint()
        # 2Q³ + 3Q² − 6E: exact coefficients (E a binary number); arb's root isolation is
        # rigorous, refined to the working precision
        poly = flint.acb_poly([-6 * flint.arb(self.energy), 0, 3, 2])
        tol = flint.arb(2) ** (-flint.ctx.prec + 8)
        rs = sorted((r.real for r in poly.roots(tol=tol, maxprec=4 * flint.ctx.prec)),
                    key=lambda r: float(r.mid()))
        if len(rs) != 3:
            raise RuntimeError("expected three real roots")
        return tuple(rs)

    def base_point(self):
        """The turning point Q = qa (q2 = qa/eps, momenta 0) as a state.

        Returns
        -------
        list of flint.acb
            (q2, p2) when ``normal``, else (q1, q2, p1, p2) with q1 = 0.
        """
        flint = _flint()
        q2 = flint.acb(self.roots()[1] / self.eps)
        z = flint.acb(0)
        return [q2, z] if self.normal else [z, q2, z, z]

    def periods(self):
        """The real and the imaginary period of the plane motion.

        Complete elliptic integrals (arb's rigorous K) in the roots of :meth:`roots`.

        Returns
        -------
        T_R : flint.acb
            The real period (imaginary part 0).
        T_I : flint.acb
            The imaginary period (real part 0).
        """
        flint = _flint()
        Q1, qa, qb = self.roots()
        pref = 4 * flint.arb(1.5).sqrt() / (qb - Q1).sqrt()
        m = (qb - qa) / (qb - Q1)
        TR = pref * flint.acb(m).elliptic_k().real
        TI = pref * flint.acb(1 - m).elliptic_k().real
        return flint.acb(TR), flint.acb(0, TI)

    def lame_trace(self):
        """The predicted trace of the commutator [M_R, M_I] of the two period monodromies.

        Returns
        -------
        flint.acb
            2 cos(2π n) with n = (−1 + sqrt(1 + 48/eps))/2, i.e. n(n + 1) = 12/eps.
        """
        flint = _flint()
        n = (-1 + flint.acb(1 + 48 / flint.arb(self.eps)).sqrt()) / 2
        return 2 * (2 * flint.arb.pi() * n).cos()

    def vector(self, y):
        """Hamilton's equations: the plane motion, or the full field.

        Parameters
        ----------
        y : list of flint.acb or flint.acb_series
            (q2, p2) when ``normal``, else (q1, q2, p1, p2).

        Returns
        -------
        list of ring elements
            F(y), of the length of ``y``.
        """
        e, A = self.eps, self.ratio
        if self.normal:
            q2, p2 = y
            return [p2, -q2 - e * q2 * q2]
        q1, q2, p1, p2 = y
        return [p1, p2, -A * q1 - 2 * q1 * q2, -q2 - q1 * q1 - e * q2 * q2]

    def state_jacobian(self, y):
        """DF(y) of :meth:`vector` (when ``normal``, of the plane motion, not of the VE).

        Parameters
        ----------
        y : list of flint.acb
            The state.

        Returns
        -------
        list of lists of ring elements
            The rows of DF(y): 2 x 2 when ``normal``, else 4 x 4.
        """
        if self.normal:
            return [[0, 1], [-1 - 2 * self.eps * y[0], 0]]
        return self.linear(y)[0]

    def linear(self, y):
        """The linear system at y: the normal VE, or the full VE with its second order.

        Parameters
        ----------
        y : list of flint.acb or flint.acb_series
            The state.

        Returns
        -------
        A : list of lists of ring elements
            The rows of A: [[0, 1], [−(ratio + 2 q2), 0]] when ``normal``, else DF (4 x 4).
        B : list of 64 (0 or flint.arb), or None
            D²F flat, index ``16*i + 4*j + k`` (constant); None when ``normal``.
        """
        e, A = self.eps, self.ratio
        if self.normal:
            return [[0, 1], [-A - 2 * y[0], 0]], None
        q1, q2 = y[0], y[1]
        J = [[0, 0, 1, 0], [0, 0, 0, 1], [-A - 2 * q2, -2 * q1, 0, 0],
             [-2 * q1, -1 - 2 * e * q2, 0, 0]]
        B = [0] * 64
        for (i, j, k), v in {(2, 0, 1): -2, (2, 1, 0): -2, (3, 0, 0): -2, (3, 1, 1): -2 * e}.items():
            B[16 * i + 4 * j + k] = _flint().arb(v)
        return J, B

    def cubic(self, y):
        """D³F: zero (F is quadratic).

        Parameters
        ----------
        y : list of flint.acb or flint.acb_series
            The state (unused).

        Returns
        -------
        None
            C ≡ 0.
        """
        return None


class HypergeometricBallField(LinearBallField):
    """The Gauss hypergeometric equation z(1−z)w'' + (c − (a+b+1)z)w' − ab w = 0.

    As Y' = A(z) Y, Y = (w, w') (n = 2, order 1). Singular points 0, 1 (and ∞).

    Parameters
    ----------
    a, b, c : complex
        The parameters of the equation, taken as exact binary numbers.
    """

    n = 2
    order = 1

    def __init__(self, a, b, c):
        self.a, self.b, self.c = (complex(v) for v in (a, b, c))

    def coefficients(self, z):
        """A(z), with 1/(z(1−z)) written as 1/z + 1/(1−z) (tighter on boxes).

        Parameters
        ----------
        z : flint.acb or flint.acb_series
            The independent variable.

        Returns
        -------
        A : list of 2 lists of 2 ring elements
            [[0, 1], [ab/(z(1−z)), −(c − (a+b+1)z)/(z(1−z))]].
        B : None
            (order 1).
        """
        a, b, c = (_acb(v) for v in (self.a, self.b, self.c))
        # partial fractions: 1/(z(1−z)) = 1/z + 1/(1−z) is much tighter on boxes
        u, v = 1 / z, 1 / (1 - z)
        return [[0, 1], [a * b * (u + v), -(c * u + (c - a - b - 1) * v)]], None


# ---------------------------------------------------------------------------------------
# paths: exact polygons
# ---------------------------------------------------------------------------------------

def polygon_circle(center, start, n=16):
    """Closed polygon with n vertices on the circle about ``center`` through ``start``.

    Parameters
    ----------
    center : complex
        Centre of the circle.
    start : complex
        First (and last) vertex.
    n : int, optional
        Number of vertices.

    Returns
    -------
    list of n + 1 complex
        The vertices, counter-clockwise, from ``start`` back to ``start``.
    """
    c, s = complex(center), complex(start)
    v = s - c
    return [c + v * np.exp(2j * np.pi * k / n) for k in range(n)] + [s]


def lasso_polygon(start, center, radius, n=16):
    """A lasso: start, to a circle about ``center``, once around it, back to start.

    The circle is entered on the side facing ``start`` and travelled counter-clockwise as a
    polygon with n vertices (:func:`polygon_circle`).

    Parameters
    ----------
    start : complex
        First (and last) vertex; different from ``center``.
    center : complex
        Centre of the circle.
    radius : float
        Radius of the circle.
    n : int, optional
        Number of vertices on the circle.

    Returns
    -------
    list of n + 3 complex
        The vertices.
    """
    s, c = complex(start), complex(center)
    d = (s - c) / abs(s - c)
    p = c + radius * d
    ring = polygon_circle(c, p, n)
    return [s] + ring + [s]


def _reverse(vs):
    return list(reversed(vs))


def commutator_polygon(v1, v2):
    """The commutator loop γ1 γ2 γ1⁻¹ γ2⁻¹ as one polygon (inverses are the reversed polygons).

    Parameters
    ----------
    v1, v2 : list of complex
        Closed polygons from the same base point (vertex lists, first = last).

    Returns
    -------
    list of complex
        The vertices, ``2*len(v1) + 2*len(v2) - 3`` of them.
    """
    return v1 + v2[1:] + _reverse(v1)[1:] + _reverse(v2)[1:]




# ---------------------------------------------------------------------------------------
# the validated transport
# ---------------------------------------------------------------------------------------

@dataclass
class BallJet:
    """The jet of the flow map along a path, as balls.

    Returned by :func:`transport_ball_jet`; the fields are attributes of the same names.

    Parameters
    ----------
    P : flint.acb_mat, shape (n, n)
        Φ1, the 1-jet.
    Q : flint.acb_mat, shape (n, n²), or None
        Φ2, the 2-jet (row i, column ``n*a + b``); None at order 1.
    steps : int
        Number of validated steps.
    seconds : float
        Wall time.
    max_tail : float
        The largest truncation remainder added in a step.
    min_rho : float
        The smallest disc radius used (inf when there was no step).
    vertices : list of complex, optional
        The path's vertices (midpoints of the balls given).
    prec : int, optional
        Working precision in bits.
    y : list of flint.acb, or None, optional
        The end state for autonomous fields, else None.
    R : flint.acb_mat, shape (n, n³), or None, optional
        Φ3, the 3-jet (row i, column ``n**2*a + n*b + c``); None below order 3.
    """

    P: object
    Q: object
    steps: int
    seconds: float
    max_tail: float
    min_rho: float
    vertices: list = field(default_factory=list)
    prec: int = 160
    y: list | None = None
    R: object = None

    @property
    def order(self) -> int:
        """The jet's order: 1, 2 or 3."""
        return 1 if self.Q is None else (2 if self.R is None else 3)

    @property
    def jet(self) -> tuple:
        """The jet as the tuple ``(P,)``, ``(P, Q)`` or ``(P, Q, R)`` of the jet algebra
        (:func:`jet_compose`)."""
        return (self.P, self.Q, self.R)[:self.order]

    @property
    def n(self) -> int:
        """Dimension n (rows of P)."""
        return self.P.nrows()

    def phi1_minus_identity(self):
        """How far Φ1 is from the identity.

        Returns
        -------
        max_abs : float
            Upper bound of the largest ``|entry|`` of Φ1 − I.
        max_rad : float
            The largest ball radius (real or imaginary part) of its entries.
        """
        n = self.n
        with _prec(self.prec) as flint:
            I = flint.acb_mat(n, n, [1 if i == j else 0 for i in range(n) for j in range(n)])
            D = self.P - I
        ent = [D[i, j] for i in range(n) for j in range(n)]
        return (max(float(e.abs_upper()) for e in ent), max(_rad(e) for e in ent))

    def trace(self):
        """The trace of Φ1.

        Returns
        -------
        flint.acb
            tr Φ1.
        """
        with _prec(self.prec):
            return sum((self.P[i, i] for i in range(1, self.n)), self.P[0, 0])

    def phi_ball(self, order):
        """‖Φ_order‖_F, the Frobenius norm of the full tensor: sqrt(Σ re² + im²).

        Parameters
        ----------
        order : int
            2 (Φ2 = Q) or 3 (Φ3 = R).

        Returns
        -------
        flint.arb
            An enclosure of the norm; when the enclosure of the sum reaches 0, the ball
            centred at 0 with radius the square root of its upper bound.

        Raises
        ------
        ValueError
            When the jet's order is below ``order``, or ``order`` is not 2 or 3.
        """
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order!r}")
        M = self.Q if order == 2 else self.R
        if M is None:
            raise ValueError(f"this jet has order {self.order} (no Φ{order})")
        n = self.n
        with _prec(self.prec) as flint:
            tot = flint.arb(0)
            for i in range(n):
                for j in range(n ** order):
                    e = M[i, j]
                    tot += e.real * e.real + e.imag * e.imag     # (x ** 2 is nan on balls around 0)
            if tot > 0:
                return tot.sqrt()
            # the ball of the sum reaches 0: the norm lies in [0, sqrt(upper)]
            return flint.arb(0, math.sqrt(float(tot.abs_upper())) * (1 + 1e-12))

    def phi_norm(self, order):
        """Float bounds of ‖Φ_order‖_F (:meth:`phi_ball`), rounded outwards.

        Parameters
        ----------
        order : int
            2 or 3.

        Returns
        -------
        lower, upper : float
            ``lower <= ‖Φ_order‖_F <= upper``; lower >= 0.

        Raises
        ------
        ValueError
            When the jet's order is below ``order``.
        """
        b = self.phi_ball(order)
        lo = max(0.0, float(np.nextafter(float(b.lower()), -math.inf)))
        hi = float(np.nextafter(float(b.upper()), math.inf))
        return lo, hi

    def phi2_ball(self):
        """‖Φ2‖_F, the Frobenius norm of the full tensor: sqrt(Σ re² + im²).

        Returns
        -------
        flint.arb
            An enclosure of the norm (:meth:`phi_ball` with order 2).

        Raises
        ------
        ValueError
            When the jet has order 1 (Q is None).
        """
        return self.phi_ball(2)

    def phi3_ball(self):
        """‖Φ3‖_F, the Frobenius norm of the full order-3 tensor.

        Returns
        -------
        flint.arb
            An enclosure of the norm (:meth:`phi_ball` with order 3).

        Raises
        ------
        ValueError
            When the jet's order is below 3 (R is None).
        """
        return self.phi_ball(3)

    def phi3_norm(self):
        """Float bounds of ‖Φ3‖_F, rounded outwards.

        Returns
        -------
        lower, upper : float
            ``lower <= ‖Φ3‖_F <= upper``; lower >= 0.

        Raises
        ------
        ValueError
            When the jet's order is below 3 (R is None).
        """
        return self.phi_norm(3)

    def phi2_norm(self):
        """Float bounds of ‖Φ2‖_F (:meth:`phi2_ball`), rounded outwards.

        Returns
        -------
        lower, upper : float
            ``lower <= ‖Φ2‖_F <= upper``; lower >= 0.

        Raises
        ------
        ValueError
            When the jet has order 1 (Q is None).
        """
        return self.phi_norm(2)

    def max_radius(self):
        """The largest ball radius (real or imaginary part) over the entries of P, Q and R.

        Returns
        -------
        float
            The radius.
        """
        n = self.n
        ent = [self.P[i, j] for i in range(n) for j in range(n)]
        if self.Q is not None:
            ent += [self.Q[i, j] for i in range(n) for j in range(n * n)]
        if self.R is not None:
            ent += [self.R[i, j] for i in range(n) for j in range(n ** 3)]
        return max(_rad(e) for e in ent)

    def radius(self, order):
        """The largest ball radius (real or imaginary part) over the entries of Φ_order.

        Parameters
        ----------
        order : int
            1, 2 or 3 (at most the jet's order).

        Returns
        -------
        float
            The radius.
        """
        M = self.jet[order - 1]
        n = self.n
        return max(_rad(M[i, j]) for i in range(n) for j in range(n ** order))

    def tensors(self):
        """The midpoints of the balls as the float engine's derivative tensors.

        Returns
        -------
        list of ndarray of complex128
            ``[Φ1 (n, n), Φ2 (n, n, n), Φ3 (n, n, n, n)]`` up to the jet's order (the
            convention of ``narrowflow.monodromy.jets``: Φ_j[i, a, b, ...]).
        """
        n = self.n
        out = []
        for j, M in enumerate(self.jet, start=1):
            A = np.array([[complex(M[i, c].mid()) for c in range(n ** j)] for i in range(n)])
            out.append(A.reshape((n,) * (j + 1)))
        return out

    def radii(self):
        """The ball radii of the entries, shaped like :meth:`tensors`.

        Returns
        -------
        list of ndarray of float64
            Per order, the larger of the real and imaginary radius of each entry.
        """
        n = self.n
        return [np.array([[_rad(M[i, c]) for c in range(n ** j)] for i in range(n)])
                .reshape((n,) * (j + 1)) for j, M in enumerate(self.jet, start=1)]

    def numpy(self):
        """The midpoints of the balls as arrays.

        Returns
        -------
        P : ndarray of complex128, shape (n, n)
            Φ1.
        Q : ndarray of complex128, shape (n, n, n), or None
            Φ2, ``Q[i, a, b]``; None at order 1.
        """
        n = self.n
        P = np.array([[complex(self.P[i, j].mid()) for j in range(n)] for i in range(n)])
        if self.Q is None:
            return P, None
        Q = np.array([[complex(self.Q[i, j].mid()) for j in range(n * n)] for i in range(n)])
        return P, Q.reshape(n, n, n)


def _rad(z):
    return max(float(z.real.rad()), float(z.imag.rad()))


def _fro_upper(M, rows, cols):
    return math.sqrt(sum(float(M[i, j].abs_upper()) ** 2 for i in range(rows) for j in range(cols)))


def _ball_mat(rows, cols, t):
    flint = _flint()
    b = flint.acb(flint.arb(0, t), flint.arb(0, t))
    return flint.acb_mat(rows, cols, [b] * (rows * cols))


def _up(v):
    """A float upper bound of a non-negative float computed in round-to-nearest (1 ulp-ish)."""
    return float(np.nextafter(np.nextafter(v, math.inf), math.inf)) if v > 0 else v


MAX_ALPHA_RHO = 8.0     # a disc with α ρ above this is shrunk (e^8 ≈ 3e3 in the remainder)


def _series_conv(L, Rt, k, start=0):
    """Σ_{l=start}^{k} L[l] Rt[k − l] (matrix products; None when the sum is empty)."""
    acc = None
    for l in range(start, k + 1):
        t = L[l] * Rt[k - l]
        acc = t if acc is None else acc + t
    return acc


def _order3_coefficients(loc, P, Q, K, n, flint):
    """Taylor coefficients R_0..R_K (n, n³) of the order-3 system
    R' = A R + B(Q, P) + B(Q, P)(a c b) + B(Q, P)(b c a) + C(P, P, P), R(0) = 0, from those of
    P and Q (column index ``n**2*a + n*b + c``)."""
    An, Bn, Cn = loc.An, loc.Bn, loc.Cn
    n2, n3 = n * n, n ** 3
    PT = [p.transpose() for p in P]
    QT = [q.transpose() for q in Q]
    # Y_k[(i, j), c] = Σ_l B_l P_{k−l}, as Y'[j, (i, c)]
    Yp = []
    for k in range(K):
        acc = _series_conv(Bn, P, k)
        Yp.append(flint.acb_mat(n, n2, [acc[n * i + j, c] for j in range(n) for i in range(n)
                                        for c in range(n)]))
    # X_k[(a, b), (i, c)] = Σ_m Q_m[j, (a, b)] Y'_{k−m}[j, (i, c)]  (Q_0 = 0)
    forcing = []
    for k in range(K):
        X = _series_conv(QT, Yp, k, start=1)
        ent = []
        for i in range(n):
            for a in range(n):
                for b in range(n):
                    for c in range(n):
                        if X is None:
                            ent.append(0)
                        else:
                            ent.append(X[n * a + b, n * i + c] + X[n * a + c, n * i + b]
                                       + X[n * b + c, n * i + a])
        forcing.append(flint.acb_mat(n, n3, ent))
    if Cn is not None:
        # Z1_k[(i, j, k'), c] = Σ_l C_l P_{k−l}, as Z1'[k', (i, j, c)]
        Z1 = []
        for k in range(K):
            acc = _series_conv(Cn, P, k)
            Z1.append(flint.acb_mat(n, n3, [acc[n2 * i + n * j + kk, c] for kk in range(n)
                                            for i in range(n) for j in range(n)
                                            for c in range(n)]))
        # Z2_k[b, (i, j, c)] = Σ_m P_mᵀ Z1'_{k−m}, as Z2'[j, (i, b, c)]
        Z2 = []
        for k in range(K):
            acc = _series_conv(PT, Z1, k)
            Z2.append(flint.acb_mat(n, n3, [acc[b, n2 * i + n * j + c] for j in range(n)
                                            for i in range(n) for b in range(n)
                                            for c in range(n)]))
        # Z3_k[a, (i, b, c)] = Σ_m P_mᵀ Z2'_{k−m}, as W[i, (a, b, c)]
        for k in range(K):
            acc = _series_conv(PT, Z2, k)
            W = flint.acb_mat(n, n3, [acc[a, n2 * i + n * b + c] for i in range(n)
                                      for a in range(n) for b in range(n) for c in range(n)])
            forcing[k] = forcing[k] + W
    R = [flint.acb_mat(n, n3, [0] * (n * n3))]
    for k in range(K):
        acc = forcing[k]
        for l in range(0, k):          # R_0 = 0
            acc = acc + An[l] * R[k - l]
        R.append(acc * flint.acb(flint.arb(1) / (k + 1)))
    return R


def _step(loc, h, rho, K, n, flint, order=2):
    """One validated step from P = I, Q = 0, R = 0 (and the state's Taylor series) over h:
    (jet (P (n, n),) + (Q (n, n²),) at order >= 2 + (R (n, n³),) at order 3, end state or
    None, largest remainder added)."""
    An, Bn = loc.An, loc.Bn
    alpha, beta = loc.alpha, loc.beta
    n2 = n * n
    P0 = flint.acb_mat(n, n, [1 if i == j else 0 for i in range(n) for j in range(n)])
    # Taylor coefficients of P
    P = [P0]
    for k in range(K):
        acc = An[0] * P[k]
        for l in range(1, k + 1):
            acc = acc + An[l] * P[k - l]
        P.append(acc * flint.acb(flint.arb(1) / (k + 1)))
    Q = None
    if Bn is not None:
        # forcing M_k[i, (a, b)] = sum_{j,l} B[i,j,l] P[j,a] P[l,b]
        N = []
        for k in range(K):
            acc = Bn[0] * P[k]
            for l in range(1, k + 1):
                acc = acc + Bn[l] * P[k - l]
            # reshape N[(i, j), b] -> N'[j, (i, b)]
            N.append(flint.acb_mat(n, n2, [acc[n * i + j, b] for j in range(n) for i in range(n)
                                           for b in range(n)]))
        PT = [p.transpose() for p in P]
        M = []
        for k in range(K):
            acc = PT[0] * N[k]
            for m in range(1, k + 1):
                acc = acc + PT[m] * N[k - m]
            # M'[a, (i, b)] -> M[i, (a, b)]
            M.append(flint.acb_mat(n, n2, [acc[a, n * i + b] for i in range(n) for a in range(n)
                                           for b in range(n)]))
        Q = [flint.acb_mat(n, n2, [0] * (n * n2))]
        for k in range(K):
            acc = An[0] * Q[k] + M[k]
            for l in range(1, k + 1):
                acc = acc + An[l] * Q[k - l]
            Q.append(acc * flint.acb(flint.arb(1) / (k + 1)))
    # Gronwall + Cauchy remainder
    q = _up(float(h.abs_upper()) / rho)
    grow = math.exp(alpha * rho)
    MP = _up(math.sqrt(n) * grow * (1 + 1e-12))
    geo = q ** (K + 1) / (1 - q) * (1 + 1e-12)
    tP = _up(MP * geo)
    SP = P[K]
    for k in range(K - 1, -1, -1):
        SP = SP * h + P[k]
    SP = SP + _ball_mat(n, n, tP)
    tails = [tP]
    SQ = None
    if Q is not None:
        MQ = _up((rho * beta * MP * MP) * grow * (1 + 1e-12))
        tQ = _up(MQ * geo)
        SQ = Q[K]
        for k in range(K - 1, -1, -1):
            SQ = SQ * h + Q[k]
        SQ = SQ + _ball_mat(n, n2, tQ)
        tails.append(tQ)
    jet = (SP,) if Q is None else (SP, SQ)
    if Q is not None and order >= 3:
        R = _order3_coefficients(loc, P, Q, K, n, flint)
        # Gronwall: ‖R'‖ <= α‖R‖ + 3 β M_Q M_P + γ M_P³ on the disc, R(0) = 0
        MR = _up((rho * (3 * beta * MQ * MP + loc.gamma * MP ** 3)) * grow * (1 + 1e-12))
        tR = _up(MR * geo)
        SR = R[K]
        for k in range(K - 1, -1, -1):
            SR = SR * h + R[k]
        SR = SR + _ball_mat(n, n ** 3, tR)
        tails.append(tR)
        jet = (SP, SQ, SR)
    y1 = None
    if loc.yn is not None:
        y1 = []
        for c, M_i in zip(loc.yn, loc.y_bound):
            t = _up(M_i * geo)
            s = c[K]
            for k in range(K - 1, -1, -1):
                s = s * h + c[k]
            y1.append(_pad_ball(s, t))
            tails.append(t)
    return jet, y1, max(tails)


def transport_ball_jet(field, vertices, *, y0=None, K=40, kappa=4.0, rho_max=0.4, prec=160):
    """The jet of the flow map along a polygon, as balls (the validated integrator).

    From P = I, Q = 0 (and R = 0 at order 3) at ``vertices[0]``, along the polygon in the
    field's independent variable (w, z or complex time). The jet's order is ``field.order``
    (order 3: autonomous fields only). Each step's disc starts at radius ``rho_max`` and is
    halved until ``field.local`` accepts it with ``α ρ <= MAX_ALPHA_RHO``; the steps' jets
    are composed by a product tree.

    Parameters
    ----------
    field : LinearBallField or AutonomousBallField
        The field (any object with ``n``, ``order``, ``state_dim`` and ``local``).
    vertices : sequence of complex or flint.acb
        The polygon's vertices: numbers (taken as exact binary numbers) or balls (e.g. a
        period).
    y0 : sequence of state_dim complex or flint.acb, optional
        The initial state; required when ``field.state_dim > 0``, ignored otherwise.
    K : int, optional
        Taylor order.
    kappa : float, optional
        Disc radius / step length.
    rho_max : float, optional
        Largest disc radius.
    prec : int, optional
        Working precision in bits.

    Returns
    -------
    BallJet
        With the end state ``y`` for autonomous fields; Q None at order 1, R None below
        order 3.

    Raises
    ------
    ValueError
        When y0 is missing or has the wrong length, when an order-3 jet is asked of a field
        without a state, or when no admissible disc is found (radius below 1e-6: the path
        runs into a singular point).
    """
    flint = _flint()
    old = flint.ctx.prec
    flint.ctx.prec = int(prec)
    try:
        t0 = time.perf_counter()
        n = field.n
        order = int(getattr(field, "order", 1))
        if order >= 3 and not field.state_dim:
            raise ValueError("order-3 jets are implemented for autonomous fields (with a state)")
        if field.state_dim:
            if y0 is None or len(y0) != field.state_dim:
                raise ValueError(f"this field needs an initial state y0 of length {field.state_dim}")
            state = [_acb(v) for v in y0]
        else:
            state = None
        pieces = []         # each step's own jet (from the identity), composed at the end
        steps, max_tail, min_rho = 0, 0.0, math.inf
        vb = [_acb(v) for v in vertices]
        vs = [complex(v.mid()) for v in vb]
        for ia in range(len(vb) - 1):
            a, b, b_ball = vs[ia], vs[ia + 1], vb[ia + 1]
            wk, wk_ball = a, vb[ia]
            while True:
                rem = b - wk
                if abs(rem) == 0:
                    break
                rho = rho_max
                while True:
                    hlen = min(abs(rem), rho / kappa)
                    # step between exact binary points; the last one lands on the vertex
                    last = hlen >= abs(rem)
                    wnext = b if last else wk + rem / abs(rem) * hlen
                    h = (b_ball if last else flint.acb(wnext)) - wk_ball
                    if float(h.abs_upper()) > rho / kappa * (1 + 1e-9):
                        raise AssertionError("step longer than rho / kappa")
                    loc = field.local(wk_ball, state, rho, K)
                    # the Gronwall factor e^{αρ} multiplies every remainder: keep it moderate
                    if loc is not None and loc.alpha * rho <= MAX_ALPHA_RHO:
                        out = _step(loc, h, rho, K, n, flint, order)
                        break
                    rho /= 2
                    if rho < 1e-6:
                        raise ValueError(f"no admissible disc around {wk:.6g}: the path meets a "
                                         "singular point (a pole, a branch cut, a zero of the "
                                         "parametrisation)")
                pieces.append(out[0])
                if state is not None:
                    state = out[1]
                max_tail = max(max_tail, out[2])
                min_rho = min(min_rho, rho)
                steps += 1
                wk = wnext
                wk_ball = b_ball if last else flint.acb(wnext)
        # product tree (binary splitting): the ball radii grow with the absolute values of
        # partial products, not with the product of the steps' absolute values (wrapping)
        def tree(lo, hi):
            if hi - lo == 1:
                return pieces[lo]
            mid = (lo + hi) // 2
            return jet_compose(tree(mid, hi), tree(lo, mid), flint)

        if pieces:
            jet = tree(0, len(pieces))
        else:
            jet = (flint.acb_mat(n, n, [1 if i == j else 0 for i in range(n) for j in range(n)]),)
            jet += tuple(flint.acb_mat(n, n ** j, [0] * n ** (j + 1)) for j in range(2, order + 1))
        P = jet[0]
        Q = jet[1] if len(jet) > 1 else None
        R = jet[2] if len(jet) > 2 else None
        return BallJet(P, Q, steps, time.perf_counter() - t0, max_tail, min_rho, vs, int(prec),
                       state, R)
    finally:
        flint.ctx.prec = old


class _prec:
    """Context manager: flint.ctx.prec = bits inside."""

    def __init__(self, bits):
        self.bits = int(bits)

    def __enter__(self):
        flint = _flint()
        self.old = flint.ctx.prec
        flint.ctx.prec = self.bits
        return flint

    def __exit__(self, *exc):
        _flint().ctx.prec = self.old
        return False


# ---------------------------------------------------------------------------------------
# jet algebra in balls, orders 1..3 (closed loops at one base point: composition is exact
# algebra). A jet is a tuple (P,), (P, Q) or (P, Q, R): P (n, n), Q (n, n²), R (n, n³),
# Q[i, n a + b] = Φ2[i, a, b], R[i, n² a + n b + c] = Φ3[i, a, b, c] (the float engine's
# tensors, narrowflow.monodromy.jets, reshaped row-major)
# ---------------------------------------------------------------------------------------

def _kron(X, Y, flint):
    """The Kronecker product of acb_mat X (r1, c1) and Y (r2, c2): (r1 r2, c1 c2)."""
    r1, c1, r2, c2 = X.nrows(), X.ncols(), Y.nrows(), Y.ncols()
    xs = [[X[i, j] for j in range(c1)] for i in range(r1)]
    ys = [[Y[i, j] for j in range(c2)] for i in range(r2)]
    return flint.acb_mat(r1 * r2, c1 * c2, [xs[i][a] * ys[k][b] for i in range(r1)
                                            for k in range(r2) for a in range(c1)
                                            for b in range(c2)])


def _sym3(T, flint):
    """T[i, (a,b,c)] + T[i, (a,c,b)] + T[i, (b,c,a)] for T (n, n³): the three placements of
    the single index in B(Q, P) = Σ B_ijk Q_j,ab P_k,c."""
    n = T.nrows()
    n2 = n * n
    e = [[T[i, j] for j in range(n ** 3)] for i in range(n)]
    return flint.acb_mat(n, n ** 3, [e[i][n2 * a + n * b + c] + e[i][n2 * a + n * c + b]
                                     + e[i][n2 * b + n * c + a] for i in range(n)
                                     for a in range(n) for b in range(n) for c in range(n)])


def _jet_order(G):
    k = 0
    for M in G:
        if M is None:
            break
        k += 1
    return k


def jet_compose(G, H, flint):
    """The jet of G∘H, orders 1..3 (Faà di Bruno).

    ``(G1 H1, G1 H2 + G2 (H1 ⊗ H1), G1 H3 + sym G2 (H2 ⊗ H1) + G3 (H1 ⊗ H1 ⊗ H1))``, where
    sym adds the three placements of the single index (the float engine's chain rule;
    G2 symmetric in its last two indices, as the jets of maps are).

    Parameters
    ----------
    G, H : tuple of flint.acb_mat (or None)
        Jets ``(P, Q)`` or ``(P, Q, R)`` (or ``(P,)``), P of shape (n, n), Q (n, n²) or None,
        R (n, n³).
    flint : module
        The ``flint`` module.

    Returns
    -------
    tuple of flint.acb_mat (or None)
        The jet of the composition, of the lower of the two orders: ``(P, Q)`` at order 2
        and below (Q None at order 1, the 2-tuple of earlier versions), ``(P, Q, R)`` at
        order 3.
    """
    k = min(_jet_order(G), _jet_order(H))
    G1, H1 = G[0], H[0]
    if k < 2:
        return G1 * H1, None
    G2, H2 = G[1], H[1]
    H11 = _kron(H1, H1, flint)
    out2 = G1 * H2 + G2 * H11
    if k < 3:
        return G1 * H1, out2
    G3, H3 = G[2], H[2]
    out3 = G1 * H3 + _sym3(G2 * _kron(H2, H1, flint), flint) + G3 * _kron(H11, H1, flint)
    return G1 * H1, out2, out3


def jet_inverse(G, flint):
    """The jet of the inverse map, orders 1..3.

    Ψ1 = P⁻¹, Ψ2 = −Ψ1 Q (Ψ1 ⊗ Ψ1), Ψ3 = −Ψ1 [sym Q (Ψ2 ⊗ Ψ1) + R (Ψ1 ⊗ Ψ1 ⊗ Ψ1)]
    (from G∘Ψ = id order by order).

    Parameters
    ----------
    G : tuple of flint.acb_mat (or None)
        A jet ``(P, Q)`` or ``(P, Q, R)``, P of shape (n, n), Q (n, n²) or None, R (n, n³).
    flint : module
        The ``flint`` module.

    Returns
    -------
    tuple of flint.acb_mat (or None)
        The jet of the inverse, of the same order (Q None when G's is).

    Raises
    ------
    ZeroDivisionError
        When flint cannot prove P invertible.
    """
    k = _jet_order(G)
    P = G[0]
    Pi = P.inv()
    if k < 2:
        return Pi, None
    Q = G[1]
    Pi2 = _kron(Pi, Pi, flint)
    Psi2 = -(Pi * Q * Pi2)
    if k < 3:
        return Pi, Psi2
    R = G[2]
    rest = _sym3(Q * _kron(Psi2, Pi, flint), flint) + R * _kron(Pi2, Pi, flint)
    return Pi, Psi2, -(Pi * rest)


def commutator_jet(G1, G2, flint):
    """The jet of the commutator loop γ1 γ2 γ1⁻¹ γ2⁻¹, i.e. of the map g2⁻¹ ∘ g1⁻¹ ∘ g2 ∘ g1.

    Parameters
    ----------
    G1, G2 : tuple of flint.acb_mat (or None)
        The jets ``(P, Q)`` or ``(P, Q, R)`` of g1 and g2 (the maps of the loops γ1 and γ2).
    flint : module
        The ``flint`` module.

    Returns
    -------
    tuple of flint.acb_mat (or None)
        The jet of the commutator, of the lower of the two orders.
    """
    return jet_compose(jet_inverse(G2, flint), jet_compose(jet_inverse(G1, flint),
                                                           jet_compose(G2, G1, flint), flint), flint)


# ---------------------------------------------------------------------------------------
# the certificate
# ---------------------------------------------------------------------------------------

PREMISES = [
    ("P1", "proven analytically",
     "F = −(f − y)∇f is meromorphic on C⁴ (tanh is meromorphic), so Morales–Ramis–Simó / "
     "Ayoul–Zung apply to it near any integral curve avoiding its poles"),
    ("P2", "proven analytically",
     "I_j = a_j² − cosh(2 w_j x)/(2x²) are first integrals (dI_j/dt = 0, one line), the twin "
     "plane is invariant (neuron swap), so Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w) is an integral "
     "curve (the saddle's unstable manifold); the base point Γ(w0) is enclosed in balls of "
     "radius ~1e-48"),
    ("P3", "proven analytically + certified by enclosure",
     "the loops are closed polygons in the w-plane, so they are closed loops on Γ exactly; they "
     "avoid the singular points of the variational equation (zeros of g = F_w(Γ) and poles of F): "
     "certified, each step's disc is proven pole-free by ball evaluation"),
    ("P4", "proven analytically",
     "each loop's 1-jet is unipotent: it fixes F(Γ) and the covectors d(I1 ± I2) (first "
     "integrals, closed loop), commutes with the neuron swap, so it is [[1,*],[0,1]] on the "
     "symmetric plane; on the antisymmetric plane it has the eigenvalue 1 and determinant "
     "exp(∮ tr DF_anti dt) = exp(∮ −2x tanh(wx) dw) = exp(−4πi·k) = 1; unipotent elements lie "
     "in G⁰ (the Zariski closure of ⟨u⟩ is a connected unipotent group)"),
    ("P5", "standard theorem",
     "the monodromy of the (linearised) VE_2 along closed loops of Γ lies in its differential "
     "Galois group over the meromorphic functions on Γ (Morales-Ruiz 1999, §2.3)"),
    ("P6", "certified by enclosure",
     "the commutator's 2-jet differs from the identity's: ‖Φ2‖ has a positive certified lower "
     "bound (ball arithmetic with rigorous Taylor remainders: Gronwall a priori bounds on each "
     "step's disc and Cauchy estimates)"),
]


@dataclass
class Certificate:
    """What :func:`certify_integrability` proved, with every figure as an enclosure.

    ``str()`` (and ``repr()``) gives the full report: settings, loops, checks, premises and
    the conclusion. The fields are attributes of the same names.

    Parameters
    ----------
    flow : GradientFlow
        The flow certified.
    x, y : float
        The data point.
    w0 : float
        The base point in the w-plane.
    base_point : list of 4 flint.acb
        Γ(w0).
    loops : dict of str to list of complex
        The closed polygons of γ1 and γ2 in the w-plane, by loop name.
    jets : dict of str to BallJet
        Their 2-jets, by the same names.
    phi1_minus_identity : tuple of float
        ``(max |entry|, max radius)`` of Φ1 − I for the commutator
        (:meth:`BallJet.phi1_minus_identity`).
    phi2 : tuple of float
        ``(lower, upper)`` bounds of ‖Φ2‖_F for the commutator.
    certified : bool
        True only when the lower bound of ‖Φ2‖_F is positive and every self-check holds.
    seconds : float
        Wall time.
    settings : dict
        The keyword settings of the run (K, kappa, prec, n_polygon, star_radius, rho_max).
    unipotent_check : dict of str to tuple of (bool, float)
        Per loop: whether the balls of Φ1's characteristic polynomial coefficients contain
        those of (λ−1)⁴, and the largest distance of their midpoints.
    self_checks : dict of str to bool, optional
        Identities of the exact monodromy, by name: whether each holds within the balls.
    phi2_ball_str : str, optional
        The ball of ‖Φ2‖_F as python-flint prints it.
    """

    flow: object
    x: float
    y: float
    w0: float
    base_point: list
    loops: dict
    jets: dict
    phi1_minus_identity: tuple
    phi2: tuple
    certified: bool
    seconds: float
    settings: dict
    unipotent_check: dict
    self_checks: dict = field(default_factory=dict)
    phi2_ball_str: str = ""

    @property
    def conclusion(self) -> str:
        """The verdict: CERTIFIED, or NOT CERTIFIED with the reason (one sentence)."""
        if self.self_checks and not all(self.self_checks.values()):
            return ("NOT CERTIFIED: a self-check failed (an identity of the exact monodromy is "
                    "violated by the enclosures): " + ", ".join(k for k, v in self.self_checks.items()
                                                                if not v))
        if self.certified:
            return ("CERTIFIED: G⁰(VE_2) is non-abelian along Γ, so the gradient flow has no "
                    "complete set of meromorphic first integrals and commuting meromorphic "
                    "vector fields near Γ (non-integrable in the sense of Ayoul–Zung)")
        return ("NOT CERTIFIED: the enclosure of ‖Φ2‖ does not exclude 0 (premise P6 fails at "
                "these settings); nothing is claimed")

    def __str__(self):
        lo, hi = self.phi2
        e1, r1 = self.phi1_minus_identity
        L = ["Certificate (ball arithmetic, python-flint arb/acb; docs/certification.md)",
             f"  flow: {self.flow!r}",
             f"  data point x = {self.x!r}, y = {self.y!r}; curve Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w)",
             f"  base point w0 = {self.w0!r}: θ0 = Γ(w0) = "
             + ", ".join(str(b.real.mid())[:20] for b in self.base_point[:2]) + " (twin)",
             f"  settings: {self.settings}"]
        for name, vs in self.loops.items():
            j = self.jets[name]
            L.append(f"  loop {name}: {len(vs) - 1} polygon edges, {j.steps} validated steps, "
                     f"{j.seconds:.1f} s, largest Taylor remainder {j.max_tail:.1e}, "
                     f"largest ball radius {j.max_radius():.1e}")
        for name, (ok, dist) in self.unipotent_check.items():
            L.append(f"  1-jet of {name}: characteristic polynomial coefficients contain those of "
                     f"(λ−1)⁴: {ok} (consistency check of P4, |diff| <= {dist:.1e})")
        for k, v in self.self_checks.items():
            L.append(f"  self-check {k}: {'holds within the balls' if v else 'VIOLATED'}")
        L.append("  commutator γ1 γ2 γ1⁻¹ γ2⁻¹ (2-jets composed in ball arithmetic):")
        L.append(f"    Φ1 − I: entries within {e1:.2e} of 0, ball radius <= {r1:.1e}")
        L.append(f"    ‖Φ2‖_F ∈ {self.phi2_ball_str} ⊂ [{lo:.17g}, {hi:.17g}]; excludes 0: {lo > 0}")
        return "\n".join(L + _premise_lines(PREMISES, self))

    __repr__ = __str__


HH_PREMISES = [
    ("P1", "proven analytically",
     "F is polynomial (Hamilton's equations of a cubic H), hence meromorphic on C⁴"),
    ("P2", "proven analytically + enclosed",
     "the plane q1 = p1 = 0 is invariant (q1' = p1, p1' = −q1 (ratio + 2 q2)); on it the motion "
     "of energy E from the turning point q2 = qa/ε, p2 = 0 is an elliptic function of t whose "
     "real and imaginary periods T_R, T_I are complete elliptic integrals in the roots of "
     "Q³/3 + Q²/2 = E (Q = ε q2); the roots, the base point and the periods are enclosed in "
     "balls (arb's root isolation and elliptic K)"),
    ("P3", "proven analytically + certified by enclosure",
     "the loops are the time paths [0, T_R] and [0, T_I]: closed on the orbit Γ because the "
     "plane motion has these periods (the jet's enclosure holds for every end time in the "
     "period's ball); every step's disc is proven free of singularities (a Picard box: the "
     "solution is analytic there); each end state's balls overlap the base point's "
     "(consistency check)"),
    ("P4", "proven analytically (ratio 1, ε = 1 or 2)",
     "along the plane the VE_1 splits into the tangential (q2, p2) and the normal (q1, p1) "
     "block, each trace-free, so each has determinant 1 (Liouville). The tangential block fixes "
     "F(Γ) (closed loop), the normal block q1'' = −(1 + 2 q2) q1 has the single-valued "
     "solution q1 = q2 when ε = 2 (q2'' = −q2 − 2 q2²) and q1 = p2 when ε = 1 (then it is the "
     "tangential equation), non-zero at the base point: each block has the eigenvalue 1 and "
     "determinant 1, so every loop's 1-jet is unipotent, the linearised VE_k monodromy "
     "(block-triangular with diagonal blocks Sym^j Φ1) is unipotent, and unipotent elements "
     "lie in G⁰"),
    ("P5", "standard theorem",
     "the monodromy of the (linearised) VE_k along closed loops of Γ lies in its differential "
     "Galois group over the meromorphic functions on Γ (Morales-Ruiz 1999, §2.3)"),
    ("P6", "certified by enclosure",
     "the commutator's k-jet differs from the identity's for some k <= order: ‖Φk‖ (or "
     "Φ1 − I) has a positive certified lower bound (ball arithmetic with rigorous Taylor "
     "remainders)"),
]


@dataclass
class HenonHeilesCertificate:
    """What :func:`certify_integrability` proved for Hénon–Heiles, every figure an enclosure.

    The loops are the real and the imaginary period of the plane motion (the float engine's
    ``HenonHeiles.period_jets``); the commutator is γ_R γ_I γ_R⁻¹ γ_I⁻¹. ``str()`` (and
    ``repr()``) gives the full report. The fields are attributes of the same names.

    Parameters
    ----------
    system : HenonHeiles
        The system certified.
    order : int
        The jet order (2 or 3).
    base_point : list of 4 flint.acb
        The turning point (0, qa/ε, 0, 0).
    periods : tuple of 2 flint.acb
        ``(T_R, T_I)``.
    jets : dict of str to BallJet
        The jets along the two period loops.
    commutator : BallJet
        The commutator's jet.
    phi1_minus_identity : tuple of float
        ``(max |entry|, max radius)`` of Φ1 − I for the commutator.
    phi : dict of int to tuple of float
        ``{k: (lower, upper)}`` bounds of ‖Φk‖_F of the commutator, k = 2..order.
    decided_order : int or None
        The lowest k whose enclosure excludes the identity's (None: none does).
    certified : bool
        True only when ``decided_order`` is not None and every self-check holds.
    seconds : float
        Wall time.
    settings : dict
        The keyword settings of the run (K, kappa, prec, rho_max).
    self_checks : dict of str to bool
        Identities of the exact monodromy (P3, P4), by name: whether each holds within the
        balls.
    phi_ball_str : dict of int to str, optional
        The balls of ‖Φk‖_F as python-flint prints them.
    """

    system: object
    order: int
    base_point: list
    periods: tuple
    jets: dict
    commutator: object
    phi1_minus_identity: tuple
    phi: dict
    decided_order: int | None
    certified: bool
    seconds: float
    settings: dict
    self_checks: dict
    phi_ball_str: dict = field(default_factory=dict)

    @property
    def conclusion(self) -> str:
        """The verdict: CERTIFIED, or NOT CERTIFIED with the reason (one sentence)."""
        if not all(self.self_checks.values()):
            return ("NOT CERTIFIED: a self-check failed (an identity of the exact monodromy is "
                    "violated by the enclosures): " + ", ".join(k for k, v in self.self_checks.items()
                                                                if not v))
        if self.certified:
            k = self.decided_order
            return (f"CERTIFIED: G⁰(VE_{k}) is non-abelian along the plane orbit Γ, so this "
                    "Hénon–Heiles system has no complete set of meromorphic first integrals in "
                    "involution near Γ (Morales-Ruiz–Ramis–Simó)")
        return (f"NOT CERTIFIED: no enclosure of the commutator's jet up to order {self.order} "
                "excludes the identity's (premise P6 fails at this order and these settings); "
                "nothing is claimed")

    def __str__(self):
        hh = self.system
        e1, r1 = self.phi1_minus_identity
        TR, TI = self.periods
        L = ["Certificate (ball arithmetic, python-flint arb/acb; docs/certification.md)",
             f"  system: Hénon–Heiles, ε = {hh.eps!r}, ratio = {hh.ratio!r}, energy = {hh.energy!r}; "
             f"the plane orbit q1 = p1 = 0, order {self.order}",
             f"  base point (turning point): q2 = {float(self.base_point[1].real.mid()):.15g}; "
             f"periods T_R = {float(TR.real.mid()):.15g}, T_I = {float(TI.imag.mid()):.15g}i",
             f"  settings: {self.settings}"]
        for name, j in self.jets.items():
            L.append(f"  loop {name}: {j.steps} validated steps, {j.seconds:.1f} s, largest Taylor "
                     f"remainder {j.max_tail:.1e}, largest ball radius {j.max_radius():.1e}")
        for k, v in self.self_checks.items():
            L.append(f"  self-check {k}: {'holds within the balls' if v else 'VIOLATED'}")
        L.append("  commutator γ_R γ_I γ_R⁻¹ γ_I⁻¹ (jets composed in ball arithmetic):")
        L.append(f"    Φ1 − I: entries within {e1:.2e} of 0, ball radius <= {r1:.1e}")
        for k, (lo, hi) in self.phi.items():
            L.append(f"    ‖Φ{k}‖_F ∈ {self.phi_ball_str.get(k, '')} ⊂ [{lo:.17g}, {hi:.17g}]; "
                     f"excludes 0: {lo > 0}")
        return "\n".join(L + _premise_lines(HH_PREMISES, self))

    __repr__ = __str__


def _premise_lines(premises, cert) -> list:
    """The end of a certificate's text: each premise with its status (P6, the enclosure's,
    from ``cert.certified``), the conclusion and the time."""
    L = ["  premises:"]
    for key, status, text in premises:
        st = status if key != "P6" else ("certified by enclosure" if cert.certified
                                         else "NOT certified")
        L.append(f"    {key} [{st}] {text}")
    return L + [f"  {cert.conclusion}", f"  time: {cert.seconds:.1f} s (one core)"]


def _check_order(order):
    """``order`` as an int if it is 2 or 3; else a ValueError naming it."""
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) \
            or int(order) not in (2, 3):
        raise ValueError(f"order must be 2 or 3 (a certificate encloses a commutator's 2- or "
                         f"3-jet), got {order!r}")
    return int(order)


def _check_henon_heiles(system):
    """(eps, ratio, energy) of a Hénon–Heiles system whose unipotency proof (P4) is written."""
    eps, ratio = float(system.eps), float(system.ratio)
    if ratio != 1.0 or eps not in (1.0, 2.0):
        raise ValueError("certification of Hénon–Heiles is implemented for ratio 1 and ε = 1 or 2 "
                         "(premise P4, the unipotency of the period loops' 1-jets, rests on a "
                         f"single-valued solution of the normal VE there); got ε = {eps}, "
                         f"ratio = {ratio}")
    return eps, ratio, float(system.energy)


def _certify_henon_heiles(system, order, K, kappa, prec, rho_max):
    """The order-``order`` certificate for Hénon–Heiles along its plane orbit
    (:func:`certify_integrability`)."""
    eps, ratio, energy = _check_henon_heiles(system)
    t0 = time.perf_counter()
    fld = HenonHeilesBallField(eps, ratio, energy, normal=False, order=order)
    with _prec(prec):
        y0 = fld.base_point()
        TR, TI = fld.periods()
    JR, JI, CJ = commutator_enclosure(fld, [0, TR], [0, TI], K=K, kappa=kappa,
                                      rho_max=rho_max, prec=prec, y0=y0)
    with _prec(prec) as flint:
        Fv = flint.acb_mat(4, 1, fld.vector(y0))
        # the normal block's single-valued solution at the base point (P4): q1 = q2 (ε = 2),
        # q1 = p2 (ε = 1), as a vector (q1, q2, p1, p2)
        q2, p2 = y0[1], y0[3]
        if eps == 2.0:
            v = flint.acb_mat(4, 1, [q2, 0, p2, 0])
        else:
            v = flint.acb_mat(4, 1, [p2, 0, fld.vector(y0)[3], 0])
        checks = {}
        for name, J in (("γ_R", JR), ("γ_I", JI)):
            D = J.P * Fv - Fv
            checks[f"Φ1({name}) F(y0) = F(y0)"] = all(D[i, 0].contains(0) for i in range(4))
            D = J.P * v - v
            checks[f"Φ1({name}) fixes the normal VE's single-valued solution"] = all(
                D[i, 0].contains(0) for i in range(4))
            checks[f"charpoly Φ1({name}) ∋ (λ−1)⁴"] = _unipotent_consistent(J.P, flint)[0]
    phi, balls = {}, {}
    for k in range(2, order + 1):
        phi[k] = CJ.phi_norm(k)
        balls[k] = str(CJ.phi_ball(k))
    e1, r1 = CJ.phi1_minus_identity()
    decided = None
    with _prec(prec) as flint:
        I = flint.acb_mat(4, 4, [1 if i == j else 0 for i in range(4) for j in range(4)])
        D1 = CJ.P - I
        if not all(D1[i, j].contains(0) for i in range(4) for j in range(4)):
            decided = 1
    if decided is None:
        decided = next((k for k, (lo, _) in phi.items() if lo > 0), None)
    return HenonHeilesCertificate(
        system=system, order=order, base_point=y0, periods=(TR, TI),
        jets={"γ_R (real period)": JR, "γ_I (imaginary period)": JI}, commutator=CJ,
        phi1_minus_identity=(e1, r1), phi=phi, decided_order=decided,
        certified=bool(decided is not None and all(checks.values())),
        seconds=time.perf_counter() - t0, self_checks=checks, phi_ball_str=balls,
        settings=dict(K=K, kappa=kappa, prec=prec, rho_max=rho_max))


def _check_one_point_flow(flow):
    net = getattr(flow, "network", None)
    data = getattr(flow, "data", None)
    if net is None or data is None:
        raise TypeError(f"flow must be a GradientFlow or a HenonHeiles system, got "
                        f"{type(flow).__name__}")
    why = []
    if net.width != 2:
        why.append(f"width {net.width} (needs 2)")
    if net.activation.name != "tanh":
        why.append(f"activation {net.activation.name} (needs tanh)")
    if net.bias:
        why.append("biases (needs none)")
    if net.input_dim != 1 or net.output_dim != 1:
        why.append("input/output dimension (needs 1, 1)")
    if data.n != 1:
        why.append(f"{data.n} data points (needs exactly 1: the closed-form curve and the "
                   "analytic unipotency proof rest on its first integrals)")
    if flow.weight_decay != 0:
        why.append("weight decay (needs 0)")
    if why:
        raise ValueError("certification is implemented for one-data-point width-2 tanh networks "
                         "without bias or weight decay; this flow has " + ", ".join(why))
    x = float(np.asarray(data.x).ravel()[0])
    y = float(np.asarray(data.y).ravel()[0])
    if x == 0 or x * y <= 0:
        raise ValueError(f"needs x y > 0 (the twin-plane saddle's unstable branch a = sinh(wx)/x); "
                         f"got x = {x}, y = {y}")
    return x, y


def _default_w0(flow):
    """w at the float engine's base point z0 = 0.6 R of the Koenigs series (so the figures
    can be compared with saddle_unstable_check's)."""
    from narrowflow.model import Twin
    from .koenigs import koenigs_series
    S = koenigs_series(flow, order=400, subspace=Twin(flow.network, 0, 1))
    sing = S.singularities()
    R = min(abs(s.z) for s in sing) if sing else S.radius()[0]
    return float(S(0.6 * R)[1].real)


def _unipotent_consistent(P, flint):
    """Whether the balls of P's characteristic polynomial coefficients contain those of
    (λ−1)⁴, and the largest distance of their midpoints."""
    cp = P.charpoly()
    ref = [1, -4, 6, -4, 1]
    co = list(cp.coeffs())[::-1]            # leading first
    ok = all(c.contains(flint.acb(r)) for c, r in zip(co, ref))
    dist = max(abs(complex(c.mid()) - r) for c, r in zip(co, ref))
    return bool(ok), float(dist)


def commutator_enclosure(field, v1, v2, *, K=56, kappa=4.0, rho_max=0.4, prec=160, y0=None):
    """Ball jets (order ``field.order``, up to 3) along two loops and of their commutator
    γ1 γ2 γ1⁻¹ γ2⁻¹.

    The commutator's jet, of the map g2⁻¹ ∘ g1⁻¹ ∘ g2 ∘ g1, is composed in ball arithmetic
    (:func:`commutator_jet`: exact algebra on enclosures, no float64 cancellation issue).

    For a field without a state the polygons must be closed (first vertex = last). For an
    autonomous field (complex time) a loop is a time path whose orbit closes, e.g. ``[0, T]``
    for a period T: that closure is the caller's premise (a period known analytically); it
    is checked here only for consistency, by requiring each end state's balls to overlap
    y0's.

    Parameters
    ----------
    field : LinearBallField or AutonomousBallField
        The field, e.g. OnePointTwinField, or HenonHeilesBallField / NetworkBallField with
        ``y0``.
    v1, v2 : list of complex or flint.acb
        The loops: closed polygons from the same base point (fields without a state), or
        time paths from the same start (autonomous fields).
    K : int, optional
        Taylor order.
    kappa : float, optional
        Disc radius / step length.
    rho_max : float, optional
        Largest disc radius.
    prec : int, optional
        Working precision in bits.
    y0 : sequence of state_dim complex or flint.acb, optional
        The base state (autonomous fields only; required for them).

    Returns
    -------
    J1, J2 : BallJet
        The jets along v1 and v2.
    C : BallJet
        The commutator's jet (steps and seconds are those of J1 and J2 together,
        ``vertices`` empty; the composition time is included in ``seconds``).

    Raises
    ------
    ValueError
        When v1, v2 are not closed polygons from the same base point (fields without a
        state), when an end state's balls miss y0 (autonomous fields), or when
        :func:`transport_ball_jet` finds no admissible disc.
    """
    stateful = bool(getattr(field, "state_dim", 0))
    start = [complex(_acb(v[0]).mid()) for v in (v1, v2)]
    if stateful:
        if y0 is None:
            raise ValueError("an autonomous field needs the base state y0")
        if start[0] != start[1]:
            raise ValueError("v1 and v2 must start at the same time")
    elif start[0] != start[1] or v1[0] != v1[-1] or v2[0] != v2[-1]:
        raise ValueError("v1 and v2 must be closed polygons from the same base point")
    kw = dict(K=K, kappa=kappa, rho_max=rho_max, prec=prec)
    if stateful:
        kw["y0"] = y0
    J1 = transport_ball_jet(field, v1, **kw)
    J2 = transport_ball_jet(field, v2, **kw)
    t0 = time.perf_counter()
    with _prec(prec) as flint:
        if stateful:
            yb = [_acb(v) for v in y0]
            for name, J in (("v1", J1), ("v2", J2)):
                if not all(e.overlaps(b) for e, b in zip(J.y, yb)):
                    raise ValueError(f"the orbit along {name} does not return to y0 (its end "
                                     "state's balls miss y0): not a loop")
        C = commutator_jet(J1.jet, J2.jet, flint)
    CJ = BallJet(C[0], C[1], J1.steps + J2.steps,
                 J1.seconds + J2.seconds + time.perf_counter() - t0,
                 max(J1.max_tail, J2.max_tail), min(J1.min_rho, J2.min_rho), [], int(prec),
                 None, C[2] if len(C) > 2 else None)
    return J1, J2, CJ


def certify_integrability(flow, *, order=2, w0=None, K=56, kappa=4.0, prec=160, n_polygon=16,
                          star_radius=0.22, rho_max=None):
    """Certify in ball arithmetic that G⁰(VE_k) is non-abelian along an integral curve.

    Two cases are implemented, each with its premises proven analytically or certified
    (docs/certification.md):

    - a one-data-point width-2 tanh network (the package's one-data-point NF4 question),
      ``order=2``. Loops on Γ (closed polygons in the w-plane from w0): γ1 around w = 0 (the
      saddle; a regular n_polygon-gon through w0), γ2 around the pole ``w* = iπ/(2x)`` of tanh
      (a lasso whose ring has radius ``star_radius·|w*|``). Their 2-jets are transported with
      rigorous remainders (:func:`transport_ball_jet`), the commutator's 2-jet composed in
      ball arithmetic (:func:`commutator_enclosure`). Returns a :class:`Certificate`.
    - Hénon–Heiles (a ``narrowflow.monodromy.HenonHeiles`` system) with ratio 1 and ε = 2
      (non-integrable; its first VE is abelian, so the decision needs ``order=3``) or ε = 1
      (integrable: the enclosures contain the identity's jet, a negative control), along the
      plane orbit; the loops are its real and imaginary periods. Returns a
      :class:`HenonHeilesCertificate`; ``w0``, ``n_polygon`` and ``star_radius`` are unused.

    Parameters
    ----------
    flow : GradientFlow or HenonHeiles
        A network flow: width 2, tanh, no bias, no weight decay, input and output dimension
        1, exactly one data point (x, y) with x y > 0. Or a Hénon–Heiles system with ratio 1
        and eps 1 or 2.
    order : int, optional
        The order k of the variational equation whose commutator is enclosed: 2 or 3. Order
        3 is implemented for Hénon–Heiles only (the one-point field carries VE_1 and VE_2).
    w0 : float, optional
        The base point on the real w axis (default: the float engine's, z0 = 0.6 R of the
        Koenigs series).
    K : int, optional
        Taylor order.
    kappa : float, optional
        Disc radius / step length.
    prec : int, optional
        Working precision in bits.
    n_polygon : int, optional
        Number of vertices of γ1 and of γ2's ring.
    star_radius : float, optional
        Radius of γ2's ring as a fraction of ``|w*|``.
    rho_max : float, optional
        Largest disc radius (default 0.4 for networks, 0.6 for Hénon–Heiles).

    Returns
    -------
    Certificate or HenonHeilesCertificate
        ``certified`` True only when an enclosure of the commutator's jet excludes the
        identity's and every self-check holds.

    Raises
    ------
    TypeError
        When ``flow`` is neither a GradientFlow nor a HenonHeiles system.
    ValueError
        When ``order`` is not 2 or 3, or is 3 for a network flow; for flows outside the
        implemented classes; or when a loop meets a singular point.
    """
    order = _check_order(order)
    from .systems import HenonHeiles
    if isinstance(flow, HenonHeiles):
        return _certify_henon_heiles(flow, order, K, kappa, prec, 0.6 if rho_max is None else rho_max)
    x, y = _check_one_point_flow(flow)
    if order != 2:
        raise ValueError(f"order={order} is not implemented for network flows: the one-point field "
                         "(OnePointTwinField) carries VE_1 and VE_2 only, without the D³F/g "
                         "coefficients and bounds along Γ(w); use order=2 (it decides the "
                         "one-data-point case)")
    rho_max = 0.4 if rho_max is None else rho_max
    t0 = time.perf_counter()
    if w0 is None:
        w0 = _default_w0(flow)
    w0 = float(w0)
    fld = OnePointTwinField(x, y)
    wstar = 1j * math.pi / (2 * x)
    g1v = polygon_circle(0.0, w0, n_polygon)
    g2v = lasso_polygon(w0, wstar, star_radius * abs(wstar), n_polygon)
    J1, J2, CJ = commutator_enclosure(fld, g1v, g2v, K=K, kappa=kappa, rho_max=rho_max,
                                      prec=prec)
    with _prec(prec) as flint:
        uni = {"γ1 (around w = 0)": _unipotent_consistent(J1.P, flint),
               "γ2 (around w*)": _unipotent_consistent(J2.P, flint)}
        base = fld.point(w0, prec)
        # self-checks: identities the exact monodromy satisfies (P4's proof) must hold inside
        # the balls; a failure means the enclosure is wrong and nothing is certified
        a, w = base[0], base[1]
        s_, r_ = (w * x).tanh(), a * (w * x).tanh() * 2 - y
        Fv = flint.acb_mat(4, 1, [-r_ * s_, -r_ * a * x * (1 - s_ * s_)] * 2)
        checks = {}
        for name, J in (("γ1", J1), ("γ2", J2)):
            D = J.P * Fv - Fv
            checks[f"Φ1({name}) F(θ0) = F(θ0)"] = all(D[i, 0].contains(0) for i in range(4))
        for name, (ok, _) in uni.items():
            checks[f"charpoly Φ1({name.split()[0]}) ∋ (λ−1)⁴"] = ok
    lo, hi = CJ.phi2_norm()
    return Certificate(flow=flow, x=x, y=y, w0=w0, base_point=base,
                       loops={"γ1 (around w = 0)": g1v, "γ2 (around w* = iπ/(2x))": g2v},
                       jets={"γ1 (around w = 0)": J1, "γ2 (around w* = iπ/(2x))": J2},
                       phi1_minus_identity=CJ.phi1_minus_identity(), phi2=(lo, hi),
                       certified=bool(lo > 0 and all(checks.values())),
                       seconds=time.perf_counter() - t0, self_checks=checks,
                       phi2_ball_str=str(CJ.phi2_ball()),
                       settings=dict(K=K, kappa=kappa, prec=prec, n_polygon=n_polygon,
                                     star_radius=star_radius, rho_max=rho_max),
                       unipotent_check=uni)
