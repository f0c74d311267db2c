"""NF4 (or a wider network) over long times, the stiff tail of training, per core: narrowflow
against stiff peers.

    python benchmarks/longtime.py                    # default run, ~5-10 min on one core
    python benchmarks/longtime.py --quick            # smoke run: tiny sizes, ~1 min
    python benchmarks/longtime.py --tols sweep       # rtol 1e-6, 1e-8, 1e-10 (atol = rtol/100)
    python benchmarks/longtime.py --horizons 1e2,1e4,conv --methods auto,dop853,lsoda --N 8192
    python benchmarks/longtime.py --out DIR          # where longtime.json / longtime.png go
                                                     # (default benchmarks/results/)
    python benchmarks/longtime.py --network m8d2n64 --name longtime_m8  # a wider network

What it measures
----------------
The NF4 problem (`narrowflow.model.nf4_benchmark()`, initial states
`nf4_initial_states(N)`, docs/design.md §6) trains to a zero-loss minimum whose Hessian spans
3e-5 ... 1.2: past t ~ 1e2 the gradient flow is stiff, and an explicit method's step is held
by stability (h ~ 3 / lambda_max) instead of accuracy. Every solver runs on ONE core
(narrowflow threads=1; the peers are serial) over the horizons

  * T = 1e2, 1e3, 1e4, 1e5, 1e6 (t_span = (0, T)), and
  * "conv": to convergence, t_span = (0, inf) with gtol = 1e-8 (CONVERGED when
    ||grad L||_2 < gtol). Where narrowflow refuses an infinite t_span (older versions) the
    script uses t_span = (0, 1e8) with the same gtol and says so. Peers have no such event:
    each of their trajectories integrates to the t_final that narrowflow's reference method
    (the first of auto, rodas5p, rodas4, dop853 that exists) reported for that trajectory
    at the same tolerance, so they do the same work.

Solvers (each at its own tolerances: default rtol 1e-8, atol 1e-10; --tols for a sweep):

  * narrowflow `solve_ensemble` methods "auto", "rodas5p", "rodas4", "dop853", whichever
    `narrowflow.ensemble.METHODS` holds (missing ones are skipped with a message); on request
    (--methods) also "taylor", "vern7" and the variants of `VARIANTS` below, each a method
    run with some module settings of narrowflow.ensemble or fields of BDF's MultistepMethod
    changed for the call. Among them: "auto-dop853" / "auto-vern7" / "auto-taylor", "auto"
    held to one start at every rtol; "auto-rodas5p", "auto" handing stiff trajectories to
    Rodas5P at the same tolerances, as narrowflow 0.1 did; "auto-early" / "auto-late", the
    stiffness test at 0.2 (the default) / 0.47 of the stability boundary;
    "auto-stol<f>", the BDF tail at f times the tolerances (AUTO_STIFF_TOL, default 0.01);
  * numbalsoda LSODA (ODEPACK) with a scalar Numba cfunc (t, u, du, p) written for NF4
    (libm tanh; checked against the model's field): the fastest one-trajectory RHS we have,
    about 6x cheaper per call than narrowflow's lane-batched flow called on one lane; LSODA
    forms its Jacobian by finite differences, included in its RHS count;
  * scipy `solve_ivp` Radau and LSODA with the analytic Jacobian (a Numba NF4 Hessian,
    checked against flow.hessian at start) and peers.py's Numba right-hand side, on a small N.

--network m<width>d<inputs>n<points> runs the same measurements on a wider network
(`teacher_problem`): one-output tanh with biases (p = width (inputs + 2) + 1) on n points
x ~ N(0, 1) labelled by a teacher of the same architecture with N(0, 1) parameters, initial
states N(0, 1). There the peers' RHS is a scalar Numba loop over points and neurons (each
tanh once; the LSODA cfunc calls it), their Jacobian -flow.hessian (numpy); the reference
is narrowflow's rodas5p at rtol 1e-12 (--reference; these networks train to t ~ 1e6 ... 1e10,
where scipy's Radau at 1e-12 takes minutes per trajectory), checked against one scipy
DOP853 run at 1e-13 to t = 1e3. Trajectories that ended other than SUCCESS or CONVERGED
(MAX_STEPS, ...) are left out of every error set.

Size of each measurement: an ensemble grows (starting at one lane batch for narrowflow) until
one timed run takes --min-time seconds (2 s), and further to the error set (--ref-N
trajectories) when that is projected to take under --max-time (10 s); the N used is printed,
marked "capped" when the error set was cut short for time. dop853 is capped by N at T = 1e6
(16 trajectories) and at "conv" (4: it does not reach gtol 1e-8 at rtol 1e-8 -- its
stability-limited steps keep the stiff component at the tolerance level -- and stops at
max_steps = 1e6). Compilation is kept out of the timings (a warm-up call first).
dop853 is skipped at "conv" under --quick. Throughput = N / wall time of the call
(trajectories per second per core; --repeats k: best of k calls at the final N). Small N
understates narrowflow (fewer trajectories than its 16 SIMD lanes leave lanes idle), so its
ensembles start at 16.

Errors: per trajectory, the max-norm distance of the final state to a reference at the
solver's OWN final time t_final; the reference is a chain of restarts through every time
asked for (never interpolated): scipy DOP853 (rtol 1e-13, atol 1e-15) up to t = 100 (not
stiff there), then scipy Radau (rtol 1e-12, atol 1e-14) with the analytic Jacobian. The
chain is checked against one DOP853 integration at 1e-13 to t = 1e3 (printed). Reported: the
median and the max of the per-trajectory errors over the first --ref-N (R = 50) trajectories
(or fewer where N < R, printed as n_err). Errors below ~1e-12 are at the reference's own
level (at T = 1e6 every trajectory sits at the minimum and the errors collapse).

Cost per trajectory: RHS evaluations (nfev), Jacobian evaluations (njev: narrowflow's result
.njev when it has one, scipy's njev; LSODA's finite-difference Jacobians are RHS calls), and
"RHS-equivalents" = nfev + njev * c_J, where c_J is the measured cost of one compiled
Jacobian (`rhs.compile_network(flow).jacobian`) in units of the compiled flow, both timed per
lane at 16 lanes through `narrowflow._ext.rhscall` (n/a when the jacobian cfunc is absent).
Each row also gives LSODA's throughput over the row's (numbalsoda LSODA at the same horizon
and rtol) and the inverse, and whether the row's max error is <= LSODA's, for the target
"narrowflow >= 10x LSODA per core at equal or better error". With several tolerances it also
prints narrowflow's throughput interpolated (log-log, no extrapolation) at LSODA's error.

Outputs: a markdown table on stdout, every number in <out>/longtime.json, and the
work-precision figure <out>/longtime.png (x: max error, y: trajectories/s per core, log-log,
one panel per horizon).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers  # noqa: E402  (nf4_data, the Numba RHS, interp_throughput, machine)

NF_METHODS = ("auto", "bdf", "rodas5p", "rodas4", "dop853")   # also the reference-method preference
# the explicit methods: held back by step stability in the stiff tail (a capped N there)
STABILITY_HELD = ("dop853", "vern7", "taylor")
PEER_KEYS = ("lsoda", "scipy-radau", "scipy-lsoda")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A narrowflow method run with some of its settings changed, on request (--methods).

    base: the method passed to solve_ensemble; module: narrowflow.ensemble attributes set for
    the call; bdf: fields of BDF's MultistepMethod replaced for the call."""
    base: str
    label: str
    module: dict = dataclasses.field(default_factory=dict)
    bdf: dict = dataclasses.field(default_factory=dict)


