"""Transport along complex paths: linear systems Y' = A(z) Y, and a vector field
together with its variational equation (docs/math.md §5.4–§5.5).

All integration runs on the real path parameter ``s`` of each elementary piece of
a :class:`~narrowflow.monodromy.paths.Path`: ``dy/ds = g(z(s), y) z'(s)`` with
complex states, by Hairer's DOP853 (8th order, 5th/3rd order error estimate,
coefficients from scipy), restarted at every breakpoint of the path (z'(s)
jumps there). The integrator is a Numba function that receives the right-hand
side as a compiled function; with plain-Python right-hand sides the very same
algorithm runs as Python (``py_func``), slower but identical.

Every result is computed at two tolerances (``rtol`` and ``rtol * tol_ratio``):
their difference is the error estimate (conservative: it measures the coarser
run), the closure defect of the base curve is reported at both and a loop only
counts as closed when the defect is below the accuracy floor or shrinks with
the tolerance; the matrix is recomputed along a deformed copy of the loop
(``Path.deformed``) and must not change; the Liouville residual
``det M - exp(∮ tr A)`` is reported.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field as dc_field

import numba
import numpy as np
from numba import njit

from .paths import Path, as_path

__all__ = ["TransportResult", "LoopMonodromy", "transport_linear", "transport_field",
           "variational_monodromy", "integrate_path", "DEFAULT_MAX_NFEV"]

DEFAULT_MAX_NFEV = 400_000

# ---------------------------------------------------------------------------
# DOP853 coefficients (Hairer), taken from scipy so that there is one source
# ---------------------------------------------------------------------------
from scipy.integrate._ivp import dop853_coefficients as _dc  # noqa: E402

_A = np.ascontiguousarray(_dc.A[:12, :12], dtype=np.float64)
_B = np.ascontiguousarray(_dc.B, dtype=np.float64)
_C = np.ascontiguousarray(_dc.C[:12], dtype=np.float64)
_E3 = np.ascontiguousarray(_dc.E3, dtype=np.float64)
_E5 = np.ascontiguousarray(_dc.E5, dtype=np.float64)

STATUS_OK = 0
STATUS_BUDGET = 1       # evaluation budget exhausted
STATUS_NONFINITE = 2    # the solution blew up (a singularity on or near the path)
STATUS_STEP = 3         # step size underflow
_STATUS_TEXT = {STATUS_OK: "ok", STATUS_BUDGET: "evaluation budget exhausted",
                STATUS_NONFINITE: "non-finite values (singularity on or near the path?)",
                STATUS_STEP: "step size underflow (singularity on or near the path?)"}


@njit(cache=True, error_model="numpy")
def _piece_eval(kind, prm, u):
    """z and dz/du of one elementary piece at local parameter u (see paths.py)."""
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


@njit(error_model="numpy")
def _wrms(v, scale):
    acc = 0.0
    for i in range(v.size):
        q = abs(v[i]) / scale[i]
        acc += q * q
    return math.sqrt(acc / v.size)


def _integrate_impl(rhs, data, kinds, params, y0, rtol, atol, max_nfev, A, B, C, E3, E5):
    """DOP853 along all pieces. Returns (y_end, nfev, naccept, nreject, status)."""
    n = y0.size
    y = y0.copy()
    K = np.empty((13, n), dtype=np.complex128)
    ytmp = np.empty(n, dtype=np.complex128)
    scale = np.empty(n, dtype=np.float64)
    nfev = 0
    nacc = 0
    nrej = 0
    for k in range(kinds.size):
        kind = kinds[k]
        prm = params[k]
        z, dz = _piece_eval(kind, prm, 0.0)
        K[0] = rhs(z, y, data) * dz
        nfev += 1
        # initial step (Hairer, Solving ODEs I, II.4), in the local parameter
        for i in range(n):
            scale[i] = atol + rtol * abs(y[i])
        d0 = _wrms(y, scale)
        d1 = _wrms(K[0], scale)
        if d0 < 1e-5 or d1 < 1e-5:
            h0 = 1e-6
        else:
            h0 = 0.01 * d0 / d1
        h0 = min(h0, 1.0)
        for i in range(n):
            ytmp[i] = y[i] + h0 * K[0, i]
        z1, dz1 = _piece_eval(kind, prm, h0)
        f1 = rhs(z1, ytmp, data) * dz1
        nfev += 1
        d2 = 0.0
        for i in range(n):
            q = abs(f1[i] - K[0, i]) / scale[i]
            d2 += q * q
        d2 = math.sqrt(d2 / n) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
        h = min(100 * h0, h1, 1.0)
        u = 0.0
        while u < 1.0:
            if not (np.isfinite(h)) or h < 1e-14:
                return y, nfev, nacc, nrej, 3
            last = False
            if u + h >= 1.0:
                h = 1.0 - u
                last = True
            for st in range(1, 12):
                for i in range(n):
                    acc = 0j
                    for j in range(st):
                        acc += A[st, j] * K[j, i]
                    ytmp[i] = y[i] + h * acc
                zs, dzs = _piece_eval(kind, prm, u + C[st] * h)
                K[st] = rhs(zs, ytmp, data) * dzs
            ynew = np.empty(n, dtype=np.complex128)
            for i in range(n):
                acc = 0j
                for j in range(12):
                    acc += B[j] * K[j, i]
                ynew[i] = y[i] + h * acc
            ze, dze = _piece_eval(kind, prm, 1.0 if last else u + h)
            K[12] = rhs(ze, ynew, data) * dze
            nfev += 12
            finite = True
            for i in range(n):
                if not (np.isfinite(ynew[i].real) and np.isfinite(ynew[i].imag)):
                    finite = False
                scale[i] = atol + rtol * max(abs(y[i]), abs(ynew[i]))
            e5 = 0.0
            e3 = 0.0
            for i in range(n):
                a5 = 0j
                a3 = 0j
                for j in range(13):
                    a5 += E5[j] * K[j, i]
                    a3 += E3[j] * K[j, i]
                q5 = abs(a5) / scale[i]
                q3 = abs(a3) / scale[i]
                e5 += q5 * q5
                e3 += q3 * q3
            if e5 == 0.0 and e3 == 0.0:
                err = 0.0
            else:
                err = h * e5 / math.sqrt((e5 + 0.01 * e3) * n)
            if not finite or not np.isfinite(err):
                if h < 1e-10:
                    return y, nfev, nacc, nrej, 2
                h *= 0.2
                nrej += 1
                continue
            if err <= 1.0:
                u = 1.0 if last else u + h
                for i in range(n):
                    y[i] = ynew[i]
                    K[0, i] = K[12, i]
                nacc += 1
                fac = 10.0 if err == 0.0 else min(10.0, 0.9 * err ** (-1.0 / 8.0))
                h *= fac
            else:
                nrej += 1
                h *= max(0.2, 0.9 * err ** (-1.0 / 8.0))
            if nfev > max_nfev:
                return y, nfev, nacc, nrej, 1
    return y, nfev, nacc, nrej, 0


_integrate_jit = njit(error_model="numpy")(_integrate_impl)


# ---------------------------------------------------------------------------
# integrators cached on disk: the rhs as a global of a generated module
# ---------------------------------------------------------------------------
# Numba cannot cache a function that receives another compiled function as an argument, so
# ``_integrate_jit`` is compiled again in every process (seconds). For right-hand sides that
# are module-level functions, ``cached_integrators`` writes a module in which the integrator
# calls the rhs as a global (the source of ``_integrate_impl`` with ``rhs`` substituted): that
# compiles once and is loaded from Numba's cache afterwards.

class CachedIntegrator:
    """A DOP853 path integrator with its rhs compiled in; pass it where an rhs is expected."""

    def __init__(self, fn, label):
        self.fn = fn
        self.label = label

    def __repr__(self):
        return f"CachedIntegrator({self.label})"


def _integrator_source(label: str, rhs_name: str) -> str:
    import inspect
    import re
    import textwrap
    src = textwrap.dedent(inspect.getsource(_integrate_impl))
    src = src.replace("def _integrate_impl(rhs, data,", f"def integrate_{label}(data,", 1)
    src = re.sub(r"\brhs\(", f"{rhs_name}(", src)
    return '@njit(cache=True, error_model="numpy")\n' + src


def cached_integrators(tag: str, header: str, labels: dict, depends=()) -> dict:
    """Load (generating on first use) a module with one cached integrator per rhs.

    tag: module name part; header: Python source defining or importing the rhs functions
    ``(z, y, data) -> dy/dz``; labels: {label: rhs name}; depends: the Python functions the
    imported rhs use. Numba's cache only watches the file of the cached function itself, so
    the source of everything it compiles in (``depends``, ``_piece_eval``, ``_wrms``) is
    hashed into the generated module's name: any change gives a new module and a new cache.
    Returns {label: CachedIntegrator}.
    """
    import hashlib
    import importlib.util
    import os
    import sys
    from narrowflow.rhs import cache_dir
    import inspect
    body = "\n\n".join(_integrator_source(lb, nm) for lb, nm in labels.items())
    deps = "".join(inspect.getsource(getattr(f, "py_func", f))
                   for f in (*depends, _piece_eval, _wrms))
    dep_hash = hashlib.sha1(deps.encode()).hexdigest()
    source = (f"# generated by narrowflow.monodromy.transport; dependencies {dep_hash}\n"
              "import math\nimport numpy as np\nfrom numba import njit\n"
              "from narrowflow.monodromy.transport import _piece_eval, _wrms\n"
              + header + "\n\n" + body + "\n")
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    modname = f"narrowflow._generated.mono_{tag}_{digest}"
    if modname not in sys.modules:
        path = cache_dir() / f"mono_{tag}_{digest}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)      # atomic: concurrent processes never see half a file
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    module = sys.modules[modname]
    return {lb: CachedIntegrator(getattr(module, f"integrate_{lb}"), f"{tag}.{lb}") for lb in labels}


def _py_piece_eval(kind, prm, u):
    return _piece_eval.py_func(kind, prm, u)


def _as_data(data):
    """Parameter array for a rhs: float64 if real (e.g. narrowflow.rhs.pack_params), else complex128."""
    if data is None:
        return np.zeros(1, dtype=np.complex128)
    arr = np.asarray(data)
    if np.iscomplexobj(arr):
        return np.ascontiguousarray(arr, dtype=np.complex128).ravel()
    return np.ascontiguousarray(arr, dtype=np.float64).ravel()


def integrate_path(rhs, y0, path, data=None, *, rtol=1e-12, atol=None, max_nfev=DEFAULT_MAX_NFEV,
                   compiled=None):
    """Integrate ``dy/dz = rhs(z, y, data)`` along ``path`` from ``y0``.

    rhs: ``(z complex, y complex128 (n,), data complex128 (q,)) -> complex128 (n,)``;
    a Numba ``njit`` function runs compiled, any other callable in Python.
    Returns ``(y_end complex128 (n,), nfev, naccept, nreject, status)``; status 0 is
    success (see ``STATUS_*``).
    """
    path = as_path(path)
    y0 = np.ascontiguousarray(y0, dtype=np.complex128).ravel()
    data = _as_data(data)
    if not (rtol > 0):
        raise ValueError(f"rtol must be positive, got {rtol!r}")
    if atol is None:
        atol = rtol
    kinds, params, _ = path.encode()
    if isinstance(rhs, CachedIntegrator):
        return rhs.fn(data, kinds, params, y0, float(rtol), float(atol), int(max_nfev),
                      _A, _B, _C, _E3, _E5)
    if compiled is None:
        compiled = isinstance(rhs, numba.core.registry.CPUDispatcher)
    if compiled:
        return _integrate_jit(rhs, data, kinds, params, y0, float(rtol), float(atol),
                              int(max_nfev), _A, _B, _C, _E3, _E5)
    # plain Python: same algorithm, Python loops replaced by numpy where it matters
    return _integrate_python(rhs, data, kinds, params, y0, float(rtol), float(atol), int(max_nfev))


def _integrate_python(rhs, data, kinds, params, y0, rtol, atol, max_nfev):
    """The DOP853 of ``_integrate_impl`` with numpy vector operations (for Python rhs)."""
    n = y0.size
    y = y0.copy()
    K = np.empty((13, n), dtype=np.complex128)
    nfev = nacc = nrej = 0

    def wrms(v, sc):
        return float(np.sqrt(np.mean((np.abs(v) / sc) ** 2)))

    for kind, prm in zip(kinds, params):
        z, dz = _py_piece_eval(kind, prm, 0.0)
        K[0] = np.asarray(rhs(z, y, data), dtype=np.complex128) * dz
        nfev += 1
        sc = atol + rtol * np.abs(y)
        d0, d1 = wrms(y, sc), wrms(K[0], sc)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, 1.0)
        z1, dz1 = _py_piece_eval(kind, prm, h0)
        f1 = np.asarray(rhs(z1, y + h0 * K[0], data), dtype=np.complex128) * dz1
        nfev += 1
        d2 = wrms(f1 - K[0], sc) / h0
        h1 = max(1e-6, h0 * 1e-3) if (d1 <= 1e-15 and d2 <= 1e-15) else (0.01 / max(d1, d2)) ** 0.125
        h = min(100 * h0, h1, 1.0)
        u = 0.0
        while u < 1.0:
            if not np.isfinite(h) or h < 1e-14:
                return y, nfev, nacc, nrej, STATUS_STEP
            last = u + h >= 1.0
            if last:
                h = 1.0 - u
            for st in range(1, 12):
                ytmp = y + h * (_A[st, :st] @ K[:st])
                zs, dzs = _py_piece_eval(kind, prm, u + _C[st] * h)
                K[st] = np.asarray(rhs(zs, ytmp, data), dtype=np.complex128) * dzs
            ynew = y + h * (_B @ K[:12])
            ze, dze = _py_piece_eval(kind, prm, 1.0 if last else u + h)
            K[12] = np.asarray(rhs(ze, ynew, data), dtype=np.complex128) * dze
            nfev += 12
            sc = atol + rtol * np.maximum(np.abs(y), np.abs(ynew))
            e5 = float(np.sum((np.abs(_E5 @ K) / sc) ** 2))
            e3 = float(np.sum((np.abs(_E3 @ K) / sc) ** 2))
            err = 0.0 if (e5 == 0 and e3 == 0) else h * e5 / math.sqrt((e5 + 0.01 * e3) * n)
            if not np.all(np.isfinite(ynew)) or not np.isfinite(err):
                if h < 1e-10:
                    return y, nfev, nacc, nrej, STATUS_NONFINITE
                h *= 0.2
                nrej += 1
                continue
            if err <= 1.0:
                u = 1.0 if last else u + h
                y = ynew
                K[0] = K[12]
                nacc += 1
                h *= 10.0 if err == 0 else min(10.0, 0.9 * err ** -0.125)
            else:
                nrej += 1
                h *= max(0.2, 0.9 * err ** -0.125)
            if nfev > max_nfev:
                return y, nfev, nacc, nrej, STATUS_BUDGET
    return y, nfev, nacc, nrej, STATUS_OK


# ---------------------------------------------------------------------------
# right-hand sides: linear systems and field + VE, with the trace for Liouville
# ---------------------------------------------------------------------------
_RHS_CACHE: dict = {}


def _is_jit(f) -> bool:
    return isinstance(f, numba.core.registry.CPUDispatcher)


def linear_rhs(A, n: int):
    """rhs for ``Y' = A(z, data) Y`` on the state ``[vec Y (n*n, row-major), ∫tr A]``."""
    key = ("linear", A, n)
    if key in _RHS_CACHE:
        return _RHS_CACHE[key]
    nn = n * n

    def rhs(z, y, data):
        M = A(z, data)
        out = np.empty(nn + 1, dtype=np.complex128)
        tr = 0j
        for i in range(n):
            tr += M[i, i]
            for j in range(n):
                acc = 0j
                for k in range(n):
                    acc += M[i, k] * y[k * n + j]
                out[i * n + j] = acc
        out[nn] = tr
        return out

    f = njit(error_model="numpy")(rhs) if _is_jit(A) else rhs
    _RHS_CACHE[key] = f
    return f


