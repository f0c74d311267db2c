import numpy as np
import pytest
import xarray as xr

from narrowflow import analysis, studies
from narrowflow.studies.clustering import _unique_rows


def _loss_dataset(n=40, k=15, seed=0, nan_tail=True):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, k)
    loss = np.exp(-rng.uniform(0.1, 2.0, (n, 1)) * t) + rng.uniform(0, 1e-3, (n, k))
    if nan_tail:
        loss[0, 10:] = np.nan  # a trajectory that stopped early
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), rng.normal(size=(n, 4))),
                     "loss_saved": (("trajectory", "time"), loss)},
                    coords={"time": t, "parameter": ["a1", "w1", "a2", "w2"]})
    return ds, loss


class _Result:  # duck-typed EnsembleResult (attributes of the shared contract)
    def __init__(self, ds):
        self.y_final = ds.y_final.values
        self.loss_saved = ds.loss_saved.values
        self.t_saved = ds.time.values


def test_loss_quantiles_equal_numpy():
    ds, loss = _loss_dataset()
    q = (5, 25, 50, 75, 95)
    da = studies.loss_quantiles(ds, q)
    assert da.dims == ("quantile", "time") and da.shape == (5, loss.shape[1])
    np.testing.assert_array_equal(da.values, np.nanpercentile(loss, q, axis=0))
    np.testing.assert_array_equal(da["n_valid"].values, np.sum(~np.isnan(loss), axis=0))
    # the same from a result object
    da2 = studies.loss_quantiles(_Result(ds), q)
    np.testing.assert_array_equal(da2.values, da.values)
    # and different quantiles give different numbers (the comparison can fail)
    assert not np.allclose(studies.loss_quantiles(ds, (10, 90)).values, da.values[[0, -1]])


def test_loss_quantiles_bad_input():
    ds, _ = _loss_dataset()
    with pytest.raises(ValueError, match="quantiles"):
        studies.loss_quantiles(ds, (5, 150))
    with pytest.raises(ValueError, match="saved losses"):
        studies.loss_quantiles(ds.drop_vars("loss_saved"))
    with pytest.raises(TypeError, match="result"):
        studies.loss_quantiles(np.zeros(3))


# --- limit points modulo symmetry ------------------------------------------------------

from scipy.optimize import least_squares  # noqa: E402

from narrowflow import model  # noqa: E402

TEACHER = model.NF4_TEACHER   # [a1, w1, a2, w2] = [1.0, 1.5, -0.7, 0.4], a global minimum


@pytest.fixture(scope="module")
def nf4():
    return model.nf4_benchmark()


