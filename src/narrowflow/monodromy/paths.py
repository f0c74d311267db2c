"""Paths in the complex plane as functions of a real parameter ``s`` in [0, 1].

A path is a concatenation of elementary pieces, each either a straight
``Segment`` or a circular ``Arc``. ``p.z(s)`` and ``p.dz(s)`` (= dz/ds) are
complex and vectorised over arrays of ``s``; the share of ``[0, 1]`` given to
each piece is proportional to its length, so ``|dz/ds|`` is piecewise constant
(equal to the total length). ``p.breakpoints`` are the values of ``s`` where
pieces meet (dz/ds jumps there); integrators restart at them.

Elementary pieces also have a flat numeric encoding (``p.encode()``) so that
compiled transport code can evaluate ``z`` and ``dz`` without Python:

    kind 0, Segment: params (a, b, 0, 0, d)         z = a + (b - a) s                      + d sin(pi s)
    kind 1, Arc:     params (c, r, th0, th1, d)     z = c + r exp(i (th0 + (th1 - th0) s)) + d sin(pi s)

The last column ``d`` (the "bump", 0 for ordinary pieces) is a smooth
deformation that fixes the endpoints; ``Path.deformed`` uses it to check that
a monodromy matrix does not change under a small homotopy of its loop.

Build paths with ``segment``, ``arc``, ``circle``, ``polyline``, ``polygon``,
``lasso``, ``loop_around`` and ``as_path``; combine with ``+`` and
``reversed()``.
"""
from __future__ import annotations

import math
from numbers import Number
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Path", "Segment", "Arc", "segment", "arc", "circle", "polyline", "polygon",
    "lasso", "loop_around", "as_path", "KIND_SEGMENT", "KIND_ARC",
]

KIND_SEGMENT = 0
KIND_ARC = 1

# Endpoints of concatenated pieces must agree to this (relative to the scale
# of the points); a larger gap is a user error, not round-off.
_JOIN_RTOL = 1e-9


def _as_complex(x, name: str) -> complex:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (Number, np.number)):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    z = complex(x)
    if not (math.isfinite(z.real) and math.isfinite(z.imag)):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return z