def field_rhs(field, jacobian, n: int, with_data: bool = False):
    """rhs for ``y' = f(y)``, ``Phi' = J(y) Phi`` on ``[y (n), vec Phi (n*n), ∫tr J]``.

    ``field(y) -> (n,)``, ``jacobian(y) -> (n, n)``, complex (or ``field(y, data)``,
    ``jacobian(y, data)`` with ``with_data``: then one compiled rhs serves every parameter
    set); the path variable is the (complex) time.
    """
    key = ("field", field, jacobian, n, with_data)
    if key in _RHS_CACHE:
        return _RHS_CACHE[key]
    nn = n * n

    if with_data:
        def fj(x, data):
            return field(x, data), jacobian(x, data)
    else:
        def fj(x, data):
            return field(x), jacobian(x)
    if _is_jit(field) and _is_jit(jacobian):
        fj = njit(error_model="numpy")(fj)

    def rhs(z, y, data):
        x = y[:n].copy()
        fx, J = fj(x, data)
        out = np.empty(n + nn + 1, dtype=np.complex128)
        tr = 0j
        for i in range(n):
            out[i] = fx[i]
            tr += J[i, i]
            for j in range(n):
                acc = 0j
                for k in range(n):
                    acc += J[i, k] * y[n + k * n + j]
                out[n + i * n + j] = acc
        out[n + nn] = tr
        return out

    def rhs_py(z, y, data):
        x = y[:n]
        fx, J = fj(x, data)
        fx = np.asarray(fx, dtype=np.complex128).reshape(n)
        J = np.asarray(J, dtype=np.complex128).reshape(n, n)
        Phi = y[n:n + nn].reshape(n, n)
        return np.concatenate([fx, (J @ Phi).ravel(), [np.trace(J)]])

    f = njit(error_model="numpy")(rhs) if (_is_jit(field) and _is_jit(jacobian)) else rhs_py
    _RHS_CACHE[key] = f
    return f


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class TransportResult:
    """Transport of a fundamental matrix along one path.

    matrix: complex (n, n), the transported fundamental matrix (Phi(start) = I), at ``rtol``.
    error: float, a conservative absolute max-entry error estimate of ``matrix``: the
        largest of the difference to the run at ``rtol * tol_ratio``, the change along the
        deformed loop (when checked) and the Liouville and backwards residuals times
        max |matrix entry| (inf when a check run failed).
    rel_error: error / max |matrix entry|.
    y_end: complex (n,) end of the base curve (field transport) or None (linear systems).
    closure_defect: (coarse, fine) relative defects |y_end - y0|_max / max(1, |y0|_max), or (0, 0).
    closed: bool, the verified closure (see module docstring); True for closed linear loops.
    closure_note: why ``closed`` is what it is.
    deformation_change: max-entry change of the matrix under ``Path.deformed`` (None: not checked).
    deformation_ok: bool or None.
    trace_integral: complex, ∮ tr A along the path.
    liouville_residual: |det M - exp(∮ tr A)| / |exp(∮ tr A)|.
    inverse_residual: max|M_back M - I| / (max|M_back| max|M|) with M_back from the loop
        travelled backwards (closed loops; None when not checked).
    nfev: total right-hand side evaluations (all runs); seconds: wall time of all runs.
    status: "ok" or why integration stopped.
    """
    path: Path
    matrix: np.ndarray
    error: float
    rel_error: float
    y_end: np.ndarray | None
    closure_defect: tuple
    closed: bool
    closure_note: str
    deformation_change: float | None
    deformation_ok: bool | None
    trace_integral: complex
    liouville_residual: float
    nfev: int
    seconds: float
    status: str = "ok"
    tolerances: tuple = ()
    extra: dict = dc_field(default_factory=dict)
    # other estimates of the same matrix: {"coarse": at rtol*tol_ratio, "deformed": along the
    # deformed loop}; statistics computed from them give realistic error bars (groups.py)
    alternates: dict = dc_field(default_factory=dict)
    # max |M_back M - I| / (|M_back| |M|) for the loop travelled backwards (None: not checked)
    inverse_residual: float | None = None

    @property
    def verified(self) -> bool:
        """Closed, integrated successfully and (where checked) stable under deformation."""
        return bool(self.status == "ok" and self.closed and self.deformation_ok is not False)

    def summary(self) -> str:
        d = self.closure_defect
        dd = "not checked" if self.deformation_change is None else f"{self.deformation_change:.1e}"
        return (f"{'verified' if self.verified else 'NOT verified'}: {self.closure_note}; "
                f"closure defect {d[0]:.1e} -> {d[1]:.1e}; error {self.error:.1e} "
                f"(rel {self.rel_error:.1e}); deformation change {dd}; "
                f"Liouville residual {self.liouville_residual:.1e}; "
                + (f"backwards {self.inverse_residual:.1e}; " if self.inverse_residual is not None
                   else "")
                + f"nfev {self.nfev}; "
                f"{self.seconds * 1e3:.1f} ms")

    # A short alias used by reports
    @property
    def M(self) -> np.ndarray:
        return self.matrix

    @property
    def full_matrix(self) -> np.ndarray:
        """The whole transported matrix (differs from ``matrix`` when a block was extracted)."""
        return self.extra.get("full_matrix", self.matrix)

    def __array__(self, dtype=None, copy=None):
        return np.array(self.matrix, dtype=dtype)

    @property
    def shape(self):
        return self.matrix.shape

    @property
    def dtype(self):
        return self.matrix.dtype

    def __getitem__(self, idx):
        return self.matrix[idx]

    def __matmul__(self, other):
        return self.matrix @ np.asarray(other)

    def __rmatmul__(self, other):
        return np.asarray(other) @ self.matrix