@pytest.fixture(scope="module")
def single_fit(nf4):
    """Best one-neuron fit (a*, w*) of the NF4 data, to machine precision (scipy)."""
    x, y = nf4.data.x[:, 0], nf4.data.y[:, 0]
    sol = least_squares(lambda p: p[0] * np.tanh(p[1] * x) - y, [1.0, 1.0],
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return sol.x


def fd_hessian(flow, theta, h=1e-6):
    """Central differences of the gradient: independent of flow.hessian."""
    p = theta.size
    H = np.empty((p, p))
    for i in range(p):
        e = np.zeros(p)
        e[i] = h
        H[:, i] = (flow.grad(theta + e) - flow.grad(theta - e)) / (2 * h)
    return 0.5 * (H + H.T)


def test_symmetry_of_flow_and_attrs(nf4):
    s = studies.Symmetry.of(nf4)
    assert (s.width, s.block_size, s.odd, s.zero_at_zero, s.group_order) == (2, 2, True, True, 8)
    s2 = studies.Symmetry.of(model.GradientFlow(model.Network(3, activation="softplus", bias=True),
                                                 model.Dataset(np.arange(3.0), np.arange(3.0))))
    assert (s2.odd, s2.zero_at_zero, s2.n_tail, s2.block_size, s2.group_order) == \
        (False, False, 1, 3, 6)
    ds = xr.Dataset(attrs=dict(width=2, input_dim=1, output_dim=1, activation="tanh", bias=0))
    assert studies.Symmetry.of(ds) == s
    assert studies.Symmetry.of(nf4, symmetric=False).group_order == 1


def test_orbit_leaves_loss_invariant(nf4):
    theta = np.array([0.3, -1.2, 0.8, 0.5])
    orb = studies.Symmetry.of(nf4).orbit(theta)
    assert orb.shape == (8, 4) and len(np.unique(orb, axis=0)) == 8
    np.testing.assert_allclose([nf4.loss(o) for o in orb], nf4.loss(theta), rtol=1e-14)


def test_canonical_form_same_for_symmetric_copies(nf4):
    sym = studies.Symmetry.of(nf4)
    rng = np.random.default_rng(3)
    for theta in rng.normal(size=(5, 4)):
        C, _ = sym.canonicalize(sym.orbit(theta))
        np.testing.assert_allclose(C, np.broadcast_to(C[0], C.shape), atol=1e-15)
        assert C[0, 0] >= 0 and C[0, 2] >= 0 and C[0, 0] >= C[0, 2]
    # dead neuron identified and put last, whatever its position and sign
    C, n_dead = sym.canonicalize(np.array([[0, 1e-12, 0.6, -2.4], [-0.6, 2.4, 1e-13, 0]]))
    np.testing.assert_array_equal(C, [[0.6, -2.4, 0, 0], [0.6, -2.4, 0, 0]])
    np.testing.assert_array_equal(n_dead, [1, 1])


def test_clusters_modulo_symmetry_both_ways(nf4, single_fit):
    a, w = single_fit
    sym = studies.Symmetry.of(nf4)
    rng = np.random.default_rng(0)
    saddle = np.array([a, w, 0.0, 0.0])
    twin = np.array([a / 2, w, a / 2, w])
    states = np.concatenate([sym.orbit(TEACHER), sym.orbit(saddle), sym.orbit(twin)])
    states = states + 1e-6 * rng.normal(size=states.shape)
    truth = np.repeat([0, 1, 2], 8)
    lp = studies.limit_points(flow=nf4, theta=states, tol=1e-4)
    assert len(lp) == 3  # three genuinely different critical points stay apart
    for c in range(3):  # ... and all symmetric copies of each land together
        assert len(np.unique(lp.labels[truth == c])) == 1
    # without the symmetry quotient the sign-flipped / permuted copies are separate
    lp0 = studies.limit_points(flow=nf4, theta=sym.orbit(TEACHER), symmetric=False, polish=False)
    assert len(lp0) == 8
    # the clustering scale decides: a shift of tol/3 merges, 30 tol separates
    base = np.array([0.3, 1.1, 0.2, -0.9])
    d = np.array([1.0, 0, 0, 0])
    tol = 1e-3
    assert len(np.unique(studies.cluster_states(np.array([base, base + tol / 3 * d]), tol))) == 1
    assert len(np.unique(studies.cluster_states(np.array([base, base + 30 * tol * d]), tol))) == 2


def test_sort_ties_merged_modulo_symmetry(nf4):
    # a1 ≈ a2: the sort order (and so the canonical w's) flips with noise far below tol
    rng = np.random.default_rng(5)
    base = np.array([0.5, 1.0, 0.5, -1.0])
    states = base + 1e-6 * rng.normal(size=(40, 4))
    C, _ = studies.Symmetry.of(nf4).canonicalize(states)
    assert len(np.unique(np.round(C[:, 1]))) == 2  # the canonical form alone splits them
    lp = studies.limit_points(flow=nf4, theta=states, tol=1e-4, polish=False)
    assert len(lp) == 1


def test_nonfinite_states_excluded(nf4):
    states = np.array([TEACHER, [np.nan, 1, 2, 3], [np.inf, 0, 0, 0]])
    lp = studies.limit_points(flow=nf4, theta=states)
    np.testing.assert_array_equal(lp.labels, [0, -1, -1])
    assert lp.n_excluded == 2


# --- Morse index -----------------------------------------------------------------------

def test_morse_known_minimum(nf4):
    mi = studies.morse_index(nf4, TEACHER)
    assert (mi.index, mi.n_zero, mi.n_positive) == (0, 0, 4)
    np.testing.assert_allclose(mi.eigenvalues, np.linalg.eigvalsh(fd_hessian(nf4, TEACHER)),
                               atol=1e-8)
    lp = studies.limit_points(flow=nf4, theta=TEACHER[None])
    assert lp.clusters[0].kind == "global minimum" and lp.clusters[0].global_certified


def test_morse_dead_neuron_saddle(nf4, single_fit):
    a, w = single_fit
    saddle = np.array([a, w, 0.0, 0.0])
    assert np.linalg.norm(nf4.grad(saddle)) < 1e-9
    mi = studies.morse_index(nf4, saddle)
    # the dead block of the Hessian is [[0, c], [c, 0]], c = mean(r x): eigenvalues ±c
    x, y = nf4.data.x[:, 0], nf4.data.y[:, 0]
    c = abs(np.mean((a * np.tanh(w * x) - y) * x))
    assert c > 1e-3
    assert np.min(np.abs(mi.eigenvalues + c)) < 1e-10 and np.min(np.abs(mi.eigenvalues - c)) < 1e-10
    lam_fd = np.linalg.eigvalsh(fd_hessian(nf4, saddle))
    assert np.sum(lam_fd < -1e-6) == 1
    assert (mi.index, mi.n_zero) == (1, 0)
    lp = studies.limit_points(flow=nf4, theta=saddle[None])
    assert lp.clusters[0].kind == "saddle" and lp.clusters[0].description == "saddle of index 1"
    assert lp.clusters[0].n_dead == 1


@pytest.mark.parametrize("gamma, index", [(0.5, 0), (1.5, 1)])
def test_morse_twin_line_degenerate(nf4, single_fit, gamma, index):
    # Fukumizu–Amari: (γ a*, w*, (1−γ) a*, w*) is a line of critical points, so the
    # Hessian has a zero eigenvalue along (1, 0, −1, 0); for γ outside [0, 1] also a
    # negative one
    a, w = single_fit
    theta = np.array([gamma * a, w, (1 - gamma) * a, w])
    mi = studies.morse_index(nf4, theta)
    lam_fd = np.linalg.eigvalsh(fd_hessian(nf4, theta))
    assert np.sum(lam_fd < -1e-6) == index
    assert mi.n_zero == 1 and mi.index == index
    v = np.array([1.0, 0, -1.0, 0]) / np.sqrt(2)
    assert abs(v @ nf4.hessian(theta) @ v) <= mi.tol
    # still degenerate a little off the line (the tolerance accounts for the distance)
    mi2 = studies.morse_index(nf4, theta + 1e-6 * np.random.default_rng(1).normal(size=4))
    assert mi2.n_zero == 1 and mi2.index == index
    lp = studies.limit_points(flow=nf4, theta=theta[None])
    assert lp.clusters[0].kind == "degenerate"
    assert ("not a minimum" in lp.clusters[0].description) == (index > 0)


def test_classify_local_against_global():
    def cp(loss, lam):
        lam = np.sort(np.asarray(lam, float))
        mi = studies.MorseInfo(lam, 1e-8, 0.0, int(np.sum(lam < -1e-8)),
                                int(np.sum(abs(lam) <= 1e-8)), int(np.sum(lam > 1e-8)), 0.0)
        return studies.CriticalPoint(0, 1, 1.0, np.zeros(2), loss, 0.0, loss, 0.0, 0, False,
                                      0.0, mi)
    pts = [cp(0.2, [1, 2]), cp(0.1, [1, 3]), cp(0.05, [-1, 2]), cp(0.3, [0, 1])]
    studies.classify(pts)
    assert [p.kind for p in pts] == ["local minimum", "global minimum", "saddle", "degenerate"]
    assert "lowest found" in pts[1].description
    pts[2].grad_norm = 1.0
    studies.classify(pts)
    assert pts[2].kind == "not critical"


# --- escape times ----------------------------------------------------------------------

def test_escape_times_exponential_exact():
    # L(t) = L0 exp(−k t) crosses c at log(L0/c)/k; log-linear interpolation is exact here
    k = np.array([0.5, 1.0, 2.0, 0.01])
    t = np.linspace(0, 10, 41)
    L = np.exp(-k[:, None] * t)
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), np.zeros((4, 4))),
                     "loss_saved": (("trajectory", "time"), L)}, coords={"time": t})
    thr = [1e-1, 1e-2]
    E = studies.escape_times(ds, thr)
    exact = np.log(1 / np.array(thr))[:, None] / k[None, :]
    exact[exact > 10] = np.nan
    np.testing.assert_allclose(E.values, exact, rtol=1e-12)
    assert np.isnan(E.values[0, 3]) and E.attrs["resolution"] == pytest.approx(0.25)
    rows = studies.escape_time_summary(E, labels=np.array([0, 0, 1, 1]))
    r = [r for r in rows if r["threshold"] == 1e-1 and r["cluster"] == 1][0]
    assert (r["n"], r["escaped"]) == (2, 1)


