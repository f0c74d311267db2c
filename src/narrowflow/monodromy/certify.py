"""Validated (ball-arithmetic) 2-jet monodromy along an explicit integral curve, and the
certificate of non-integrability for one-data-point width-2 tanh networks (docs/certification.md).

Everything here is computed in arb/acb ball arithmetic (python-flint, the optional extra
``narrowflow[certify]``): every number is a ball that provably contains the exact value.
See docs/certification.md for the theorem chain and what each premise rests on.

The curve
---------
For one data point (x, y) and ``f(θ) = a1 tanh(w1 x) + a2 tanh(w2 x)`` the gradient field is
``F = −(f − y) ∇f``; each neuron keeps ``I_j = a_j² − cosh(2 w_j x) / (2 x²)`` (proof:
``dI_j/dt = −2 (f − y) a_j [tanh(w_j x) − sinh(w_j x) cosh(w_j x) sech²(w_j x)] = 0``), the
twin plane ``{a1 = a2, w1 = w2}`` is invariant (neuron swap symmetry), and on it the level
set of the saddle θ = 0 is ``a = ± sinh(w x)/x``. The unstable manifold of the saddle is the
branch ``Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w)``: the integral curve is a graph over the
w-plane, known in closed form. A closed loop in the w-plane that avoids the singular points
(zeros of ``g(w) = F_w(Γ(w))`` and poles of F) is a closed loop on the curve, exactly.

The transport
-------------
Along Γ, with w as the independent variable, the 1- and 2-jets of the flow map satisfy the
linear system (first and second variational equations)

    P' = A(w) P,                 A = DF(Γ(w)) / g(w)
    Q' = A(w) Q + B(w)(P, P),    B = D²F(Γ(w)) / g(w)

(P = Φ1, Q = Φ2 = ∂²φ/∂y0², the package's convention). Each step from w_k to w_k + h:

- Taylor coefficients of A and B at w_k (arb power series, exact up to ball rounding) and of
  P, Q by their recurrences, to order K;
- an a priori bound on the disc D = D(w_k, ρ), |h| <= ρ/κ: α >= sup_D ‖A‖_F and
  β >= sup_D ‖B‖_F (from the Taylor polynomials of A, B on D plus their tails, bounded by
  Cauchy estimates from a crude ball evaluation on D(w_k, 2ρ), which also proves that A and
  B have no pole there); Gronwall along rays gives sup_D ‖P‖ <= ‖P(w_k)‖ e^{αρ} = M_P and
  sup_D ‖Q‖ <= e^{αρ} (‖Q(w_k)‖ + ρ β M_P²) = M_Q;
- Cauchy estimates: every entry's n-th coefficient is at most M/ρ^n, so the truncation
  remainder is at most M q^{K+1} / (1 − q), q = |h|/ρ, added to every entry as a ball.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OnePointTwinField", "BallJet", "transport_ball_jet", "certify_integrability",
           "Certificate", "commutator_enclosure", "polygon_circle", "lasso_polygon",
           "commutator_polygon", "jet_compose", "jet_inverse", "have_flint", "PREMISES"]


def have_flint() -> bool:
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
# the field along the curve: A = DF/g, B = D2F/g as functions of w
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
class OnePointTwinField:
    """The one-data-point width-2 tanh gradient field along its twin-plane unstable manifold
    Γ(w) = (sinh(wx)/x, w, sinh(wx)/x, w). x, y: the data point (floats, taken exactly)."""

    x: float
    y: float

    def __post_init__(self):
        if not (math.isfinite(self.x) and self.x != 0 and math.isfinite(self.y)):
            raise ValueError(f"need a finite non-zero x and finite y, got x={self.x}, y={self.y}")

    def _xy(self):
        flint = _flint()
        return flint.arb(self.x), flint.arb(self.y)

    def point(self, w, prec=160):
        """Γ(w) as 4 acb balls at ``prec`` bits (w: an exact number or an acb)."""
        with _prec(prec) as flint:
            x, _ = self._xy()
            w = flint.acb(w)
            a = (w * x).sinh() / x
            return [a, w, a, w]

    def series(self, wk, K):
        """Taylor coefficients at wk: (A_n, Bs_n) for n = 0..K, A_n 4x4 and Bs_n 16x4 acb_mat
        (Bs rows (i, j), columns k)."""
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
        """Upper bounds of max |A_ij| and max |B_ijk| over the disc |w − wk| <= radius (inf when
        a pole may lie there).

        The disc's square is covered by grid x grid boxes (boxes missing the disc skipped); on
        each box, with u = w x = X + iY, the moduli |sinh u|² = sinh²X + sin²Y and
        |cosh u|² = sinh²X + cos²Y are enclosed in real interval arithmetic (tight), hence the
        moduli of tanh, sech², the 2nd and 3rd derivatives of tanh and a = sinh(u)/x; |r| =
        |f − y| is bounded below by |r(c)| − sup|r'| · (box half-diagonal), r' = 2 sinh u
        (1 + sech² u), and the entries of A = DF/g, B = D²F/g by the triangle inequality over
        their terms. A box where |cosh u| or |g| = |r a x sech²| is not bounded away from 0
        gives inf (so finite bounds also prove A and B analytic on the disc).
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
# paths: exact polygons
# ---------------------------------------------------------------------------------------