def _as_real(x, name: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (Number, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if isinstance(x, (complex, np.complexfloating)):
        raise TypeError(f"{name} must be real, got complex {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


class Path:
    """A piecewise smooth path ``z(s)``, ``s`` in [0, 1], made of Segments and Arcs.

    Each piece gets a share of [0, 1] proportional to its length.

    Parameters
    ----------
    pieces : sequence of Path
        Paths to concatenate, in order (flattened into their elementary pieces); each must
        start where the previous one ends.

    Raises
    ------
    TypeError
        If a piece is not a Path.
    ValueError
        If ``pieces`` is empty or two consecutive pieces do not join.
    """

    def __init__(self, pieces: Sequence["Path"]):
        flat: list[Path] = []
        for p in pieces:
            if not isinstance(p, Path):
                raise TypeError(f"pieces must be Path objects, got {type(p).__name__}")
            flat.extend(p.pieces)
        if not flat:
            raise ValueError("pieces must not be empty")
        for prev, nxt in zip(flat[:-1], flat[1:]):
            scale = max(1.0, abs(prev.end), abs(nxt.start))
            if abs(prev.end - nxt.start) > _JOIN_RTOL * scale:
                raise ValueError(
                    f"pieces do not join: one ends at {prev.end}, the next starts at {nxt.start}")
        self._pieces = tuple(flat)
        lengths = np.array([p.length for p in flat], dtype=np.float64)
        # zero-length pieces get no share of s (they contribute nothing)
        total = lengths.sum()
        if total > 0:
            shares = lengths / total
        else:
            shares = np.full(len(flat), 1.0 / len(flat))
        bp = np.concatenate([[0.0], np.cumsum(shares)])
        bp[-1] = 1.0
        self._bp = bp

    # -- structure ------------------------------------------------------------
    @property
    def pieces(self) -> tuple["Path", ...]:
        """The elementary pieces (Segment / Arc), in order."""
        return self._pieces

    @property
    def breakpoints(self) -> np.ndarray:
        """float64 (m+1,): values of s where pieces meet, from 0 to 1."""
        return self._bp.copy()

    @property
    def start(self) -> complex:
        """The first point z(0)."""
        return self._pieces[0].start

    @property
    def end(self) -> complex:
        """The last point z(1)."""
        return self._pieces[-1].end

    @property
    def length(self) -> float:
        """Euclidean length of the path in the z-plane."""
        return float(sum(p.length for p in self._pieces))

    @property
    def is_closed(self) -> bool:
        """True when end == start in the z-plane (up to round-off)."""
        scale = max(1.0, abs(self.start), abs(self.end))
        return abs(self.end - self.start) <= 1e-9 * scale

    # -- evaluation -----------------------------------------------------------
    def _locate(self, s):
        s = np.asarray(s, dtype=np.float64)
        if np.any(~np.isfinite(s)) or np.any(s < -1e-12) or np.any(s > 1 + 1e-12):
            raise ValueError("s must lie in [0, 1]")
        idx = np.clip(np.searchsorted(self._bp, s, side="right") - 1, 0, len(self._pieces) - 1)
        width = self._bp[idx + 1] - self._bp[idx]
        safe = np.where(width > 0, width, 1.0)
        local = np.where(width > 0, (s - self._bp[idx]) / safe, 0.0)
        return s, idx, np.clip(local, 0.0, 1.0), width

    def z(self, s):
        """Point on the path.

        Parameters
        ----------
        s : float or array_like of float
            Path parameter(s) in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            z(s), same shape as ``s``.

        Raises
        ------
        ValueError
            If an ``s`` is outside [0, 1] or not finite.
        """
        s, idx, local, _ = self._locate(s)
        out = np.empty(s.shape, dtype=np.complex128)
        for k, p in enumerate(self._pieces):
            m = idx == k
            if np.any(m):
                out[m] = p.z(local[m])
        return out if out.ndim else complex(out)

    def dz(self, s):
        """Derivative dz/ds (one-sided at breakpoints: the piece on the right).

        Parameters
        ----------
        s : float or array_like of float
            Path parameter(s) in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            dz/ds, same shape as ``s``.

        Raises
        ------
        ValueError
            If an ``s`` is outside [0, 1] or not finite.
        """
        s, idx, local, width = self._locate(s)
        out = np.empty(s.shape, dtype=np.complex128)
        for k, p in enumerate(self._pieces):
            m = idx == k
            if np.any(m):
                w = width[m]
                out[m] = np.where(w > 0, p.dz(local[m]) / np.where(w > 0, w, 1.0), 0.0)
        return out if out.ndim else complex(out)

    def __call__(self, s):
        return self.z(s)

    # -- algebra --------------------------------------------------------------
    def reversed(self) -> "Path":
        """The same curve travelled backwards.

        Returns
        -------
        Path
            The reversed path.
        """
        return Path([p.reversed() for p in reversed(self._pieces)])

    def __add__(self, other) -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        return Path([self, other])

    def __neg__(self) -> "Path":
        return self.reversed()

    def __mul__(self, n) -> "Path":
        """``p * n``: the closed path p travelled n >= 1 times."""
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            return NotImplemented
        if n < 1:
            raise ValueError(f"repetition count must be >= 1, got {n}")
        if not self.is_closed and n > 1:
            raise ValueError("only a closed path can be repeated")
        return Path([self] * int(n))

    __rmul__ = __mul__

    def transformed(self, scale=1.0, shift=0.0) -> "Path":
        """The image under z -> scale * z + shift.

        Parameters
        ----------
        scale : complex, optional
            Non-zero factor.
        shift : complex, optional
            Translation.

        Returns
        -------
        Path
            The transformed path.

        Raises
        ------
        ValueError
            If ``scale`` is zero or either number is not finite.
        """
        scale = _as_complex(scale, "scale")
        shift = _as_complex(shift, "shift")
        if scale == 0:
            raise ValueError("scale must be non-zero")
        return Path([p.transformed(scale, shift) for p in self._pieces])

    def deformed(self, amount: float = 0.02, side: int = 1) -> "Path":
        """A homotopic copy with the same endpoints.

        Every piece is pushed sideways at its middle by the bump d sin(pi s).

        Parameters
        ----------
        amount : float, optional
            The push, in units of each piece's length.
        side : {1, -1}, optional
            +1 to the left of the direction of travel, -1 to the right.

        Returns
        -------
        Path
            The deformed path.

        Raises
        ------
        ValueError
            If ``side`` is not +1 or -1, or ``amount`` is not finite.
        """
        amount = _as_real(amount, "amount")
        if side not in (1, -1):
            raise ValueError(f"side must be +1 or -1, got {side!r}")
        out = []
        for p in self._pieces:
            t = complex(p.dz(0.5))  # the bump has zero derivative at s = 1/2
            n = 1j * t / abs(t) if t != 0 else 0.0
            out.append(p.with_bump(p.bump + side * amount * p.length * n))
        return Path(out)

    # -- numeric encoding -----------------------------------------------------
    def encode(self):
        """Flat encoding for compiled code (see the module docstring).

        Returns
        -------
        kinds : ndarray of int64, shape (m,)
            0 for a Segment, 1 for an Arc.
        params : ndarray of complex128, shape (m, 5)
            The piece's parameters and its bump.
        breakpoints : ndarray of float64, shape (m + 1,)
            Values of s where pieces meet.
        """
        kinds = np.array([p.kind for p in self._pieces], dtype=np.int64)
        params = np.array([(*p.params, p.bump) for p in self._pieces],
                          dtype=np.complex128).reshape(-1, 5)
        return kinds, params, self.breakpoints

    # -- diagnostics ----------------------------------------------------------
    def winding_number(self, point, n: int = 4096) -> float:
        """Winding number about ``point`` of the path closed by a straight chord.

        Parameters
        ----------
        point : complex
            The point.
        n : int, optional
            Sample intervals per piece.

        Returns
        -------
        float
            The winding number (an integer up to sampling error for a closed path).

        Raises
        ------
        ValueError
            If the path passes through ``point``.
        """
        point = _as_complex(point, "point")
        total = 0.0
        for p in self._pieces:
            zz = p.z(np.linspace(0.0, 1.0, n + 1)) - point
            if np.any(np.abs(zz) == 0):
                raise ValueError("the path passes through point")
            total += float(np.sum(np.angle(zz[1:] / zz[:-1])))
        if not self.is_closed:
            a, b = self.end - point, self.start - point
            total += float(np.angle(b / a))
        return total / (2 * np.pi)

    def distance_to(self, point, n: int = 2048) -> float:
        """Smallest distance from ``point`` to the path, sampled.

        Parameters
        ----------
        point : complex
            The point.
        n : int, optional
            Sample intervals per piece.

        Returns
        -------
        float
            The smallest distance to a sample point.
        """
        point = _as_complex(point, "point")
        return float(min(np.min(np.abs(p.z(np.linspace(0.0, 1.0, n + 1)) - point))
                         for p in self._pieces))

    def sample(self, n: int = 400) -> np.ndarray:
        """Points along the path for plotting.

        Parameters
        ----------
        n : int, optional
            Number of points, at equally spaced s.

        Returns
        -------
        ndarray of complex128, shape (n,)
            The points.
        """
        return np.asarray(self.z(np.linspace(0.0, 1.0, int(n))))

    def __repr__(self) -> str:
        if len(self._pieces) == 1:
            return repr(self._pieces[0])
        return (f"Path({len(self._pieces)} pieces, start={self.start:.6g}, "
                f"end={self.end:.6g}, length={self.length:.6g})")


class Segment(Path):
    """Straight segment from ``a`` to ``b``: z = a + (b - a) s + bump sin(pi s).

    Parameters
    ----------
    a, b : complex
        Start and end.
    bump : complex, optional
        Amplitude of the deformation bump sin(pi s).

    Raises
    ------
    TypeError
        If a value is not a number.
    ValueError
        If a value is not finite.
    """

    kind = KIND_SEGMENT

    def __init__(self, a, b, bump=0.0):
        self.a = _as_complex(a, "a")
        self.b = _as_complex(b, "b")
        self.bump = _as_complex(bump, "bump")
        self._pieces = (self,)
        self._bp = np.array([0.0, 1.0])

    @property
    def params(self):
        """The four encoded parameters ``(a, b, 0, 0)``."""
        return (self.a, self.b, 0.0, 0.0)

    @property
    def start(self):
        """The first point ``a``."""
        return self.a

    @property
    def end(self):
        """The last point ``b``."""
        return self.b

    @property
    def length(self):
        """The length ``|b - a|`` (of the undeformed segment)."""
        return abs(self.b - self.a)

    def z(self, s):
        """Point on the piece.

        Parameters
        ----------
        s : float or array_like of float
            Local parameter(s), in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            z(s), same shape as ``s``.
        """
        s = np.asarray(s, dtype=np.float64)
        out = self.a + (self.b - self.a) * s + self.bump * np.sin(np.pi * s)
        return out if np.ndim(out) else complex(out)

    def dz(self, s):
        """Derivative dz/ds.

        Parameters
        ----------
        s : float or array_like of float
            Local parameter(s), in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            dz/ds, same shape as ``s``.
        """
        s = np.asarray(s, dtype=np.float64)
        out = (self.b - self.a) + self.bump * np.pi * np.cos(np.pi * s) + np.zeros(s.shape)
        return out if np.ndim(out) else complex(out)

    def reversed(self):
        """The same segment travelled backwards (the bump kept).

        Returns
        -------
        Segment
            The reversed piece.
        """
        return Segment(self.b, self.a, self.bump)

    def with_bump(self, bump):
        """The same piece with another bump.

        Parameters
        ----------
        bump : complex
            Amplitude of the bump sin(pi s).

        Returns
        -------
        Segment
            The new piece.
        """
        return Segment(self.a, self.b, bump)

    def transformed(self, scale=1.0, shift=0.0):
        """The image under z -> scale * z + shift.

        Parameters
        ----------
        scale : complex, optional
            Non-zero factor.
        shift : complex, optional
            Translation.

        Returns
        -------
        Segment
            The transformed piece.
        """
        return Segment(scale * self.a + shift, scale * self.b + shift, scale * self.bump)

    def __repr__(self):
        extra = f", bump={self.bump:.3g}" if self.bump else ""
        return f"Segment({self.a:.6g} -> {self.b:.6g}{extra})"


class Arc(Path):
    """Circular arc: z = c + r exp(i (th0 + (th1 - th0) s)) + bump sin(pi s).

    th1 > th0 is counter-clockwise.

    Parameters
    ----------
    center : complex
        Centre c.
    radius : float
        Radius r (> 0).
    theta0, theta1 : float
        Start and end angles, in radians.
    bump : complex, optional
        Amplitude of the deformation bump sin(pi s).

    Raises
    ------
    TypeError
        If a value is not a number (or ``radius`` or an angle is complex).
    ValueError
        If a value is not finite or ``radius`` is not positive.
    """

    kind = KIND_ARC

    def __init__(self, center, radius, theta0, theta1, bump=0.0):
        self.bump = _as_complex(bump, "bump")
        self.center = _as_complex(center, "center")
        self.radius = _as_real(radius, "radius")
        if self.radius <= 0:
            raise ValueError(f"radius must be positive, got {radius!r}")
        self.theta0 = _as_real(theta0, "theta0")
        self.theta1 = _as_real(theta1, "theta1")
        self._pieces = (self,)
        self._bp = np.array([0.0, 1.0])

    @property
    def params(self):
        """The four encoded parameters ``(center, radius, theta0, theta1)``."""
        return (self.center, self.radius, self.theta0, self.theta1)

    @property
    def start(self):
        """The first point, at angle theta0."""
        return self.center + self.radius * complex(math.cos(self.theta0), math.sin(self.theta0))

    @property
    def end(self):
        """The last point, at angle theta1."""
        return self.center + self.radius * complex(math.cos(self.theta1), math.sin(self.theta1))

    @property
    def length(self):
        """The length ``radius * |theta1 - theta0|`` (of the undeformed arc)."""
        return self.radius * abs(self.theta1 - self.theta0)

    def z(self, s):
        """Point on the piece.

        Parameters
        ----------
        s : float or array_like of float
            Local parameter(s), in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            z(s), same shape as ``s``.
        """
        s = np.asarray(s, dtype=np.float64)
        out = (self.center + self.radius * np.exp(1j * (self.theta0 + (self.theta1 - self.theta0) * s))
               + self.bump * np.sin(np.pi * s))
        return out if np.ndim(out) else complex(out)

    def dz(self, s):
        """Derivative dz/ds.

        Parameters
        ----------
        s : float or array_like of float
            Local parameter(s), in [0, 1].

        Returns
        -------
        complex or ndarray of complex128
            dz/ds, same shape as ``s``.
        """
        s = np.asarray(s, dtype=np.float64)
        dth = self.theta1 - self.theta0
        out = (1j * dth * self.radius * np.exp(1j * (self.theta0 + dth * s))
               + self.bump * np.pi * np.cos(np.pi * s))
        return out if np.ndim(out) else complex(out)

    def reversed(self):
        """The same arc travelled backwards (the bump kept).

        Returns
        -------
        Arc
            The reversed piece.
        """
        return Arc(self.center, self.radius, self.theta1, self.theta0, self.bump)

    def with_bump(self, bump):
        """The same piece with another bump.

        Parameters
        ----------
        bump : complex
            Amplitude of the bump sin(pi s).

        Returns
        -------
        Arc
            The new piece.
        """
        return Arc(self.center, self.radius, self.theta0, self.theta1, bump)

    def transformed(self, scale=1.0, shift=0.0):
        """The image under z -> scale * z + shift.

        Parameters
        ----------
        scale : complex, optional
            Non-zero factor.
        shift : complex, optional
            Translation.

        Returns
        -------
        Arc
            The transformed piece.
        """
        # z -> scale z + shift maps the circle to one of radius |scale| r, angles + arg(scale)
        rot = math.atan2(scale.imag, scale.real)
        return Arc(scale * self.center + shift, abs(scale) * self.radius,
                   self.theta0 + rot, self.theta1 + rot, scale * self.bump)

    def __repr__(self):
        extra = f", bump={self.bump:.3g}" if self.bump else ""
        return (f"Arc(center={self.center:.6g}, r={self.radius:.6g}, "
                f"theta {self.theta0:.6g} -> {self.theta1:.6g}{extra})")


# ---------------------------------------------------------------------------
# constructors
# ---------------------------------------------------------------------------

def segment(a, b) -> Path:
    """Straight segment from ``a`` to ``b``.

    Parameters
    ----------
    a, b : complex
        Start and end.

    Returns
    -------
    Segment
        The segment.
    """
    return Segment(a, b)


def arc(center, radius, theta0, theta1) -> Path:
    """Arc of the circle ``|z - center| = radius`` from angle theta0 to theta1.

    Parameters
    ----------
    center : complex
        Centre of the circle.
    radius : float
        Radius (> 0).
    theta0, theta1 : float
        Start and end angles, in radians (theta1 > theta0: counter-clockwise).

    Returns
    -------
    Arc
        The arc.
    """
    return Arc(center, radius, theta0, theta1)


def circle(center, radius, start_angle=0.0, turns=1) -> Path:
    """Closed circle about ``center`` starting at angle ``start_angle``.

    Parameters
    ----------
    center : complex
        Centre.
    radius : float
        Radius (> 0).
    start_angle : float, optional
        Angle of the start (and end) point, in radians.
    turns : int, optional
        Number of turns (non-zero), negative = clockwise.

    Returns
    -------
    Arc
        One arc over ``turns`` full turns.

    Raises
    ------
    TypeError
        If ``turns`` is not an integer.
    ValueError
        If ``turns`` is zero or ``radius`` is not positive.
    """
    if isinstance(turns, (bool, np.bool_)) or not isinstance(turns, (int, np.integer)):
        raise TypeError(f"turns must be an integer, got {type(turns).__name__}")
    if turns == 0:
        raise ValueError("turns must be non-zero")
    th0 = _as_real(start_angle, "start_angle")
    return Arc(center, radius, th0, th0 + 2 * math.pi * int(turns))


def _vertices(vertices, name="vertices") -> list[complex]:
    if isinstance(vertices, (str, bytes)) or not isinstance(vertices, Iterable):
        raise TypeError(f"{name} must be a sequence of complex numbers")
    pts = [_as_complex(v, f"{name}[{i}]") for i, v in enumerate(vertices)]
    if len(pts) < 2:
        raise ValueError(f"{name} needs at least 2 points, got {len(pts)}")
    return pts


def polyline(vertices) -> Path:
    """Open polyline through ``vertices``.

    Parameters
    ----------
    vertices : sequence of complex
        At least 2 points; repeated consecutive points are skipped.

    Returns
    -------
    Path
        The segments between consecutive vertices.

    Raises
    ------
    TypeError
        If ``vertices`` is not a sequence of numbers.
    ValueError
        If there are fewer than 2 vertices, or all are equal.
    """
    pts = _vertices(vertices)
    segs = [Segment(a, b) for a, b in zip(pts[:-1], pts[1:]) if a != b]
    if not segs:
        raise ValueError("vertices are all equal: the polyline has no length")
    return Path(segs)


def polygon(vertices) -> Path:
    """Closed polygon through ``vertices``; the first vertex is appended if needed.

    Parameters
    ----------
    vertices : sequence of complex
        At least 2 points.

    Returns
    -------
    Path
        The closed polyline.

    Raises
    ------
    TypeError
        If ``vertices`` is not a sequence of numbers.
    ValueError
        If there are fewer than 2 vertices, or all are equal.
    """
    pts = _vertices(vertices)
    if pts[-1] != pts[0]:
        pts.append(pts[0])
    return polyline(pts)


def as_path(obj) -> Path:
    """A Path from a Path (returned as is) or a sequence of complex numbers (a polyline).

    E.g. ``as_path([0, T])``: the segment from time 0 to a period T.

    Parameters
    ----------
    obj : Path or sequence of complex
        The path, or the vertices of a polyline (a 1-D array or any sequence).

    Returns
    -------
    Path
        The path.

    Raises
    ------
    TypeError
        If ``obj`` is neither.
    ValueError
        If an array is not 1-D, or the polyline is invalid (see `polyline`).
    """
    if isinstance(obj, Path):
        return obj
    if isinstance(obj, np.ndarray) and obj.ndim != 1:
        raise ValueError(f"path array must be 1-D, got shape {obj.shape}")
    try:
        return polyline(obj)
    except TypeError as exc:
        raise TypeError(f"path must be a Path or a sequence of complex numbers: {exc}") from None


def _unit(z: complex) -> complex:
    r = abs(z)
    if r == 0:
        raise ValueError("zero direction")
    return z / r


def lasso(base, center, radius, via=(), turns=1) -> Path:
    """Lasso: from ``base`` through the points ``via`` to the circle ``|z - center| = radius``,
    ``turns`` times around it (negative = clockwise), and back the same way.

    The circle is entered at the point nearest the last ``via`` point (or ``base``).

    Parameters
    ----------
    base : complex
        Start and end point.
    center : complex
        Centre of the circle.
    radius : float
        Radius of the circle (> 0).
    via : sequence of complex, optional
        Points the tail passes through, in order.
    turns : int, optional
        Number of turns (non-zero), negative = clockwise.

    Returns
    -------
    Path
        The closed lasso.

    Raises
    ------
    ValueError
        If ``radius`` is not positive or the last via point (or ``base``) is not outside
        the circle.
    """
    base = _as_complex(base, "base")
    center = _as_complex(center, "center")
    radius = _as_real(radius, "radius")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    via_pts = [_as_complex(v, f"via[{i}]") for i, v in enumerate(via)]
    last = via_pts[-1] if via_pts else base
    if abs(last - center) <= radius:
        raise ValueError("the base (or last via point) must lie outside the circle")
    entry = center + radius * _unit(last - center)
    tail = polyline([base, *via_pts, entry])
    ang = math.atan2((entry - center).imag, (entry - center).real)
    return tail + circle(center, radius, ang, turns) + tail.reversed()


def _detour_tail(base: complex, target: complex, obstacles, clearance, side: int) -> Path:
    """Straight path base -> target with half-circle detours around obstacles near it.

    side = +1 keeps every obstacle on the left of the direction of travel, -1 on the right.
    """
    d = target - base
    u = _unit(d)
    L = abs(d)
    hits = []
    for q, r in zip(obstacles, clearance):
        t = ((q - base) * u.conjugate()).real          # projection along the segment
        delta = ((q - base) * u.conjugate()).imag      # signed distance (left > 0)
        if abs(delta) < r and -r < t < L + r:
            h = math.sqrt(r * r - delta * delta)
            if t - h <= 0 or t + h >= L:
                raise ValueError(
                    f"point {q} is within the clearance {r:.3g} of the path's end: "
                    "choose another base or a smaller radius")
            hits.append((t, h, q, r))
    hits.sort(key=lambda x: x[0])
    pieces: list[Path] = []
    cur = base
    last_exit_t = 0.0
    for t, h, q, r in hits:
        if t - h < last_exit_t:
            raise ValueError("obstacles too close together for automatic detours: use lasso(via=...)")
        A = base + (t - h) * u
        B = base + (t + h) * u
        if A != cur:
            pieces.append(Segment(cur, A))
        alpha = math.atan2((A - q).imag, (A - q).real)
        beta = math.atan2((B - q).imag, (B - q).real)
        ccw = (beta - alpha) % (2 * math.pi)
        chosen = None
        for sweep in (ccw, ccw - 2 * math.pi):
            mid = q + r * complex(math.cos(alpha + sweep / 2), math.sin(alpha + sweep / 2))
            # obstacle on the left of travel <=> path midpoint on the right of q: Im(conj(u)(mid-q)) < 0
            if (((mid - q) * u.conjugate()).imag < 0) == (side > 0):
                chosen = sweep
        pieces.append(Arc(q, r, alpha, alpha + chosen))
        cur = B
        last_exit_t = t + h
    if cur != target:
        pieces.append(Segment(cur, target))
    return Path(pieces)


def loop_around(point, base, radius, avoid=(), turns=1, side="left", clearance=None) -> Path:
    """Closed loop from ``base`` around ``point`` (a circle of ``radius``), avoiding ``avoid``.

    The path runs straight from ``base`` towards ``point``, detouring by half circles around
    any point of ``avoid`` that comes within ``clearance`` of the straight line (``side``:
    "left" keeps them on the left of the outward direction of travel, "right" on the right;
    the two choices give conjugate generators), circles ``point`` ``turns`` times
    counter-clockwise (negative: clockwise) and returns the same way.

    Parameters
    ----------
    point : complex
        The point to encircle.
    base : complex
        Start and end point, outside the circle.
    radius : float
        Radius of the circle about ``point`` (> 0).
    avoid : sequence of complex, optional
        Points to detour around (e.g. other singular points).
    turns : int, optional
        Number of turns (non-zero), negative = clockwise.
    side : {"left", "right"}, optional
        Which side of the outward direction of travel the avoided points are kept on.
    clearance : float, optional
        Radius of the detours (> 0); default, per avoided point, min(radius, 0.4 ×
        distance to the nearest other special point).

    Returns
    -------
    Path
        The closed loop.

    Raises
    ------
    ValueError
        If an avoided point lies inside the circle or coincides with ``base``, ``base`` is
        inside the circle, an avoided point is within the clearance of the path's end,
        avoided points are too close together for detours, or an argument is invalid.
    """
    point = _as_complex(point, "point")
    base = _as_complex(base, "base")
    radius = _as_real(radius, "radius")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    obstacles = [_as_complex(q, f"avoid[{i}]") for i, q in enumerate(avoid)]
    if abs(base - point) <= radius:
        raise ValueError("base must lie outside the circle of the given radius about point")
    for q in obstacles:
        if abs(q - point) <= radius:
            raise ValueError(f"avoided point {q} lies inside the circle |z - {point}| <= {radius}")
        if q == base:
            raise ValueError(f"avoided point {q} coincides with base")
    special = [point, base, *obstacles]
    if clearance is None:
        clr = []
        for q in obstacles:
            others = [abs(q - o) for o in special if o != q]
            clr.append(min(radius, 0.4 * min(others)))
    else:
        c = _as_real(clearance, "clearance")
        if c <= 0:
            raise ValueError("clearance must be positive")
        clr = [c] * len(obstacles)
    entry = point + radius * _unit(base - point)
    tail = _detour_tail(base, entry, obstacles, clr, +1 if side == "left" else -1)
    ang = math.atan2((entry - point).imag, (entry - point).real)
    if isinstance(turns, (bool, np.bool_)) or not isinstance(turns, (int, np.integer)) or turns == 0:
        raise ValueError(f"turns must be a non-zero integer, got {turns!r}")
    return tail + circle(point, radius, ang, int(turns)) + tail.reversed()