def test_default_thresholds():
    t = np.linspace(0, 10, 11)
    L = np.exp(-2.0 * t)[None, :].repeat(3, 0)
    ds = xr.Dataset({"y_final": (("trajectory", "parameter"), np.zeros((3, 4))),
                     "loss_saved": (("trajectory", "time"), L)}, coords={"time": t})
    thr = studies.default_thresholds(ds, n=3)
    assert thr.size == 3 and np.all((thr < 1) & (thr > L.min()))
    flat = ds.assign(loss_saved=(("trajectory", "time"), np.ones_like(L)))
    assert studies.default_thresholds(flat).size == 0


# --- problems with known answers, run through solve_ensemble ---------------------------

LAMBDA = 0.1


def double_well(width):
    """Linear network, y = 2x, weight decay λ: with one neuron L = m2/2 (a w − 2)² +
    λ/2 (a² + w²) has exactly two minima ±(r, r), r² = 2 − λ/m2, and a saddle at 0. Since
    d(a+w)/dt = −(a+w)(m2(a w − 2) + λ), the sign of a + w never changes: the basin of
    +(r, r) is exactly {a + w > 0}. With width 2 and neuron 2 dead (invariant: σ(0) = 0)
    the same double well is embedded in a 4-parameter network."""
    x = np.linspace(-1, 1, 9)
    flow = model.GradientFlow(model.Network(width, activation="linear"), model.Dataset(x, 2 * x),
                              weight_decay=LAMBDA)
    r = np.sqrt(2 - LAMBDA / np.mean(x ** 2))
    return flow, r


