"""Rosenbrock tables (narrowflow.tableaus.get_rosenbrock): order conditions and convergence;
the explicit tables: order conditions, dense output, stability boundary.

The tables are stored in the transformed layout of Hairer & Wanner II, eq. (7.25) (stage
increments u_i, matrices a and C). The order conditions are stated for the original form
HW II (7.4):  k_i = h f(y0 + sum_j alpha_ij k_j) + h J sum_j gamma_ij k_j,
y1 = y0 + sum_j b_j k_j.  With u = Gamma k (Gamma = (gamma_ij), lower triangular,
gamma on the diagonal), (7.25) has C = diag(1/gamma) - Gamma^-1, a = alpha Gamma^-1 and
m = b Gamma^-1, hence Gamma = (diag(1/gamma) - C)^-1, alpha = a Gamma, b = m Gamma.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from narrowflow import tableaus

NAMES = tableaus.ROSENBROCK

# stage nodes alpha_i = sum_j alpha_ij and gamma_i = sum_{j<=i} gamma_ij, as listed
# separately by the sources (OrdinaryDiffEq.jl RODAS5Pc / RODAS5Pd, RODAS4c / RODAS4d;
# rodas.f C2..C4, D1..D4): a check of the conversion and of the copied a and C.
NODES = {
    "rodas5p": ([0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716,
                 0.4288403609558664, 1.0, 1.0, 1.0],
                [0.21193756319429014, -0.42387512638858027, -0.3384627126235924,
                 1.8046452872882734, 2.325825639765069, 0.0, 0.0, 0.0]),
    "rodas4": ([0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
               [0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0]),
}
DENSE_ORDER = {"rodas5p": 4, "rodas4": 3}


def original_form(tb):
    """(alpha, Gamma, B = alpha + Gamma, b, b_hat) of HW II (7.4)."""
    G = np.linalg.inv(np.eye(tb.S) / tb.gamma - tb.C)
    alpha = tb.a @ G
    return alpha, G, alpha + G, tb.m @ G, (tb.m - tb.e) @ G


# ---------------------------------------------------------------------------------------
# rooted trees and the elementary weights of a Rosenbrock method
# ---------------------------------------------------------------------------------------

def trees(n: int) -> list:
    """Rooted trees with n vertices; a tree is the sorted tuple of its subtrees."""
    if n == 1:
        return [()]
    out = set()

    def forests(rem, acc):
        if rem == 0:
            out.add(tuple(sorted(acc, key=repr)))
            return
        for k in range(1, rem + 1):
            for t in trees(k):
                forests(rem - k, acc + [t])

    forests(n - 1, [])
    return sorted(out, key=repr)


def n_vertices(t) -> int:
    return 1 + sum(n_vertices(c) for c in t)


def density(t) -> int:
    """gamma(t) = t!: the exact solution's B-series coefficient is 1/gamma(t)."""
    out = n_vertices(t)
    for c in t:
        out *= density(c)
    return out


def weights(t, alpha, B) -> np.ndarray:
    """Stage vector Phi(t) with y1 = y0 + sum_t h^|t|/sigma(t) (b . Phi(t)) F(t).

    k_i = h f(y0 + sum_j alpha_ij k_j) + h J sum_j gamma_ij k_j: a root with a single
    child sees the linear term f'(y0) (sum_j (alpha_ij + gamma_ij) k_j) = J sum_j B_ij k_j,
    roots with two or more children only the higher derivatives of f at the alpha-sums.
    """
    if len(t) == 0:
        return np.ones(alpha.shape[0])
    if len(t) == 1:
        return B @ weights(t[0], alpha, B)
    out = np.ones(alpha.shape[0])
    for c in t:
        out = out * (alpha @ weights(c, alpha, B))
    return out


def residuals(w, alpha, B, n, theta=1.0) -> np.ndarray:
    return np.array([w @ weights(t, alpha, B) - theta ** n / density(t) for t in trees(n)])


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    assert density(((),)) == 2 and density(((), ())) == 3 and density((((),),)) == 6