VARIANTS = {
    "taylor": Variant("taylor", "narrowflow taylor"),
    "vern7": Variant("vern7", "narrowflow vern7"),
    # "auto" held to a DOP853 or Vern7 start, or to its Taylor start, at every rtol
    "auto-dop853": Variant("auto", "auto, dop853 start",
                           {"AUTO_TAYLOR_RTOL": 0.0, "AUTO_NONSTIFF": "dop853"}),
    "auto-vern7": Variant("auto", "auto, vern7 start",
                          {"AUTO_TAYLOR_RTOL": 0.0, "AUTO_NONSTIFF": "vern7"}),
    "auto-taylor": Variant("auto", "auto, taylor start", {"AUTO_TAYLOR_RTOL": 1.0}),
    # "auto" handing over to Rodas5P at the same tolerances (its stiff method before BDF)
    "auto-rodas5p": Variant("auto", "auto, rodas5p tail",
                            {"AUTO_STIFF": "rodas5p", "AUTO_STIFF_TOL": 1.0}),
    # the stiffness test at 0.2 (the default) and 0.47 (the one before) of the stability
    # boundary; the Taylor start's switch held back (the default ratio is 100)
    "auto-early": Variant("auto", "auto, switch at 0.2", {"STIFF_FRACTION": 0.2}),
    "auto-late": Variant("auto", "auto, switch at 0.47", {"STIFF_FRACTION": 0.47}),
    "auto-tratio300": Variant("auto", "auto, Taylor ratio 300", {"TAYLOR_STIFF_RATIO": 300.0}),
    "auto-tratio1000": Variant("auto", "auto, Taylor ratio 1000",
                               {"TAYLOR_STIFF_RATIO": 1000.0}),
    # the BDF tail at other multiples of the tolerances (the default AUTO_STIFF_TOL is 0.01)
    **{f"auto-stol{f:g}": Variant("auto", f"auto, tail at {f:g} tol", {"AUTO_STIFF_TOL": f})
       for f in (0.001, 0.003, 0.03, 0.1)},
    # BDF's Jacobian renewed only when Newton fails (as before the scheduled renewal) or
    # every 10 accepted steps; up to 4, 5 or 6 Newton iterations per step
    "auto-jac0": Variant("auto", "auto, J on failure only", bdf={"jacobian_every": 0}),
    "bdf-jac0": Variant("bdf", "bdf, J on failure only", bdf={"jacobian_every": 0}),
    "auto-jac10": Variant("auto", "auto, J every 10 steps", bdf={"jacobian_every": 10}),
    "bdf-jac10": Variant("bdf", "bdf, J every 10 steps", bdf={"jacobian_every": 10}),
    "auto-newton4": Variant("auto", "auto, 4 Newton its", bdf={"newton_maxiter": 4}),
    "bdf-newton4": Variant("bdf", "bdf, 4 Newton its", bdf={"newton_maxiter": 4}),
    "auto-newton5": Variant("auto", "auto, 5 Newton its", bdf={"newton_maxiter": 5}),
    "bdf-newton5": Variant("bdf", "bdf, 5 Newton its", bdf={"newton_maxiter": 5}),
    "auto-newton6": Variant("auto", "auto, 6 Newton its", bdf={"newton_maxiter": 6}),
    "bdf-newton6": Variant("bdf", "bdf, 6 Newton its", bdf={"newton_maxiter": 6}),
}
NF_EXTRA = tuple(VARIANTS)


def base_method(m: str) -> str:
    """The narrowflow method a (variant) name runs through solve_ensemble."""
    return VARIANTS[m].base if m in VARIANTS else m


LABELS = {"auto": "narrowflow auto", "bdf": "narrowflow bdf", "rodas5p": "narrowflow rodas5p",
          "rodas4": "narrowflow rodas4", "dop853": "narrowflow dop853",
          **{m: v.label for m, v in VARIANTS.items()},
          "lsoda": "numbalsoda LSODA", "scipy-radau": "scipy Radau + jac",
          "scipy-lsoda": "scipy LSODA + jac"}
# the figure's markers, one per solver in the order of LABELS (peers dashed)
MARKERS = dict(zip(LABELS, itertools.cycle("o*sD^4h3<>d|_+x8pH12vPX")))
HORIZONS = (1e2, 1e3, 1e4, 1e5, 1e6, "conv")
GTOL = 1e-8
CONV_FALLBACK_T1 = 1e8
FAILED = 5                                    # status code used here for a failed peer run
STATUS_NAMES = {0: "SUCCESS", 1: "CONVERGED", 2: "DIVERGED", 3: "MAX_STEPS",
                4: "STEP_TOO_SMALL", FAILED: "FAILED"}
REF_SWITCH = 100.0                            # reference: DOP853 up to here, Radau after


# --- the problem --------------------------------------------------------------------------------

X, YD = peers.nf4_data()
DATA = np.concatenate([X, YD])          # NF4's x then y: the data of its scalar functions


