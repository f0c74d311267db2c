"""The branch-free elementary functions against numpy, and that their lane loops vectorize."""
import platform

import numpy as np
import pytest
from numba import njit

from narrowflow import fastmath as fm


@njit(error_model="numpy")
def _map_exp(x, out):
    for i in range(x.size):
        out[i] = fm.exp(x[i])


@njit(error_model="numpy")
def _map_tanh(x, out):
    for i in range(x.size):
        out[i] = fm.tanh(x[i])


@njit(error_model="numpy")
def _map_softplus(x, out):
    for i in range(x.size):
        out[i] = fm.softplus(x[i])


@njit(error_model="numpy")
def _map_sigmoid(x, out):
    for i in range(x.size):
        out[i] = fm.sigmoid(x[i])


@njit(error_model="numpy")
def _map_log1p(x, out):
    for i in range(x.size):
        out[i] = fm.log1p_unit(x[i])


def _ulp_error(got, ref):
    return np.max(np.abs(got - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny)))


def _apply(f, x):
    out = np.empty_like(x)
    f(x, out)
    return out


@pytest.mark.parametrize("f, ref, lo, hi, ulps", [
    (_map_exp, np.exp, -745.0, 709.7, 2),
    (_map_tanh, np.tanh, -25.0, 25.0, 3),
    (_map_sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), -700.0, 700.0, 4),
    (_map_softplus, lambda x: np.logaddexp(0.0, x), -700.0, 700.0, 6),
    (_map_log1p, np.log1p, 0.0, 1.0, 3),
])
def test_accuracy_in_ulp(f, ref, lo, hi, ulps, rng):
    x = np.concatenate([rng.uniform(lo, hi, 100_000), rng.uniform(max(lo, -2), min(hi, 2), 50_000),
                        np.linspace(max(lo, 0), max(lo, 0) + 1e-8, 101)])
    with np.errstate(over="ignore"):
        assert _ulp_error(_apply(f, x), ref(x)) <= ulps


def test_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 710.0, -750.0, 0.0, -0.0])
    e = _apply(_map_exp, x)
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0.0 and e[3] == np.inf and e[4] == 0.0
    assert e[5] == 1.0
    t = _apply(_map_tanh, x)
    assert np.isnan(t[0]) and t[1] == 1.0 and t[2] == -1.0 and t[5] == 0.0
    s = _apply(_map_softplus, x)
    assert np.isnan(s[0]) and s[1] == np.inf and s[2] == 0.0 and s[3] == 710.0
    g = _apply(_map_sigmoid, np.array([700.0, -700.0, np.nan]))
    assert g[0] == 1.0 and 0.0 < g[1] < 1e-300 and np.isnan(g[2])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector types")
def test_lane_loop_vectorizes():
    x = np.linspace(-3, 3, 64)
    _apply(_map_tanh, x)
    llvm = _map_tanh.inspect_llvm(_map_tanh.signatures[0])
    assert " x double>" in llvm, "the tanh lane loop did not vectorize"