# ---------------------------------------------------------------------------------------
# the tables themselves
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_layout(name):
    tb = tableaus.get_rosenbrock(name)
    assert tb is tableaus.get_rosenbrock(name)          # lru_cache
    assert tableaus.get(name) is tb
    S = tb.S
    assert (tb.name, S, tb.order, tb.order_embedded) == {
        "rodas5p": ("rodas5p", 8, 5, 4), "rodas4": ("rodas4", 6, 4, 3)}[name]
    for arr, shape in ((tb.a, (S, S)), (tb.C, (S, S)), (tb.m, (S,)), (tb.e, (S,))):
        assert arr.shape == shape
    assert tb.P.shape == (S, DENSE_ORDER[name])   # polynomial degree = its order
    assert np.all(np.triu(tb.a) == 0.0) and np.all(np.triu(tb.C) == 0.0)
    # stiffly accurate: y_new = input of the last stage + u_{S-1}, err = u_{S-1}
    unit = np.eye(S)[S - 1]
    np.testing.assert_array_equal(tb.m, tb.a[S - 1] + unit)
    np.testing.assert_array_equal(tb.e, unit)
    # Hairer's RODAS controller constants, exponent 1/(embedded order + 1)
    assert (tb.safe, tb.fac1, tb.fac2) == (0.9, 0.2, 6.0)
    assert tb.expo == 1.0 / (tb.order_embedded + 1)
    # dense output: 0 at theta = 0 (no constant term), y_new at theta = 1
    np.testing.assert_allclose(tb.P.sum(axis=1), tb.m, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tb.dense_weights(1.0), tb.m, rtol=0, atol=1e-13)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tb.gamma = 0.5


def test_existing_methods_untouched():
    assert not set(tableaus.ROSENBROCK) & set(tableaus.METHODS)
    with pytest.raises(ValueError):
        tableaus.get("rodas5")
    with pytest.raises(ValueError):
        tableaus.get_rosenbrock("dp5")