@njit(cache=True)
def nf4_jac(t, theta, data):
    """Analytic Jacobian of the NF4 field, -Hessian of L = 1/(2n) sum r_i^2 (scalar Numba)."""
    n = data.shape[0] // 2
    a1, w1, a2, w2 = theta[0], theta[1], theta[2], theta[3]
    H = np.zeros((4, 4))
    for i in range(n):
        x = data[i]
        s1 = math.tanh(w1 * x)
        s2 = math.tanh(w2 * x)
        d1 = 1.0 - s1 * s1
        d2 = 1.0 - s2 * s2
        r = a1 * s1 + a2 * s2 - data[n + i]
        g0, g1, g2, g3 = s1, a1 * d1 * x, s2, a2 * d2 * x
        H[0, 0] += g0 * g0
        H[0, 1] += g0 * g1 + r * d1 * x
        H[0, 2] += g0 * g2
        H[0, 3] += g0 * g3
        H[1, 1] += g1 * g1 - 2.0 * r * a1 * x * x * s1 * d1
        H[1, 2] += g1 * g2
        H[1, 3] += g1 * g3
        H[2, 2] += g2 * g2
        H[2, 3] += g2 * g3 + r * d2 * x
        H[3, 3] += g3 * g3 - 2.0 * r * a2 * x * x * s2 * d2
    J = np.empty((4, 4))
    for p in range(4):
        for q in range(p, 4):
            J[p, q] = -H[p, q] / n
            J[q, p] = J[p, q]
    return J


@dataclasses.dataclass
class Problem:
    """A network on a data set, with what the peers and the reference need.

    flow: the narrowflow GradientFlow; initial(n) -> (n, p) initial states; field(theta,
    data, out): -grad L as scalar Numba code (the peers' RHS); jac(t, theta, data): its
    Jacobian (p, p); data: float64 array for both, with the LSODA call counter at
    data[counter] (and any scratch after it).
    """
    name: str
    flow: object
    initial: object
    field: object
    jac: object
    data: np.ndarray
    counter: int

    @property
    def p(self) -> int:
        return self.flow.n_params


def nf4_problem() -> Problem:
    import narrowflow as nf
    return Problem("NF4", nf.model.nf4_benchmark(), nf.model.nf4_initial_states, peers.nf4_field,
                   nf4_jac, np.concatenate([DATA, [0.0]]), DATA.size)


def teacher_problem(width, input_dim, n_data, seed=0) -> Problem:
    """A one-output tanh network with biases of `width` hidden units and `input_dim` inputs on
    `n_data` points x ~ N(0, 1), labelled by a teacher of the same architecture with N(0, 1)
    parameters (so its global minimum has zero loss); initial states N(0, 1) from
    narrowflow.initial.sample(n, p, seed=NF4_SEED)."""
    import narrowflow as nf
    rng = np.random.default_rng(seed)
    net = nf.model.Network(width=width, input_dim=input_dim, bias=True)
    x = rng.normal(size=(n_data, input_dim))
    flow = nf.model.GradientFlow(net, nf.model.Dataset.from_teacher(
        net, rng.normal(size=net.n_params), x))
    m, d, n, p = width, input_dim, n_data, net.n_params
    bs = d + 2                      # block of neuron j: a_j, w_j[0..d-1], b_j; then c
    xo, yo, so = 0, n * d, n * d + n + 1
    data = np.concatenate([x.ravel(), flow.data.y.ravel(), [0.0], np.zeros(m)])

    @njit(cache=False)
    def field(theta, data, out):
        # -grad L, L = 1/(2n) sum r_i^2; tanh(z_ij) kept in data[so:] (no allocation per call)
        for q in range(p):
            out[q] = 0.0
        for i in range(n):
            f = theta[p - 1]
            for j in range(m):
                z = theta[j * bs + 1 + d]
                for e in range(d):
                    z += theta[j * bs + 1 + e] * data[xo + i * d + e]
                s = math.tanh(z)
                data[so + j] = s
                f += theta[j * bs] * s
            r = (f - data[yo + i]) / n
            for j in range(m):
                s = data[so + j]
                out[j * bs] -= r * s
                g = r * theta[j * bs] * (1.0 - s * s)
                for e in range(d):
                    out[j * bs + 1 + e] -= g * data[xo + i * d + e]
                out[j * bs + 1 + d] -= g
            out[p - 1] -= r

    def jac(t, theta, data):
        return -flow.hessian(theta)

    def initial(count):
        return nf.initial.sample(count, p, nf.model.NF4_SEED)

    return Problem(f"width {m}, d={d}, bias, n={n} (teacher)", flow, initial, field, jac, data,
                   n * d + n)


def parse_network(text) -> Problem:
    """'nf4', or 'm<width>d<inputs>n<points>' (e.g. m4d2n64): `teacher_problem`."""
    if text == "nf4":
        return nf4_problem()
    mt = re.fullmatch(r"m(\d+)d(\d+)n(\d+)", text)
    if not mt:
        raise SystemExit(f"--network: 'nf4' or m<width>d<inputs>n<points> (e.g. m4d2n64), "
                         f"got {text!r}")
    return teacher_problem(*(int(g) for g in mt.groups()))


def scipy_rhs(problem: Problem):
    """f(t, y, data) for scipy's solve_ivp: the problem's scalar field."""
    if problem.name == "NF4":
        return peers._scipy_rhs
    field, p = problem.field, problem.p

    @njit(cache=False)
    def rhs(t, y, data):
        out = np.empty(p)
        field(y, data, out)
        return out
    return rhs


def horizon_label(h) -> str:
    if h == "conv":
        return f"conv (gtol {GTOL:.0e})"
    e = math.log10(h)
    return f"T=1e{int(round(e))}" if abs(e - round(e)) < 1e-12 else f"T={h:g}"


# --- solvers ------------------------------------------------------------------------------------
# Each runner: run(y0 (n, p), targets (n,) end times or None (narrowflow at "conv"), rtol, atol)
# -> dict(y (n, p), t (n,), status (n,), nfev (n,) or None, njev (n,) or None)