def polygon_circle(center, start, n=16):
    """Closed polygon with n vertices on the circle about ``center`` through ``start``
    (counter-clockwise), starting and ending at ``start``: list of complex vertices."""
    c, s = complex(center), complex(start)
    v = s - c
    return [c + v * np.exp(2j * np.pi * k / n) for k in range(n)] + [s]


def lasso_polygon(start, center, radius, n=16):
    """start -> the circle of ``radius`` about ``center`` (entered on the side facing start),
    once around counter-clockwise (polygon, n vertices), -> back to start."""
    s, c = complex(start), complex(center)
    d = (s - c) / abs(s - c)
    p = c + radius * d
    ring = polygon_circle(c, p, n)
    return [s] + ring + [s]


def _reverse(vs):
    return list(reversed(vs))


def commutator_polygon(v1, v2):
    """γ1 γ2 γ1⁻¹ γ2⁻¹ for closed polygons from the same base point."""
    return v1 + v2[1:] + _reverse(v1)[1:] + _reverse(v2)[1:]


# ---------------------------------------------------------------------------------------
# the validated transport
# ---------------------------------------------------------------------------------------

@dataclass
class BallJet:
    """The 2-jet of the flow map along a w-path as balls: P = Φ1 (4x4 acb_mat), Q = Φ2
    (4x16 acb_mat, row i, column 4a + b); steps, seconds, min/max step; max_tail: the largest
    truncation remainder added."""

    P: object
    Q: object
    steps: int
    seconds: float
    max_tail: float
    min_rho: float
    vertices: list = field(default_factory=list)
    prec: int = 160

    def phi1_minus_identity(self):
        """(max |entry| upper bound, max radius) of Φ1 − I."""
        with _prec(self.prec) as flint:
            I = flint.acb_mat(4, 4, [1 if i == j else 0 for i in range(4) for j in range(4)])
            D = self.P - I
        ent = [D[i, j] for i in range(4) for j in range(4)]
        return (max(float(e.abs_upper()) for e in ent), max(_rad(e) for e in ent))

    def phi2_ball(self):
        """‖Φ2‖_F (Frobenius norm of the full tensor) as an arb ball: sqrt(Σ re² + im²)."""
        with _prec(self.prec) as flint:
            tot = flint.arb(0)
            for i in range(4):
                for j in range(16):
                    e = self.Q[i, j]
                    tot += e.real * e.real + e.imag * e.imag     # (x ** 2 is nan on balls around 0)
            if tot > 0:
                return tot.sqrt()
            # the ball of Σ|Q|² reaches 0: ‖Φ2‖ ∈ [0, sqrt(upper)]
            return flint.arb(0, math.sqrt(float(tot.abs_upper())) * (1 + 1e-12))

    def phi2_norm(self):
        """(lower, upper) float bounds of ‖Φ2‖_F, rounded outwards."""
        b = self.phi2_ball()
        lo = max(0.0, float(np.nextafter(float(b.lower()), -math.inf)))
        hi = float(np.nextafter(float(b.upper()), math.inf))
        return lo, hi

    def max_radius(self):
        ent = [self.P[i, j] for i in range(4) for j in range(4)]
        ent += [self.Q[i, j] for i in range(4) for j in range(16)]
        return max(_rad(e) for e in ent)

    def numpy(self):
        """(Φ1 (4,4), Φ2 (4,4,4)) midpoints as complex128."""
        P = np.array([[complex(self.P[i, j].mid()) for j in range(4)] for i in range(4)])
        Q = np.array([[complex(self.Q[i, j].mid()) for j in range(16)] for i in range(4)])
        return P, Q.reshape(4, 4, 4)


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


