"""The registry of activation functions σ with derivatives σ', ..., σ'''' .

Each activation exists in three forms that share one set of derivative
formulas (the ``_*_chain`` functions below, written once in plain arithmetic):

- ``Activation.d(z, order)``: numpy, real or complex arrays (the model layer's
  reference implementation);
- ``Activation.real_derivs``: a Numba function ``(z: float64, kappa) -> (σ, σ', σ'', σ''', σ'''')``
  built on the branch-free :mod:`narrowflow.fastmath`, inlined into the
  compiled right-hand sides so that loops over SIMD lanes vectorize;
- ``Activation.complex_derivs``: the same for complex128 via ``cmath``
  (principal branches: softplus's log is continued only away from its cut).

``kappa`` is the activation's parameter (only ``quadratic`` uses it:
σ(z) = z + κ z²); it reaches compiled code at run time, never by recompiling.
"""
from __future__ import annotations

import cmath
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit
from numba.extending import register_jitable
from scipy import special

from narrowflow import fastmath as fm
from narrowflow.jit import INLINE

MAX_ORDER = 4


# --- derivative formulas, shared by numpy and Numba ---------------------------------
# register_jitable: plain Python on numpy arrays, compiled (and inlined) inside Numba code.

@register_jitable(inline='always')
def _tanh_chain(t):
    """(σ, σ', ..., σ'''') of tanh from t = tanh(z)."""
    t1 = 1.0 - t * t
    return t, t1, -2.0 * t * t1, t1 * (6.0 * t * t - 2.0), t * t1 * (16.0 - 24.0 * t * t)


@register_jitable(inline='always')
def _sigmoid_chain(s):
    """(σ, ..., σ'''') of the logistic function from s = sigmoid(z)."""
    q = s * (1.0 - s)
    u = 1.0 - 2.0 * s
    return s, q, q * u, q * (u * u - 2.0 * q), q * u * (u * u - 8.0 * q)


@register_jitable(inline='always')
def _softplus_chain(sp, s):
    _, q, q2, q3, _ = _sigmoid_chain(s)
    return sp, s, q, q2, q3


@register_jitable(inline='always')
def _silu_chain(z, s):
    s0, s1, s2, s3, s4 = _sigmoid_chain(s)
    return z * s0, s0 + z * s1, 2.0 * s1 + z * s2, 3.0 * s2 + z * s3, 4.0 * s3 + z * s4


_GELU_C = 0.7978845608028654  # sqrt(2/pi)
_GELU_A = 0.044715


@register_jitable(inline='always')
def _gelu_chain(z, s):
    """GELU, tanh form 0.5 z (1 + tanh(u)), u = c (z + a z³), from s = sigmoid(2u).

    1 + tanh(u) = 2s and tanh'(u) = 4s(1 − s) avoid the cancellation of
    1 ± tanh(u) where tanh(u) ≈ ∓1.
    """
    t = 2.0 * s - 1.0
    t1 = 4.0 * s * (1.0 - s)
    t2 = -2.0 * t * t1
    t3 = t1 * (6.0 * t * t - 2.0)
    t4 = t * t1 * (16.0 - 24.0 * t * t)
    u1 = _GELU_C * (1.0 + 3.0 * _GELU_A * z * z)
    u2 = 6.0 * _GELU_C * _GELU_A * z
    u3 = 6.0 * _GELU_C * _GELU_A
    # derivatives of T(z) = tanh(u(z)) by Faà di Bruno (the fourth derivative of u is 0)
    T1 = t1 * u1
    T2 = t2 * u1 * u1 + t1 * u2
    T3 = t3 * u1 * u1 * u1 + 3.0 * t2 * u1 * u2 + t1 * u3
    T4 = t4 * u1 ** 4 + 6.0 * t3 * u1 * u1 * u2 + t2 * (3.0 * u2 * u2 + 4.0 * u1 * u3)
    return (z * s, s + 0.5 * z * T1, T1 + 0.5 * z * T2,
            1.5 * T2 + 0.5 * z * T3, 2.0 * T3 + 0.5 * z * T4)


@register_jitable(inline='always')
def _quadratic_chain(z, kappa):
    zero = z * 0.0
    return z + kappa * z * z, 1.0 + 2.0 * kappa * z, zero + 2.0 * kappa, zero, zero


@register_jitable(inline='always')
def _linear_chain(z):
    zero = z * 0.0
    return z, zero + 1.0, zero, zero, zero




# --- numpy base functions (real: stable forms; complex: principal branches) ----------

def _np_sigmoid(z):
    return special.expit(z) if not np.iscomplexobj(z) else 1.0 / (1.0 + np.exp(-z))


def _np_softplus(z):
    if not np.iscomplexobj(z):
        return np.logaddexp(0.0, z)
    # log(1 + e^z) = z + log(1 + e^{-z}) where Re z > 0, so neither exp overflows
    pos = z.real > 0
    return np.where(pos, z + np.log1p(np.exp(-np.where(pos, z, 0))), np.log1p(np.exp(np.where(pos, 0, z))))


def _np_tanh_d(z, kappa):
    return _tanh_chain(np.tanh(z))


def _np_sigmoid_d(z, kappa):
    return _sigmoid_chain(_np_sigmoid(z))


def _np_softplus_d(z, kappa):
    return _softplus_chain(_np_softplus(z), _np_sigmoid(z))


def _np_silu_d(z, kappa):
    return _silu_chain(z, _np_sigmoid(z))


