"""The one complex-path integrator of the monodromy layer (docs/math.md §5.1).

Integrates ``dy/dz = rhs(z, y, data)`` along a :class:`~narrowflow.monodromy.paths.Path`
with Hairer's DOP853 (8th order, 5th/3rd order error estimate, scipy's error norm),
coefficients from :mod:`narrowflow.tableaus`. Every elementary piece of the path is
integrated on its own real parameter ``u ∈ [0, 1]``: ``dy/du = rhs(z(u), y, data) z'(u)``,
complex states. Linear transport, field + variational-equation transport and the jets all
run through :func:`dop853_path`.

Rules (one for every caller):

- **restart at every corner**: ``z'(u)`` jumps at a breakpoint, so each piece starts with a
  fresh stage 0;
- **first step**: Hairer's heuristic (Solving ODEs I, II.4; scipy's ``select_initial_step``)
  at the start of *every* piece: ``h0 = 0.01 d0/d1`` (or 1e-6 when ``y`` or ``f`` is
  tiny), one explicit Euler step to estimate the second derivative ``d2``, then
  ``h = min(100 h0, (0.01 / max(d1, d2))^(1/8), 1)``. The step is not carried from one
  piece to the next: the local parameters of two pieces have unrelated scales (a lasso's
  stem and its circle differ by orders of magnitude in ``|z'(u)|``), so a carried step is
  either wasted or rejected;
- **step control**: accept when the error norm is <= 1, new step ``h·min(10, 0.9 err^-1/8)``
  after an accepted step, ``h·max(0.2, 0.9 err^-1/8)`` after a rejected one; a non-finite
  stage shrinks the step by 5 (status ``STATUS_NONFINITE`` below ``h = 1e-10``); a step
  below ``1e-14`` is ``STATUS_STEP``; more than ``max_nfev`` evaluations ``STATUS_BUDGET``.

The integrator body is one Python function, run three ways: compiled with a Numba ``rhs``
passed as an argument (:data:`dop853_path`; compiled once per process), compiled with the rhs
as a global of a generated, disk-cached module (:func:`cached_integrators`), or as plain Python
for Python callables (the vector loops are compiled helpers either way, so both modes take
the very same steps).
"""
from __future__ import annotations

import inspect
import math
import re
import sys
import textwrap

import numba
import numpy as np
from numba import njit

from narrowflow import jit as _jit
from narrowflow import tableaus as _tableaus

from .paths import as_path

__all__ = ["integrate_path", "cached_integrators", "CachedIntegrator", "piece_point",
           "STATUS_OK", "STATUS_BUDGET", "STATUS_NONFINITE", "STATUS_STEP", "STATUS_TEXT",
           "DEFAULT_MAX_NFEV", "TABLEAU"]

DEFAULT_MAX_NFEV = 400_000

STATUS_OK = 0
STATUS_BUDGET = 1       # evaluation budget exhausted
STATUS_NONFINITE = 2    # the solution blew up (a singularity on or near the path)
STATUS_STEP = 3         # step size underflow
STATUS_TEXT = {STATUS_OK: "ok", STATUS_BUDGET: "evaluation budget exhausted",
               STATUS_NONFINITE: "non-finite values (singularity on or near the path?)",
               STATUS_STEP: "step size underflow (singularity on or near the path?)"}

_NS = 12                # DOP853 stages; K[12] holds f(y_new)


def _dop853_arrays():
    tab = _tableaus.get("dop853")
    A = np.ascontiguousarray(tab.A[:_NS, :_NS], dtype=np.float64)
    B = np.ascontiguousarray(tab.b[:_NS], dtype=np.float64)
    C = np.ascontiguousarray(tab.c[:_NS], dtype=np.float64)
    E3 = np.ascontiguousarray(tab.e3[:_NS + 1], dtype=np.float64)
    E5 = np.ascontiguousarray(tab.e[:_NS + 1], dtype=np.float64)
    return A, B, C, E3, E5


# (A (12, 12), B (12,), C (12,), E3 (13,), E5 (13,)), float64; passed as arguments because
# global arrays are frozen into Numba's on-disk cache
TABLEAU = _dop853_arrays()