def make_narrowflow(problem, method, conv_t1):
    import narrowflow as nf
    from narrowflow import ensemble
    from narrowflow import tableaus
    flow = problem.flow
    variant = VARIANTS.get(method, Variant(method, method))
    base, patch, fields = variant.base, variant.module, variant.bdf

    def run(y0, targets, rtol, atol, horizon):
        if horizon == "conv":
            t_span, gtol = (0.0, conv_t1), GTOL
        else:
            t_span, gtol = (0.0, float(horizon)), None
        saved = {k: getattr(ensemble, k) for k in (patch or {})}
        for k, v in (patch or {}).items():
            setattr(ensemble, k, v)
        get = tableaus.get
        if fields:
            # narrowflow.ensemble looks its methods up through tableaus.get at each run
            tableaus.get = lambda name: (dataclasses.replace(get(name), **fields)
                                         if name == "bdf" else get(name))
        try:
            res = nf.solve_ensemble(flow, y0, t_span=t_span, method=base, rtol=rtol,
                                    atol=atol, gtol=gtol, threads=1)
        finally:
            tableaus.get = get
            for k, v in saved.items():
                setattr(ensemble, k, v)
        njev = getattr(res, "njev", None)
        return dict(y=np.asarray(res.y_final), t=np.asarray(res.t_final, float),
                    status=np.asarray(res.status, int), nfev=np.asarray(res.nfev, float),
                    njev=None if njev is None else np.asarray(njev, float))
    return run


def make_numbalsoda(problem):
    """numbalsoda LSODA with its best RHS: a scalar Numba cfunc (libm tanh, data in its
    parameter block; for NF4 written out), not narrowflow's lane-batched flow called on one
    lane (which costs about 6x more per call on NF4); checked against the model's field,
    counts its calls."""
    import numba as nb
    from numbalsoda import lsoda, lsoda_sig

    flow, data, cnt, p = problem.flow, problem.data, problem.counter, problem.p
    if problem.name == "NF4":
        n = flow.data.n

        @nb.cfunc(lsoda_sig, error_model="numpy")
        def lsoda_rhs(t, u, du, p):
            a1, w1, a2, w2 = u[0], u[1], u[2], u[3]
            g0 = g1 = g2 = g3 = 0.0
            for i in range(n):
                xi = p[i]
                s1 = math.tanh(w1 * xi)
                s2 = math.tanh(w2 * xi)
                r = a1 * s1 + a2 * s2 - p[n + i]
                g0 -= r * s1
                g1 -= r * a1 * (1.0 - s1 * s1) * xi
                g2 -= r * s2
                g3 -= r * a2 * (1.0 - s2 * s2) * xi
            du[0] = g0 / n
            du[1] = g1 / n
            du[2] = g2 / n
            du[3] = g3 / n
            p[cnt] += 1.0
    else:
        field, nd, npar = problem.field, data.size, problem.p

        @nb.cfunc(lsoda_sig, error_model="numpy")
        def lsoda_rhs(t, u, du, p):
            field(nb.carray(u, (npar,)), nb.carray(p, (nd,)), nb.carray(du, (npar,)))
            p[cnt] += 1.0

    _check_scalar_rhs(lsoda_rhs, problem)
    address = lsoda_rhs.address

    @nb.njit
    def loop(address, y0, targets, data, rtol, atol, y_out, nfev, ok):
        t_eval = np.zeros(2)
        for i in range(y0.shape[0]):
            if not targets[i] > 0.0:
                y_out[i] = y0[i]
                ok[i] = 1
                continue
            t_eval[1] = targets[i]
            before = data[cnt]
            usol, success = lsoda(address, y0[i].copy(), t_eval, data, rtol, atol, 10**8)
            y_out[i] = usol[1]
            nfev[i] = data[cnt] - before
            ok[i] = 1 if success else 0

    def run(y0, targets, rtol, atol, horizon):
        n = len(y0)
        y = np.empty((n, p))
        nfev = np.zeros(n)
        ok = np.zeros(n, np.int64)
        loop(address, np.ascontiguousarray(y0), np.ascontiguousarray(targets, dtype=float),
             data, rtol, atol, y, nfev, ok)
        return dict(y=y, t=np.array(targets, float), status=np.where(ok == 1, 0, FAILED),
                    nfev=nfev, njev=None)
    run.keepalive = (lsoda_rhs,)
    return run