LoopMonodromy = TransportResult


def _closure(d_coarse: float, d_fine: float, rtol_fine: float, tol_ratio: float,
             floor_factor: float = 100.0) -> tuple[bool, str]:
    """Decide closure from the defects at two tolerances.

    Closed if the fine defect is below the accuracy floor (``floor_factor * rtol``:
    a miss smaller than that cannot be told apart from integration error), or if it is
    below 1e-6 and has shrunk by at least sqrt(tol_ratio) from the coarse run. A defect
    that stays put as the tolerance tightens is a loop that is not a loop.
    """
    floor = floor_factor * rtol_fine
    if not (np.isfinite(d_fine) and np.isfinite(d_coarse)):
        return False, "base curve not finite"
    if d_fine <= 1e-6 and d_fine * math.sqrt(tol_ratio) <= d_coarse:
        return True, f"closure defect shrinks with the tolerance (x{d_coarse / max(d_fine, 1e-300):.0f})"
    if d_fine <= floor:
        return True, f"closure defect below the accuracy floor {floor:.0e}"
    if d_fine > 1e-6:
        return False, "base curve does not return to its start"
    return False, "defect does not shrink with tolerance: not closed"


def inverse_residual(M, M_back) -> float:
    """max |M_back M - I| / (max|M_back| max|M|): the loop travelled backwards must give M^-1."""
    M = np.asarray(M)
    return float(_maxabs(M_back @ M - np.eye(M.shape[0])) / max(_maxabs(M_back) * _maxabs(M), 1e-300))


