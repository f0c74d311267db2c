"""Vector fields for jet transport, and one transport of a k-jet along a path.

A :class:`JetSystem` names the derivative function of a field (the signature of
:mod:`.kernel`), its parameters and dimension; :func:`transport_jet` integrates the packed
jet state along a path with the package's one path integrator
(:mod:`narrowflow.monodromy.pathint`): the built-in fields (Hénon–Heiles, network gradient
fields) through one disk-cached integrator, a user's derivative function through the same
integrator compiled with it (once per process).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit

from narrowflow import derivatives as _dv
from narrowflow.derivatives import network_derivs as _net_derivs

from .. import pathint
from ..pathint import NJ_DYNAMIC as _NJD
from ..paths import Path, as_path
from ..fields import henon_heiles_derivs
from .kernel import MAX_ORDER, _offsets, _shapes, jet_data, jet_rhs

_STATUS = {pathint.STATUS_OK: "success", pathint.STATUS_BUDGET: "evaluation budget exhausted",
           pathint.STATUS_NONFINITE: "non-finite state", pathint.STATUS_STEP: "step size underflow"}


@dataclass
class JetSystem:
    """A vector field for jet transport.

    derivs: Numba function (see the module docstring); params: float64 (q,) run-time
    numbers for it; n: dimension; nz: highest non-zero derivative order of F (e.g. 2 for
    a quadratic field; use MAX_ORDER when unsure); max_order: the highest jet order the
    derivatives support (``nz`` suffices for polynomial fields: then any order up to 4);
    koenigs_c: None for time paths; a complex c for z-plane paths, dy/dz = F(y)/(c z);
    name: for reports.
    """

    derivs: object
    params: np.ndarray
    n: int
    nz: int = MAX_ORDER
    max_order: int = MAX_ORDER
    koenigs_c: complex | None = None
    name: str = "field"
    builtin: int | None = None      # 0 Hénon–Heiles, 1 network: the disk-cached compiled path

    def __post_init__(self):
        self.params = np.ascontiguousarray(np.asarray(self.params, dtype=np.float64).ravel())
        if int(self.n) < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        self.n = int(self.n)

    def in_koenigs_mode(self, c) -> "JetSystem":
        """The same field with paths read in the Koenigs plane z = e^{c t}."""
        return JetSystem(self.derivs, self.params, self.n, self.nz, self.max_order, complex(c),
                         f"{self.name} (z = exp({complex(c):.6g} t))", self.builtin)

    def evaluate(self, y, order=1):
        """(F, DF, D2F, ...) at complex y (n,): numpy arrays, up to ``order``."""
        y = np.ascontiguousarray(np.asarray(y, dtype=np.complex128))
        n = self.n
        arrs = [np.zeros(n, np.complex128)] + [np.zeros(s, np.complex128) for s in _shapes(n, order)]
        self.derivs(y, self.params, min(order, self.nz), *arrs)
        return tuple(arrs[: order + 1])


def henon_heiles_system(eps, ratio=1.0) -> JetSystem:
    """JetSystem of H = (p1²+p2²)/2 + (ratio q1² + q2²)/2 + q1² q2 + (eps/3) q2³."""
    return JetSystem(henon_heiles_derivs, np.array([float(ratio), 1.0, float(eps)]), 4, nz=2,
                     max_order=MAX_ORDER, name=f"Hénon–Heiles(eps={eps:g}, A/B={ratio:g})", builtin=0)


def _check_order(order, system=None):
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an integer, got {type(order).__name__}")
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be in 1..{MAX_ORDER}, got {order}")
    if system is not None and order > system.max_order:
        raise ValueError(f"order {order} exceeds what {system.name} supports ({system.max_order})")
    return int(order)


def _network_jet_system(flow):
    """The JetSystem of a gradient flow: analytic derivatives from narrowflow.derivatives
    (jet orders <= 3)."""
    _dv._check_flow(flow)
    return JetSystem(_net_derivs, _dv.network_params(flow), flow.n_params, nz=3,
                     max_order=_dv.MAX_ORDER,
                     name=f"gradient flow of {flow.network!r} on {flow.data!r}", builtin=1)


def _parse_system(field, derivatives, params, n, nz, max_order):
    if isinstance(field, JetSystem):
        return field
    if derivatives is not None:
        if n is None:
            raise ValueError("n (the dimension) is required with derivatives=")
        return JetSystem(derivatives, np.zeros(1) if params is None else params, n,
                         nz=MAX_ORDER if nz is None else nz,
                         max_order=MAX_ORDER if max_order is None else max_order)
    # a GradientFlow: analytic derivatives from narrowflow.derivatives
    if hasattr(field, "network") and hasattr(field, "data"):
        return _network_jet_system(field)
    if all(hasattr(field, a) for a in ("eps", "ratio")):
        return henon_heiles_system(field.eps, field.ratio)
    raise TypeError("field must be a JetSystem, a GradientFlow, a Hénon–Heiles system, or a "
                    "callable together with derivatives= (a Numba derivative function)")




_BUILTIN = []
_USER_RHS: dict = {}


def _builtin_integrator():
    """The disk-cached integrator of the built-in fields (``kernel.builtin_derivs``)."""
    if not _BUILTIN:
        from pathlib import Path
        import narrowflow.activations
        import narrowflow.fastmath
        import narrowflow.series
        from .. import fields
        # jet_rhs with the built-in derivatives as a global (cacheable), in the same module
        header = ("from narrowflow.monodromy.jets.kernel import _chain, builtin_derivs\n\n\n"
                  f"@njit({pathint.njit_options()})\n"
                  + pathint.specialise(jet_rhs, "derivs", "builtin_derivs", "builtin_jet_rhs"))
        deps = (Path(__file__).with_name("kernel.py"), fields, _dv, narrowflow.activations, narrowflow.fastmath,
                narrowflow.series)
        _BUILTIN.append(pathint.cached_integrators("jets", header, {"jet": "builtin_jet_rhs"},
                                                   depends=deps)["jet"])
    return _BUILTIN[0]


def _rhs_for(system):
    """The rhs ``(z, y, data)`` (or cached integrator) that transports ``system``'s jets."""
    if system.builtin is not None:
        return _builtin_integrator()
    key = id(system.derivs)
    if key not in _USER_RHS:
        derivs = system.derivs

        @njit(**_NJD)
        def user_jet_rhs(z, y, data):
            return jet_rhs(derivs, z, y, data)
        _USER_RHS[key] = (derivs, user_jet_rhs)     # keeps derivs alive: its id is the key
    return _USER_RHS[key][1]