def _step(field, wk, h, rho, K, P0, Q0, flint):
    """One validated step: (P(wk + h), Q(wk + h), tail)."""
    # a priori bounds on D(wk, rho): Taylor polynomial + Cauchy tail from D(wk, 2 rho)
    mA2, mB2 = field.crude_bounds(wk, 2 * rho * 1.000001)
    if not (math.isfinite(mA2) and math.isfinite(mB2)):
        return None
    An, Bn, Ac, Bc = field.series(wk, K)
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
            v = float((acc + m2 * math.sqrt(2) * tailfac).upper())   # box ⊂ disc of radius 2√2ρ? see note
            tot += v * v
        return _up(math.sqrt(tot))
    # note: the crude box of half-width 2ρ contains the disc D(wk, 2ρ), so m2 bounds |entry|
    # there, and the Cauchy tail on D(wk, ρ) is m2 * sum_{n>K} 2^{-n} = m2 2^{-K}; the extra
    # factor √2 above is only a margin.
    alpha = sup_entries(Ac, mA2)
    beta = sup_entries(Bc, mB2)
    # Taylor coefficients of P and Q
    P = [P0]
    for n in range(K):
        acc = An[0] * P[n]
        for l in range(1, n + 1):
            acc = acc + An[l] * P[n - l]
        P.append(acc * flint.acb(flint.arb(1) / (n + 1)))
    # forcing M_n[i, (a, b)] = sum_{j,k} B[i,j,k] P[j,a] P[k,b]
    N = []
    for n in range(K):
        acc = Bn[0] * P[n]
        for l in range(1, n + 1):
            acc = acc + Bn[l] * P[n - l]
        # reshape N[(i, j), b] -> N'[j, (i, b)]
        N.append(flint.acb_mat(4, 16, [acc[4 * i + j, b] for j in range(4) for i in range(4)
                                       for b in range(4)]))
    PT = [p.transpose() for p in P]
    M = []
    for n in range(K):
        acc = PT[0] * N[n]
        for m in range(1, n + 1):
            acc = acc + PT[m] * N[n - m]
        # M'[a, (i, b)] -> M[i, (a, b)]
        M.append(flint.acb_mat(4, 16, [acc[a, 4 * i + b] for i in range(4) for a in range(4)
                                       for b in range(4)]))
    Q = [Q0]
    for n in range(K):
        acc = An[0] * Q[n] + M[n]
        for l in range(1, n + 1):
            acc = acc + An[l] * Q[n - l]
        Q.append(acc * flint.acb(flint.arb(1) / (n + 1)))
    # Gronwall + Cauchy remainder
    q = _up(float(h.abs_upper()) / rho)
    grow = math.exp(alpha * rho)
    MP = _up(_fro_upper(P0, 4, 4) * grow * (1 + 1e-12))
    MQ = _up((_fro_upper(Q0, 4, 16) + rho * beta * MP * MP) * grow * (1 + 1e-12))
    geo = q ** (K + 1) / (1 - q) * (1 + 1e-12)
    tP, tQ = _up(MP * geo), _up(MQ * geo)
    hb = h
    SP = P[K]
    SQ = Q[K]
    for n in range(K - 1, -1, -1):
        SP = SP * hb + P[n]
        SQ = SQ * hb + Q[n]
    return SP + _ball_mat(4, 4, tP), SQ + _ball_mat(4, 16, tQ), max(tP, tQ)


def transport_ball_jet(field, vertices, *, K=40, kappa=4.0, rho_max=0.4, prec=160):
    """The 2-jet (P = Φ1, Q = Φ2) of the flow map along the polygon ``vertices`` in the w-plane,
    as balls, starting from P = I, Q = 0 at vertices[0]. Vertices are taken as exact binary
    numbers (their float values). Returns a :class:`BallJet`; raises ValueError when no
    pole-free disc can be found (the path runs into a singular point)."""
    flint = _flint()
    old = flint.ctx.prec
    flint.ctx.prec = int(prec)
    try:
        t0 = time.perf_counter()
        I = flint.acb_mat(4, 4, [1 if i == j else 0 for i in range(4) for j in range(4)])
        Z = flint.acb_mat(4, 16, [0] * 64)
        pieces = []         # each step's own 2-jet (from the identity), composed at the end
        steps, max_tail, min_rho = 0, 0.0, math.inf
        vs = [complex(v) for v in vertices]
        for a, b in zip(vs[:-1], vs[1:]):
            wk = a
            while True:
                rem = b - wk
                if abs(rem) == 0:
                    break
                rho = rho_max
                while True:
                    hlen = min(abs(rem), rho / kappa)
                    # step between exact binary points; the last one lands on the vertex
                    wnext = b if hlen >= abs(rem) else wk + rem / abs(rem) * hlen
                    h = flint.acb(wnext) - flint.acb(wk)          # exact (or a tight ball)
                    if float(h.abs_upper()) > rho / kappa * (1 + 1e-9):
                        raise AssertionError("step longer than rho / kappa")
                    out = _step(field, wk, h, rho, K, I, Z, flint)
                    if out is not None:
                        break
                    rho /= 2
                    if rho < 1e-6:
                        raise ValueError(f"no pole-free disc around w = {wk:.6g}: the path meets "
                                         "a singular point")
                pieces.append(out[:2])
                tail = out[2]
                max_tail = max(max_tail, tail)
                min_rho = min(min_rho, rho)
                steps += 1
                wk = wnext
        # product tree (binary splitting): the ball radii grow with the absolute values of
        # partial products, not with the product of the steps' absolute values (wrapping)
        def tree(lo, hi):
            if hi - lo == 1:
                return pieces[lo]
            mid = (lo + hi) // 2
            return jet_compose(tree(mid, hi), tree(lo, mid), flint)

        P, Q = tree(0, len(pieces)) if pieces else (I, Z)
        return BallJet(P, Q, steps, time.perf_counter() - t0, max_tail, min_rho, vs, int(prec))
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
# 2-jet algebra in balls (closed loops at one base point: composition is exact algebra)
# ---------------------------------------------------------------------------------------