def _maxabs(a) -> float:
    return float(np.max(np.abs(a))) if np.size(a) else 0.0


def _run_linear(rhs, n, path, data, rtol, max_nfev, compiled):
    y0 = np.zeros(n * n + 1, dtype=np.complex128)
    y0[:n * n] = np.eye(n).ravel()
    y, nfev, _, _, status = integrate_path(rhs, y0, path, data, rtol=rtol, atol=rtol,
                                           max_nfev=max_nfev, compiled=compiled)
    return y[:n * n].reshape(n, n).copy(), y[n * n], nfev, status


def _is_polyline(v) -> bool:
    """A non-empty list/tuple/1-D array of numbers: the vertices of one polyline path."""
    if isinstance(v, np.ndarray):
        return v.ndim == 1 and v.size > 0 and np.issubdtype(v.dtype, np.number)
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(x, (int, float, complex, np.number)) and not isinstance(x, bool)
                    for x in v))


def transport_linear(A, n, paths, data=None, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                     max_nfev=DEFAULT_MAX_NFEV, check_inverse=True, rhs=None):
    """Fundamental matrices of ``Y' = A(z, data) Y`` along paths, Y(start) = I.

    A: ``(z complex, data complex128 (q,)) -> complex128 (n, n)``, Numba njit for speed.
    paths: one path or a list (Path, or a sequence of complex vertices).
    deform: relative size of the deformation check (0 or None: skip).
    check_inverse: also travel closed loops backwards (``inverse_residual``).
    rhs: optional replacement of the rhs built from A (e.g. a CachedIntegrator on the state
    ``[vec Y, ∫tr A]``).
    Returns a TransportResult (one path) or a list of them. A path that does not close in
    the z-plane gives ``closed=False`` (its matrix is a connection, not a monodromy).
    """
    single = isinstance(paths, Path) or not isinstance(paths, (list, tuple)) or _is_polyline(paths)
    plist = [as_path(paths)] if single else [as_path(p) for p in paths]
    n = _check_n(n)
    if rhs is None:
        rhs = linear_rhs(A, n)
    compiled = _is_jit(rhs)
    if data is not None:
        data = _as_data(data)
    out = []
    for p in plist:
        def run(pth, tol, p=p):
            M, w, nfev, st = _run_linear(rhs, n, pth, data, tol, max_nfev, compiled)
            return None, M, w, nfev, st
        out.append(verified_transport(run, p, None, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                                      check_inverse=check_inverse))
    return out[0] if single else out