def _np_gelu_d(z, kappa):
    return _gelu_chain(z, _np_sigmoid(2.0 * _GELU_C * (z + _GELU_A * z ** 3)))


def _np_quadratic_d(z, kappa):
    return _quadratic_chain(z, kappa)


def _np_linear_d(z, kappa):
    return _linear_chain(z)


# --- Numba versions: real (vectorizable) and complex -----------------------------------

@njit(**INLINE)
def _tanh_real(z, kappa):
    return _tanh_chain(fm.tanh(z))


@njit(**INLINE)
def _tanh_complex(z, kappa):
    return _tanh_chain(cmath.tanh(z))


@njit(**INLINE)
def _sigmoid_real(z, kappa):
    return _sigmoid_chain(fm.sigmoid(z))


@njit(**INLINE)
def _sigmoid_c(z):
    return 1.0 / (1.0 + cmath.exp(-z))


@njit(**INLINE)
def _sigmoid_complex(z, kappa):
    return _sigmoid_chain(_sigmoid_c(z))


@njit(**INLINE)
def _softplus_real(z, kappa):
    return _softplus_chain(fm.softplus(z), fm.sigmoid(z))


@njit(**INLINE)
def _softplus_complex(z, kappa):
    if z.real > 0:
        sp = z + cmath.log(1.0 + cmath.exp(-z))
    else:
        sp = cmath.log(1.0 + cmath.exp(z))
    return _softplus_chain(sp, _sigmoid_c(z))


@njit(**INLINE)
def _silu_real(z, kappa):
    return _silu_chain(z, fm.sigmoid(z))


@njit(**INLINE)
def _silu_complex(z, kappa):
    return _silu_chain(z, _sigmoid_c(z))


@njit(**INLINE)
def _gelu_real(z, kappa):
    return _gelu_chain(z, fm.sigmoid(2.0 * _GELU_C * (z + _GELU_A * z * z * z)))


@njit(**INLINE)
def _gelu_complex(z, kappa):
    return _gelu_chain(z, _sigmoid_c(2.0 * _GELU_C * (z + _GELU_A * z * z * z)))


@njit(**INLINE)
def _quadratic_any(z, kappa):
    return _quadratic_chain(z, kappa)


@njit(**INLINE)
def _linear_any(z, kappa):
    return _linear_chain(z)


# --- the registry -------------------------------------------------------------------

@dataclass(frozen=True)
class Activation:
    """An analytic activation σ with derivatives up to order 4.

    zero_at_zero: σ(0) = 0 (the dead-neuron plane is invariant);
    odd: σ(−z) = −σ(z) (the mirror-twin plane is invariant; sign symmetry).
    kappa: the activation's parameter (quadratic only; 0 elsewhere).
    """

    name: str
    zero_at_zero: bool
    odd: bool
    kappa: float
    _numpy: Callable = field(repr=False, compare=False)
    real_derivs: Callable = field(repr=False, compare=False)
    complex_derivs: Callable = field(repr=False, compare=False)

    def d(self, z, order: int = 0):
        """σ^(order)(z), elementwise; z real or complex, any shape; order in 0..4."""
        if not isinstance(order, (int, np.integer)) or not 0 <= order <= MAX_ORDER:
            raise ValueError(f"order must be an integer in 0..{MAX_ORDER}, got {order!r}")
        return self._numpy(np.asarray(z), self.kappa)[order]

    def derivatives(self, z):
        """(σ, σ', σ'', σ''', σ'''') at z, elementwise (numpy)."""
        return tuple(np.asarray(v) for v in self._numpy(np.asarray(z), self.kappa))

    def __call__(self, z):
        return self.d(z, 0)

    @property
    def key(self) -> str:
        """Identifies the compiled code (kappa excluded: it is a run-time number)."""
        return self.name


_SPECS = {
    #            zero_at_zero, odd,   numpy,             real,            complex
    "tanh":      (True,  True,  _np_tanh_d,      _tanh_real,      _tanh_complex),
    "sigmoid":   (False, False, _np_sigmoid_d,   _sigmoid_real,   _sigmoid_complex),
    "softplus":  (False, False, _np_softplus_d,  _softplus_real,  _softplus_complex),
    "silu":      (True,  False, _np_silu_d,      _silu_real,      _silu_complex),
    "gelu_tanh": (True,  False, _np_gelu_d,      _gelu_real,      _gelu_complex),
    "quadratic": (True,  False, _np_quadratic_d, _quadratic_any,  _quadratic_any),
    "linear":    (True,  True,  _np_linear_d,    _linear_any,     _linear_any),
}
_ALIASES = {"logistic": "sigmoid", "swish": "silu", "gelu": "gelu_tanh"}

NAMES = tuple(_SPECS)


def get(name, *, kappa: float | None = None) -> Activation:
    """The activation called `name` (see ``NAMES``); `kappa` only for 'quadratic' (default 1)."""
    if isinstance(name, Activation):
        if kappa is not None:
            raise ValueError("kappa cannot be given together with an Activation object")
        return name
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (str) or an Activation, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _SPECS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(NAMES)}")
    if kappa is not None and key != "quadratic":
        raise ValueError(f"kappa applies only to the 'quadratic' activation, not {key!r}")
    k = 1.0 if kappa is None else float(kappa)
    if not np.isfinite(k):
        raise ValueError(f"kappa must be finite, got {kappa!r}")
    zero, odd, npf, real, cplx = _SPECS[key]
    if key == "quadratic":
        odd = k == 0.0
    return Activation(key, zero, odd, k if key == "quadratic" else 0.0, npf, real, cplx)