def transport_jet(system: JetSystem, y0, path, order=3, rtol=1e-12, atol=1e-14,
                  max_nfev=2_000_000):
    """Integrate the k-jet of the flow map from ``y0`` along ``path``.

    Returns ``(tensors, info)``: tensors = [Φ_0 (n,), Φ_1 (n,n), ..., Φ_k], complex128;
    info = dict(nfev, accepted, rejected, status (text), code (``pathint.STATUS_*``), seconds).
    """
    order = _check_order(order, system)
    path = as_path(path)
    n = system.n
    y0 = np.ascontiguousarray(np.asarray(y0, dtype=np.complex128).ravel())
    if y0.shape != (n,):
        raise ValueError(f"y0 must have shape ({n},), got {y0.shape}")
    kinds, pprm, _ = path.encode()
    offs = _offsets(n, order)
    st0 = np.zeros(offs[-1], np.complex128)
    st0[:n] = y0
    st0[offs[1]:offs[2]] = np.eye(n).ravel()
    kc = 0j if system.koenigs_c is None else complex(system.koenigs_c)
    params = (np.concatenate([[float(system.builtin)], system.params])
              if system.builtin is not None else system.params)
    data = jet_data(params, n, order, int(system.nz), kc)
    t0 = time.perf_counter()
    st, nfev, nacc, nrej, status = pathint.run_encoded(_rhs_for(system), data, kinds,
                                                       np.ascontiguousarray(pprm), st0,
                                                       rtol, atol, max_nfev)
    secs = time.perf_counter() - t0
    tensors = [st[offs[j]:offs[j + 1]].reshape((n,) * (j + 1)).copy() for j in range(order + 1)]
    return tensors, dict(nfev=int(nfev), accepted=int(nacc), rejected=int(nrej),
                         status=_STATUS[int(status)], code=int(status), seconds=secs)


def _concat(paths, system):
    """Join paths end to start: in time mode (autonomous field) by translating each path;
    in Koenigs mode the paths are closed loops at the same base point and are joined as they are."""
    out = []
    cur = None
    for p in paths:
        p = as_path(p)
        if system.koenigs_c is None:
            if cur is not None:
                p = p.transformed(1.0, cur - p.start)
        elif cur is not None and abs(p.start - cur) > 1e-9 * max(1.0, abs(cur)):
            raise ValueError("in Koenigs mode the loops must start where the previous one ends")
        out.append(p)
        cur = p.end
    return Path(out)