def test_limit_points_of_an_ensemble_both_ways():
    from narrowflow import solve_ensemble
    flow, r = double_well(1)
    th0 = np.random.default_rng(2).uniform(-2, 2, (40, 2))
    res = solve_ensemble(flow, th0, t_span=(0, 200))
    lp = studies.limit_points(res)
    assert len(lp) == 1  # ±(r, r) are one point modulo the sign flip
    cp = lp.clusters[0]
    np.testing.assert_allclose(cp.theta, [r, r], rtol=1e-10)
    assert cp.kind == "global minimum" and cp.morse.index == 0 and cp.morse.n_zero == 0
    lp2 = studies.limit_points(res, symmetric=False)
    assert len(lp2) == 2
    plus = [c.label for c in lp2.clusters if c.theta[0] > 0][0]
    np.testing.assert_array_equal(lp2.labels == plus, th0.sum(axis=1) > 0)


def test_basin_map_double_well_embedded():
    flow, r = double_well(2)
    bm = studies.basin_map(flow, np.zeros(4), ("a1", "w1"), ((-2, 2), (-1.5, 2.5)), (41, 31),
                            t_span=(0, 150), symmetric=False, chunk=500)
    assert bm.labels.shape == (31, 41) and bm.names == ("a1", "w1")
    A, W = np.meshgrid(bm.x, bm.y)
    by_point = {tuple(np.round(c.theta, 6)): c.label for c in bm.limit_points.clusters}
    plus = by_point[tuple(np.round([r, r, 0, 0], 6))]
    minus = by_point[tuple(np.round([-r, -r, 0, 0], 6))]
    far = np.abs(A + W) > 0.05
    assert np.all(bm.labels[far & (A + W > 0)] == plus)
    assert np.all(bm.labels[far & (A + W < 0)] == minus)
    assert np.sum(bm.labels == plus) > np.sum(bm.labels == minus)  # the slice is off-centre
    # (on the boundary itself the saddle at 0 is unstable and round-off decides: not tested)
    # modulo the sign flip both minima are one cluster
    bm_sym = studies.basin_map(flow, np.zeros(4), ("a1", "w1"), ((-2, 2), (-1.5, 2.5)),
                                (41, 31), t_span=(0, 150))
    assert len(np.unique(bm_sym.labels[far])) == 1
    ds = bm.to_xarray()
    assert ds["cluster"].dims == ("w1", "a1")