def verified_transport(run, path, y0, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                       closure_floor=100.0, check_inverse=True) -> TransportResult:
    """The verification protocol shared by every transport (module docstring).

    run(path, tol) -> (y_end or None, M (n, n), ∮tr, nfev, status): one integration.
    y0: the base point of the curve (None for linear systems in the z-plane: closure is
    then that of the path). Runs at rtol and rtol * tol_ratio (error estimate, closure defect
    at both), along ``path.deformed(deform)`` and ``path.reversed()`` when closed.
    """
    t0 = time.perf_counter()
    ye2, M2, w2, nf2, st2 = run(path, rtol)
    ye1, M1, _, nf1, st1 = run(path, rtol * tol_ratio)
    nfev = nf1 + nf2
    status = st2 if st2 != STATUS_OK else st1
    err = _maxabs(M2 - M1)
    if status != STATUS_OK:
        defects, closed, note = (0.0, 0.0), False, _STATUS_TEXT[status]
    elif y0 is None:
        defects, closed = (0.0, 0.0), path.is_closed
        note = "closed path in the z-plane" if closed else "open path: a connection matrix"
    else:
        ys = max(1.0, _maxabs(y0))
        defects = (_maxabs(ye1 - y0) / ys, _maxabs(ye2 - y0) / ys)
        closed, note = _closure(defects[0], defects[1], rtol, tol_ratio, closure_floor)
    dchange, dok, inv = None, None, None
    alts = {"coarse": M1}
    if deform and status == STATUS_OK and closed:
        _, Md, _, nfd, std = run(path.deformed(deform), rtol)
        nfev += nfd
        dchange = _maxabs(Md - M2) if std == STATUS_OK else float("inf")
        dok = bool(dchange <= max(10 * err, math.sqrt(rtol) * max(1.0, _maxabs(M2))))
        if std == STATUS_OK:
            alts["deformed"] = Md
        if not dok:
            note += "; matrix changes under deformation of the loop"
    if check_inverse and status == STATUS_OK and closed:
        _, Mr, _, nfr, str_ = run(path.reversed(), rtol)
        nfev += nfr
        inv = inverse_residual(M2, Mr) if str_ == STATUS_OK else float("inf")
    return _make_result(path, M2, err, ye2, defects, closed, note, dchange, dok, w2, nfev,
                        time.perf_counter() - t0, status, (rtol, rtol * tol_ratio), alts, inv)


