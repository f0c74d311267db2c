"""The network front end: ``check_integrability(flow, curve=...)`` (docs/math.md §4 and §5).

Integral curves are taken in a two-dimensional invariant plane of a width-2 network with
scalar input and output (NF4 and its relatives):

- ``curve="twin"``: {block_1 = block_2}, points (a, w, a, w);
- ``curve="dead-neuron"``: {block_2 = 0}, points (a, w, 0, 0) (needs sigma(0) = 0; a negative
  control: the normal VE is ``Y' = -rho(t) C Y``, always abelian);
- ``curve="points"``: any complex base point theta0 and user loops in the complex time plane
  (the full p x p variational equation; only commutation is decided for p != 2).

On the plane the curve is parametrised by ``w`` (the second coordinate; ``dtheta/dw = F/F_w``,
the default) or by complex time. The normal variational equation is the normal block
``N^T J N`` of the full VE (N: the plane's orthonormal normal basis; both the plane and its
normal space are invariant under the symmetry that defines the plane, so the VE splits
exactly). Loops: for every point where the curve has a = 0 (found by integrating the inverse
ODE dtheta/da = F/F_a from the base point to a = 0 along several paths in the a-plane; at such
points a(w) has a square-root branch point), a loop around it once and twice. Every loop
goes through the engine's verification (closure at two tolerances, deformation); only
verified loops enter the group, the others are listed with the reason.

For ``order > 1`` or ``curve="saddle-unstable"`` the work is delegated to
``narrowflow.monodromy.koenigs.saddle_unstable_check`` (higher-order variational equations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np

from .groups import INCONCLUSIVE, MonodromyGroup
from .paths import Path, as_path, loop_around, polyline
from .pathint import STATUS_OK, integrate_path
from .transport import TransportResult, verified_transport
from .verify import maxabs as _maxabs

__all__ = ["check_integrability", "IntegrabilityReport", "LoopRecord", "plane_setup"]

CURVES = ("twin", "dead-neuron", "points", "saddle-unstable")


def _fmt(z, digits=5) -> str:
    """A complex number for humans: parts below 1e-9 of the modulus shown as 0."""
    z = complex(z)
    m = max(abs(z), 1e-300)
    re = z.real if abs(z.real) > 1e-9 * m else 0.0
    im = z.imag if abs(z.imag) > 1e-9 * m else 0.0
    if im == 0:
        return f"{re:.{digits}g}"
    if re == 0:
        return f"{im:.{digits}g}i"
    return f"{re:.{digits}g}{im:+.{digits}g}i"


@dataclass
class LoopRecord:
    """One loop of the report: ``name``, ``path`` (in the parameter plane), ``result``
    (TransportResult), ``used`` (entered the group), ``reason`` (why excluded, or '')."""
    name: str
    path: Path
    result: TransportResult
    used: bool
    reason: str = ""


@dataclass
class IntegrabilityReport:
    """What ``check_integrability`` found (its ``str`` is the printed report).

    Parameters
    ----------
    curve : str
        Which integral curve ("twin", "dead-neuron" or "points").
    parametrization : str
        Which variable: "w" or "time".
    base_point : ndarray of complex128, shape (p,)
        The base point theta0.
    base_parameter : complex
        The value of the parameter (w or t) at the base point.
    singular_points : list of complex
        Points of the parameter plane the loops go around.
    loops : list of LoopRecord
        Every loop tried, with its TransportResult and whether it was used.
    group : MonodromyGroup or None
        The group of the verified loops (None if no loop passed).
    classification : Classification or None
        Its classification.
    verdict : str
        One of `VERDICTS`.
    notes : list of str, optional
        Remarks of the run.
    branch_points : list of complex, optional
        Points where a = 0, found from the base point (default loops only).
    poles : list of complex, optional
        Singularities of the activation avoided by the default loops.
    """
    curve: str
    parametrization: str
    base_point: np.ndarray
    base_parameter: complex
    singular_points: list
    loops: list
    group: MonodromyGroup | None
    classification: object
    verdict: str
    notes: list = dc_field(default_factory=list)
    branch_points: list = dc_field(default_factory=list)   # where a = 0 (found from the base)
    poles: list = dc_field(default_factory=list)           # singularities of sigma(w x_i)

    @property
    def used_loops(self):
        """The loops that passed verification and entered the group."""
        return [r for r in self.loops if r.used]

    def __str__(self):
        th = ", ".join(_fmt(z, 6) for z in self.base_point)
        lines = [f"integral curve: {self.curve} plane, parametrised by {self.parametrization}",
                 f"base point theta0 = ({th}); {self.parametrization}0 = "
                 f"{_fmt(self.base_parameter, 6)}"]
        if self.branch_points:
            lines.append(f"points with a = 0 ({self.parametrization}-plane): "
                         + ", ".join(_fmt(z) for z in self.branch_points))
        if self.poles:
            near = sorted(self.poles, key=lambda z: abs(z - self.base_parameter))
            more = f" (and {len(near) - 6} more)" if len(near) > 6 else ""
            lines.append("singularities of the activation avoided: "
                         + ", ".join(_fmt(z) for z in near[:6]) + more)
        elif self.singular_points and not self.branch_points:
            lines.append(f"singular points ({self.parametrization}-plane): "
                         + ", ".join(_fmt(z) for z in self.singular_points))
        lines.append(f"loops: {len(self.loops)} tried, {len(self.used_loops)} verified and used")
        for r in self.loops:
            tag = "USED    " if r.used else "EXCLUDED"
            lines.append(f"  [{tag}] {r.name}: {r.result.summary()}"
                         + (f" -- {r.reason}" if r.reason and not r.used else ""))
        if self.classification is not None:
            lines.append("classification of the normal VE monodromy group:")
            lines += ["  " + ln for ln in str(self.classification).splitlines()]
        for n in self.notes:
            lines.append(f"note: {n}")
        lines.append(f"VERDICT: {self.verdict}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# the plane, its right-hand sides
# ---------------------------------------------------------------------------
# The normal VE ``Phi' = (N^T J N) Phi`` with the curve, divided by F[ipar] for the
# parametrisation by theta[ipar] (ipar < 0: time), and the inverse ODE dtheta/da = F/F_a, as
# module-level functions for disk-cached integrators (pathint.cached_integrators): the
# network's compiled complex field / Jacobian are imported from their generated module, and
# the plane's data (N, the parameter index, p, q) ride at the end of the parameter array
# (the network functions read only its head): [params..., N (p*q), ipar, ia, p, q].
_PLANE_RHS_SRC = '''
from narrowflow.jit import BASE as _OPTS
from {module} import complex_field as _cf_py, complex_jacobian as _cj_py
_cf = njit(**_OPTS)(_cf_py)
_cj = njit(**_OPTS)(_cj_py)


@njit(**_OPTS)
def plane_rhs(z, y, data):
    L = data.size
    p = int(data[L - 2].real)
    q = int(data[L - 1].real)
    ipar = int(data[L - 4].real)
    N = data[L - 4 - p * q:L - 4]
    th = y[:p].copy()
    F = _cf(th, data)
    J = _cj(th, data)
    s = 1.0 + 0j
    if ipar >= 0:
        s = 1.0 / F[ipar]
    JN = np.zeros((p, q), dtype=np.complex128)
    for i in range(p):
        for j in range(q):
            acc = 0j
            for k in range(p):
                acc += J[i, k] * N[k * q + j]
            JN[i, j] = acc
    K = np.zeros((q, q), dtype=np.complex128)
    for i in range(q):
        for j in range(q):
            acc = 0j
            for k in range(p):
                acc += N[k * q + i] * JN[k, j]
            K[i, j] = acc
    out = np.empty(p + q * q + 1, dtype=np.complex128)
    for i in range(p):
        out[i] = F[i] * s
    tr = 0j
    for i in range(q):
        tr += K[i, i]
        for j in range(q):
            acc = 0j
            for k in range(q):
                acc += K[i, k] * y[p + k * q + j]
            out[p + i * q + j] = acc * s
    out[p + q * q] = tr * s
    return out


@njit(**_OPTS)
def inverse_rhs(z, y, data):
    L = data.size
    ia = int(data[L - 3].real)
    F = _cf(y.copy(), data)
    return F / F[ia]
'''


def _cached_plane(cf):
    """(plane, inverse) CachedIntegrators for the network whose complex field is ``cf``."""
    from .pathint import cached_integrators
    mod = cf.py_func.__module__ if hasattr(cf, "py_func") else cf.__module__
    tag = "plane_" + mod.rsplit(".", 1)[-1]
    ints = cached_integrators(tag, _PLANE_RHS_SRC.format(module=mod),
                              {"plane": "plane_rhs", "inverse": "inverse_rhs"})
    return ints["plane"], ints["inverse"]


def _tail(P, N, ipar, ia):
    p, q = N.shape
    return np.concatenate([P, np.ascontiguousarray(N, dtype=np.float64).ravel(),
                           [float(ipar), float(ia), float(p), float(q)]])


@dataclass
class _Plane:
    name: str
    embed: object          # (a, w) -> theta (p,)
    N: np.ndarray          # (p, q) orthonormal normal basis
    ia: int
    iw: int


def plane_setup(flow, curve: str) -> _Plane:
    """The invariant plane of ``flow`` named by ``curve`` ("twin" or "dead-neuron")."""
    from narrowflow import model
    net = flow.network
    if not (net.width == 2 and net.input_dim == 1 and net.output_dim == 1 and not net.bias):
        raise ValueError("curve='twin'/'dead-neuron' need a width-2 network with scalar input and "
                         "output and no biases (NF4 layout [a1, w1, a2, w2]); use curve='points' "
                         "with a base point and loops for other networks")
    if curve == "twin":
        sub = model.Twin(net, 0, 1)
        embed = lambda a, w: np.array([a, w, a, w], dtype=np.complex128)
    elif curve == "dead-neuron":
        sub = model.DeadNeuron(net, 1)
        embed = lambda a, w: np.array([a, w, 0, 0], dtype=np.complex128)
    else:
        raise ValueError(f"unknown plane {curve!r}")
    return _Plane(curve, embed, np.asarray(sub.normal_basis(), dtype=np.float64), 0, 1)


def _compiled(flow):
    from narrowflow.rhs import compile_network, pack_params
    fn = compile_network(flow.network)
    return fn.complex_field, fn.complex_jacobian, pack_params(flow)


def find_branch_points(flow, plane: _Plane, theta0, *, rtol=1e-11, spreads=(0.0, 1.0, -1.0, 2.0, -2.0)):
    """Points of the w-plane where the curve through theta0 reaches a = 0.

    Integrates dtheta/da = F/F_a from a0 to 0 along polylines [a0, a0/2 + i s |a0|, 0] of the
    a-plane (s in ``spreads``): each gives the w where a = 0 on some sheet. Returns a list of
    distinct complex w (at most len(spreads)), nearest to w0 first.
    """
    cf, _, P = _compiled(flow)
    _, inverse = _cached_plane(cf)
    data = _tail(P, plane.N, -1, plane.ia)
    a0 = complex(theta0[plane.ia])
    w0 = complex(theta0[plane.iw])
    found = []
    for s in spreads:
        verts = [a0, 0.0] if s == 0 else [a0, a0 / 2 + 1j * s * abs(a0), 0.0]
        y, nfev, _, _, st = integrate_path(inverse, np.asarray(theta0, dtype=np.complex128),
                                           polyline(verts), data, rtol=rtol, max_nfev=200_000)
        if st != STATUS_OK or not np.all(np.isfinite(y)):
            continue
        wb = complex(y[plane.iw])
        if abs(y[plane.ia]) > 1e-6 * max(1.0, abs(a0)):
            continue
        if all(abs(wb - f) > 1e-6 * max(1.0, abs(wb)) for f in found):
            found.append(wb)
    found.sort(key=lambda z: abs(z - w0))
    return found


def _transport_plane(rhs, theta0, q, path, P, p, rtol, tol_ratio, deform, max_nfev):
    """Joint transport of the curve and its normal VE along a path of the parameter plane."""
    y0 = np.zeros(p + q * q + 1, dtype=np.complex128)
    y0[:p] = theta0
    y0[p:p + q * q] = np.eye(q).ravel()

    def run(pth, tol):
        y, nfev, _, _, st = integrate_path(rhs, y0, pth, P, rtol=tol, atol=tol, max_nfev=max_nfev)
        return y[:p].copy(), y[p:p + q * q].reshape(q, q).copy(), y[p + q * q], nfev, st

    return verified_transport(run, path, theta0, rtol=rtol, tol_ratio=tol_ratio, deform=deform)


def _record(name, pth, rhs, theta0, q, P, p, rtol, tol_ratio, deform, max_nfev):
    res = _transport_plane(rhs, theta0, q, pth, P, p, rtol, tol_ratio, deform, max_nfev)
    return LoopRecord(name, pth, res, res.verified, "" if res.verified else res.closure_note)


# poles / branch points of sigma(z) in the complex plane: z = i pi (k + offset) * scale
_ACT_SING = {"tanh": 0.5, "sigmoid": 1.0, "silu": 1.0, "softplus": 1.0}


def activation_singularities(flow, center, radius):
    """Singular points w of sigma(w x_i) (poles of tanh/sigmoid, log branch points of softplus)
    within ``radius`` of ``center``: w = i pi (2k + 1) c / x_i with c = 1/2 (tanh) or 1."""
    name = flow.network.activation.name
    if name not in _ACT_SING:
        return []
    c = _ACT_SING[name]
    out = []
    xs = np.unique(np.asarray(flow.data.x, dtype=float).ravel())
    for x in xs:
        if x == 0:
            continue
        kmax = int(abs(x) * (abs(center) + radius) / (math.pi * c)) + 2
        for k in range(-kmax - 1, kmax + 1):
            z = 1j * math.pi * (2 * k + 1) * c / x
            if abs(z - center) <= radius and all(abs(z - o) > 1e-12 for o in out):
                out.append(complex(z))
    return out


# default base point (a0, w0) on either plane
_DEFAULT_BASE = (0.8 + 0j, 0.3 + 0j)


def check_integrability(flow, curve="twin", order=1, *, base=None, parametrization="w",
                        loops=None, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                        max_nfev=400_000, margin=100.0, radius=None, **kw):
    """Test a gradient flow for integrability along an integral curve (docs/math.md §5).

    flow: narrowflow.GradientFlow. curve: "twin", "dead-neuron", "points" or "saddle-unstable".
    order: order of the variational equation (order > 1 and "saddle-unstable" go to
    ``monodromy.koenigs.saddle_unstable_check`` with the remaining keywords, e.g. saddle=,
    along the unstable manifold of a saddle in the plane: the first-order planes above
    carry no further information at higher order here). base: for planes a pair (a0, w0) (default
    (0.8, 0.3)); for "points" the complex base point theta0 (p,). parametrization: "w"
    (planes only) or "time". loops: paths in the parameter plane (Path objects or sequences
    of complex numbers, relative to nothing: absolute values of w or t); default (planes, w):
    once and twice around every a = 0 branch point found. radius: loop radius (default:
    0.3 x the distance to the nearest other special point). Other keywords: the engine's.
    Returns an IntegrabilityReport; its verdict is one of groups.VERDICTS and rests only on
    loops that passed verification.

    Parameters
    ----------
    flow : GradientFlow
        The flow.
    curve : {"twin", "dead-neuron", "points", "saddle-unstable"}, optional
        The integral curve.
    order : int, optional
        Order of the variational equation (>= 1).
    base : pair of complex or array_like of complex, shape (p,), optional
        ``(a0, w0)`` for planes (a0 != 0; default (0.8, 0.3)); theta0 for "points".
    parametrization : {"w", "time"}, optional
        The variable of the loops.
    loops : list of (Path or sequence of complex), optional
        Paths in the parameter plane, starting at the base parameter (required for
        "points" and for "time").
    rtol : float, optional
        Relative tolerance of the transports.
    tol_ratio : float, optional
        The check runs are at ``rtol * tol_ratio``.
    deform : float or None, optional
        Relative size of the deformation check (0 or None: skip).
    max_nfev : int, optional
        Right-hand-side evaluations allowed per run.
    margin : float, optional
        A quantity counts as non-zero only above margin × its error.
    radius : float, optional
        Radius of the default loops.
    **kw
        Keywords of ``saddle_unstable_check`` (order > 1 or "saddle-unstable" only).

    Returns
    -------
    IntegrabilityReport or SaddleUnstableReport
        The report (a SaddleUnstableReport from ``saddle_unstable_check`` for order > 1 or
        "saddle-unstable"), with its ``verdict``.

    Raises
    ------
    ValueError
        If an argument is invalid, the base point is an equilibrium or singular for the
        parametrisation, or a loop does not start at the base parameter.
    TypeError
        If ``flow`` is not a GradientFlow, ``base`` is not a pair of numbers, or unknown
        keywords are given at order 1.
    """
    from narrowflow.model import GradientFlow
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    if curve == "saddle-unstable" or order > 1:
        # higher-order VEs: jets along the unstable manifold of a saddle
        if base is not None or loops is not None:
            raise ValueError("base and loops apply to order-1 plane curves; the higher-order "
                             "check chooses its own loops (pass saddle=... for another saddle)")
        if curve == "points":
            raise ValueError("curve='points' is order 1 only")
        from .koenigs import saddle_unstable_check
        if curve == "dead-neuron":
            from narrowflow.model import DeadNeuron
            kw.setdefault("subspace", DeadNeuron(flow.network, 1))
        return saddle_unstable_check(flow, order=order, rtol=rtol, **kw)
    if kw:
        raise TypeError(f"unexpected keyword arguments: {sorted(kw)}")
    if not isinstance(flow, GradientFlow):
        raise TypeError(f"flow must be a narrowflow.GradientFlow, got {type(flow).__name__}")
    if parametrization not in ("w", "time"):
        raise ValueError(f"parametrization must be 'w' or 'time', got {parametrization!r}")
    cf, _, P = _compiled(flow)
    p = flow.n_params
    notes = []

    if curve == "points":
        if base is None or loops is None:
            raise ValueError("curve='points' needs base (complex theta0 of shape (p,)) and loops "
                             "(paths in the complex time plane)")
        theta0 = np.asarray(base, dtype=np.complex128)
        if theta0.shape != (p,):
            raise ValueError(f"base must have shape ({p},), got {theta0.shape}")
        rhs, _ = _cached_plane(cf)
        P = _tail(P, np.eye(p), -1, 0)
        records = []
        for i, lp in enumerate(loops):
            pth = as_path(lp)
            res = _transport_plane(rhs, theta0, p, pth, P, p, rtol, tol_ratio, deform, max_nfev)
            records.append(LoopRecord(f"loop {i}", pth, res, res.verified,
                                      "" if res.verified else res.closure_note))
        return _finish(curve, "time", theta0, 0j, [], records, margin, notes)

    plane = plane_setup(flow, curve)
    bp = base if base is not None else _DEFAULT_BASE
    try:
        a0, w0 = (complex(v) for v in bp)
    except (TypeError, ValueError):
        raise TypeError(f"base must be a pair of numbers (a0, w0) for curve={curve!r}, "
                        f"got {base!r}") from None
    if not (np.isfinite(a0) and np.isfinite(w0)):
        raise ValueError(f"base must be finite, got {base!r}")
    if a0 == 0:
        raise ValueError("base a0 must be non-zero (a = 0 is a branch point of the curve)")
    theta0 = plane.embed(a0, w0)
    q = plane.N.shape[1]
    ipar = plane.iw if parametrization == "w" else -1
    rhs, _ = _cached_plane(cf)
    F0 = np.asarray(flow.field(theta0), dtype=np.complex128)
    P = _tail(P, plane.N, ipar, plane.ia)
    if _maxabs(F0) == 0:
        raise ValueError("the base point is an equilibrium: there is no integral curve through it")
    if parametrization == "w" and abs(F0[plane.iw]) < 1e-8 * max(1.0, _maxabs(F0)):
        raise ValueError("dw/dt = 0 at the base point: the w-parametrisation is singular there; "
                         "choose another base point")
    par0 = w0 if parametrization == "w" else 0j

    singular = []
    branch, poles = [], []
    records = []
    if loops is None:
        if parametrization != "w":
            raise ValueError("parametrization='time' needs explicit loops (paths in the t-plane)")
        singular = find_branch_points(flow, plane, theta0)
        poles = activation_singularities(flow, w0, 4.0 * max([1.0] + [abs(b - w0) for b in singular]))
        if not singular:
            notes.append("no point with a = 0 was found from the base point: no default loops")
        special = [w0] + singular + poles
        singles = {}            # the once-around loop of each branch point, reused below
        for b in singular:
            dmin = min(abs(b - z) for z in special if z != b)
            r = radius if radius is not None else 0.3 * dmin
            avoid = [z for z in singular + poles if z != b]
            for turns in (1, 2):
                try:
                    pth = loop_around(b, w0, r, avoid=avoid, turns=turns)
                except ValueError as exc:
                    notes.append(f"no loop around {_fmt(b)}: {exc}")
                    break
                if turns == 1:
                    singles[b] = pth
                name = f"{'once' if turns == 1 else 'twice'} around w = {_fmt(b)}"
                records.append(_record(name, pth, rhs, theta0, q, P, p, rtol, tol_ratio, deform,
                                       max_nfev))
        # once around b1, then once around b2: the sheet changes twice, the curve closes
        for i in range(len(singular)):
            for j in range(i + 1, len(singular)):
                b1, b2 = singular[i], singular[j]
                if b1 in singles and b2 in singles:
                    name = f"once around w = {_fmt(b1, 4)}, then once around w = {_fmt(b2, 4)}"
                    records.append(_record(name, singles[b1] + singles[b2], rhs, theta0, q, P, p,
                                           rtol, tol_ratio, deform, max_nfev))
        branch, singular = list(singular), singular + poles
    else:
        for i, lp in enumerate(loops):
            pth = as_path(lp)
            if abs(pth.start - par0) > 1e-9 * max(1.0, abs(par0)):
                raise ValueError(f"loops[{i}] must start at the base parameter {par0}, "
                                 f"starts at {pth.start}")
            records.append(_record(f"loop {i}", pth, rhs, theta0, q, P, p, rtol, tol_ratio, deform,
                                   max_nfev))
    rep = _finish(curve, parametrization, theta0, par0, singular, records, margin, notes)
    rep.branch_points, rep.poles = branch, poles
    return rep


def _finish(curve, parametrization, theta0, par0, singular, records, margin, notes):
    """The report. Whether a loop is used is decided here, from its result's verification
    alone (whatever the record says): only verified loops enter the group."""
    for r in records:
        r.used = bool(r.result.verified)
        if not r.used and not r.reason:
            r.reason = r.result.closure_note if r.result.closure_note else "not verified"
    informative = [r for r in records if r.used]
    group = None
    cls = None
    if not informative:
        verdict = INCONCLUSIVE
        notes.append("no loop passed verification: nothing to classify")
    else:
        group = MonodromyGroup([r.result for r in informative],
                               names=[f"M{i}" for i in range(len(informative))])
        cls = group.classify(margin=margin)
        verdict = cls.verdict
    return IntegrabilityReport(curve=curve, parametrization=parametrization, base_point=theta0,
                               base_parameter=complex(par0), singular_points=list(singular),
                               loops=records, group=group, classification=cls, verdict=verdict,
                               notes=notes)