_NJ = _jit.NOGIL
# for functions that take or close over other compiled functions, or call into other files:
# never cached on their own (see cached_integrators)
NJ_DYNAMIC = {**_jit.BASE, "cache": False}


@njit(**_NJ)
def piece_point(kind, prm, u):
    """``(z, dz/du)`` of one encoded piece (``Path.encode``) at its local parameter u.

    kind: 0 segment, 1 arc; prm: complex128 (5,) (see ``paths``); u: float in [0, 1].
    """
    bump = prm[4]
    sb = math.sin(math.pi * u)
    cb = math.cos(math.pi * u)
    if kind == 0:
        a = prm[0]
        b = prm[1]
        return a + (b - a) * u + bump * sb, (b - a) + bump * math.pi * cb
    c = prm[0]
    r = prm[1].real
    th0 = prm[2].real
    dth = prm[3].real - th0
    e = r * complex(math.cos(th0 + dth * u), math.sin(th0 + dth * u))
    return c + e + bump * sb, 1j * dth * e + bump * math.pi * cb


@njit(**_NJ)
def _wrms(v, scale):
    """sqrt(mean(|v_i| / scale_i)²) for complex v, float scale."""
    acc = 0.0
    for i in range(v.size):
        q = abs(v[i]) / scale[i]
        acc += q * q
    return math.sqrt(acc / v.size)