def _kron(X, Y, flint):
    n = X.nrows()
    return flint.acb_mat(n * n, n * n, [X[j, a] * Y[k, b] for j in range(n) for k in range(n)
                                        for a in range(n) for b in range(n)])


def jet_compose(G, H, flint):
    """2-jet of G∘H from 2-jets (P, Q) (P 4x4, Q 4x16): (G1 H1, G1 H2 + G2 (H1 ⊗ H1))."""
    (G1, G2), (H1, H2) = G, H
    return G1 * H1, G1 * H2 + G2 * _kron(H1, H1, flint)


def jet_inverse(G, flint):
    """2-jet of the inverse map: (P⁻¹, −P⁻¹ Q (P⁻¹ ⊗ P⁻¹))."""
    P, Q = G
    Pi = P.inv()
    return Pi, -(Pi * Q * _kron(Pi, Pi, flint))


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
    """What :func:`certify_integrability` proved, with every figure as an enclosure."""

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
        L.append("  premises:")
        for key, status, text in PREMISES:
            st = status if key != "P6" else ("certified by enclosure" if self.certified
                                             else "NOT certified")
            L.append(f"    {key} [{st}] {text}")
        L.append(f"  {self.conclusion}")
        L.append(f"  time: {self.seconds:.1f} s (one core)")
        return "\n".join(L)

    __repr__ = __str__


def _check_one_point_flow(flow):
    net = getattr(flow, "network", None)
    data = getattr(flow, "data", None)
    if net is None or data is None:
        raise TypeError(f"flow must be a GradientFlow, got {type(flow).__name__}")
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


def commutator_enclosure(field, v1, v2, *, K=56, kappa=4.0, rho_max=0.4, prec=160):
    """(J1, J2, C): ball 2-jets along the closed polygons v1, v2 (same base point) and of the
    commutator loop γ1 γ2 γ1⁻¹ γ2⁻¹, i.e. the map g2⁻¹ ∘ g1⁻¹ ∘ g2 ∘ g1, composed in ball
    arithmetic (exact algebra on enclosures: no float64 cancellation issue here)."""
    if abs(complex(v1[0]) - complex(v2[0])) != 0 or v1[0] != v1[-1] or v2[0] != v2[-1]:
        raise ValueError("v1 and v2 must be closed polygons from the same base point")
    kw = dict(K=K, kappa=kappa, rho_max=rho_max, prec=prec)
    J1 = transport_ball_jet(field, v1, **kw)
    J2 = transport_ball_jet(field, v2, **kw)
    with _prec(prec) as flint:
        g1, g2 = (J1.P, J1.Q), (J2.P, J2.Q)
        C = jet_compose(jet_inverse(g2, flint), jet_compose(jet_inverse(g1, flint),
                                                            jet_compose(g2, g1, flint), flint), flint)
    CJ = BallJet(C[0], C[1], J1.steps + J2.steps, J1.seconds + J2.seconds,
                 max(J1.max_tail, J2.max_tail), min(J1.min_rho, J2.min_rho), [], int(prec))
    return J1, J2, CJ


def certify_integrability(flow, *, w0=None, K=56, kappa=4.0, prec=160, n_polygon=16,
                          star_radius=0.22, rho_max=0.4):
    """Certify in ball arithmetic that G⁰(VE_2) is non-abelian for a one-data-point width-2
    tanh network (the package's one-data-point NF4 question).

    Loops on Γ (closed polygons in the w-plane from w0): γ1 around w = 0 (the saddle; a
    regular n_polygon-gon through w0), γ2 around the pole w* = iπ/(2x) of tanh (a lasso whose
    ring has radius star_radius·|w*|). Their 2-jets are transported with rigorous remainders
    (:func:`transport_ball_jet`), the commutator's 2-jet composed in ball arithmetic.
    w0: base point (default: the float engine's, z0 = 0.6 R). K: Taylor order; kappa: disc
    radius / step; prec: bits. Returns a :class:`Certificate` (``certified`` True only when
    the enclosure of ‖Φ2‖ excludes 0). ValueError for flows outside the implemented class.
    """
    x, y = _check_one_point_flow(flow)
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