def _check_scalar_rhs(cf, problem):
    """The peer's RHS must be the model's field (to 1e-13 relative) at a few states."""
    import ctypes
    fn = ctypes.CFUNCTYPE(None, ctypes.c_double, ctypes.POINTER(ctypes.c_double),
                          ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double))(cf.address)
    work = problem.data.copy()
    for th in np.random.default_rng(1).normal(size=(5, problem.p)):
        u = np.ascontiguousarray(th)
        du = np.zeros(problem.p)
        fn(0.0, u.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
           du.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
           work.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        ref = problem.flow.field(th)
        if not np.allclose(du, ref, rtol=1e-13, atol=1e-15):
            raise RuntimeError(f"LSODA's {problem.name} RHS disagrees with the model: "
                               f"{du} vs {ref}")


def make_scipy(problem, method):
    from scipy.integrate import solve_ivp
    f, jac, data, p = scipy_rhs(problem), problem.jac, problem.data, problem.p

    def run(y0, targets, rtol, atol, horizon):
        n = len(y0)
        y = np.empty((n, p))
        t = np.zeros(n)
        status = np.zeros(n, int)
        nfev = np.zeros(n)
        njev = np.zeros(n)
        for i in range(n):
            if not targets[i] > 0.0:
                y[i] = y0[i]
                continue
            s = solve_ivp(f, (0.0, float(targets[i])), y0[i], method=method,
                          rtol=rtol, atol=atol, jac=jac, args=(data,))
            y[i], t[i] = s.y[:, -1], s.t[-1]
            status[i] = 0 if s.status == 0 else FAILED
            nfev[i], njev[i] = s.nfev, s.njev
        return dict(y=y, t=t, status=status, nfev=nfev, njev=njev)
    return run


# --- measurement --------------------------------------------------------------------------------

def measure(run, y0_all, targets, rtol, atol, horizon, *, n_start, n_hi, n_err, min_time,
            max_time):
    """Grow N until one timed run takes min_time (and covers n_err trajectories when that is
    projected under max_time). Returns (output of the last run, N, seconds, capped)."""
    n_hi = max(1, min(n_hi, len(y0_all) if targets is None else len(targets)))
    n = max(1, min(n_start, n_hi))
    while True:
        y0 = np.ascontiguousarray(y0_all[:n])
        tg = None if targets is None else targets[:n]
        t0 = time.perf_counter()
        out = run(y0, tg, rtol, atol, horizon)
        el = time.perf_counter() - t0
        if n >= n_hi:
            break
        per = max(el, 1e-6) / n
        want = n
        if el < min_time:
            want = max(2 * n, math.ceil(1.2 * min_time / per))
            want = min(want, max(n + 1, int(max_time / per)))
        if n < n_err and n_err * per <= max_time:
            want = max(want, n_err)
        if want <= n:
            break
        n = min(n_hi, want)
    return out, n, el, n < n_err


def jacobian_cost(problem, lanes=16):
    """(c_J = time of one compiled Jacobian / time of one compiled flow, per lane; note)."""
    from narrowflow import rhs
    from narrowflow._ext import rhscall
    flow = problem.flow
    funcs = rhs.compile_network(flow)
    if not hasattr(type(funcs), "jacobian") and not hasattr(funcs, "jacobian"):
        return None, ("rhs.compile_network(flow) has no `jacobian` cfunc in this narrowflow: "
                      "RHS-equivalents count RHS evaluations only")
    try:
        jac = funcs.jacobian
        address = getattr(funcs, "jacobian_address", None) or jac.address
        p = funcs.n_params
        try:
            n_out = max(int(funcs.n_out("jacobian")), p * p)
        except Exception:  # noqa: BLE001 - n_out may not know "jacobian" yet
            n_out = p * p
        prm = rhs.pack_params(flow)
        y = np.ascontiguousarray(problem.initial(lanes).T.ravel())
        out = {}
        for name, addr, k in (("flow", funcs.flow_address, p), ("jacobian", address, n_out)):
            reps = 2000
            while rhscall.time_per_call(addr, lanes, y, prm, k, reps) * reps < 0.05:
                reps *= 4
            out[name] = min(rhscall.time_per_call(addr, lanes, y, prm, k, reps)
                            for _ in range(5))
        c = out["jacobian"] / out["flow"]
        return c, (f"c_J = {c:.2f}: one compiled Jacobian costs {c:.2f} compiled RHS "
                   f"({out['jacobian'] / lanes * 1e9:.0f} ns vs {out['flow'] / lanes * 1e9:.0f} "
                   f"ns per lane at {lanes} lanes)")
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        return None, f"timing the jacobian cfunc failed ({type(exc).__name__}: {exc})"[:300]


def conv_support(problem, method):
    """t_span[1] for "conv": inf when narrowflow accepts it, else CONV_FALLBACK_T1."""
    from narrowflow import ensemble
    try:
        ensemble.make_problem(problem.flow, method=method, t_span=(0.0, np.inf),
                              gtol=GTOL)
        return np.inf
    except ValueError:
        return CONV_FALLBACK_T1
    except Exception:  # noqa: BLE001 - make_problem's signature may change: assume inf works
        return np.inf


# --- reference ----------------------------------------------------------------------------------

def reference(problem, times_by_traj, y0_all, log=print, method="radau"):
    """{i: {t: state}}: a restarted chain through every asked-for time of trajectory i.

    method "radau": scipy DOP853 (1e-13) up to REF_SWITCH, then scipy Radau (1e-12, 1e-14)
    with the Jacobian; "rodas5p": narrowflow's rodas5p at rtol 1e-12, atol 1e-14 throughout
    (compiled: for wide networks to convergence, where scipy's Radau takes minutes per
    trajectory; not independent of narrowflow, so `reference_check` compares it with scipy)."""
    from scipy.integrate import solve_ivp
    f, jac, data = scipy_rhs(problem), problem.jac, problem.data.copy()
    ref = {}
    t_start = time.perf_counter()
    for k, (i, times) in enumerate(sorted(times_by_traj.items())):
        y, t0, got = y0_all[i].copy(), 0.0, {}
        for t1 in sorted(times):
            if t1 > t0 and method == "rodas5p":
                import narrowflow as nf
                r = nf.solve_ensemble(problem.flow, y[None, :], method="rodas5p",
                                      t_span=(t0, t1), rtol=1e-12, atol=1e-14, threads=1,
                                      max_steps=10**8)
                if r.status[0] != 0:
                    log(f"  reference trajectory {i} ended with status {int(r.status[0])} at "
                        f"t={r.t_final[0]:.3g}")
                y, t0 = r.y_final[0].copy(), t1
            elif t1 > t0:
                if t1 <= REF_SWITCH:
                    s = solve_ivp(f, (t0, t1), y, method="DOP853", rtol=1e-13,
                                  atol=1e-15, args=(data,))
                else:
                    if t0 < REF_SWITCH:
                        s = solve_ivp(f, (t0, REF_SWITCH), y, method="DOP853",
                                      rtol=1e-13, atol=1e-15, args=(data,))
                        y, t0 = s.y[:, -1], REF_SWITCH
                    s = solve_ivp(f, (t0, t1), y, method="Radau", rtol=1e-12,
                                  atol=1e-14, jac=jac, args=(data,))
                if s.status != 0:
                    log(f"  reference trajectory {i} failed at t={s.t[-1]:.3g}: {s.message}")
                y, t0 = s.y[:, -1], t1
            got[t1] = y.copy()
        ref[i] = got
        if k == 0 or (k + 1) % 10 == 0:
            log(f"  reference {k + 1}/{len(times_by_traj)} ({time.perf_counter() - t_start:.0f} s)",
                flush=True)
    return ref


def reference_check(problem, ref, y0_all, n=3, t_chk=1e3):
    """Max difference of the chain to one DOP853 run at 1e-13 from 0 to t_chk."""
    from scipy.integrate import solve_ivp
    f, data = scipy_rhs(problem), problem.data.copy()
    diffs = []
    for i in sorted(ref)[:n]:
        if t_chk in ref[i]:
            s = solve_ivp(f, (0.0, t_chk), y0_all[i], method="DOP853",
                          rtol=1e-13, atol=1e-15, args=(data,))
            diffs.append(float(np.abs(s.y[:, -1] - ref[i][t_chk]).max()))
    return max(diffs) if diffs else None


# --- main ---------------------------------------------------------------------------------------

def parse_list(text, allowed=None, kind=str):
    items = [s.strip() for s in text.split(",") if s.strip()]
    out = []
    for s in items:
        v = s if kind is str or s == "conv" else kind(s)
        if allowed is not None and v not in allowed:
            raise SystemExit(f"unknown entry {s!r}; choose from {', '.join(map(str, allowed))}")
        out.append(v)
    return out


def status_summary(status) -> str:
    vals, counts = np.unique(np.asarray(status, int), return_counts=True)
    return ", ".join(f"{STATUS_NAMES.get(int(v), v)} {c}" for v, c in zip(vals, counts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, ~1 min)")
    ap.add_argument("--N", type=int, default=65536,
                    help="largest ensemble of a narrowflow / numbalsoda measurement")
    ap.add_argument("--scipy-N", type=int, default=20, help="largest ensemble of a scipy peer")
    ap.add_argument("--ref-N", type=int, default=50, help="R: trajectories in the error set")
    ap.add_argument("--horizons", default=",".join(map(str, ("1e2", "1e3", "1e4", "1e5", "1e6",
                                                                 "conv"))),
                    help="comma list of T values and/or 'conv'")
    ap.add_argument("--methods", default=",".join(NF_METHODS + PEER_KEYS),
                    help="comma list from: " + ", ".join(NF_METHODS + NF_EXTRA + PEER_KEYS))
    ap.add_argument("--tols", default="1e-8",
                    help="comma list of rtol (atol = rtol/100), or 'sweep' = 1e-6,1e-8,1e-10")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run")
    ap.add_argument("--max-time", type=float, default=10.0,
                    help="longest run allowed to extend N to the error set")
    ap.add_argument("--repeats", type=int, default=1,
                    help="time the final N this many times and keep the best (shared machine)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--name", default="longtime",
                    help="stem of the output files in --out (default: longtime)")
    ap.add_argument("--reference", choices=("radau", "rodas5p"), default=None,
                    help="reference chain: scipy DOP853 + Radau (default for nf4) or "
                         "narrowflow rodas5p at 1e-12 (default for other networks)")
    ap.add_argument("--network", default="nf4",
                    help="nf4, or m<width>d<inputs>n<points> (e.g. m4d2n64): a teacher-labelled "
                         "tanh network with biases (teacher_problem)")
    args = ap.parse_args(argv)
    problem = parse_network(args.network)
    ref_kind = args.reference or ("radau" if problem.name == "NF4" else "rodas5p")

    horizons = parse_list(args.horizons, kind=float)
    for h in horizons:
        if h != "conv" and not h > 0:
            raise SystemExit(f"horizons must be > 0 or 'conv', got {h}")
    requested = parse_list(args.methods, NF_METHODS + NF_EXTRA + PEER_KEYS)
    tols = [1e-6, 1e-8, 1e-10] if args.tols == "sweep" else parse_list(args.tols, kind=float)
    R = args.ref_N
    min_time, max_time = args.min_time, args.max_time
    n_cap, scipy_cap = args.N, args.scipy_N
    dop853_caps = {1e6: 16, "conv": 4}
    if args.quick:
        R, min_time, max_time = min(R, 6), min(min_time, 0.3), min(max_time, 1.5)
        n_cap, scipy_cap = min(n_cap, 4096), min(scipy_cap, 2)
        dop853_caps = {1e5: 4, 1e6: 1, "conv": 0}       # 0: skipped
    notes = []

    def say(msg="", **kw):
        print(msg, **kw)

    import narrowflow as nf
    from narrowflow import ensemble
    versions = {"narrowflow": nf.__version__}
    have = set(ensemble.METHODS)
    say(f"narrowflow {nf.__version__}: ensemble.METHODS = {', '.join(ensemble.METHODS)}")
    nf_methods = []
    from narrowflow import tableaus
    have.update(m for m, v in VARIANTS.items()
                if v.base in have and all(hasattr(ensemble, k) for k in v.module)
                and all(hasattr(tableaus.get_multistep("bdf"), k) for k in v.bdf))
    for m in NF_METHODS + NF_EXTRA:
        if m not in requested:
            continue
        if m in have:
            nf_methods.append(m)
        else:
            msg = f"skip narrowflow {m!r}: not in narrowflow.ensemble.METHODS"
            say(msg)
            notes.append(msg)
    conv_t1 = {m: conv_support(problem, base_method(m)) for m in nf_methods}
    if "conv" in horizons:
        for m, t1 in conv_t1.items():
            if not math.isinf(t1):
                msg = (f"narrowflow {m}: t_span=(0, inf) refused; 'conv' uses t_span=(0, "
                       f"{t1:g}) with gtol={GTOL:g}")
                say(msg)
                notes.append(msg)
    ref_method = nf_methods[0] if nf_methods else None

    runners = {m: make_narrowflow(problem, m, conv_t1[m]) for m in nf_methods}
    skipped = {}
    peer_keys = [k for k in PEER_KEYS if k in requested]
    for k in list(peer_keys):
        try:
            if k == "lsoda":
                runners[k] = make_numbalsoda(problem)
                import numbalsoda
                versions["numbalsoda"] = getattr(numbalsoda, "__version__", None) or _dist_version(
                    "numbalsoda")
            else:
                import scipy
                versions["scipy"] = scipy.__version__
                runners[k] = make_scipy(problem, "Radau" if k == "scipy-radau" else "LSODA")
        except Exception as exc:  # noqa: BLE001 - a missing peer is reported, not fatal
            skipped[LABELS[k]] = f"{type(exc).__name__}: {exc}"[:200]
            say(f"skip {LABELS[k]}: {skipped[LABELS[k]]}")
            peer_keys.remove(k)
    import numba
    versions["numba"] = numba.__version__
    versions["numpy"] = np.__version__

    # sanity: the peers' Jacobian is -flow.hessian
    jac_err = max(float(np.abs(problem.jac(0.0, y, problem.data) + problem.flow.hessian(y)).max())
                  for y in problem.initial(8))
    if jac_err > 1e-12:
        raise SystemExit(f"the peers' Jacobian disagrees with -flow.hessian by {jac_err:.2e}")
    say(f"network: {problem.name}, p = {problem.p}")
    c_J, c_J_note = jacobian_cost(problem)
    say(c_J_note)
    notes.append(c_J_note)

    n_all = max(n_cap, R, scipy_cap)
    y0_all = problem.initial(n_all)
    say("warm-up (compilation kept out of the timings) ...", flush=True)
    for k, run in runners.items():
        for rtol in tols:   # at every tolerance: the Taylor code is compiled per order
            run(y0_all[:2], np.array([1.0, 1.0]), rtol, rtol / 100, 1.0)

    rows, kept = [], []
    for h in horizons:
        hl = horizon_label(h)
        for rtol in tols:
            atol = rtol / 100
            targets_ref = None
            for k in nf_methods + peer_keys:
                if k in nf_methods:
                    targets, n_hi, n_start = None, n_cap, 16
                    if k in STABILITY_HELD and h in dop853_caps:
                        n_hi = dop853_caps[h]
                        if n_hi == 0:
                            msg = (f"  skip narrowflow {k} at {hl} in --quick (it runs to "
                                   f"max_steps = 1e6 there: 5-15 s per trajectory)")
                            say(msg)
                            notes.append(msg.strip())
                            continue
                    elif k in STABILITY_HELD and h != "conv" and any(
                            c != "conv" and h > c for c in dop853_caps):
                        n_hi = min(v for c, v in dop853_caps.items() if c != "conv")
                else:
                    if h == "conv":
                        if targets_ref is None:
                            say(f"  skip {LABELS[k]} at {hl}: no narrowflow reference method ran")
                            continue
                        targets = targets_ref
                    else:
                        targets = np.full(n_all, float(h))
                    n_hi = scipy_cap if k.startswith("scipy") else n_cap
                    n_start = 2 if k.startswith("scipy") else 16
                out, n, el, capped = measure(runners[k], y0_all, targets, rtol, atol, h,
                                             n_start=n_start, n_hi=n_hi, n_err=R,
                                             min_time=min_time, max_time=max_time)
                for _ in range(args.repeats - 1):     # best of `repeats` at the final N
                    y0 = np.ascontiguousarray(y0_all[:n])
                    t0 = time.perf_counter()
                    runners[k](y0, None if targets is None else targets[:n], rtol, atol, h)
                    el = min(el, time.perf_counter() - t0)
                if h == "conv" and k in nf_methods and targets_ref is None:
                    targets_ref = out["t"].copy()   # the first narrowflow method that ran
                    ref_method = k
                nfev = float(out["nfev"].mean()) if out["nfev"] is not None else None
                njev = float(out["njev"].mean()) if out["njev"] is not None else None
                if njev is None or njev == 0:
                    rhs_eq = nfev
                else:
                    rhs_eq = None if c_J is None else nfev + njev * c_J
                row = dict(horizon=hl, T=None if h == "conv" else float(h), key=k,
                           solver=LABELS[k], rtol=rtol, atol=atol, n=n, seconds=el,
                           throughput=n / el, capped=bool(capped), nfev=nfev, njev=njev,
                           rhs_equivalents=rhs_eq, status=status_summary(out["status"]),
                           t_final_median=float(np.median(out["t"])),
                           t_final_max=float(np.max(out["t"])))
                m = min(R, n)
                kept.append(dict(y=out["y"][:m].copy(), t=out["t"][:m].copy(),
                                 ok=np.isin(np.asarray(out["status"][:m]), (0, 1))))
                rows.append(row)
                say(f"  {hl:16s} {LABELS[k]:20s} rtol {rtol:.0e}: {row['throughput']:10.1f} "
                    f"traj/s  N={n}{' (capped)' if capped else ''}  {el:.2f} s  "
                    f"nfev {nfev:.0f}" + (f" njev {njev:.1f}" if njev is not None else "")
                    + f"  t_final~{row['t_final_median']:.3g}  [{row['status']}]", flush=True)

    # reference at every final time asked for
    times = {}
    for kp in kept:
        # only SUCCESS / CONVERGED end states: a MAX_STEPS one may lie at t = 1e20
        for i, (yy, tt, ok) in enumerate(zip(kp["y"], kp["t"], kp["ok"])):
            if ok and np.isfinite(tt) and tt > 0 and np.all(np.isfinite(yy)):
                times.setdefault(i, set()).add(float(tt))
    n_ref = len(times)
    if 1e3 not in horizons:
        for i in list(times)[:3]:
            times[i].add(1e3)
    ref_desc = (f"DOP853 1e-13 to t={REF_SWITCH:g}, then Radau rtol 1e-12 atol 1e-14 + jac"
                if ref_kind == "radau" else "narrowflow rodas5p rtol 1e-12 atol 1e-14")
    say(f"reference: {ref_desc}, on {n_ref} trajectories ...", flush=True)
    t_ref = time.perf_counter()
    ref = reference(problem, times, y0_all, log=say, method=ref_kind)
    ref_seconds = time.perf_counter() - t_ref
    say(f"  reference done in {ref_seconds:.0f} s")
    ref_chk = reference_check(problem, ref, y0_all)
    if ref_chk is not None:
        say(f"  reference chain vs one DOP853 1e-13 run to t=1e3: {ref_chk:.2e}")

    for row, kp in zip(rows, kept):
        errs = []
        for i, (yy, tt, ok) in enumerate(zip(kp["y"], kp["t"], kp["ok"])):
            if ok and i in ref and float(tt) in ref[i]:
                errs.append(float(np.abs(yy - ref[i][float(tt)]).max()))
        row["n_err"] = len(errs)
        row["err_median"] = float(np.median(errs)) if errs else None
        row["err_max"] = float(np.max(errs)) if errs else None

    # LSODA ratios (numbalsoda LSODA at the same horizon and rtol)
    lsoda = {(r["horizon"], r["rtol"]): r for r in rows if r["key"] == "lsoda"}
    for r in rows:
        ls = lsoda.get((r["horizon"], r["rtol"]))
        if ls is None:
            r["lsoda_over_this"] = r["this_over_lsoda"] = r["err_le_lsoda"] = None
            continue
        r["lsoda_over_this"] = ls["throughput"] / r["throughput"]
        r["this_over_lsoda"] = r["throughput"] / ls["throughput"]
        r["err_le_lsoda"] = (None if r is ls or r["err_max"] is None or ls["err_max"] is None
                             else bool(r["err_max"] <= ls["err_max"]))
    equal_error = []
    if len(tols) > 1:
        for ls in lsoda.values():
            for m in nf_methods:
                ratio = {}
                for stat in ("err_max", "err_median"):
                    pts = [(r[stat], r["throughput"]) for r in rows
                           if r["key"] == m and r["horizon"] == ls["horizon"] and r[stat]]
                    thr = peers.interp_throughput(pts, ls[stat]) if ls[stat] else None
                    ratio[stat] = None if thr is None else thr / ls["throughput"]
                equal_error.append(dict(horizon=ls["horizon"], solver=LABELS[m],
                                        lsoda_rtol=ls["rtol"], lsoda_err_max=ls["err_max"],
                                        ratio=ratio["err_max"],
                                        lsoda_err_median=ls["err_median"],
                                        ratio_median=ratio["err_median"]))

    meta = dict(machine=peers.machine(), versions=versions, gtol=GTOL, network=problem.name,
                n_params=problem.p,
                conv_t1={m: (None if math.isinf(t) else t) for m, t in conv_t1.items()},
                reference_method=ref_method, reference=ref_desc, c_J=c_J, ref_N=R, ref_trajectories=n_ref,
                reference_seconds=ref_seconds, reference_check_t1e3=ref_chk,
                min_time=min_time, max_time=max_time, quick=args.quick, tols=tols,
                horizons=[horizon_label(h) for h in horizons], skipped=skipped, notes=notes,
                command=" ".join(sys.argv))
    md = render(rows, equal_error, meta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(dict(meta=meta, rows=rows,
                                                       equal_error=equal_error, table=md),
                                                  indent=1))
    say()
    say(md)
    say(f"numbers: {out / (args.name + '.json')}")
    if not args.no_figure:
        figure(rows, [horizon_label(h) for h in horizons], out / f"{args.name}.png",
               problem.name)
        say(f"figure: {out / (args.name + '.png')}")
    return 0


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


def _f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def render(rows, equal_error, meta) -> str:
    m = meta["machine"]
    lines = [f"Network: {meta.get('network', 'NF4')} (p = {meta.get('n_params', 4)}). "
             f"Machine: {m['cpu']} ({m['simd']}), {m['cores']} cores, Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ". One core.",
             f"Errors: max-norm of the final state vs the reference ({meta['reference']}, "
             f"restarted at every time asked for) at "
             f"each solver's own t_final, over the first min(N, {meta['ref_N']}) trajectories "
             f"(n_err; only trajectories that ended SUCCESS or CONVERGED). conv: gtol "
             f"{GTOL:g}; peers integrate to the t_final of narrowflow "
             f"{meta['reference_method']}."
             + (" QUICK RUN (tiny sizes): numbers are only a smoke test." if meta["quick"]
                else ""), "",
             "| horizon | solver | rtol | N | traj/s/core | err median | err max | n_err | "
             "RHS/traj | Jac/traj | RHS-eq/traj | LSODA÷this | this÷LSODA | err≤LSODA | "
             "status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = {True: "yes", False: "no", None: ""}[r["err_le_lsoda"]]
        lines.append(
            f"| {r['horizon']} | {r['solver']} | {r['rtol']:.0e} | {r['n']}"
            f"{' (capped)' if r['capped'] else ''} | {r['throughput']:.4g} | "
            f"{_f(r['err_median'], '.2e')} | {_f(r['err_max'], '.2e')} | {r['n_err']} | "
            f"{_f(r['nfev'], '.0f')} | {_f(r['njev'], '.1f')} | "
            f"{_f(r['rhs_equivalents'], '.0f')} | {_f(r['lsoda_over_this'], '.3g')} | "
            f"{_f(r['this_over_lsoda'], '.3g')} | {ok} | {r['status']} |")
    if equal_error:
        lines += ["", "narrowflow ÷ LSODA throughput at LSODA's max error and at its median "
                  "error (narrowflow's curve interpolated in log-log; n/a outside its measured "
                  "range):", "",
                  "| horizon | narrowflow | LSODA rtol | LSODA err max | ratio | "
                  "LSODA err median | ratio at median |",
                  "|---|---|---|---|---|---|---|"]
        for e in equal_error:
            lines.append(f"| {e['horizon']} | {e['solver']} | {e['lsoda_rtol']:.0e} | "
                         f"{_f(e['lsoda_err_max'], '.2e')} | {_f(e['ratio'], '.3g')} | "
                         f"{_f(e.get('lsoda_err_median'), '.2e')} | "
                         f"{_f(e.get('ratio_median'), '.3g')} |")
    foot = []
    if meta.get("reference_check_t1e3") is not None:
        foot.append(f"reference chain vs one DOP853 1e-13 run at t=1e3: "
                    f"{meta['reference_check_t1e3']:.1e}")
    foot.append("LSODA: nfev includes its finite-difference Jacobians; RHS-eq = nfev + njev*c_J")
    foot += meta["notes"]
    if meta["skipped"]:
        foot.append("skipped: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped"].items()))
    lines += [""] + [f"- {s}" for s in foot]
    return "\n".join(lines) + "\n"


def figure(rows, horizons, path, network="NF4"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    nh = len(horizons)
    ncols = min(3, nh)
    nrows = math.ceil(nh / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.5 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    keys = list(dict.fromkeys(r["key"] for r in rows))
    colors = {k: f"C{i}" for i, k in enumerate(keys)}
    for j, hl in enumerate(horizons):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        for k in keys:
            pts = sorted((r["err_max"], r["throughput"]) for r in rows
                         if r["key"] == k and r["horizon"] == hl and r["err_max"])
            if pts:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts],
                          "-" + MARKERS[k] if k not in PEER_KEYS else "--" + MARKERS[k],
                          color=colors[k], label=LABELS[k])
        ax.set_title(hl, fontsize="medium")
        ax.set_xlabel("max error of final state")
        ax.set_ylabel("trajectories / s / core")
        ax.grid(True, which="both", alpha=0.3)
        if j == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle(f"{network} long-time work-precision, one core")
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