@njit(**_NJ)
def _first_guess(y, f0, rtol, atol, scale):
    """Hairer's h0 from ``d0 = ‖y‖``, ``d1 = ‖f0‖`` (fills ``scale``); returns (h0, d1)."""
    for i in range(y.size):
        scale[i] = atol + rtol * abs(y[i])
    d0 = _wrms(y, scale)
    d1 = _wrms(f0, scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    return min(h0, 1.0), d1


@njit(**_NJ)
def _first_step(f0, f1, h0, d1, scale):
    """Hairer's first step from the second-derivative estimate ``‖f1 − f0‖ / h0``."""
    acc = 0.0
    for i in range(f0.size):
        q = abs(f1[i] - f0[i]) / scale[i]
        acc += q * q
    d2 = math.sqrt(acc / f0.size) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
    return min(100 * h0, h1, 1.0)


@njit(**_NJ)
def _combine(y, h, w, K, m, out):
    """out = y + h Σ_{j<m} w[j] K[j] (complex (n,))."""
    for i in range(y.size):
        acc = 0j
        for j in range(m):
            acc += w[j] * K[j, i]
        out[i] = y[i] + h * acc


@njit(**_NJ)
def _error_norm(y, ynew, K, E5, E3, h, rtol, atol):
    """DOP853's error norm (scipy's) of the step y -> ynew; returns (err, ynew finite)."""
    n = y.size
    e5 = 0.0
    e3 = 0.0
    finite = True
    for i in range(n):
        if not (math.isfinite(ynew[i].real) and math.isfinite(ynew[i].imag)):
            finite = False
        sc = atol + rtol * max(abs(y[i]), abs(ynew[i]))
        a5 = 0j
        a3 = 0j
        for j in range(_NS + 1):
            a5 += E5[j] * K[j, i]
            a3 += E3[j] * K[j, i]
        q5 = abs(a5) / sc
        q3 = abs(a3) / sc
        e5 += q5 * q5
        e3 += q3 * q3
    if e5 == 0.0 and e3 == 0.0:
        return 0.0, finite
    return h * e5 / math.sqrt((e5 + 0.01 * e3) * n), finite


def _dop853_impl(rhs, data, kinds, params, y0, rtol, atol, max_nfev, A, B, C, E3, E5):
    """DOP853 along all pieces (module docstring). Returns (y_end, nfev, naccept, nreject, status).

    rhs(z, y, data) -> dy/dz complex128 (n,); kinds int64 (m,), params complex128 (m, 5)
    (``Path.encode``); y0 complex128 (n,); A..E5: :data:`TABLEAU`.
    """
    n = y0.size
    y = y0.copy()
    K = np.empty((13, n), dtype=np.complex128)
    ytmp = np.empty(n, dtype=np.complex128)
    ynew = np.empty(n, dtype=np.complex128)
    scale = np.empty(n, dtype=np.float64)
    nfev = 0
    nacc = 0
    nrej = 0
    for k in range(kinds.size):
        kind = kinds[k]
        prm = params[k]
        z, dz = piece_point(kind, prm, 0.0)
        K[0] = rhs(z, y, data) * dz
        # first step of this piece: Hairer's heuristic (K[1] is scratch here)
        h0, d1 = _first_guess(y, K[0], rtol, atol, scale)
        _combine(y, h0, np.ones(1), K, 1, ytmp)
        z1, dz1 = piece_point(kind, prm, h0)
        K[1] = rhs(z1, ytmp, data) * dz1
        nfev += 2
        h = _first_step(K[0], K[1], h0, d1, scale)
        u = 0.0
        while u < 1.0:
            if not math.isfinite(h) or h < 1e-14:
                return y, nfev, nacc, nrej, STATUS_STEP
            last = False
            if u + h >= 1.0:
                h = 1.0 - u
                last = True
            for st in range(1, _NS):
                _combine(y, h, A[st], K, st, ytmp)
                zs, dzs = piece_point(kind, prm, u + C[st] * h)
                K[st] = rhs(zs, ytmp, data) * dzs
            _combine(y, h, B, K, _NS, ynew)
            ze, dze = piece_point(kind, prm, 1.0 if last else u + h)
            K[_NS] = rhs(ze, ynew, data) * dze
            nfev += _NS
            err, finite = _error_norm(y, ynew, K, E5, E3, h, rtol, atol)
            if not finite or not math.isfinite(err):
                if h < 1e-10:
                    return y, nfev, nacc, nrej, STATUS_NONFINITE
                h *= 0.2
                nrej += 1
                continue
            if err <= 1.0:
                u = 1.0 if last else u + h
                y[:] = ynew
                K[0] = K[_NS]
                nacc += 1
                h *= 10.0 if err == 0.0 else min(10.0, 0.9 * err ** (-1.0 / 8.0))
            else:
                nrej += 1
                h *= max(0.2, 0.9 * err ** (-1.0 / 8.0))
            if nfev > max_nfev:
                return y, nfev, nacc, nrej, STATUS_BUDGET
    return y, nfev, nacc, nrej, STATUS_OK


# compiled with the rhs as an argument: Numba cannot cache this on disk (a function-typed
# argument), so it compiles once per process and rhs; cached_integrators caches copies
dop853_path = njit(**NJ_DYNAMIC)(_dop853_impl)


def _is_jit(f) -> bool:
    return isinstance(f, numba.core.registry.CPUDispatcher)


# ---------------------------------------------------------------------------
# integrators cached on disk: the rhs as a global of a generated module
# ---------------------------------------------------------------------------

class CachedIntegrator:
    """A DOP853 path integrator with its rhs compiled in; pass it where an rhs is expected.

    fn(data, kinds, params, y0, rtol, atol, max_nfev, A, B, C, E3, E5) -> as ``dop853_path``.
    """

    def __init__(self, fn, label):
        self.fn = fn
        self.label = label

    def __call__(self, data, kinds, params, y0, rtol, atol, max_nfev):
        return self.fn(data, kinds, params, y0, float(rtol), float(atol), int(max_nfev), *TABLEAU)

    def __repr__(self):
        return f"CachedIntegrator({self.label})"


def specialise(func, param: str, replacement: str, new_name: str) -> str:
    """The source of the Numba function ``func`` with its first parameter ``param`` (a
    function) removed and every call ``param(...)`` replaced by ``replacement(...)``, a
    global of the module the source goes into, renamed ``new_name``; decorators dropped.

    Numba cannot cache on disk a function that receives another compiled function as an
    argument (the argument is a pointer to a Python object), so generated modules call
    their functions as globals instead; the source stays the one of ``func``.
    """
    src = textwrap.dedent(inspect.getsource(getattr(func, "py_func", func)))
    src = src[src.index("def "):]
    head = f"def {func.__name__}({param}, "
    if not src.startswith(head):
        raise ValueError(f"{func.__name__} does not take {param!r} as its first parameter")
    src = f"def {new_name}(" + src[len(head):]
    return re.sub(rf"\b{param}\(", f"{replacement}(", src)


_IMPORTS = ("import math\nimport numpy as np\nfrom numba import njit\n"
            "from narrowflow.monodromy.pathint import (piece_point, _first_guess, _first_step,\n"
            "    _combine, _error_norm, _NS, STATUS_OK, STATUS_BUDGET, STATUS_NONFINITE,\n"
            "    STATUS_STEP)\n")


def njit_options() -> str:
    """The keyword text of this module's Numba options, for generated source."""
    return ", ".join(f"{k}={v!r}" for k, v in _NJ.items())


def cached_integrators(tag: str, header: str, labels: dict, depends=()) -> dict:
    """Load (generating on first use) a module with one disk-cached integrator per rhs.

    tag: module name part; header: Python source defining or importing the rhs functions
    ``(z, y, data) -> dy/dz``; labels: {label: rhs name}; depends: the functions or modules
    whose source the rhs compile in. The module holds ``_dop853_impl`` specialised to each
    rhs (:func:`specialise`), loaded by ``narrowflow.jit.load_generated``, which hashes the
    source, this module and every dependency into the file name (Numba's on-disk cache
    watches only the file of the cached function itself). Returns {label: CachedIntegrator}.
    """
    body = "".join(f"\n\n@njit({njit_options()})\n"
                   + specialise(_dop853_impl, "rhs", nm, f"integrate_{lb}")
                   for lb, nm in labels.items())
    source = "# generated by narrowflow.monodromy.pathint\n" + _IMPORTS + header + "\n" + body
    module = _jit.load_generated(f"mono_{tag}", source, depends=(*depends, sys.modules[__name__]))
    return {lb: CachedIntegrator(getattr(module, f"integrate_{lb}"), f"{tag}.{lb}") for lb in labels}


# ---------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------

def as_data(data):
    """Parameter array for a rhs: float64 if real (e.g. ``narrowflow.rhs.pack_params``), else
    complex128, 1-D contiguous; None gives a complex zero of length 1."""
    if data is None:
        return np.zeros(1, dtype=np.complex128)
    arr = np.asarray(data)
    if np.iscomplexobj(arr):
        return np.ascontiguousarray(arr, dtype=np.complex128).ravel()
    return np.ascontiguousarray(arr, dtype=np.float64).ravel()


def _python_rhs(rhs):
    """A Python callable as the integrator expects it: complex128 (n,) out."""
    def f(z, y, data):
        return np.asarray(rhs(z, y, data), dtype=np.complex128).reshape(y.shape)
    return f


def run_encoded(rhs, data, kinds, params, y0, rtol, atol, max_nfev):
    """:func:`dop853_path` on an encoded path with ``rhs`` a CachedIntegrator, a Numba
    function (compiled) or any callable (Python); no argument checks."""
    if isinstance(rhs, CachedIntegrator):
        return rhs(data, kinds, params, y0, rtol, atol, max_nfev)
    if _is_jit(rhs):
        return dop853_path(rhs, data, kinds, params, y0, float(rtol), float(atol), int(max_nfev),
                           *TABLEAU)
    return _dop853_impl(_python_rhs(rhs), data, kinds, params, y0, float(rtol), float(atol),
                        int(max_nfev), *TABLEAU)


def integrate_path(rhs, y0, path, data=None, *, rtol=1e-12, atol=None, max_nfev=DEFAULT_MAX_NFEV):
    """Integrate ``dy/dz = rhs(z, y, data)`` along ``path`` from ``y0``.

    rhs: ``(z complex, y complex128 (n,), data (q,)) -> complex128 (n,)``; a Numba ``njit``
    function runs compiled, a :class:`CachedIntegrator` runs its cached machine code, any
    other callable runs in Python (the same steps). data: float64 or complex128 array (or
    None). atol: default ``rtol``.
    Returns ``(y_end complex128 (n,), nfev, naccept, nreject, status)``; status 0 is
    success (see ``STATUS_*``).
    """
    path = as_path(path)
    y0 = np.ascontiguousarray(y0, dtype=np.complex128).ravel()
    data = as_data(data)
    if not (rtol > 0):
        raise ValueError(f"rtol must be positive, got {rtol!r}")
    if atol is None:
        atol = rtol
    kinds, params, _ = path.encode()
    return run_encoded(rhs, data, kinds, params, y0, rtol, atol, max_nfev)