def test_basin_map_bad_input():
    flow, _ = double_well(1)
    with pytest.raises(ValueError, match="params"):
        studies.basin_map(flow, np.zeros(2), ("a1", "b7"))
    with pytest.raises(ValueError, match="params"):
        studies.basin_map(flow, np.zeros(2), ("a1", "a1"))
    with pytest.raises(ValueError, match="ranges"):
        studies.basin_map(flow, np.zeros(2), ("a1", "w1"), ((1, -1), (0, 1)))
    with pytest.raises(ValueError, match="base"):
        studies.basin_map(flow, np.zeros(3), ("a1", "w1"))
    with pytest.raises(ValueError, match="shape"):
        studies.basin_map(flow, np.zeros(2), ("a1", "w1"), shape=(1, 5))


def test_gd_against_flow_first_order_and_instability():
    flow, r = double_well(1)
    th0 = np.random.default_rng(0).uniform(-1.5, 1.5, (32, 2))
    # at the minima the Hessian's largest eigenvalue is m2 (3 r² − 2) + λ: GD is stable
    # there only for η < 2 / λ_max
    lam_max = np.linalg.eigvalsh(flow.hessian(np.array([r, r])))[-1]
    etas = [0.01, 0.02, 0.04, 1.1 * 2 / lam_max]
    cmp = studies.gd_vs_flow(flow, th0, etas, t_end=60, t_compare=10, n_times=11,
                              symmetric=False)
    assert cmp.distance.shape == (4, 32, cmp.times.shape[1])
    med = cmp.distance_quantiles((50,))[0][:, -1]
    # Euler's global error is first order: halving η halves the distance at t = 10
    np.testing.assert_allclose(med[1] / med[2], 0.5, rtol=0.03)
    np.testing.assert_allclose(med[0] / med[1], 0.5, rtol=0.03)
    np.testing.assert_array_equal(cmp.changed[:3], 0.0)
    assert cmp.changed[3] == 1.0 and cmp.changed_ci[3, 0] > 0.8
    assert np.all(cmp.changed_ci[:, 0] <= cmp.changed)
    assert np.all(cmp.changed <= cmp.changed_ci[:, 1])
    with pytest.raises(ValueError, match="learning_rates"):
        studies.gd_vs_flow(flow, th0, [0.1, -1.0])


def test_wilson_interval_covers():
    lo, hi = studies.wilson_interval(30, 100)
    assert lo < 0.3 < hi and hi - lo == pytest.approx(0.18, abs=0.01)


@pytest.mark.slow
def test_basin_map_1000x1000_chunked():
    """The full-size grid the issue asks for, in 64k chunks: the known answer holds."""
    flow, r = double_well(2)
    bm = studies.basin_map(flow, np.zeros(4), ("a1", "w1"), ((-2, 2), (-1.5, 2.5)), 1000,
                            t_span=(0, 150), symmetric=False)
    A, W = np.meshgrid(bm.x, bm.y)
    plus = [c.label for c in bm.limit_points.clusters if c.theta[0] > 1][0]
    minus = [c.label for c in bm.limit_points.clusters if c.theta[0] < -1][0]
    far = np.abs(A + W) > 0.02
    assert np.all(bm.labels[far & (A + W > 0)] == plus)
    assert np.all(bm.labels[far & (A + W < 0)] == minus)