@pytest.mark.parametrize("name", NAMES)
def test_nodes_match_source(name):
    tb = tableaus.get_rosenbrock(name)
    alpha, G, _, _, _ = original_form(tb)
    c, d = NODES[name]
    np.testing.assert_allclose(np.diag(G), tb.gamma, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.triu(G, 1), 0.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(tb.Gamma, G, rtol=0, atol=1e-13)
    np.testing.assert_allclose(alpha.sum(axis=1), c, rtol=0, atol=1e-13)
    np.testing.assert_allclose(G.sum(axis=1), d, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------
# order conditions
# ---------------------------------------------------------------------------------------

def table_iv_7_1(b, alpha, G, gamma):
    """Residuals of HW II Table IV.7.1, orders 1..4 (beta_ij = alpha_ij + gamma_ij, j < i)."""
    beta = np.tril(alpha + G, -1)
    bp = beta.sum(axis=1)             # beta'_i
    a = alpha.sum(axis=1)             # alpha_i
    g = gamma
    return np.array([
        b.sum() - 1.0,
        b @ bp - (0.5 - g),
        b @ a ** 2 - 1.0 / 3.0,
        b @ (beta @ bp) - (1.0 / 6.0 - g + g ** 2),
        b @ a ** 3 - 0.25,
        b @ (a * (alpha @ bp)) - (1.0 / 8.0 - g / 3.0),
        b @ (beta @ a ** 2) - (1.0 / 12.0 - g / 3.0),
        b @ (beta @ (beta @ bp)) - (1.0 / 24.0 - g / 2.0 + 1.5 * g ** 2 - g ** 3),
    ])


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_table_iv_7_1(name):
    tb = tableaus.get_rosenbrock(name)
    alpha, G, _, b, bh = original_form(tb)
    r = table_iv_7_1(b, alpha, G, tb.gamma)
    assert np.max(np.abs(r)) < 1e-12, r
    rh = table_iv_7_1(bh, alpha, G, tb.gamma)
    n_emb = {1: 1, 2: 2, 3: 4, 4: 8}[tb.order_embedded]
    assert np.max(np.abs(rh[:n_emb])) < 1e-12, rh
    if tb.order_embedded == 3:
        assert np.max(np.abs(rh[4:])) > 1e-3      # the embedded solution is not of order 4


@pytest.mark.parametrize("name", NAMES)
def test_order_conditions_trees(name):
    """All rooted trees up to the order (17 trees up to order 5), and sharpness at order+1."""
    tb = tableaus.get_rosenbrock(name)
    alpha, G, B, b, bh = original_form(tb)
    for n in range(1, tb.order + 1):
        assert np.max(np.abs(residuals(b, alpha, B, n))) < 1e-12, n
    assert np.max(np.abs(residuals(b, alpha, B, tb.order + 1))) > 1e-3
    for n in range(1, tb.order_embedded + 1):
        assert np.max(np.abs(residuals(bh, alpha, B, n))) < 1e-12, n
    assert np.max(np.abs(residuals(bh, alpha, B, tb.order_embedded + 1))) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_order_conditions(name):
    """b(theta) = w(theta) Gamma satisfies b(theta) . Phi(t) = theta^|t| / gamma(t)."""
    tb = tableaus.get_rosenbrock(name)
    alpha, G, B, _, _ = original_form(tb)
    q = DENSE_ORDER[name]
    worst_next = 0.0
    for theta in (0.1, 0.3, 0.5, 0.75, 0.9):
        bt = tb.dense_weights(theta) @ G
        for n in range(1, q + 1):
            assert np.max(np.abs(residuals(bt, alpha, B, n, theta))) < 1e-12, (theta, n)
        worst_next = max(worst_next, np.max(np.abs(residuals(bt, alpha, B, q + 1, theta))))
    assert worst_next > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_stability_function(name):
    """R(z) = 1 + z b^T (I - z B)^-1 1: R(inf) = 0 (also for the embedded method), and
    |R(z)| <= 1 on the imaginary axis and the negative real axis (sampled)."""
    tb = tableaus.get_rosenbrock(name)
    alpha, G, B, b, bh = original_form(tb)
    one = np.ones(tb.S)
    assert abs(1.0 - b @ np.linalg.solve(B, one)) < 1e-12
    assert abs(1.0 - bh @ np.linalg.solve(B, one)) < 1e-12
    I = np.eye(tb.S)
    for z in np.concatenate([1j * np.logspace(-3, 4, 60), -np.logspace(-3, 6, 60)]):
        R = 1.0 + z * b @ np.linalg.solve(I - z * B, one)
        assert abs(R) <= 1.0 + 1e-12, (z, R)
    # numerically, with the transformed step: y' = -lam y, lam h = 1e12 gives ~0
    lam = 1e12
    y1, err, _ = rosenbrock_step(tb, lambda y: -lam * y, lambda y: np.array([[-lam]]),
                                 np.array([1.0]), 1.0)
    assert abs(y1[0]) < 1e-9 and abs(y1[0] - err[0]) < 1e-9


# ---------------------------------------------------------------------------------------
# convergence of a plain numpy implementation of the transformed step
# ---------------------------------------------------------------------------------------

def rosenbrock_step(tb, f, jac, y, h):
    """One step of (7.25): returns (y_new, err, U) with U[i] = u_i."""
    M = np.eye(y.size) / (h * tb.gamma) - jac(y)
    U = np.zeros((tb.S, y.size))
    for i in range(tb.S):
        U[i] = np.linalg.solve(M, f(y + tb.a[i, :i] @ U[:i]) + tb.C[i, :i] @ U[:i] / h)
    return y + tb.m @ U, tb.e @ U, U


def integrate(tb, f, jac, y0, T, N):
    y = np.array(y0, dtype=float)
    for _ in range(N):
        y = rosenbrock_step(tb, f, jac, y, T / N)[0]
    return y


def fitted_slope(hs, errs) -> float:
    errs = np.asarray(errs)
    assert np.all(errs > 1e-14), errs          # above round-off
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


MU = 1.0


def vdp(y):
    return np.array([y[1], MU * (1.0 - y[0] ** 2) * y[1] - y[0]])


def vdp_jac(y):
    return np.array([[0.0, 1.0], [-2.0 * MU * y[0] * y[1] - 1.0, MU * (1.0 - y[0] ** 2)]])


VDP_Y0 = np.array([2.0, 0.0])


@pytest.fixture(scope="module")
def vdp_ref():
    return solve_ivp(lambda t, y: vdp(y), (0.0, 1.0), VDP_Y0, method="DOP853",
                     rtol=1e-13, atol=1e-14, dense_output=True).sol


@pytest.mark.parametrize("name", NAMES)
def test_convergence_linear_stiff(name):
    """y' = A y, eigenvalues -1e-6 .. -1e2 (non-normal A), exact solution by eigenvectors."""
    tb = tableaus.get_rosenbrock(name)
    rng = np.random.default_rng(0)
    lam = -np.logspace(-6, 2, 9)
    V = np.eye(9) + 0.1 * np.triu(rng.standard_normal((9, 9)), 1)
    A = V @ np.diag(lam) @ np.linalg.inv(V)
    y0 = np.linspace(1.0, 2.0, 9)
    T = 1.0
    exact = V @ (np.exp(lam * T) * np.linalg.solve(V, y0))
    Ns = np.array([8, 16, 32, 64])
    errs = [np.max(np.abs(integrate(tb, lambda y: A @ y, lambda y: A, y0, T, N) - exact))
            for N in Ns]
    s = fitted_slope(T / Ns, errs)
    assert abs(s - tb.order) < 0.3, (s, errs)


@pytest.mark.parametrize("name", NAMES)
def test_convergence_nonlinear(name, vdp_ref):
    """Van der Pol (mu = 1), global error at t = 1 against DOP853 at rtol 1e-13."""
    tb = tableaus.get_rosenbrock(name)
    T = 1.0
    Ns = np.array([10, 20, 40, 80])
    errs = [np.max(np.abs(integrate(tb, vdp, vdp_jac, VDP_Y0, T, N) - vdp_ref(T))) for N in Ns]
    s = fitted_slope(T / Ns, errs)
    assert abs(s - tb.order) < 0.3, (s, errs)


LOCAL_H = {"rodas5p": 0.05 / 2.0 ** np.arange(4), "rodas4": 0.02 / 2.0 ** np.arange(4)}


@pytest.mark.parametrize("name", NAMES)
def test_dense_output_convergence(name, vdp_ref):
    """Local error of the dense output at interior theta: O(h^(q+1)), q its order."""
    tb = tableaus.get_rosenbrock(name)
    hs = LOCAL_H[name]
    q = DENSE_ORDER[name]
    steps = [rosenbrock_step(tb, vdp, vdp_jac, VDP_Y0, h)[2] for h in hs]
    for theta in (0.3, 0.5, 0.7):
        errs = [np.max(np.abs(VDP_Y0 + tb.dense_weights(theta) @ U - vdp_ref(theta * h)))
                for h, U in zip(hs, steps)]
        s = fitted_slope(hs, errs)
        assert abs(s - (q + 1)) < 0.3, (theta, s, errs)


@pytest.mark.parametrize("name", NAMES)
def test_embedded_estimate_scaling(name, vdp_ref):
    """|err| = O(h^(order_embedded + 1)) for one step, and it estimates the embedded
    solution's local error (the estimate of y_new's error is then conservative)."""
    tb = tableaus.get_rosenbrock(name)
    hs = LOCAL_H[name]
    est, true_emb = [], []
    for h in hs:
        y1, err, _ = rosenbrock_step(tb, vdp, vdp_jac, VDP_Y0, h)
        est.append(np.max(np.abs(err)))
        true_emb.append(np.max(np.abs(y1 - err - vdp_ref(h))))
    s = fitted_slope(hs, est)
    assert abs(s - (tb.order_embedded + 1)) < 0.3, (s, est)
    np.testing.assert_allclose(est, true_emb, rtol=0.05)


# ---------------------------------------------------------------------------------------
# explicit Runge-Kutta tables: order conditions of every rooted tree, stability boundary
# ---------------------------------------------------------------------------------------

# (order of b, order of b - e or None (DOP853's estimates are not an embedded solution),
# order of the dense output)
EXPLICIT_ORDERS = {"dp5": (5, 4, 4), "tsit5": (5, 4, 4), "dop853": (8, None, 7),
                   "vern7": (7, 6, 7)}


def explicit_A(tb):
    """The tableau's A with the row of f(y_new) filled in (its input is y_new)."""
    A = tb.A.copy()
    A[tb.knew] = tb.b
    return A


def test_explicit_methods_listed():
    assert tableaus.ADAPTIVE == tuple(EXPLICIT_ORDERS)
    assert tableaus.METHODS == ("rk4", "dp5", "tsit5", "dop853", "vern7", "gd")


@pytest.mark.parametrize("name", tuple(EXPLICIT_ORDERS))
def test_explicit_order_conditions(name):
    """b . Phi(t) = 1/gamma(t) for every tree up to the order (200 trees up to order 8),
    and not at the order + 1; the same for the embedded solution b - e."""
    tb = tableaus.get(name)
    p, p_emb, _ = EXPLICIT_ORDERS[name]
    A = explicit_A(tb)
    for n in range(1, p + 1):
        assert np.max(np.abs(residuals(tb.b, A, A, n))) < 1e-13, n
    assert np.max(np.abs(residuals(tb.b, A, A, p + 1))) > 1e-6
    if p_emb is not None:
        bh = tb.b - tb.e
        for n in range(1, p_emb + 1):
            assert np.max(np.abs(residuals(bh, A, A, n))) < 1e-13, n
        assert np.max(np.abs(residuals(bh, A, A, p_emb + 1))) > 1e-5
    np.testing.assert_allclose(A.sum(axis=1), tb.c, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", tuple(EXPLICIT_ORDERS))
def test_explicit_dense_output_order_conditions(name):
    """b(theta) . Phi(t) = theta^|t| / gamma(t) up to the dense output's order, and y_new at
    theta = 1. Vern7's published interpolant meets its order-7 conditions to about 1e-7
    (the same values in OrdinaryDiffEq.jl): its local error is dominated by the h^8 terms
    (residuals ~1e-4) for every step with h ||f'|| above about 1e-3."""
    tb = tableaus.get(name)
    q = EXPLICIT_ORDERS[name][2]
    A = explicit_A(tb)
    np.testing.assert_allclose(tb.dense_weights(1.0), tb.b, rtol=0, atol=1e-12)
    worst_q, worst_next = 0.0, 0.0
    for theta in (0.1, 0.3, 0.5, 0.75, 0.9):
        w = tb.dense_weights(theta)
        for n in range(1, q):
            assert np.max(np.abs(residuals(w, A, A, n, theta))) < 1e-12, (theta, n)
        worst_q = max(worst_q, np.max(np.abs(residuals(w, A, A, q, theta))))
        worst_next = max(worst_next, np.max(np.abs(residuals(w, A, A, q + 1, theta))))
    assert worst_q < (3e-7 if name == "vern7" else 1e-12), worst_q
    assert worst_next > 1e-5


@pytest.mark.parametrize("name,boundary", [("rk4", 2.785293563), ("dp5", 3.306567893),
                                           ("dop853", 6.393651523), ("vern7", 4.640024335)])
def test_real_stability_boundary(name, boundary):
    """R(z) of the table against its definition; the boundary is where |R(-x)| reaches 1
    (RK4's 2.7853 is the classical value), inside it |R| <= 1, just beyond it |R| > 1."""
    tb = tableaus.get(name)
    S = tb.S
    A, b = tb.A[:S, :S], tb.b[:S]
    for z in (-0.7, -2.5, 0.3 + 1.1j):
        direct = 1.0 + z * b @ np.linalg.solve(np.eye(S) - z * A, np.ones(S))
        assert abs(np.polynomial.polynomial.polyval(z, tb.stability_polynomial) - direct) < 1e-12
    x = tb.stability_boundary
    assert x == pytest.approx(boundary, abs=1e-8)
    R = np.polynomial.polynomial.polyval(-np.linspace(0.0, x, 2001), tb.stability_polynomial)
    assert np.all(np.abs(R) <= 1.0 + 1e-9)
    assert abs(np.polynomial.polynomial.polyval(-(x + 1e-3), tb.stability_polynomial)) > 1.0
    with pytest.raises(ValueError, match="does not cross"):
        tableaus.real_stability_boundary(tb.stability_polynomial, 0.5 * x)