def _make_result(p, M, err, y_end, defects, closed, note, dchange, dok, w, nfev, secs, status, tols,
                 alternates=None, inv=None):
    """The TransportResult; ``err`` (the two-tolerance difference) is widened to the other
    error estimates (docs/math.md §5.4–§5.5): the deformation change, and the Liouville and
    backwards residuals (relative) times max|M|. A residual that could not be computed
    (nan: the run failed) is left out; an infinite one (a check run failed) makes the
    error infinite."""
    scale = max(_maxabs(M), 1e-300)
    ew = np.exp(w) if np.isfinite(w) else np.nan
    with np.errstate(all="ignore"):
        liou = float(abs(np.linalg.det(M) - ew) / abs(ew)) if np.all(np.isfinite(M)) else float("nan")
    for extra in (dchange, liou * scale, None if inv is None else inv * scale):
        if extra is not None and not math.isnan(extra):
            err = max(err, float(extra))
    return TransportResult(path=p, matrix=M, error=err, rel_error=err / scale, y_end=y_end,
                           closure_defect=defects, closed=bool(closed and status == STATUS_OK),
                           closure_note=note if status == STATUS_OK else _STATUS_TEXT[status],
                           deformation_change=dchange, deformation_ok=dok, trace_integral=complex(w),
                           liouville_residual=liou, nfev=int(nfev), seconds=secs,
                           status="ok" if status == STATUS_OK else _STATUS_TEXT[status],
                           tolerances=tols, alternates=dict(alternates or {}),
                           inverse_residual=inv)


