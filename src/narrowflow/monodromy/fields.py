"""Built-in vector fields with their derivative tensors, one definition each.

Hénon–Heiles serves the variational-equation transport (``systems.HenonHeiles``) and the
jets (the derivative signature of :mod:`narrowflow.monodromy.jets`) alike. The file has no
Numba callees in other files, so its own on-disk cache is always current.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from narrowflow import jit as _jit

__all__ = ["henon_heiles_derivs"]


@njit(**_jit.NOGIL)
def henon_heiles_derivs(y, params, order, F, D1, D2, D3, D4):
    """Derivatives of the Hénon–Heiles field, y = (q1, q2, p1, p2), params = (A, B, eps).

    H = (p1² + p2²)/2 + (A q1² + B q2²)/2 + q1² q2 + (eps/3) q2³. Fills F (4,) and, up to
    ``order``, D1 = DF (4, 4) and D2 = D²F (4, 4, 4); F is quadratic, so D²F is constant and
    D³F = D⁴F = 0 (D3, D4 are not touched). The one definition of the field: the VE transport
    (``_hh_rhs``) and the jets (the derivative signature of ``monodromy.jets``) both use it.
    """
    A = params[0]
    B = params[1]
    eps = params[2]
    q1 = y[0]
    q2 = y[1]
    F[0] = y[2]
    F[1] = y[3]
    F[2] = -A * q1 - 2.0 * q1 * q2
    F[3] = -B * q2 - q1 * q1 - eps * q2 * q2
    if order < 1:
        return
    D1[:, :] = 0.0
    D1[0, 2] = 1.0
    D1[1, 3] = 1.0
    D1[2, 0] = -A - 2.0 * q2
    D1[2, 1] = -2.0 * q1
    D1[3, 0] = -2.0 * q1
    D1[3, 1] = -B - 2.0 * eps * q2
    if order < 2:
        return
    D2[:, :, :] = 0.0
    D2[2, 0, 1] = -2.0
    D2[2, 1, 0] = -2.0
    D2[3, 0, 0] = -2.0
    D2[3, 1, 1] = -2.0 * eps


@njit(**_jit.BASE)
def _hh_fj(y, d, order):
    """(F (4,), DF (4, 4)) at y for complex data d = (A, B, eps) (real parts used)."""
    F = np.empty(4, dtype=np.complex128)
    J = np.empty((4, 4), dtype=np.complex128)
    henon_heiles_derivs(y, d.real, order, F, J, np.empty((1, 1, 1), np.complex128),
                        np.empty((1, 1, 1, 1), np.complex128), np.empty((1, 1, 1, 1, 1), np.complex128))
    return F, J


@njit(**_jit.BASE)
def _hh_field_d(y, d):
    """The Hénon–Heiles field (4,) at complex y, data d = (A, B, eps)."""
    return _hh_fj(y, d, 0)[0]


@njit(**_jit.BASE)
def _hh_jacobian_d(y, d):
    """The Hénon–Heiles Jacobian (4, 4) at complex y, data d = (A, B, eps)."""
    return _hh_fj(y, d, 1)[1]