def test_unique_rows_equals_numpy():
    K = np.random.default_rng(4).integers(-3, 3, (2000, 3))
    u, inv = _unique_rows(K)
    u2, inv2 = np.unique(K, axis=0, return_inverse=True)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(inv, inv2.reshape(-1))


def test_ensemble_converging_to_a_saddle_is_reported(nf4, single_fit):
    """Trajectories started on the dead-neuron plane stay there (σ(0) = 0) and converge to
    the best one-neuron fit, a saddle of index 1 of the two-neuron loss."""
    from narrowflow import solve_ensemble
    rng = np.random.default_rng(7)
    th0 = np.zeros((12, 4))
    th0[:, 0] = rng.uniform(0.3, 1.5, 12) * rng.choice([-1, 1], 12)
    th0[:, 1] = np.sign(th0[:, 0]) * rng.uniform(0.5, 3.0, 12)
    th0[6:] = th0[6:][:, [2, 3, 0, 1]]  # the other neuron alive in half of them
    res = solve_ensemble(nf4, th0, (0, 40000), gtol=1e-10)
    lp = studies.limit_points(res)
    assert len(lp) == 1
    cp = lp.clusters[0]
    np.testing.assert_allclose(cp.theta, [*np.abs(single_fit), 0, 0], atol=1e-6)
    assert cp.kind == "saddle" and cp.morse.index == 1 and cp.n_dead == 1
    # the same ensemble, a generic start: nothing is called a saddle that is not one
    res2 = solve_ensemble(nf4, th0 + 0.3, (0, 100))
    lp2 = studies.limit_points(res2)
    assert all(c.kind != "saddle" for c in lp2.clusters)


def test_pooled_unconverged_and_unanalysed(nf4, single_fit):
    a, w = single_fit
    rng = np.random.default_rng(11)
    sym = studies.Symmetry.of(nf4)
    states = np.concatenate([np.repeat(sym.orbit(TEACHER), 3, axis=0),
                             np.repeat([[a, w, 0, 0]], 5, axis=0),
                             rng.normal(size=(30, 4)) * 2])
    lp = studies.limit_points(flow=nf4, theta=states, max_clusters=4)
    pool = lp.pooled()
    assert [c.kind for c in lp.clusters[:2]] == ["global minimum", "saddle"]
    assert pool["not_converged"] == (2, 2)
    assert pool["not_analysed"] == (28, 28)
    k, n, ci = pool["not_analysed_moving"]
    assert k == n == 28 and ci[0] > 0.85
    md = lp.to_markdown()
    assert "not converged: 2 clusters" in md and "28 small clusters, not analysed" in md


def _ended(nf4, single_fit, seed=0):
    """A synthetic ensemble's end: 200 CONVERGED at the teacher, 60 CONVERGED at the
    dead-neuron saddle (index 1), 30 still moving at t_max, 10 diverged; random symmetric
    images of each state."""
    rng = np.random.default_rng(seed)
    a, w = single_fit
    saddle = np.array([a, w, 0.0, 0.0])
    X = np.concatenate([np.tile(TEACHER, (200, 1)), np.tile(saddle, (60, 1)),
                        rng.normal(size=(30, 4)), np.full((10, 4), np.nan)])
    X[:260] += 1e-10 * rng.standard_normal((260, 4))
    N = X.shape[0]
    B = X.reshape(N, 2, 2) * rng.choice([-1.0, 1.0], (N, 2, 1))
    swap = rng.random(N) < 0.5
    B[swap] = B[swap][:, ::-1]
    status = np.repeat([1, 1, 0, 2], [200, 60, 30, 10])
    t_final = np.concatenate([rng.uniform(10, 20, 200), rng.uniform(30, 40, 60),
                              np.full(30, 100.0), rng.uniform(0, 1, 10)])
    loss = np.array([nf4.loss(x) if np.all(np.isfinite(x)) else np.inf for x in X])
    perm = rng.permutation(N)
    return studies.EnsembleFields(
        y_final=B.reshape(N, 4)[perm], loss_final=loss[perm], status=status[perm],
        t_final=t_final[perm], t_saved=None, y_saved=None, loss_saved=None, escape_time=None,
        escape_threshold=None, parameter_names=None, attrs={"gtol": 1e-8}, source=None)