def _check_n(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _run_field(rhs, n, y0, path, rtol, max_nfev, compiled, data=None):
    s0 = np.zeros(n + n * n + 1, dtype=np.complex128)
    s0[:n] = y0
    s0[n:n + n * n] = np.eye(n).ravel()
    # atol relative to the size of the base point: Phi starts at I, y at y0
    atol = rtol
    y, nfev, _, _, status = integrate_path(rhs, s0, path, data, rtol=rtol, atol=atol,
                                           max_nfev=max_nfev, compiled=compiled)
    return y[:n].copy(), y[n:n + n * n].reshape(n, n).copy(), y[n + n * n], nfev, status


def transport_field(field, jacobian, y0, path, *, rtol=1e-12, tol_ratio=100.0, deform=0.02,
                    max_nfev=DEFAULT_MAX_NFEV, closure_floor=100.0, data=None, check_inverse=True,
                    rhs=None):
    """Transport ``y' = f(y)`` and its VE ``Phi' = J(y) Phi`` jointly along one complex-time path.

    field(y) -> (n,), jacobian(y) -> (n, n): complex, Numba njit (compiled) or plain Python.
    y0: complex base point (n,). path: Path or sequence of complex times (e.g. [0, T]).
    data: optional complex parameter array; if given, ``field(y, data)``, ``jacobian(y, data)``.
    Returns a TransportResult whose ``closed`` is the verified closure of the base curve.
    """
    p = as_path(path)
    y0 = _check_y0(y0)
    n = y0.size
    if rhs is None:
        rhs = field_rhs(field, jacobian, n, with_data=data is not None)
    if data is not None:
        data = _as_data(data)
    compiled = _is_jit(rhs)

    def run(pth, tol):
        return _run_field(rhs, n, y0, pth, tol, max_nfev, compiled, data)
    return verified_transport(run, p, y0, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                              closure_floor=closure_floor, check_inverse=check_inverse)


def _check_y0(y0) -> np.ndarray:
    try:
        y = np.asarray(y0, dtype=np.complex128)
    except (TypeError, ValueError):
        raise TypeError("y0 must be an array of complex numbers") from None
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y0 must be a non-empty 1-D array, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y0 must be finite")
    return y


def variational_monodromy(field, jacobian, y0, paths, *, rtol=1e-12, tol_ratio=100.0,
                          deform=0.02, max_nfev=DEFAULT_MAX_NFEV, data=None, check_inverse=True,
                          rhs=None):
    """Monodromy of the variational equation of ``y' = field(y)`` along each path.

    field(y) -> dy/dt (n,), jacobian(y) -> (n, n): complex, autonomous; Numba njit
    functions run compiled, plain Python callables run (slowly) in Python.
    y0: complex base point (n,). paths: a list of paths in the complex-time plane, each a
    Path or a sequence of complex times (a polyline, e.g. ``[0, T]`` for a period); a single
    Path or polyline given alone counts as one path. A path
    may be open in time but must close on the curve (y(end) = y0): that is verified
    (closure defect at two tolerances, shrinking; matrix unchanged under a ``deform``
    relative deformation) and reported per path in ``.closed`` / ``.verified``.
    data: optional complex parameters, then ``field(y, data)`` and ``jacobian(y, data)``
    (one compilation serves all parameter values). rhs: optional replacement of the joint
    rhs built from field and jacobian (e.g. a CachedIntegrator, compiled once per machine).
    Returns a list of TransportResult with ``.matrix`` (n, n), ``.closed``,
    ``.closure_defect``, ``.error``, ``.nfev``.
    """
    if isinstance(paths, Path) or _is_polyline(paths):
        paths = [paths]         # one path given alone, e.g. [0, T]: as transport_linear does
    if not isinstance(paths, (list, tuple)):
        raise TypeError("paths must be a list of paths (Path objects or sequences of complex times)")
    plist = []
    for i, p in enumerate(paths):
        try:
            plist.append(as_path(p))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"paths[{i}]: {exc}") from None
    if not callable(field):
        raise TypeError("field must be callable")
    if not callable(jacobian):
        raise TypeError("jacobian must be callable")
    return [transport_field(field, jacobian, y0, p, rtol=rtol, tol_ratio=tol_ratio, deform=deform,
                            max_nfev=max_nfev, data=data, check_inverse=check_inverse, rhs=rhs)
            for p in plist]
