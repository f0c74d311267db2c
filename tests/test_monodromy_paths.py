"""Paths in the complex plane (narrowflow.monodromy.paths)."""
import math

import numpy as np
import pytest

from narrowflow.monodromy import paths as P


def _fd_check(path, h=1e-7):
    s = np.linspace(1e-3, 1 - 1e-3, 777)
    s = s[np.all(np.abs(s[:, None] - path.breakpoints[None, :]) > 2 * h, axis=1)]
    fd = (path.z(s + h) - path.z(s - h)) / (2 * h)
    return float(np.max(np.abs(fd - path.dz(s))) / max(1.0, np.max(np.abs(path.dz(s)))))


@pytest.mark.parametrize("path", [
    P.segment(0, 1 + 2j),
    P.arc(1j, 0.5, 0.3, 2.0),
    P.circle(0.5, 0.25, 1.0, turns=-2),
    P.polygon([0, 1, 1 + 1j]),
    P.as_path([0, 3.0, 3 + 2j]),
    P.loop_around(2.0, -1.0, 0.3, avoid=[0.0, 1.0]),
    P.lasso(0.5, 1.0, 0.3, via=[0.5 + 1j]),
])
def test_derivative_matches_finite_differences(path):
    assert _fd_check(path) < 1e-6
    assert _fd_check(path.reversed()) < 1e-6
    assert _fd_check(path.deformed(0.03)) < 1e-6


def test_endpoints_reversal_and_concatenation():
    p = P.polyline([0, 1, 1 + 1j])
    assert p.start == 0 and p.end == 1 + 1j
    assert abs(p.z(0.0) - p.start) < 1e-15 and abs(p.z(1.0) - p.end) < 1e-15
    r = p.reversed()
    s = np.linspace(0, 1, 11)
    assert np.allclose(r.z(s), p.z(1 - s), atol=1e-14)
    q = p + P.segment(1 + 1j, 2j)
    assert q.end == 2j and len(q.pieces) == 3
    with pytest.raises(ValueError, match="do not join"):
        p + P.segment(5, 6)
    assert not p.is_closed and P.polygon([0, 1, 1j]).is_closed


def test_winding_numbers_and_detour_sides():
    left = P.loop_around(2.0, -1.0, 0.3, avoid=[0.0, 1.0], side="left")
    right = P.loop_around(2.0, -1.0, 0.3, avoid=[0.0, 1.0], side="right")
    for loop in (left, right):
        assert loop.is_closed
        assert abs(loop.winding_number(2.0) - 1) < 1e-9
        assert abs(loop.winding_number(0.0)) < 1e-9 and abs(loop.winding_number(1.0)) < 1e-9
        assert loop.distance_to(0.0) > 0.29 and loop.distance_to(1.0) > 0.29
    # the two detours pass on opposite sides of the avoided point
    s = np.linspace(0, 0.2, 400)
    assert np.min(left.z(s).imag) < -0.2 and np.max(right.z(s).imag) > 0.2
    two = P.circle(0, 1, turns=2)
    assert abs(two.winding_number(0) - 2) < 1e-9
    assert abs((two * 2).winding_number(0) - 4) < 1e-9
    assert abs(two.reversed().winding_number(0) + 2) < 1e-9


def test_deformation_keeps_endpoints_and_homotopy_class():
    loop = P.loop_around(1.0, 0.5, 0.25, avoid=[0.0])
    d = loop.deformed(0.05)
    assert abs(d.start - loop.start) < 1e-14 and abs(d.end - loop.end) < 1e-14
    assert abs(d.winding_number(1.0) - 1) < 1e-9 and abs(d.winding_number(0.0)) < 1e-9
    assert np.max(np.abs(d.z(np.linspace(0, 1, 101)) - loop.z(np.linspace(0, 1, 101)))) > 1e-3


def test_encoding_matches_evaluation():
    loop = P.loop_around(1.0, 0.5, 0.25, avoid=[0.0]).deformed(0.02)
    kinds, params, bp = loop.encode()
    assert kinds.dtype == np.int64 and params.shape == (len(loop.pieces), 5)
    assert bp[0] == 0 and bp[-1] == 1 and np.all(np.diff(bp) > 0)
    for k, prm, piece in zip(kinds, params, loop.pieces):
        u = 0.37
        if k == P.KIND_SEGMENT:
            z = prm[0] + (prm[1] - prm[0]) * u + prm[4] * math.sin(math.pi * u)
        else:
            th = prm[2].real + (prm[3].real - prm[2].real) * u
            z = prm[0] + prm[1].real * np.exp(1j * th) + prm[4] * math.sin(math.pi * u)
        assert abs(z - piece.z(u)) < 1e-14


def test_bad_input():
    with pytest.raises(TypeError, match="path"):
        P.as_path(3.0)
    with pytest.raises(ValueError, match="at least 2"):
        P.as_path([1.0])
    with pytest.raises(ValueError, match="radius"):
        P.circle(0, -1.0)
    with pytest.raises(TypeError, match="turns"):
        P.circle(0, 1.0, turns=1.5)
    with pytest.raises(ValueError, match="inside the circle"):
        P.loop_around(1.0, 3.0, 0.5, avoid=[1.2])
    with pytest.raises(ValueError, match="base"):
        P.loop_around(1.0, 1.1, 0.5)
    with pytest.raises(ValueError, match="s must lie"):
        P.polyline([0, 1, 2]).z(np.array([1.5]))
    with pytest.raises(TypeError, match="center"):
        P.arc("x", 1.0, 0, 1)