def test_summarize_limits_by_type(nf4, single_fit):
    f = _ended(nf4, single_fit)
    ls = studies.summarize_limits(f, nf4)
    rows = {r["key"]: r for r in ls.rows}
    assert [r["key"] for r in ls.rows] == ["global_minimum", "saddle_1", "diverged",
                                           "not_converged"]
    assert rows["global_minimum"]["label"] == "global minimum (zero loss)"
    assert rows["saddle_1"]["label"] == "saddle, index 1"
    for key, n in (("global_minimum", 200), ("saddle_1", 60), ("diverged", 10),
                   ("not_converged", 30)):
        assert rows[key]["count"] == n and rows[key]["fraction"] == n / 300
        p = n / 300
        assert rows[key]["se"] == pytest.approx(np.sqrt(p * (1 - p) / 300))
    assert sum(r["fraction"] for r in ls.rows) == pytest.approx(1.0)
    assert 10 < rows["global_minimum"]["t_median"] < 20 and 30 < rows["saddle_1"]["t_median"] < 40
    assert ls.n_converged == ls.n_classified == 260 and not ls.subsampled and ls.gtol == 1e-8
    conv = f.status == 1
    assert ls.converge_time["median"] == np.median(f.t_final[conv])
    assert ls.converge_time["q25"] == np.percentile(f.t_final[conv], 25)
    assert ls.fraction("global") == pytest.approx(200 / 300)
    # the same from limit_points: the summary is its classification, pooled by type
    assert sum(cp.size for cp in ls.limit_points.clusters if cp.kind == "saddle") == 60


def test_summarize_limits_subsampled_and_without_gtol(nf4, single_fit):
    f = _ended(nf4, single_fit, seed=1)
    ls = studies.summarize_limits(f, nf4, max_states=100, seed=3)
    assert ls.subsampled and ls.n_classified == 100 and ls.n_converged == 260
    rows = {r["key"]: r for r in ls.rows}
    assert sum(r["fraction"] for r in ls.rows) == pytest.approx(1.0)
    assert rows["global_minimum"]["count"] + rows["saddle_1"]["count"] == pytest.approx(260)
    # the estimate is within 4 of its standard errors (which include the sampling)
    g = rows["global_minimum"]
    assert abs(g["fraction"] - 200 / 300) < 4 * g["se"]
    assert g["se"] > np.sqrt((2 / 3) * (1 / 3) / 300)
    f.attrs = {}  # no gtol: the moving ones were never tested
    ls = studies.summarize_limits(f, nf4)
    assert ls.gtol is None and ls.rows[-1]["label"].startswith("not tested for convergence")
    with pytest.raises(ValueError, match="status"):
        studies.summarize_limits(studies.EnsembleFields(
            y_final=f.y_final, loss_final=None, status=None, t_final=None, t_saved=None,
            y_saved=None, loss_saved=None, escape_time=None, escape_threshold=None,
            parameter_names=None, attrs={}, source=None), nf4)


def test_analysis_is_a_reexport_of_studies():
    """``narrowflow.analysis`` (the former module) gives the same objects as studies/."""
    import narrowflow.studies.limits as limits
    assert analysis.__all__ == studies.__all__
    for name in studies.__all__:
        assert getattr(analysis, name) is getattr(studies, name), name
    assert analysis.limit_points is limits.limit_points
    assert "studies" in analysis.__doc__
