"""Activations: derivatives against SymPy/mpmath, stability, the registry."""
import mpmath
import numpy as np
import pytest
import sympy as sp
from numba import njit

from narrowflow import activations

_z = sp.Symbol("z")
_K = sp.Rational(3, 10)
_EXPR = {
    "tanh": sp.tanh(_z),
    "sigmoid": 1 / (1 + sp.exp(-_z)),
    "softplus": sp.log(1 + sp.exp(_z)),
    "silu": _z / (1 + sp.exp(-_z)),
    "gelu_tanh": _z / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (_z + sp.Rational(44715, 1000000) * _z**3))),
    "quadratic": _z + _K * _z**2,
    "linear": _z,
}


def _get(name):
    return activations.get(name, kappa=float(_K)) if name == "quadratic" else activations.get(name)


def _reference(name, order, points):
    f = sp.lambdify(_z, sp.diff(_EXPR[name], _z, order), "mpmath")
    mpmath.mp.dps = 40
    return np.array([complex(f(mpmath.mpc(p))) for p in points])


POINTS = np.array([-3.1, -0.7, -1e-3, 0.0, 0.4, 1.3, 2.9, 0.3 + 0.8j, -1.1 - 0.45j, 2.0 + 0.3j])


@pytest.mark.parametrize("name", list(_EXPR))
@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_derivatives_match_sympy(name, order):
    act = _get(name)
    ref = _reference(name, order, POINTS)
    real = POINTS.imag == 0
    got_real = act.d(POINTS[real].real, order)
    got_cplx = act.d(POINTS, order)
    scale = np.maximum(1.0, np.abs(ref))
    assert np.all(np.abs(got_real - ref[real]) / scale[real] < 1e-12)
    assert np.all(np.abs(got_cplx - ref) / scale < 1e-12)


@pytest.mark.parametrize("name", list(_EXPR))
def test_numba_versions_match_numpy(name):
    act = _get(name)
    real_f, cplx_f = act.real_derivs, act.complex_derivs

    @njit(error_model="numpy")
    def real_all(z, kappa):
        out = np.empty((5, z.size))
        for i in range(z.size):
            v = real_f(z[i], kappa)
            for o in range(5):
                out[o, i] = v[o]
        return out

    @njit(error_model="numpy")
    def cplx_all(z, kappa):
        out = np.empty((5, z.size), np.complex128)
        for i in range(z.size):
            v = cplx_f(z[i], kappa)
            for o in range(5):
                out[o, i] = v[o]
        return out

    zr = np.linspace(-6, 6, 61)
    zc = zr + 0.37j
    ref_r = np.array(act.derivatives(zr))
    ref_c = np.array(act.derivatives(zc))
    assert np.allclose(real_all(zr, act.kappa), ref_r, rtol=1e-14, atol=1e-14)
    assert np.allclose(cplx_all(zc, act.kappa), ref_c, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "silu"])
def test_no_overflow_at_large_arguments(name):
    act = activations.get(name)
    with np.errstate(all="raise"):
        v = np.array([act.d(np.array([-700.0, 700.0]), o) for o in range(3)])
    assert np.all(np.isfinite(v))
    if name == "softplus":
        assert v[0, 1] == 700.0 and 0 < v[0, 0] < 1e-300
    if name == "sigmoid":
        assert v[0, 1] == 1.0 and v[0, 0] > 0


def test_properties():
    assert activations.get("tanh").odd and activations.get("tanh").zero_at_zero
    assert not activations.get("sigmoid").zero_at_zero
    assert activations.get("quadratic", kappa=0.0).odd
    assert not activations.get("quadratic", kappa=0.5).odd
    assert activations.get("swish").name == "silu"


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        activations.get("relu")
    with pytest.raises(TypeError, match="activation"):
        activations.get(3)
    with pytest.raises(ValueError, match="kappa"):
        activations.get("tanh", kappa=2.0)
    with pytest.raises(ValueError, match="order"):
        activations.get("tanh").d(0.3, 5)
