# cython: language_level=3
"""Ensemble kernel: lane-batched Runge-Kutta and Rosenbrock integration of many trajectories.

Two step routines serve every method (narrowflow.tableaus describes the layouts):
- explicit (run_worker): classical RK4 and gradient descent (fixed step), Dormand-Prince
  5(4), Tsitouras 5(4) and DOP853 (adaptive, Hairer's PI controller, dense output), with
  Hairer's stiffness test for DOP853 (`stiff_switch`: a lane found stiff stops with the
  internal status ST_STIFF, and narrowflow.ensemble continues it with a Rosenbrock method);
  the Taylor method (run_worker_taylor) has a stiffness test of its own, from the Jacobian;
- linearly implicit (run_worker_ros): Rosenbrock methods (Rodas5P, Rodas4) in the
  transformed form of Hairer & Wanner, with the exact Jacobian from a compiled cfunc, one
  LU factorisation (partial pivoting) of W = I/(gamma h) - J per lane and step, and dense
  output from the stage increments.

Work is organised as follows. Each worker (one per OpenMP thread) owns `L` SIMD lanes in
structure-of-arrays layout (`y[i*L + l]`); every right-hand-side call evaluates all lanes at
once through the C function pointer of a Numba cfunc (ext/rhs_abi.pxd). Each lane carries
its own trajectory, time, step size, accept/reject decision and status; a lane whose
trajectory finishes is refilled at once with the next trajectory from a queue shared by the
workers (an atomic counter). Lanes with nothing to do are padded with a zero state, so every
trajectory goes through the same arithmetic whatever lane, group, thread or chunk it lands
in: results are bitwise identical across thread counts, chunkings and lane counts as long as
the right-hand side computes each lane independently (narrowflow.rhs does).

A run can resume trajectories (`rows`, `t_start`, `h_start`, `resume`): each queue entry q
is the row rows[q] of the arrays, starts at t_start[row] with the counters, save points
and escape time already in the output arrays, and is written back to the same row.

Systems must be autonomous: the time argument passed to the right-hand side is t0.
"""
from libc.stdint cimport int64_t, int8_t, uintptr_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport sqrt, fabs, pow, exp, log, isfinite, NAN, INFINITY
from libc.float cimport DBL_MAX
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cython.parallel cimport prange
from rhs_abi cimport rhs_fn, lane_fn, taylor_fn

import numpy as np

cdef extern from "ensemble_queue.h" nogil:
    int64_t nf_fetch_add(int64_t* p, int64_t v)

cdef extern from "nf_interrupt.h" nogil:
    int nf_install_sigint()
    void nf_restore_sigint()
    int nf_is_interrupted()
    void nf_clear_interrupt()
    void nf_count_finished()
    int64_t nf_finished_count()
    void nf_reset_finished()

cdef enum:
    MAXK = 16      # stage slots
    MAXD = 8       # degree of the dense-output polynomials
    MAXS = 8       # Rosenbrock stages
    BDF_MAXQ = 5   # highest order of the multistep method (K slots 1..BDF_MAXQ+3 hold D)
    BDF_MAXIT = 8  # most Newton iterations per step
    TAYLOR_STIFF_EVERY = 4   # the Taylor stiffness test runs on every 4th step of a lane

# Status codes: the same numbers as narrowflow.ensemble.Status.
cdef enum:
    ST_RUNNING = -1
    ST_SUCCESS = 0
    ST_CONVERGED = 1
    ST_DIVERGED = 2
    ST_MAX_STEPS = 3
    ST_STEP_TOO_SMALL = 4
    ST_INTERRUPTED = 5    # Ctrl-C: stopped where it was (or never started)
    ST_STIFF = 6          # internal: stiffness detected, to be continued by a Rosenbrock method

cdef struct Tab:
    int S, fsal, knew, nk, n_extra, err_kind, deg
    int order       # init_round's first step h ~ tol^(1/order): the power of h in the error
                    # estimate (Hairer's hinit: the RK order; BDF1: 2, as scipy's)
    int incr        # 1: the K slots hold increments (Rosenbrock u_i): dense = y + sum K_j P_j
    int stiff_test  # 1: Hairer's stiffness test on accepted steps (last stage at c = 1)
    double A[MAXK][MAXK]
    double b[MAXK]
    double e[MAXK]
    double e3[MAXK]
    double P[MAXK][MAXD]
    double safe, fac1, fac2, beta, expo1

# Rosenbrock method, transformed form (narrowflow.tableaus.RosenbrockTableau):
# (I/(h gamma) - J) u_i = f(y + sum_j a_ij u_j) + sum_j (C_ij / h) u_j, y_new = y + sum m_i u_i,
# err = sum e_i u_i. Stage increments u_i live in K slot i + 1 (slot 0 is f(y)).
cdef struct Ros:
    int S
    double gamma
    double a[MAXS][MAXS]
    double C[MAXS][MAXS]
    double m[MAXS]
    double e[MAXS]

cdef struct Job:
    rhs_fn f
    lane_fn loss
    rhs_fn jac              # Jacobian of f, p*p per lane, row-major (Rosenbrock only)
    const double* params
    int64_t n, L, N
    const double* y0
    double t0, t1, rtol, atol, h_init, dt, gtol, bound, hmax
    int64_t max_steps
    int64_t K
    const double* tsave
    int escape_on
    double escape
    double* y_final
    double* t_final
    int8_t* status
    int64_t* nfev
    int64_t* nacc
    int64_t* nrej
    double* y_saved
    double* loss_saved
    double* escape_time
    int profile             # 1: time the right-hand-side calls (clock_gettime around each)
    int64_t next            # the queue: index of the next trajectory to start
    int64_t* njev           # Jacobian evaluations (N,), or NULL
    double* h_last          # last step size proposed (N,), or NULL
    const int64_t* rows     # queue entry -> row, or NULL (identity)
    const double* t_start   # start time per row, or NULL (t0)
    const double* h_start   # first step per row (<= 0: heuristic), or NULL
    int resume              # counters, save points and escape time continue from the outputs
    int stiff_switch        # stiff lanes stop with ST_STIFF (explicit methods with stiff_test)
    double stiff_hlam       # stiffness test: h|lambda| above this counts as a stiff step
    int stiff_steps         # ... and this many in a row make the lane stiff
    double stiff_ratio      # Taylor: ... and ||J||_F ||f|| / ||J f|| above this (a slow flow)
    taylor_fn taylor        # Taylor coefficients (run_worker_taylor), or NULL
    int64_t torder          # ... their order
    int64_t twork           # ... and the doubles of scratch one call needs
    double tfac             # ... and the step as a fraction of the radius (<= 0: Jorba & Zou's)

# Per-worker state: lane arrays and SoA buffers.
cdef struct Work:
    int64_t n, L, nL
    double ninv      # 1 / n
    double* Y        # current states
    double* YN       # proposed new states
    double* YT       # stage inputs / interpolated states
    double* ACC      # combination scratch
    double* W        # scratch
    double* K        # nk stage slots
    double* GIN      # gathered inputs of a call for some lanes (losses: save points, escape)
    double* t
    double* h
    double* tn       # time at the end of the proposed step
    double* hnew
    double* facold
    double* lossprev
    double* lossnew
    double* lbuf
    double* errv
    double* err3v
    double* ra       # escape root bracket [ra, rb] in theta, with loss - threshold ga >= 0 > gb
    double* rb
    double* ga
    double* gb
    double* rth
    double* facpow   # facold ** beta (cached: one pow per step instead of two)
    double* lgat     # gathered outputs of a call for some lanes
    int64_t* idx
    int64_t* steps
    int64_t* nf
    int64_t* na
    int64_t* nr
    int64_t* nsave
    int64_t* nj
    int64_t* sel     # the lanes of a gathered call
    int* st
    int* init
    int* rej
    int* last
    int* acc
    int* cross
    int* side
    int* escaped
    int* pend
    int* niter
    int* needh       # the first step comes from Hairer's heuristic
    int* iasti       # stiffness test: consecutive stiff-looking steps
    int* nonsti      # ... and non-stiff ones
    int* stiff       # stiffness detected on this step
    int* jnew        # the Jacobian must be evaluated at the current state (Rosenbrock)
    int* sing        # W was singular (zero or non-finite pivot) on this step
    int* qord        # order of the multistep method in this lane (BDF; dense output reads it)
    int* dinit       # the multistep differences must be set up from y and f(y) (BDF)
    int64_t calls
    int64_t used
    int64_t rhs_ns


# per-lane arrays of Work, by type (work_alloc lays them out)
cdef enum:
    N_DBL_LANE = 17
    N_I64_LANE = 8
    N_INT_LANE = 18


cdef int work_alloc(Work* w, int64_t n, int64_t L, int nk) noexcept nogil:
    cdef int64_t nL = n * L
    w.n = n
    w.L = L
    w.nL = nL
    w.ninv = 1.0 / n
    w.calls = 0
    w.used = 0
    w.rhs_ns = 0
    w.Y = <double*> malloc((6 + nk) * nL * sizeof(double))
    w.t = <double*> malloc(N_DBL_LANE * L * sizeof(double))
    w.idx = <int64_t*> malloc(N_I64_LANE * L * sizeof(int64_t))
    w.st = <int*> malloc(N_INT_LANE * L * sizeof(int))
    if w.Y == NULL or w.t == NULL or w.idx == NULL or w.st == NULL:
        free(w.Y); free(w.t); free(w.idx); free(w.st)
        return -1
    memset(w.Y, 0, (6 + nk) * nL * sizeof(double))
    memset(w.t, 0, N_DBL_LANE * L * sizeof(double))
    w.YN = w.Y + nL
    w.YT = w.Y + 2 * nL
    w.ACC = w.Y + 3 * nL
    w.W = w.Y + 4 * nL
    w.K = w.Y + 5 * nL
    w.GIN = w.K + nk * nL
    w.h = w.t + L
    w.tn = w.t + 2 * L
    w.hnew = w.t + 3 * L
    w.facold = w.t + 4 * L
    w.lossprev = w.t + 5 * L
    w.lossnew = w.t + 6 * L
    w.lbuf = w.t + 7 * L
    w.errv = w.t + 8 * L
    w.err3v = w.t + 9 * L
    w.ra = w.t + 10 * L
    w.rb = w.t + 11 * L
    w.ga = w.t + 12 * L
    w.gb = w.t + 13 * L
    w.rth = w.t + 14 * L
    w.facpow = w.t + 15 * L
    w.lgat = w.t + 16 * L
    w.steps = w.idx + L
    w.nf = w.idx + 2 * L
    w.na = w.idx + 3 * L
    w.nr = w.idx + 4 * L
    w.nsave = w.idx + 5 * L
    w.nj = w.idx + 6 * L
    w.sel = w.idx + 7 * L
    w.init = w.st + L
    w.rej = w.st + 2 * L
    w.last = w.st + 3 * L
    w.acc = w.st + 4 * L
    w.cross = w.st + 5 * L
    w.side = w.st + 6 * L
    w.escaped = w.st + 7 * L
    w.pend = w.st + 8 * L
    w.niter = w.st + 9 * L
    w.needh = w.st + 10 * L
    w.iasti = w.st + 11 * L
    w.nonsti = w.st + 12 * L
    w.stiff = w.st + 13 * L
    w.jnew = w.st + 14 * L
    w.sing = w.st + 15 * L
    w.qord = w.st + 16 * L
    w.dinit = w.st + 17 * L
    memset(w.idx, 0, N_I64_LANE * L * sizeof(int64_t))
    memset(w.st, 0, N_INT_LANE * L * sizeof(int))
    return 0


cdef void work_free(Work* w) noexcept nogil:
    free(w.Y)
    free(w.t)
    free(w.idx)
    free(w.st)


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int call_f(Job* job, Work* w, const double* y, double* out) noexcept nogil:
    """out = f(y) for all lanes; returns the right-hand side's status (ext/rhs_abi.pxd).

    The status is per call, not per lane: non-zero means some output of the call is
    non-finite (narrowflow.rhs returns 1 exactly then), so the lane it concerns is found from
    its values where it matters (see run_worker's divergence check).
    """
    cdef int64_t t0
    cdef int r
    if job.profile:
        t0 = now_ns()
        r = job.f(w.L, job.t0, y, out, job.params)
        w.rhs_ns += now_ns() - t0
    else:
        r = job.f(w.L, job.t0, y, out, job.params)
    w.calls += 1
    return r


cdef inline void combine(const double* coef, int count, Work* w, double* dst) noexcept nogil:
    """dst[q] = sum_{j<count} coef[j] K_j[q] for every q (all lanes), j ascending."""
    cdef int64_t q, nL = w.nL
    cdef int j
    cdef double a
    cdef const double* Kj
    memset(dst, 0, nL * sizeof(double))
    for j in range(count):
        a = coef[j]
        if a != 0.0:
            Kj = w.K + j * nL
            for q in range(nL):
                dst[q] += a * Kj[q]


cdef inline void stage_input(const double* coef, int count, Work* w, double* dst) noexcept nogil:
    """dst = Y + h * sum_j coef[j] K_j, lane by lane."""
    cdef int64_t i, l, L = w.L
    combine(coef, count, w, w.ACC)
    for i in range(w.n):
        for l in range(L):
            dst[i * L + l] = w.Y[i * L + l] + w.h[l] * w.ACC[i * L + l]


cdef inline void dense_lane(const Tab* tb, Work* w, int64_t l, double theta) noexcept nogil:
    """YT[:, l] = y(t + theta h) from the dense-output polynomials."""
    cdef double wt[MAXK]
    cdef double acc, s
    cdef int j, d
    cdef int64_t i, L = w.L, nL = w.nL
    cdef int q
    cdef double p
    if tb.incr == 3:
        # BDF (run_worker_bdf): the interpolant through the last q + 1 solution points,
        # y = D_0 + sum_k D_k prod_{m<k} (theta - 1 + m) / (m + 1), with the differences
        # D_j of the accepted step (spacing h) in K slot j + 1; theta = 1 gives D_0 = y_new
        q = w.qord[l]
        for i in range(w.n):
            s = w.K[nL + i * L + l]
            p = 1.0
            for j in range(q):
                p *= (theta - 1.0 + j) / (j + 1.0)
                s += w.K[(j + 2) * nL + i * L + l] * p
            w.YT[i * L + l] = s
        return
    if tb.incr == 2:
        # Taylor (run_worker_taylor): K slot j = 1..deg holds x_j h^j, so
        # y(t + theta h) = y + sum_j K_j theta^j (Horner; theta = 1 gives y_new bit for bit)
        for i in range(w.n):
            s = w.K[tb.deg * nL + i * L + l]
            for j in range(tb.deg - 1, 0, -1):
                s = s * theta + w.K[j * nL + i * L + l]
            w.YT[i * L + l] = w.Y[i * L + l] + s * theta
        return
    for j in range(tb.nk):
        acc = tb.P[j][tb.deg - 1]
        for d in range(tb.deg - 2, -1, -1):
            acc = acc * theta + tb.P[j][d]
        wt[j] = acc * theta
    for i in range(w.n):
        s = 0.0
        for j in range(tb.nk):
            if wt[j] != 0.0:
                s += wt[j] * w.K[j * nL + i * L + l]
        w.YT[i * L + l] = w.Y[i * L + l] + (s if tb.incr else w.h[l] * s)


cdef inline void copy_lane(Work* w, const double* src, double* dst, int64_t l) noexcept nogil:
    cdef int64_t i, L = w.L
    for i in range(w.n):
        dst[i * L + l] = src[i * L + l]


cdef inline double lane_norm2(Work* w, const double* v, int64_t l) noexcept nogil:
    cdef int64_t i, L = w.L
    cdef double s = 0.0
    for i in range(w.n):
        s += v[i * L + l] * v[i * L + l]
    return sqrt(s)


cdef int lane_nonfinite(Work* w, const double* v, int64_t l) noexcept nogil:
    """1 if a component of lane l of v is inf or NaN (off the hot path: after a bad status)."""
    cdef int64_t i, L = w.L
    for i in range(w.n):
        if not isfinite(v[i * L + l]):
            return 1
    return 0


cdef void load_lane(Job* job, const Tab* tb, Work* w, int64_t l) noexcept nogil:
    """Start the next trajectory of the queue in lane l, or pad the lane with zeros."""
    cdef int64_t i, j, L = w.L, nL = w.nL, n = w.n
    cdef int64_t k = nf_fetch_add(&job.next, 1)
    for j in range(tb.nk):
        for i in range(n):
            w.K[j * nL + i * L + l] = 0.0
    w.h[l] = 0.0
    w.t[l] = job.t0
    w.steps[l] = 0
    w.nf[l] = 0
    w.na[l] = 0
    w.nr[l] = 0
    w.nj[l] = 0
    w.nsave[l] = 0
    w.rej[l] = 0
    w.last[l] = 0
    w.escaped[l] = 0
    w.iasti[l] = 0
    w.nonsti[l] = 0
    w.stiff[l] = 0
    w.jnew[l] = 1
    w.sing[l] = 0
    w.qord[l] = 1
    w.dinit[l] = 1
    w.facold[l] = 1e-4
    w.facpow[l] = pow(1e-4, tb.beta)
    w.lossprev[l] = 0.0
    if k < job.N:
        if job.rows != NULL:
            k = job.rows[k]
        w.idx[l] = k
        if job.t_start != NULL:
            w.t[l] = job.t_start[k]
        if job.resume:
            # continue the counters, save points and escape time already written
            w.nf[l] = job.nfev[k]
            w.na[l] = job.nacc[k]
            w.nr[l] = job.nrej[k]
            if job.njev != NULL:
                w.nj[l] = job.njev[k]
            w.steps[l] = w.na[l] + w.nr[l]
            while w.nsave[l] < job.K and job.tsave[w.nsave[l]] <= w.t[l]:
                w.nsave[l] += 1
            if job.escape_on and isfinite(job.escape_time[k]):
                w.escaped[l] = 1
        w.st[l] = ST_RUNNING
        w.init[l] = 1
        for i in range(n):
            w.Y[i * L + l] = job.y0[k * n + i]
            # already beyond the bound (job.bound is finite, so also for inf and NaN):
            # DIVERGED at t0 without evaluating anything (refill finishes it at once)
            if not (fabs(w.Y[i * L + l]) <= job.bound):
                w.st[l] = ST_DIVERGED
                w.init[l] = 0
    else:
        w.idx[l] = -1
        w.st[l] = ST_SUCCESS
        w.init[l] = 0
        for i in range(n):
            w.Y[i * L + l] = 0.0


cdef void finish_lane(Job* job, Work* w, int64_t l) noexcept nogil:
    """Write lane l's trajectory out (state Y, time t, status st)."""
    cdef int64_t i, k = w.idx[l], n = w.n, L = w.L
    for i in range(n):
        job.y_final[k * n + i] = w.Y[i * L + l]
    job.t_final[k] = w.t[l]
    job.status[k] = <int8_t> w.st[l]
    job.nfev[k] = w.nf[l]
    job.nacc[k] = w.na[l]
    job.nrej[k] = w.nr[l]
    if job.njev != NULL:
        job.njev[k] = w.nj[l]
    if job.h_last != NULL:
        job.h_last[k] = w.h[l]
    w.used += w.nf[l]
    nf_count_finished()


cdef void interrupt_lanes(Job* job, Work* w) noexcept nogil:
    """Ctrl-C: write every live lane out as INTERRUPTED, where it stands; take no new ones."""
    cdef int64_t l
    for l in range(w.L):
        if w.idx[l] >= 0:
            w.st[l] = ST_INTERRUPTED
            finish_lane(job, w, l)
            w.idx[l] = -1


cdef int refill(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Write out finished lanes and refill them; returns the number of live lanes."""
    cdef int64_t l
    cdef int live = 0
    for l in range(w.L):
        while w.idx[l] >= 0 and w.st[l] != ST_RUNNING:   # a new trajectory may stop at t0
            finish_lane(job, w, l)
            load_lane(job, tb, w, l)
        if w.idx[l] >= 0:
            live += 1
    return live


cdef void init_round(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """f(y0), loss(y0), save points at t0, and the initial step for lanes just loaded."""
    cdef int64_t i, l, L = w.L, n = w.n, nL = w.nL, k
    cdef double sk, d0, d1, d2, h0, h1, der, hmax = job.hmax, v
    cdef int need_h = 0
    call_f(job, w, w.Y, w.W)
    if job.escape_on or job.K > 0:
        job.loss(L, job.t0, w.Y, w.lbuf, job.params)
    for l in range(L):
        if not w.init[l]:
            continue
        copy_lane(w, w.W, w.K, l)
        w.nf[l] += 1
        k = w.idx[l]
        if job.escape_on or job.K > 0:
            w.lossprev[l] = w.lbuf[l]
        if job.escape_on and not w.escaped[l] and w.lbuf[l] < job.escape:
            job.escape_time[k] = w.t[l]
            w.escaped[l] = 1
        while w.nsave[l] < job.K and job.tsave[w.nsave[l]] <= w.t[l]:
            if job.y_saved != NULL:
                for i in range(n):
                    job.y_saved[(k * job.K + w.nsave[l]) * n + i] = w.Y[i * L + l]
            job.loss_saved[k * job.K + w.nsave[l]] = w.lbuf[l]
            w.nsave[l] += 1
        v = lane_norm2(w, w.K, l)
        if not isfinite(v):
            w.st[l] = ST_DIVERGED
        elif job.gtol > 0.0 and v < job.gtol:
            w.st[l] = ST_CONVERGED
        w.needh[l] = 0
        if tb.err_kind == 0:
            w.h[l] = job.dt
        elif job.h_start != NULL and job.h_start[k] > 0.0:
            w.h[l] = job.h_start[k] if job.h_start[k] < hmax else hmax
        elif job.h_init > 0.0:
            w.h[l] = job.h_init if job.h_init < hmax else hmax
        else:
            w.needh[l] = 1
            need_h = 1
    if need_h:
        # Hairer's initial step heuristic (hinit in DOPRI5/DOP853), lane by lane.
        for l in range(L):
            if w.init[l] and w.needh[l]:
                d0 = 0.0
                d1 = 0.0
                for i in range(n):
                    sk = job.atol + job.rtol * fabs(w.Y[i * L + l])
                    d0 += (w.Y[i * L + l] / sk) ** 2
                    d1 += (w.K[i * L + l] / sk) ** 2
                d0 = sqrt(d0 / n)
                d1 = sqrt(d1 / n)
                if d0 <= 1e-10 or d1 <= 1e-10:
                    h0 = 1e-6
                else:
                    h0 = 0.01 * d0 / d1
                if h0 > hmax:
                    h0 = hmax
                w.h[l] = h0
                w.errv[l] = d1
                for i in range(n):
                    w.YT[i * L + l] = w.Y[i * L + l] + h0 * w.K[i * L + l]
            else:
                copy_lane(w, w.Y, w.YT, l)
        call_f(job, w, w.YT, w.W)
        for l in range(L):
            if w.init[l] and w.needh[l]:
                w.nf[l] += 1
                h0 = w.h[l]
                d2 = 0.0
                for i in range(n):
                    sk = job.atol + job.rtol * fabs(w.Y[i * L + l])
                    d2 += ((w.W[i * L + l] - w.K[i * L + l]) / sk) ** 2
                d2 = sqrt(d2 / n) / h0
                der = d2 if d2 > w.errv[l] else w.errv[l]
                if der <= 1e-15:
                    h1 = h0 * 1e-3
                    if h1 < 1e-6:
                        h1 = 1e-6
                else:
                    h1 = pow(0.01 / der, 1.0 / tb.order)
                h0 = 100.0 * h0
                if h1 < h0:
                    h0 = h1
                if hmax < h0:
                    h0 = hmax
                w.h[l] = h0
    for l in range(L):
        w.init[l] = 0


cdef void save_points(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Fill the save points inside the accepted steps from dense output, with their loss.

    The loss is evaluated for the lanes with a save point only, gathered: in a stiff tail
    the lanes' save points rarely fall in the same round, and the loss of every lane cost
    about L times the work (the main job's save grid cost BDF a sixth of its time)."""
    cdef int64_t i, j, l, L = w.L, n = w.n, k, s, npend
    cdef double ts
    while True:
        npend = 0
        for l in range(L):
            if w.acc[l] and w.st[l] == ST_RUNNING and w.nsave[l] < job.K:
                ts = job.tsave[w.nsave[l]]
                if ts <= w.tn[l]:
                    w.sel[npend] = l
                    npend += 1
                    if ts == w.tn[l]:
                        copy_lane(w, w.YN, w.YT, l)
                    else:
                        dense_lane(tb, w, l, (ts - w.t[l]) / w.h[l])
        if npend == 0:
            return
        call_lanes(job, w, job.loss, 1, w.sel, npend, w.YT, w.lbuf, w.GIN, w.lgat)
        for j in range(npend):
            l = w.sel[j]
            k = w.idx[l]
            s = w.nsave[l]
            if job.y_saved != NULL:
                for i in range(n):
                    job.y_saved[(k * job.K + s) * n + i] = w.YT[i * L + l]
            job.loss_saved[k * job.K + s] = w.lbuf[l]
            w.nsave[l] += 1


cdef void escape_roots(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """First time the loss falls below the threshold inside the accepted step.

    Illinois (modified regula falsi) on g(theta) = loss(y(t + theta h)) - threshold with
    g(0) >= 0 > g(1), lane by lane; every lane iterates on its own bracket.
    """
    cdef int64_t l, L = w.L
    cdef int anyr
    cdef double th, g, thr = job.escape
    for l in range(L):
        w.pend[l] = w.cross[l]
        if w.pend[l]:
            w.ra[l] = 0.0
            w.rb[l] = 1.0
            w.ga[l] = w.lossprev[l] - thr
            w.gb[l] = w.lossnew[l] - thr
            w.side[l] = 0
            w.niter[l] = 0
    while True:
        anyr = 0
        for l in range(L):
            if w.pend[l]:
                anyr = 1
                th = (w.ra[l] * w.gb[l] - w.rb[l] * w.ga[l]) / (w.gb[l] - w.ga[l])
                if not (th > w.ra[l] and th < w.rb[l]):
                    th = 0.5 * (w.ra[l] + w.rb[l])
                w.rth[l] = th
                dense_lane(tb, w, l, th)
            else:
                copy_lane(w, w.YN, w.YT, l)
        if not anyr:
            return
        job.loss(L, job.t0, w.YT, w.lbuf, job.params)
        for l in range(L):
            if not w.pend[l]:
                continue
            th = w.rth[l]
            g = w.lbuf[l] - thr
            w.niter[l] += 1
            if g >= 0.0:
                w.ra[l] = th
                w.ga[l] = g
                if w.side[l] == 1:
                    w.gb[l] *= 0.5
                w.side[l] = 1
            else:
                w.rb[l] = th
                w.gb[l] = g
                if w.side[l] == -1:
                    w.ga[l] *= 0.5
                w.side[l] = -1
            if (w.rb[l] - w.ra[l] <= 1e-12 or fabs(g) <= 1e-15 * fabs(thr)
                    or w.niter[l] >= 100 or not isfinite(g)):
                job.escape_time[w.idx[l]] = w.t[l] + th * w.h[l]
                w.escaped[l] = 1
                w.pend[l] = 0


cdef void stiffness_test(const Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Hairer's stiffness test of DOP853 on the accepted lanes (Solving ODEs II, IV.2), for
    every table with stiff_test (DOP853, Vern7: both end with a stage at c = 1).

    h*|lambda| is estimated by h ||f(y_new) - f(y_S)|| / ||y_new - y_S|| from the last stage
    (node c = 1, input y_S in YT, value in K slot S-1) and f(y_new) in slot knew; 15
    consecutive estimates above 6.1 (DOP853's stability boundary; Hairer's defaults, which
    job.stiff_hlam and job.stiff_steps hold) mark the lane stiff, 6
    below reset the count. Every accepted step is tested (Hairer tests every NSTIFF steps):
    the test costs 2n flops against 12n RHS evaluations.
    """
    cdef int64_t i, l, L = w.L, nL = w.nL
    cdef double num, den, dv
    cdef const double* Kn = w.K + tb.knew * nL
    cdef const double* Ks = w.K + (tb.S - 1) * nL
    for l in range(L):
        if not (w.acc[l] and w.st[l] == ST_RUNNING):
            continue
        num = 0.0
        den = 0.0
        for i in range(w.n):
            dv = Kn[i * L + l] - Ks[i * L + l]
            num += dv * dv
            dv = w.YN[i * L + l] - w.YT[i * L + l]
            den += dv * dv
        if den > 0.0 and w.h[l] * w.h[l] * num > job.stiff_hlam * job.stiff_hlam * den:
            w.nonsti[l] = 0
            w.iasti[l] += 1
            if w.iasti[l] >= job.stiff_steps:
                w.stiff[l] = 1
        else:
            w.nonsti[l] += 1
            if w.nonsti[l] >= 6:
                w.iasti[l] = 0


cdef int round_prologue(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Top of a worker's loop: -1 after Ctrl-C (lanes written out, stop the worker); 1 when
    lanes just loaded were initialised (refill, then loop again); 0: take a step."""
    cdef int64_t l
    if nf_is_interrupted():
        interrupt_lanes(job, w)
        return -1
    for l in range(w.L):
        if w.init[l]:
            init_round(job, tb, w)
            return 1
    return 0


cdef inline void adaptive_step_end(const Job* job, Work* w, int64_t l) noexcept nogil:
    """End time tn of lane l's next adaptive step; the step that would end within 1 % of
    t1 ends at t1 (last)."""
    w.last[l] = 0
    if w.t[l] + 1.01 * w.h[l] >= job.t1:
        w.h[l] = job.t1 - w.t[l]
        w.last[l] = 1
        w.tn[l] = job.t1
    else:
        w.tn[l] = w.t[l] + w.h[l]


cdef inline int accepted_diverges(const Job* job, Work* w, int64_t l, const double* Fnew,
                                  int fstat) noexcept nogil:
    """DIVERGED (1) when lane l's accepted state is beyond the bound or not finite, or when
    its F(y_new) is not finite (fstat: the status of the call that gave Fnew).

    A non-finite stage of an adaptive method makes the error estimate non-finite (rejected:
    shrink and retry), but F(y_new) of DOP853, RK4, GD and the Rosenbrock methods is not part
    of the step's test: if it is not finite, the flow has no finite derivative at the new
    state, which is DIVERGED (rather than carried on as a NaN stage).
    """
    cdef int64_t i, L = w.L
    cdef int x = 0
    for i in range(w.n):
        if not (fabs(w.YN[i * L + l]) <= job.bound):   # job.bound is finite: also true for inf, NaN
            x = 1
    if fstat != 0 and not x:
        x = lane_nonfinite(w, Fnew, l)
    if x:
        copy_lane(w, w.YN, w.Y, l)
        w.t[l] = w.tn[l]
        w.na[l] += 1
        w.st[l] = ST_DIVERGED
    return x


cdef void escape_crossings(Job* job, Work* w) noexcept nogil:
    """cross[l]: the loss fell below the escape threshold during lane l's accepted step.
    The loss (lossnew) is evaluated, gathered, for the lanes that have not escaped and
    accepted a step only: an escaped lane never reads it again, and in a stiff tail every
    lane has long escaped."""
    cdef int64_t j, l, nsel = 0
    for l in range(w.L):
        w.cross[l] = 0
        if w.acc[l] and w.st[l] == ST_RUNNING and not w.escaped[l]:
            w.sel[nsel] = l
            nsel += 1
    if nsel == 0:
        return
    call_lanes(job, w, job.loss, 1, w.sel, nsel, w.YN, w.lossnew, w.GIN, w.lgat)
    for j in range(nsel):
        l = w.sel[j]
        w.cross[l] = w.lossprev[l] >= job.escape and w.lossnew[l] < job.escape


cdef inline void advance_accepted(const Job* job, Work* w, int64_t l, const double* Fnew,
                                  int adaptive) noexcept nogil:
    """Lane l moves to its accepted step's end, F(y_new) into K slot 0; SUCCESS at t1,
    CONVERGED when ||F|| < gtol."""
    cdef int64_t i, L = w.L
    for i in range(w.n):
        w.Y[i * L + l] = w.YN[i * L + l]
        w.K[i * L + l] = Fnew[i * L + l]
    w.t[l] = w.tn[l]
    w.na[l] += 1
    w.rej[l] = 0
    if job.escape_on:
        w.lossprev[l] = w.lossnew[l]
    if adaptive:
        w.h[l] = w.hnew[l]
    if w.last[l]:
        w.st[l] = ST_SUCCESS
    elif job.gtol > 0.0 and lane_norm2(w, w.K, l) < job.gtol:
        w.st[l] = ST_CONVERGED


cdef inline void reject_step(Work* w, int64_t l) noexcept nogil:
    """Lane l retries with the smaller step hnew; STEP_TOO_SMALL below round-off of t."""
    w.nr[l] += 1
    w.rej[l] = 1
    w.h[l] = w.hnew[l]
    if not (0.1 * fabs(w.h[l]) > fabs(w.t[l]) * 2.220446049250313e-16 and w.h[l] > 0.0):
        w.st[l] = ST_STEP_TOO_SMALL


cdef inline int start_lanes(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Load the first trajectory of the queue into every lane; returns the live lanes."""
    cdef int64_t l
    for l in range(w.L):
        load_lane(job, tb, w, l)
    return refill(job, tb, w)


cdef inline void step_outputs(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Save points and escape roots inside the accepted steps (dense output), after the
    escape crossings are known."""
    if job.K > 0:
        save_points(job, tb, w)
    if job.escape_on:
        escape_roots(job, tb, w)


cdef inline void check_max_steps(const Job* job, Work* w, int64_t l) noexcept nogil:
    """MAX_STEPS once lane l has attempted max_steps steps."""
    if w.st[l] == ST_RUNNING and w.steps[l] >= job.max_steps:
        w.st[l] = ST_MAX_STEPS


cdef inline int jacobian_diverges(Work* w, const double* JB, int64_t pp, int64_t l) noexcept nogil:
    """DIVERGED (1) when lane l's Jacobian (SoA, pp entries) has a non-finite entry."""
    cdef int64_t i
    for i in range(pp):
        if not isfinite(JB[i * w.L + l]):
            w.st[l] = ST_DIVERGED
            return 1
    return 0


cdef inline void worker_stats(Work* w, int64_t* stats, int64_t t_start) noexcept nogil:
    """The worker's counters (RHS calls, lane evaluations used, ns in the RHS, ns in all)."""
    stats[0] = w.calls
    stats[1] = w.used
    stats[2] = w.rhs_ns
    stats[3] = now_ns() - t_start


cdef inline void rk_step_ends(const Job* job, const Tab* tb, Work* w) noexcept nogil:
    """End time tn and step h of every lane's next step (fixed grid or adaptive)."""
    cdef int64_t l
    cdef double tn
    for l in range(w.L):
        if w.idx[l] < 0:
            w.h[l] = 0.0
            w.tn[l] = job.t0
            continue
        if tb.err_kind == 0:
            tn = job.t0 + (w.na[l] + 1) * job.dt
            w.last[l] = 0
            if tn >= job.t1 - 1e-9 * job.dt:
                tn = job.t1
                w.last[l] = 1
            w.tn[l] = tn
            w.h[l] = tn - w.t[l]
        else:
            adaptive_step_end(job, w, l)


cdef inline void rk_stages(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Stages 1..S-1 into K, and the proposed state into YN."""
    cdef int s
    for s in range(1, tb.S):
        stage_input(&tb.A[s][0], s, w, w.YT)
        call_f(job, w, w.YT, w.K + s * w.nL)
    if tb.fsal:
        memcpy(w.YN, w.YT, w.nL * sizeof(double))
    else:
        stage_input(&tb.b[0], tb.S, w, w.YN)


cdef inline double rk_error(const Job* job, const Tab* tb, Work* w, int64_t l) noexcept nogil:
    """Lane l's scaled error of the step (Hairer's norms; DOP853 blends its 5th- and
    3rd-order estimates), from the sums of squares in errv / err3v."""
    cdef double err
    if tb.err_kind == 1:
        return fabs(w.h[l]) * sqrt(w.errv[l] / w.n)
    err = w.errv[l] + 0.01 * w.err3v[l]
    if err > 0.0:
        return fabs(w.h[l]) * w.errv[l] / sqrt(err * w.n)
    if err == 0.0:
        return 0.0
    return err          # NaN: rk_control shrinks the step


cdef inline void rk_control(const Job* job, const Tab* tb, Work* w, int64_t l, double err,
                            double facc1, double facc2) noexcept nogil:
    """Hairer's PI controller: accept (acc) or not, and the next step hnew."""
    cdef double fac11, fac, hn
    if not isfinite(err):
        # an overflow inside the step: shrink hard and retry
        w.hnew[l] = w.h[l] * tb.fac1
        return
    fac11 = pow(err, tb.expo1)
    fac = fac11 / w.facpow[l]
    fac = fac / tb.safe
    if fac > facc1:
        fac = facc1
    if fac < facc2:
        fac = facc2
    if err <= 1.0:
        w.acc[l] = 1
        w.facold[l] = err if err > 1e-4 else 1e-4
        if tb.beta != 0.0:
            w.facpow[l] = pow(w.facold[l], tb.beta)
        hn = w.h[l] / fac
        if w.rej[l] and hn > w.h[l]:
            hn = w.h[l]
        if hn > job.hmax:
            hn = job.hmax
        w.hnew[l] = hn
    else:
        fac = fac11 / tb.safe
        if fac > facc1:
            fac = facc1
        w.hnew[l] = w.h[l] / fac


cdef inline int rk_accept(const Job* job, const Tab* tb, Work* w, double facc1,
                          double facc2) noexcept nogil:
    """Error estimate and accept/reject for every lane; returns 1 if any lane accepted."""
    cdef int64_t i, l, L = w.L, n = w.n
    cdef double sk, d, v
    cdef int anyacc = 0
    if tb.err_kind == 0:
        for l in range(L):
            w.acc[l] = w.idx[l] >= 0
            anyacc |= w.acc[l]
        return anyacc
    combine(&tb.e[0], tb.S, w, w.ACC)
    if tb.err_kind == 2:
        combine(&tb.e3[0], tb.S, w, w.W)
    for l in range(L):
        w.errv[l] = 0.0
        w.err3v[l] = 0.0
    for i in range(n):
        for l in range(L):
            v = fabs(w.Y[i * L + l])
            d = fabs(w.YN[i * L + l])
            sk = job.atol + job.rtol * (v if v > d else d)
            w.errv[l] += (w.ACC[i * L + l] / sk) ** 2
            if tb.err_kind == 2:
                w.err3v[l] += (w.W[i * L + l] / sk) ** 2
    for l in range(L):
        w.acc[l] = 0
        if w.idx[l] >= 0:
            rk_control(job, tb, w, l, rk_error(job, tb, w, l), facc1, facc2)
            anyacc |= w.acc[l]
    return anyacc


cdef inline void rk_dense_stages(Job* job, const Tab* tb, Work* w) noexcept nogil:
    """DOP853's extra stages for dense output, where a lane needs the interpolant (a save
    point or an escape crossing inside its accepted step)."""
    cdef int64_t l
    cdef int x, s, needd = 0
    for l in range(w.L):
        w.pend[l] = 0
        if w.acc[l] and w.st[l] == ST_RUNNING:
            if (job.escape_on and w.cross[l]) or (
                    w.nsave[l] < job.K and job.tsave[w.nsave[l]] < w.tn[l]):
                w.pend[l] = 1
                needd = 1
    if not needd:
        return
    for x in range(tb.n_extra):
        s = tb.knew + 1 + x
        stage_input(&tb.A[s][0], s, w, w.YT)
        call_f(job, w, w.YT, w.K + s * w.nL)
    for l in range(w.L):
        if w.pend[l]:
            w.nf[l] += tb.n_extra


cdef inline void rk_advance(const Job* job, const Tab* tb, Work* w) noexcept nogil:
    """Accepted lanes move to the step's end (ST_STIFF where the stiffness test fired),
    rejected ones retry with hnew; MAX_STEPS after max_steps attempts."""
    cdef int64_t l
    cdef const double* Kn = w.K + tb.knew * w.nL
    for l in range(w.L):
        if w.idx[l] < 0 or w.st[l] != ST_RUNNING:
            continue
        w.steps[l] += 1
        if w.acc[l]:
            advance_accepted(job, w, l, Kn, tb.err_kind != 0)
            if w.stiff[l] and w.st[l] == ST_RUNNING:
                w.st[l] = ST_STIFF
        else:
            w.nf[l] += tb.S - 1          # the stages of the rejected step
            reject_step(w, l)
        check_max_steps(job, w, l)


cdef int run_worker(Job* job, const Tab* tb, int64_t* stats) noexcept nogil:
    """The explicit Runge-Kutta step loop: end times, stages, error and control, f(y_new),
    divergence, stiffness test, escape crossings, dense-output stages, save points and
    escape roots, advance or reject (one inline function each)."""
    cdef Work w
    cdef int64_t l
    cdef int x, live, anyacc, fstat
    cdef double facc1 = 1.0 / tb.fac1, facc2 = 1.0 / tb.fac2
    cdef int64_t t_start = now_ns()
    if work_alloc(&w, job.n, job.L, tb.nk) != 0:
        return -1
    live = start_lanes(job, tb, &w)
    while live > 0:
        x = round_prologue(job, tb, &w)
        if x < 0:
            break
        if x > 0:
            live = refill(job, tb, &w)
            continue
        rk_step_ends(job, tb, &w)
        rk_stages(job, tb, &w)
        anyacc = rk_accept(job, tb, &w, facc1, facc2)
        # fstat: status of the call that gives f(y_new) outside the step's test (fill_tab
        # makes sure that FSAL's f(y_new), the last stage, is inside it)
        fstat = 0
        if anyacc and not tb.fsal:
            fstat = call_f(job, &w, w.YN, w.K + tb.knew * w.nL)
        for l in range(w.L):
            if w.acc[l]:
                w.nf[l] += tb.S - 1 + (0 if tb.fsal else 1)
                accepted_diverges(job, &w, l, w.K + tb.knew * w.nL, fstat)
        if tb.stiff_test and job.stiff_switch and anyacc:
            stiffness_test(job, tb, &w)
        if job.escape_on:
            escape_crossings(job, &w)
        if tb.n_extra > 0 and anyacc:
            rk_dense_stages(job, tb, &w)
        if anyacc:
            step_outputs(job, tb, &w)
        rk_advance(job, tb, &w)
        live = refill(job, tb, &w)
    worker_stats(&w, stats, t_start)
    work_free(&w)
    return 0


cdef void lu_factor_lanes(double* A, int* piv, double* dinv, int* sing, int64_t n,
                          int64_t L) noexcept nogil:
    """LU with partial pivoting of one n x n matrix per lane, all lanes at once, in place.

    A is SoA: A[(i*n + j)*L + l]. Row swaps are per lane (piv[k*L + l]: the row swapped with
    k at step k, whole rows as in LAPACK's getrf); the elimination runs over the lanes in the
    inner loop, so it vectorizes, while each lane's arithmetic is its own (the result does
    not depend on L). dinv holds the reciprocal pivots. sing[l] = 1 for a zero or non-finite
    pivot: the caller rejects that lane's step (a smaller h makes W = I/(gamma h) - J
    diagonally dominant) and ignores its solution.
    """
    cdef int64_t i, j, k, l, r
    cdef double amax, v, f
    for k in range(n):
        for l in range(L):
            r = k
            amax = fabs(A[(k * n + k) * L + l])
            for i in range(k + 1, n):
                v = fabs(A[(i * n + k) * L + l])
                if v > amax:
                    amax = v
                    r = i
            piv[k * L + l] = <int> r
            if not (amax > 0.0) or not isfinite(amax):
                sing[l] = 1
                dinv[k * L + l] = 0.0
                continue
            if r != k:
                for j in range(n):
                    v = A[(k * n + j) * L + l]
                    A[(k * n + j) * L + l] = A[(r * n + j) * L + l]
                    A[(r * n + j) * L + l] = v
            dinv[k * L + l] = 1.0 / A[(k * n + k) * L + l]
        for i in range(k + 1, n):
            for l in range(L):
                A[(i * n + k) * L + l] *= dinv[k * L + l]
            for j in range(k + 1, n):
                for l in range(L):
                    A[(i * n + j) * L + l] -= A[(i * n + k) * L + l] * A[(k * n + j) * L + l]


cdef void lu_solve_lanes(const double* A, const int* piv, const double* dinv, int64_t n,
                         int64_t L, double* x) noexcept nogil:
    """Solve A x = b in place for every lane (x SoA: x[i*L + l]), A from lu_factor_lanes."""
    cdef int64_t i, j, k, l, r
    cdef double v
    for k in range(n):
        for l in range(L):
            # the row swap without a branch (r == k writes x[k] back unchanged): pivots
            # differ from lane to lane, and a branch on them is mispredicted often
            r = piv[k * L + l]
            v = x[r * L + l]
            x[r * L + l] = x[k * L + l]
            x[k * L + l] = v
    for i in range(1, n):
        for j in range(i):
            for l in range(L):
                x[i * L + l] -= A[(i * n + j) * L + l] * x[j * L + l]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            for l in range(L):
                x[i * L + l] -= A[(i * n + j) * L + l] * x[j * L + l]
        for l in range(L):
            x[i * L + l] *= dinv[i * L + l]


cdef int run_worker_ros(Job* job, const Tab* tb, const Ros* rs, int64_t* stats) noexcept nogil:
    """The Rosenbrock step loop: like run_worker, with one Jacobian and LU per lane and step.

    K slot 0 holds f(y) (for the convergence test and the next step's first stage), slots
    1..S the stage increments u_i (tb.incr: dense output y + sum_j u_j P_j(theta)). The
    Jacobian is evaluated once per accepted step, at the new state; a rejected step reuses
    it with the new h. A lane whose Jacobian is not finite stops DIVERGED; a singular W
    rejects the step and halves h.
    """
    cdef Work w
    cdef int64_t i, j, l, L = job.L, n = job.n, nL, pp = job.n * job.n, k
    cdef int s, x, live, anyacc, anyj, fstat, jstat
    cdef double err, sk, d, fac, hn, v, facc1, facc2, c
    cdef double* FS
    cdef double* FN
    cdef double* JB
    cdef double* LU
    cdef double* dinv
    cdef double* hinv
    cdef double* wdiag
    cdef double* jmask
    cdef int* piv
    cdef double* ui
    cdef const double* uj
    cdef int64_t t_start = now_ns()
    if work_alloc(&w, n, L, tb.nk) != 0:
        return -1
    nL = w.nL
    FS = <double*> malloc((3 * nL + 3 * L + 2 * pp * L) * sizeof(double))
    piv = <int*> malloc(n * L * sizeof(int))
    if FS == NULL or piv == NULL:
        free(FS)
        free(piv)
        work_free(&w)
        return -1
    memset(FS, 0, (3 * nL + 3 * L + 2 * pp * L) * sizeof(double))
    FN = FS + nL
    dinv = FS + 2 * nL          # reciprocal pivots (SoA)
    hinv = FS + 3 * nL          # 1/h per lane (0 for empty lanes)
    wdiag = hinv + L            # 1/(gamma h) per lane (1 for empty lanes)
    jmask = wdiag + L           # 1 for lanes with a trajectory, 0 for empty ones
    JB = jmask + L              # Jacobian as the cfunc writes it: SoA, (r*n + c)*L + l
    LU = JB + pp * L            # W and its LU factors, same layout
    facc1 = 1.0 / tb.fac1
    facc2 = 1.0 / tb.fac2
    live = start_lanes(job, tb, &w)
    while live > 0:
        x = round_prologue(job, tb, &w)
        if x < 0:
            break
        if x > 0:
            live = refill(job, tb, &w)
            continue
        # --- the Jacobian at the current state, where it is new
        anyj = 0
        for l in range(L):
            if w.idx[l] >= 0 and w.jnew[l]:
                anyj = 1
        if anyj:
            jstat = job.jac(L, job.t0, w.Y, JB, job.params)
            x = 0
            for l in range(L):
                if w.idx[l] < 0 or not w.jnew[l]:
                    continue
                w.nj[l] += 1
                w.jnew[l] = 0
                if jstat != 0 and jacobian_diverges(&w, JB, pp, l):
                    x = 1
            if x:
                live = refill(job, tb, &w)
                continue
        # --- step end times
        for l in range(L):
            if w.idx[l] < 0:
                w.h[l] = 0.0
                w.tn[l] = job.t0
            else:
                adaptive_step_end(job, &w, l)
        # --- W = I/(gamma h) - J and its LU factors (the Jacobian stays in JB between a
        # rejected step and its retry, so W is rebuilt from there every time); an empty
        # lane gets W = I
        for l in range(L):
            w.sing[l] = 0
            hinv[l] = 1.0 / w.h[l] if w.idx[l] >= 0 else 0.0
            wdiag[l] = 1.0 / (rs.gamma * w.h[l]) if w.idx[l] >= 0 else 1.0
            jmask[l] = 1.0 if w.idx[l] >= 0 else 0.0
        for i in range(pp):
            for l in range(L):
                LU[i * L + l] = -(JB[i * L + l] * jmask[l])
        for i in range(n):
            for l in range(L):
                LU[(i * n + i) * L + l] += wdiag[l]
        lu_factor_lanes(LU, piv, dinv, w.sing, n, L)
        # --- stages: u_s = W^-1 (f(y + sum_j a_sj u_j) + sum_j C_sj / h u_j)
        for s in range(rs.S):
            if s == 0:
                memcpy(FS, w.K, nL * sizeof(double))
            else:
                for i in range(nL):
                    w.YT[i] = w.Y[i]
                for j in range(s):
                    c = rs.a[s][j]
                    if c != 0.0:
                        ui = w.K + (j + 1) * nL
                        for i in range(nL):
                            w.YT[i] += c * ui[i]
                call_f(job, &w, w.YT, FS)
            ui = w.K + (s + 1) * nL
            memcpy(ui, FS, nL * sizeof(double))
            for j in range(s):
                c = rs.C[s][j]
                if c != 0.0:
                    uj = w.K + (j + 1) * nL
                    for i in range(n):
                        for l in range(L):
                            ui[i * L + l] += (c * hinv[l]) * uj[i * L + l]
            lu_solve_lanes(LU, piv, dinv, n, L, ui)
            for l in range(L):
                if w.idx[l] < 0 or w.sing[l]:
                    for i in range(n):
                        ui[i * L + l] = 0.0
        # --- new state and error estimate
        for i in range(nL):
            w.YN[i] = w.Y[i]
            w.ACC[i] = 0.0
        for s in range(rs.S):
            ui = w.K + (s + 1) * nL
            c = rs.m[s]
            if c != 0.0:
                for i in range(nL):
                    w.YN[i] += c * ui[i]
            c = rs.e[s]
            if c != 0.0:
                for i in range(nL):
                    w.ACC[i] += c * ui[i]
        for l in range(L):
            w.errv[l] = 0.0
        for i in range(n):
            for l in range(L):
                v = fabs(w.Y[i * L + l])
                d = fabs(w.YN[i * L + l])
                sk = job.atol + job.rtol * (v if v > d else d)
                w.errv[l] += (w.ACC[i * L + l] / sk) ** 2
        for l in range(L):
            w.acc[l] = 0
            if w.idx[l] < 0:
                continue
            err = sqrt(w.errv[l] / n)
            if w.sing[l] or not isfinite(err):
                w.hnew[l] = 0.5 * w.h[l]
                continue
            fac = pow(err, tb.expo1) / tb.safe
            if fac > facc1:
                fac = facc1
            if fac < facc2:
                fac = facc2
            if err <= 1.0:
                w.acc[l] = 1
                hn = w.h[l] / fac
                if w.rej[l] and hn > w.h[l]:
                    hn = w.h[l]
                if hn > job.hmax:
                    hn = job.hmax
                w.hnew[l] = hn
            else:
                w.hnew[l] = w.h[l] / fac
        anyacc = 0
        for l in range(L):
            if w.acc[l]:
                anyacc = 1
        fstat = 0
        if anyacc:
            fstat = call_f(job, &w, w.YN, FN)
        # --- accepted lanes: count, check for divergence
        for l in range(L):
            if w.idx[l] < 0:
                continue
            w.nf[l] += rs.S - 1
            if not w.acc[l]:
                continue
            w.nf[l] += 1
            accepted_diverges(job, &w, l, FN, fstat)
        if job.escape_on:
            escape_crossings(job, &w)
        if anyacc:
            step_outputs(job, tb, &w)
        # --- advance accepted lanes, update rejected ones
        for l in range(L):
            if w.idx[l] < 0 or w.st[l] != ST_RUNNING:
                continue
            w.steps[l] += 1
            if w.acc[l]:
                advance_accepted(job, &w, l, FN, 1)
                w.jnew[l] = 1
            else:
                reject_step(&w, l)
            check_max_steps(job, &w, l)
        live = refill(job, tb, &w)
    worker_stats(&w, stats, t_start)
    free(FS)
    free(piv)
    work_free(&w)
    return 0


cdef struct Bdf:
    int maxord, maxiter
    double alpha[BDF_MAXQ + 1]
    double gam[BDF_MAXQ + 1]
    double errc[BDF_MAXQ + 1]
    double ialpha[BDF_MAXQ + 1]
    double U[BDF_MAXQ + 1][(BDF_MAXQ + 1) * (BDF_MAXQ + 1)]    # bdf_R(q, 1) per order
    double minfac, maxfac, newton_kappa, min_growth
    int jac_every                   # a lane's Jacobian is renewed after this many steps (0: never)
    double safety[BDF_MAXIT + 1]    # scipy's 0.9 (2 maxiter + 1) / (2 maxiter + iterations)


cdef int call_lanes(Job* job, Work* w, rhs_fn fn, int64_t nout, const int64_t* sel, int64_t k,
                    const double* src, double* dst, double* gin, double* gout) noexcept nogil:
    """dst[r, sel[j]] = fn(src[:, sel[j]])[r] for the k lanes sel (r < nout per lane, SoA).

    The selected lanes are gathered into k contiguous lanes, so a lane that needs nothing
    costs nothing (run_worker_bdf's Jacobians: a few lanes at a time); every lane's value is
    the same bit for bit whatever k (the right-hand sides of narrowflow.rhs compute each lane
    on its own). Returns fn's status.
    """
    cdef int64_t i, j, L = w.L, n = w.n
    cdef int r
    for i in range(n):
        for j in range(k):
            gin[i * k + j] = src[i * L + sel[j]]
    r = fn(k, job.t0, gin, gout, job.params)
    for i in range(nout):
        for j in range(k):
            dst[i * L + sel[j]] = gout[i * k + j]
    return r


cdef int lu_factor_lane(double* A, int* piv, double* dinv, int64_t n, int64_t L,
                        int64_t l) noexcept nogil:
    """lu_factor_lanes for lane l alone (same arithmetic); returns 1 for a singular W.

    Two loop orders on purpose: Rosenbrock methods factor every lane at every step, so
    lu_factor_lanes runs the lanes innermost (vectorized); BDF refactors one lane when its h
    or order changes, and factoring all lanes then would cost L times the work."""
    cdef int64_t i, j, k, r
    cdef double amax, v
    for k in range(n):
        r = k
        amax = fabs(A[(k * n + k) * L + l])
        for i in range(k + 1, n):
            v = fabs(A[(i * n + k) * L + l])
            if v > amax:
                amax = v
                r = i
        piv[k * L + l] = <int> r
        if not (amax > 0.0) or not isfinite(amax):
            return 1
        if r != k:
            for j in range(n):
                v = A[(k * n + j) * L + l]
                A[(k * n + j) * L + l] = A[(r * n + j) * L + l]
                A[(r * n + j) * L + l] = v
        dinv[k * L + l] = 1.0 / A[(k * n + k) * L + l]
        for i in range(k + 1, n):
            A[(i * n + k) * L + l] *= dinv[k * L + l]
            for j in range(k + 1, n):
                A[(i * n + j) * L + l] -= A[(i * n + k) * L + l] * A[(k * n + j) * L + l]
    return 0


cdef double* BDF_INV = [0.0, 1.0, 0.5, 1.0 / 3.0, 0.25, 0.2]   # 1 / i, i <= BDF_MAXQ


cdef void bdf_R(int q, double factor, double* R) noexcept nogil:
    """R (q+1, q+1), row-major: scipy.integrate's compute_R, the cumulative products over
    rows of M (M[0, :] = 1, M[i, j] = (i - 1 - factor j) / i for i, j >= 1, M[i, 0] = 0)."""
    cdef int i, j
    for j in range(q + 1):
        R[j] = 1.0
    for i in range(1, q + 1):
        R[i * (q + 1)] = 0.0
        for j in range(1, q + 1):
            R[i * (q + 1) + j] = R[(i - 1) * (q + 1) + j] * ((i - 1 - factor * j) * BDF_INV[i])


cdef void bdf_change_step(const Bdf* bd, Work* w, int64_t l, int q, double factor) noexcept nogil:
    """Rescale lane l's differences D_0..D_q (K slots 1..q+1) to the step h * factor."""
    cdef double R[(BDF_MAXQ + 1) * (BDF_MAXQ + 1)]
    cdef double RU[(BDF_MAXQ + 1) * (BDF_MAXQ + 1)]
    cdef double tmp[BDF_MAXQ + 1]
    cdef const double* U = &bd.U[q][0]
    cdef int a, b, c, m = q + 1
    cdef int64_t i, L = w.L, nL = w.nL
    cdef double s
    bdf_R(q, factor, R)
    for a in range(m):
        for b in range(m):
            s = 0.0
            for c in range(m):
                s += R[a * m + c] * U[c * m + b]
            RU[a * m + b] = s
    for i in range(w.n):
        for b in range(m):
            s = 0.0
            for a in range(m):
                s += RU[a * m + b] * w.K[(a + 1) * nL + i * L + l]
            tmp[b] = s
        for b in range(m):
            w.K[(b + 1) * nL + i * L + l] = tmp[b]


cdef inline double bdf_wnorm2(Work* w, int64_t l, const double* v, const double* iscale,
                              double c) noexcept nogil:
    """(c * RMS of v[:, l] * iscale[:, l])**2 (iscale: the reciprocal error weights). Squared:
    its users compare it with 1 or raise it to a power, so no square root is needed."""
    cdef int64_t i, L = w.L
    cdef double s = 0.0, x
    for i in range(w.n):
        x = v[i * L + l] * iscale[i * L + l]
        s += x * x
    return c * c * (s * w.ninv)


cdef inline void bdf_reject(const Job* job, const Bdf* bd, Work* w, int64_t l, int q, double fac) noexcept nogil:
    """Lane l's step failed: retry with h * fac at the same order (D rescaled)."""
    bdf_change_step(bd, w, l, q, fac)
    w.hnew[l] = w.h[l] * fac
    w.steps[l] += 1
    reject_step(w, l)
    check_max_steps(job, w, l)


# phases of a lane in run_worker_bdf
cdef enum:
    PH_NEW = 0       # prepare a step (prediction, LU factors) at the start of the next round
    PH_ITER = 1      # Newton iteration: YN is the next point to evaluate
    PH_GRAD = 2      # gradient-norm test: f at the accepted state Y, evaluated this round


cdef int run_worker_bdf(Job* job, const Tab* tb, const Bdf* bd, int64_t* stats) noexcept nogil:
    """Variable-order NDF (narrowflow.tableaus.MultistepMethod), every lane on its own.

    scipy.integrate.BDF's algorithm (quasi-constant step size, order 1..5; the differences
    D_j in K slots 1..8, K slot 0 = f(y)) in every lane, with four changes for the lanes:
    - Lanes do not wait for each other. A round evaluates f once for all lanes, each at the
      point its own state needs: the next Newton iterate of its step, the first iterate of
      its next step, or its accepted state for the gradient-norm test. Newton iterations
      therefore cost one evaluation each, whatever the other lanes do.
    - The Newton iteration is CVODE's: converged when the correction times the convergence
      rate remembered across steps (crate) is newton_kappa (a hundredth) of what the error
      test allows, so a smooth stiff tail costs little more than one evaluation per step.
    - Each lane keeps its own Jacobian and LU factors (refactored when its h or order
      changes). The Jacobian is evaluated, for the lanes that need it only, when a Newton
      iteration fails with an old one and, as CVODE's msbj, every jacobian_every accepted
      steps: an old Jacobian slows the iteration, and each step then costs two evaluations.
    - f(y_new) is evaluated only where the gradient-norm test needs it (the last Newton
      evaluation, within the Newton tolerance of y_new, says where).
    """
    cdef Work w
    cdef int64_t i, j, l, L = job.L, n = job.n, nL, pp = job.n * job.n, k, nsel
    cdef int x, live, anyacc, q, jstat, fstat
    cdef double h, fac, c, dyn, rate, en, em, ep, fm, f0, fp, v
    cdef double* PSI
    cdef double* DD
    cdef double* YP
    cdef double* FN
    cdef double* GI
    cdef double* GO
    cdef double* JB
    cdef double* LU
    cdef double* dinv
    cdef double* cval
    cdef double* crate
    cdef double* dyold
    cdef double* hfac
    cdef double* sfty
    cdef double* ISC
    cdef double* dsq
    cdef int* piv
    cdef int* ph
    cdef int* nit
    cdef int* neq
    cdef int* luok
    cdef int* jfresh
    cdef int* qnew
    cdef int* jage
    cdef int64_t* sel
    cdef double* Dq
    cdef int64_t t_start = now_ns()
    if work_alloc(&w, n, L, tb.nk) != 0:
        return -1
    nL = w.nL
    # zeroed: the error weights are computed for every lane from YP, also for lanes that
    # never start a step (fewer trajectories than lanes), whose values nobody reads
    PSI = <double*> calloc(7 * nL + 6 * L + 3 * pp * L, sizeof(double))
    piv = <int*> malloc((nL + 7 * L) * sizeof(int))
    sel = <int64_t*> malloc(L * sizeof(int64_t))
    if PSI == NULL or piv == NULL or sel == NULL:
        free(PSI)
        free(piv)
        free(sel)
        work_free(&w)
        return -1
    memset(PSI, 0, (7 * nL + 6 * L + 3 * pp * L) * sizeof(double))
    memset(piv, 0, (nL + 7 * L) * sizeof(int))
    DD = PSI + nL               # d = y - y_pred, the sum of the Newton corrections
    YP = PSI + 2 * nL           # y_pred
    FN = PSI + 3 * nL           # f at the points of this round
    dinv = PSI + 4 * nL         # reciprocal pivots of W = I - c J (per lane, SoA)
    GI = PSI + 5 * nL           # compacted Jacobian inputs
    cval = PSI + 6 * nL         # c = h / alpha_q of the LU factors in use
    crate = cval + L            # Newton convergence rate remembered across steps
    dyold = crate + L
    hfac = dyold + L            # step factor chosen after an accepted step
    sfty = hfac + L             # scipy's safety factor from the Newton iteration count
    dsq = sfty + L              # squared weighted norms of the Newton corrections
    ISC = dsq + L               # 1 / (atol + rtol |y_pred|): the Newton iteration's weights
    JB = ISC + nL               # Jacobian per lane, SoA (r*n + c)*L + l
    LU = JB + pp * L            # LU factors of W per lane, same layout
    GO = LU + pp * L            # compacted Jacobian outputs
    ph = piv + nL
    nit = ph + L                # Newton iterations of the current step
    neq = nit + L               # steps taken with the current h and order
    luok = neq + L              # LU factors valid for the current h and order
    jfresh = luok + L           # the Jacobian was evaluated at the current state
    qnew = jfresh + L
    jage = qnew + L             # steps accepted since the lane's Jacobian was evaluated
    live = start_lanes(job, tb, &w)
    while live > 0:
        x = round_prologue(job, tb, &w)
        if x < 0:
            break
        if x > 0:
            live = refill(job, tb, &w)
            continue
        # --- lanes just started: D_0 = y, D_1 = h f(y), order 1
        for l in range(L):
            if w.idx[l] >= 0 and w.dinit[l]:
                w.dinit[l] = 0
                w.qord[l] = 1
                ph[l] = PH_NEW
                neq[l] = 0
                luok[l] = 0
                jfresh[l] = 0
                jage[l] = 0
                crate[l] = 1.0
                cval[l] = 0.0
                for j in range(1, tb.nk):
                    for i in range(n):
                        w.K[j * nL + i * L + l] = 0.0
                for i in range(n):
                    w.K[nL + i * L + l] = w.Y[i * L + l]
                    w.K[2 * nL + i * L + l] = w.h[l] * w.K[i * L + l]
        # --- the Jacobian at the current state, for the lanes that asked for it (a lane in
        # its gradient-norm test waits: the test may end it, and its state stays the same)
        nsel = 0
        for l in range(L):
            if w.idx[l] >= 0 and w.st[l] == ST_RUNNING and w.jnew[l] and ph[l] != PH_GRAD:
                sel[nsel] = l
                nsel += 1
        if nsel:
            jstat = call_lanes(job, &w, job.jac, pp, sel, nsel, w.Y, JB, GI, GO)
            x = 0
            for k in range(nsel):
                l = sel[k]
                w.nj[l] += 1
                w.jnew[l] = 0
                jfresh[l] = 1
                luok[l] = 0
                # a Jacobian renewed on schedule keeps the remembered convergence rate: it is
                # newer than the one the rate was measured with; one renewed after a failed
                # Newton iteration starts from rate 1
                if not (bd.jac_every > 0 and jage[l] >= bd.jac_every):
                    crate[l] = 1.0
                jage[l] = 0
                if jstat != 0 and jacobian_diverges(&w, JB, pp, l):
                    x = 1
            if x:
                live = refill(job, tb, &w)
                continue
        # --- lanes starting a step: h (bounded by max_step, cut to end at t1), the
        # prediction, W's LU factors
        for l in range(L):
            w.acc[l] = 0
            if w.idx[l] < 0:
                for i in range(n):
                    w.YN[i * L + l] = 0.0
                continue
            if w.st[l] != ST_RUNNING or ph[l] != PH_NEW:
                continue
            q = w.qord[l]
            h = w.h[l]
            if h > job.hmax:
                bdf_change_step(bd, &w, l, q, job.hmax / h)
                h = job.hmax
                neq[l] = 0
                luok[l] = 0
            w.last[l] = 0
            if w.t[l] + 1.01 * h >= job.t1:
                fac = (job.t1 - w.t[l]) / h
                if fac != 1.0:
                    bdf_change_step(bd, &w, l, q, fac)
                    neq[l] = 0
                    luok[l] = 0
                h = job.t1 - w.t[l]
                w.last[l] = 1
                w.tn[l] = job.t1
            else:
                w.tn[l] = w.t[l] + h
            w.h[l] = h
            c = h / bd.alpha[q]
            if not luok[l]:
                if cval[l] > 0.0 and c > cval[l]:
                    # a larger c slows the simplified Newton iteration in proportion
                    crate[l] = crate[l] * c / cval[l]
                cval[l] = c
                for i in range(pp):
                    LU[i * L + l] = -c * JB[i * L + l]
                for i in range(n):
                    LU[(i * n + i) * L + l] += 1.0
                luok[l] = 1
                if lu_factor_lane(LU, piv, dinv, n, L, l):
                    # singular W: as a failed Newton iteration
                    luok[l] = 0
                    if not jfresh[l]:
                        w.jnew[l] = 1
                    else:
                        bdf_reject(job, bd, &w, l, q, 0.5)
                        neq[l] = 0
                    continue
            ph[l] = PH_ITER
            nit[l] = 0
            # the prediction y_pred = sum_{j<=q} D_j, psi = sum_{1<=j<=q} gamma_j D_j / alpha_q
            # (lane by lane: a select over all lanes costs more in mispredicted branches)
            for i in range(n):
                Dq = w.K + nL + i * L + l          # D_j of component i at Dq[j * nL]
                v = Dq[q * nL]
                c = bd.gam[q] * Dq[q * nL]
                for j in range(q - 1, 0, -1):
                    v += Dq[j * nL]
                    c += bd.gam[j] * Dq[j * nL]
                v += Dq[0]
                YP[i * L + l] = v
                w.YN[i * L + l] = v
                PSI[i * L + l] = c * bd.ialpha[q]
                DD[i * L + l] = 0.0
        # the error weights 1 / (atol + rtol |y_pred|) of every lane in one vectorizable loop:
        # a lane that did not start a step here gets the same values again from its YP
        for i in range(nL):
            ISC[i] = 1.0 / (job.atol + job.rtol * fabs(YP[i]))
        # --- one evaluation for every lane, at the point its phase asks for
        fstat = call_f(job, &w, w.YN, FN)
        # the Newton corrections of all lanes at once (lanes not iterating compute values
        # nobody reads; each lane's arithmetic is its own)
        for i in range(n):
            for l in range(L):
                w.W[i * L + l] = cval[l] * FN[i * L + l] - PSI[i * L + l] - DD[i * L + l]
        lu_solve_lanes(LU, piv, dinv, n, L, w.W)
        for l in range(L):
            dsq[l] = 0.0
        for i in range(n):
            for l in range(L):
                v = w.W[i * L + l] * ISC[i * L + l]
                dsq[l] += v * v
        for l in range(L):
            if w.idx[l] < 0 or w.st[l] != ST_RUNNING:
                continue
            if ph[l] == PH_GRAD:
                w.nf[l] += 1
                copy_lane(&w, FN, w.K, l)
                ph[l] = PH_NEW
                if fstat != 0 and lane_nonfinite(&w, FN, l):
                    w.st[l] = ST_DIVERGED
                elif lane_norm2(&w, FN, l) < job.gtol:
                    w.st[l] = ST_CONVERGED
                continue
            if ph[l] != PH_ITER:
                continue
            # a simplified Newton iteration
            w.nf[l] += 1
            nit[l] += 1
            q = w.qord[l]
            x = 0        # 1: converged, -1: failed
            if fstat != 0 and lane_nonfinite(&w, FN, l):
                x = -1
            else:
                dyn = dsq[l] * w.ninv          # the squared RMS norm of the correction
                if nit[l] > 1:
                    if dyn > 4.0 * dyold[l]:
                        x = -1                 # diverging (the norm more than doubled)
                    else:
                        rate = sqrt(dyn / dyold[l])
                        crate[l] = rate if rate > 0.3 * crate[l] else 0.3 * crate[l]
                if x == 0:
                    for i in range(n):
                        w.YN[i * L + l] += w.W[i * L + l]
                        DD[i * L + l] += w.W[i * L + l]
                    # CVODE's test: the rest of the iteration, about crate times this
                    # correction, is newton_kappa of what the error test allows
                    # (error_const[q] ||d|| <= 1)
                    c = (crate[l] if crate[l] < 1.0 else 1.0) * bd.errc[q]
                    if dyn * (c * c) <= bd.newton_kappa * bd.newton_kappa:
                        x = 1
                    elif nit[l] >= bd.maxiter:
                        x = -1
                    dyold[l] = dyn
            if x == 0:
                continue
            if x < 0:
                ph[l] = PH_NEW
                if not jfresh[l]:
                    # the Jacobian is old: evaluate it here and retry with the same h
                    w.jnew[l] = 1
                else:
                    bdf_reject(job, bd, &w, l, q, 0.5)
                    neq[l] = 0
                    luok[l] = 0
                continue
            # converged: the error test
            ph[l] = PH_NEW
            sfty[l] = bd.safety[nit[l]]
            en = bdf_wnorm2(&w, l, DD, ISC, bd.errc[q])     # squared
            if en <= 1.0:
                w.acc[l] = 1
                w.errv[l] = en
                continue
            fac = sfty[l] * pow(en, -0.5 / (q + 1))
            if not (fac > bd.minfac):      # also for a non-finite estimate
                fac = bd.minfac
            bdf_reject(job, bd, &w, l, q, fac)
            neq[l] = 0
            luok[l] = 0
        # --- accepted lanes: differences, then the order and step of the next step
        anyacc = 0
        for l in range(L):
            if not w.acc[l]:
                continue
            anyacc = 1
            q = w.qord[l]
            for i in range(n):
                Dq = w.K + nL + i * L + l      # D_j of component i at Dq[j * nL]
                v = DD[i * L + l]
                Dq[(q + 2) * nL] = v - Dq[(q + 1) * nL]
                Dq[(q + 1) * nL] = v
                for j in range(q, -1, -1):     # D_j += D_{j+1} (new), carried in v
                    v = Dq[j * nL] + v
                    Dq[j * nL] = v
            neq[l] += 1
            jfresh[l] = 0
            qnew[l] = q
            hfac[l] = 1.0
            if neq[l] >= q + 1:
                en = w.errv[l]
                # the step factors of orders q, q - 1, q + 1 from squared error norms
                f0 = pow(en, -0.5 / (q + 1)) if en > 0.0 else DBL_MAX
                fm = 0.0
                fp = 0.0
                if q > 1:
                    em = bdf_wnorm2(&w, l, w.K + (q + 1) * nL, ISC, bd.errc[q - 1])
                    fm = pow(em, -0.5 / q) if em > 0.0 else DBL_MAX
                if q < bd.maxord:
                    ep = bdf_wnorm2(&w, l, w.K + (q + 3) * nL, ISC, bd.errc[q + 1])
                    fp = pow(ep, -0.5 / (q + 2)) if ep > 0.0 else DBL_MAX
                fac = f0
                if fm > fac:
                    fac = fm
                    qnew[l] = q - 1
                if fp > fac:
                    fac = fp
                    qnew[l] = q + 1
                fac = sfty[l] * fac
                if fac > bd.maxfac:
                    fac = bd.maxfac
                if qnew[l] == q and fac >= 1.0 and fac < bd.min_growth:
                    fac = 1.0      # not worth new LU factors (CVODE's THRESH)
                hfac[l] = fac
            w.hnew[l] = w.h[l] * hfac[l]
            accepted_diverges(job, &w, l, FN, 0)
        if anyacc:
            if job.escape_on:
                escape_crossings(job, &w)
            step_outputs(job, tb, &w)
        for l in range(L):
            if w.idx[l] < 0 or w.st[l] != ST_RUNNING:
                continue
            if w.acc[l]:
                w.steps[l] += 1
                # CVODE's msbj: the Jacobian is renewed every jac_every steps, so that the
                # first Newton correction passes more often (a stale one slows the iteration)
                jage[l] += 1
                if bd.jac_every > 0 and jage[l] >= bd.jac_every:
                    w.jnew[l] = 1
                # advance (as advance_accepted, with the gradient-norm test deferred to
                # an evaluation at the new state where the last one says it may pass)
                copy_lane(&w, w.YN, w.Y, l)
                w.t[l] = w.tn[l]
                w.na[l] += 1
                w.rej[l] = 0
                if job.escape_on:
                    w.lossprev[l] = w.lossnew[l]
                w.h[l] = w.hnew[l]
                if w.last[l]:
                    w.st[l] = ST_SUCCESS
                elif job.gtol > 0.0 and lane_norm2(&w, FN, l) < 2.0 * job.gtol:
                    ph[l] = PH_GRAD
                if neq[l] >= w.qord[l] + 1:
                    neq[l] = 0
                    if qnew[l] != w.qord[l] or hfac[l] != 1.0:
                        w.qord[l] = qnew[l]
                        bdf_change_step(bd, &w, l, qnew[l], hfac[l])
                        luok[l] = 0
            check_max_steps(job, &w, l)
        # lanes in their gradient test evaluate at their accepted state next round
        for l in range(L):
            if ph[l] == PH_GRAD and w.st[l] == ST_RUNNING:
                copy_lane(&w, w.Y, w.YN, l)
        live = refill(job, tb, &w)
    worker_stats(&w, stats, t_start)
    free(PSI)
    free(piv)
    free(sel)
    work_free(&w)
    return 0


cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)


cdef inline double* alloc_line_aligned(int64_t n) noexcept nogil:
    """n doubles (at least one) at a 64-byte boundary (free() releases them), or NULL. The
    order-specialised Taylor code works on blocks of 8 lanes, one 64-byte vector each: with
    malloc's 16-byte alignment every such vector straddles two cache lines (18 % slower)."""
    cdef void* ptr = NULL
    if posix_memalign(&ptr, 64, (n if n > 0 else 1) * sizeof(double)) != 0:
        return NULL
    return <double*> ptr


cdef inline int call_taylor(Job* job, Work* w, double* X, double* TW) noexcept nogil:
    """X[1..torder] = Taylor coefficients at X[0] for all lanes (timed like call_f)."""
    cdef int64_t t0
    cdef int r
    if job.profile:
        t0 = now_ns()
        r = job.taylor(w.L, job.torder, X, TW, job.params)
        w.rhs_ns += now_ns() - t0
    else:
        r = job.taylor(w.L, job.torder, X, TW, job.params)
    w.calls += 1
    return r


cdef void taylor_stiffness_test(Job* job, Work* w, const double* F, const double* m0,
                                const double* m1, double* JB, double* GI, double* GO,
                                int64_t* sel) noexcept nogil:
    """The Taylor method's stiffness test on the lanes taking a step (w.acc, step w.h).

    Every TAYLOR_STIFF_EVERY-th step of a lane is a test. It counts as stiff when
    h ||J||_F > job.stiff_hlam (||J||_F >= |lambda| for every eigenvalue lambda of J) and
    ||J||_F ||f|| / ||J f|| > job.stiff_ratio (the flow moves slowly against its fastest mode);
    job.stiff_steps stiff tests in a row mark the lane stiff (w.stiff), one test below resets
    the count. J f is 2 x_2 (F = x_1, F + nL = x_2), exactly. J is only evaluated where
    free estimates from the coefficients (the scaled maxima m0, m1 of x_{p-1}, x_p for
    ||J||_F) pass both conditions at half the threshold; elsewhere the test counts as not
    stiff. In a stiff stretch the Jorba & Zou step settles where h |lambda_max| is near the
    real stability boundary of the Taylor polynomial (the damped stiff component grows back
    beyond it), so stiff_hlam is a fraction of that boundary
    (narrowflow.taylor.stability_boundary). A lane's checks depend only on its own
    steps, and call_lanes gives every lane the same bits whatever the others, so the
    decision is the same in any lane, thread or chunk. A Jacobian that is not finite
    counts as not stiff (the coefficients' own test stops a diverging lane).
    """
    cdef int64_t i, j, l, L = w.L, n = w.n, nL = w.nL, nsel = 0
    cdef double s, v
    for l in range(L):
        if not (w.acc[l] and w.steps[l] % TAYLOR_STIFF_EVERY == 0):
            continue
        # free estimates of both conditions must reach half their thresholds before J is
        # evaluated (a Jacobian for a few gathered lanes costs as much as for all of them,
        # about a fifth of an expansion of order 11 on NF4): |lambda| ~ p |x_p| / |x_{p-1}|
        # (power iteration on the linearised flow, x_{k+1} ~ J x_k / (k + 1)), and
        # J f = 2 x_2 exactly (y'' = J y'), so the slowness is ~ p |x_p| ||f|| / (2 |x_{p-1}|
        # ||x_2||)
        if (w.h[l] * job.torder * m1[l] > 0.5 * job.stiff_hlam * m0[l]
                and job.torder * m1[l] * lane_norm2(w, F, l)
                >= job.stiff_ratio * m0[l] * lane_norm2(w, F + nL, l)):
            sel[nsel] = l
            nsel += 1
        else:
            w.iasti[l] = 0
    if nsel == 0:
        return
    call_lanes(job, w, job.jac, n * n, sel, nsel, w.Y, JB, GI, GO)
    for j in range(nsel):
        l = sel[j]
        w.nj[l] += 1
        s = 0.0
        for i in range(n * n):
            v = JB[i * L + l]
            s += v * v
        s = sqrt(s)     # ||J||_F
        if (isfinite(s) and w.h[l] * s > job.stiff_hlam
                and s * lane_norm2(w, F, l) >= job.stiff_ratio * 2.0 * lane_norm2(w, F + nL, l)):
            w.iasti[l] += 1
            if w.iasti[l] >= job.stiff_steps:
                w.stiff[l] = 1
        else:
            w.iasti[l] = 0


cdef int run_worker_taylor(Job* job, const Tab* tb, int64_t* stats) noexcept nogil:
    """The Taylor step loop (method "taylor"): order p = job.torder, Jorba & Zou's step size.

    Each step evaluates the normalised Taylor coefficients x_0..x_p of every lane at once
    (job.taylor, narrowflow.taylor) and takes, per lane, heyoka's step
        h = min(rho_{p-1}, rho_p) exp(-0.7/(p-1)) / e^2,
        rho_j = min_i (s_i / |x_{j,i}|)^(1/j),   s_i = (atol + rtol |y_i|) / rtol,
    i.e. Jorba & Zou's rule with every component measured in units of its own tolerance
    (heyoka's max(1, |y|_inf) with atol = rtol), so that the truncation estimate
    |x_p| h^p stays near (atol + rtol |y_i|) e^-2 with p = ceil(-ln(rtol)/2 + 1). Steps are
    never rejected (the estimate is a priori). K slots 1..p hold x_j h^j: y_new and dense
    output are y + sum_j K_j theta^j (dense_lane, tb.incr == 2). A lane whose coefficients
    are not finite stops DIVERGED; h below round-off of t, STEP_TOO_SMALL. F(y_new) is
    only evaluated when gtol is on (convergence test); nfev counts one per Taylor step (and
    per F).
    """
    cdef Work w
    cdef int64_t i, l, k, L = job.L, n = job.n, nL, p = job.torder, q
    cdef int x, live, anyacc, fstat, tstat
    cdef double v, a, sc, rho, rho1, hl, rhofac, ipm1, ip
    cdef double* X
    cdef double* TW
    cdef double* FN
    cdef double* m0
    cdef double* m1
    cdef double* pw
    cdef double* Kk
    cdef const double* Xk
    cdef double* JB = NULL
    cdef double* GI = NULL
    cdef double* GO = NULL
    cdef int64_t* sel = NULL
    cdef bint chk = job.stiff_switch and job.jac != NULL
    cdef int64_t t_start = now_ns()
    if work_alloc(&w, n, L, tb.nk) != 0:
        return -1
    nL = w.nL
    X = alloc_line_aligned((p + 2) * nL + 3 * L)
    TW = alloc_line_aligned(job.twork)
    if X == NULL or TW == NULL:
        free(X)
        free(TW)
        work_free(&w)
        return -1
    memset(X, 0, ((p + 2) * nL + 3 * L) * sizeof(double))
    memset(TW, 0, (job.twork if job.twork > 0 else 1) * sizeof(double))
    FN = X + (p + 1) * nL
    m0 = FN + nL
    m1 = m0 + L
    pw = m1 + L
    ipm1 = 1.0 / (p - 1)
    ip = 1.0 / p
    rhofac = exp(-0.7 / (p - 1)) / (2.718281828459045 * 2.718281828459045)
    if job.tfac > 0.0:
        rhofac = job.tfac
    if chk:
        JB = alloc_line_aligned(n * n * L)
        GI = alloc_line_aligned(n * L)
        GO = alloc_line_aligned(n * n * L)
        sel = <int64_t*> malloc(L * sizeof(int64_t))
        if JB == NULL or GI == NULL or GO == NULL or sel == NULL:
            free(JB)
            free(GI)
            free(GO)
            free(sel)
            free(X)
            free(TW)
            work_free(&w)
            return -1
    live = start_lanes(job, tb, &w)
    while live > 0:
        x = round_prologue(job, tb, &w)
        if x < 0:
            break
        if x > 0:
            live = refill(job, tb, &w)
            continue
        # --- Taylor coefficients of every lane
        memcpy(X, w.Y, nL * sizeof(double))
        tstat = call_taylor(job, &w, X, TW)
        # --- Jorba & Zou: the largest scaled coefficients of orders p - 1 and p, per lane
        for l in range(L):
            m0[l] = 0.0
            m1[l] = 0.0
        for i in range(n):
            for l in range(L):
                sc = job.rtol / (job.atol + job.rtol * fabs(w.Y[i * L + l]))
                # written as selects, so that the lane loop vectorizes
                a = fabs(X[(p - 1) * nL + i * L + l]) * sc
                m0[l] = a if a > m0[l] else m0[l]
                a = fabs(X[p * nL + i * L + l]) * sc
                m1[l] = a if a > m1[l] else m1[l]
        for l in range(L):
            w.acc[l] = 0
            pw[l] = 0.0
            if w.idx[l] < 0:
                w.h[l] = 0.0
                w.tn[l] = job.t0
                continue
            if tstat != 0:
                x = 0
                for k in range(1, p + 1):
                    if lane_nonfinite(&w, X + k * nL, l):
                        x = 1
                        break
                if x:
                    w.st[l] = ST_DIVERGED
                    continue
            # min(m0^(-1/(p-1)), m1^(-1/p)) in logarithms: two logs and one exp instead of
            # two pows (a zero coefficient gives +inf, as the pow did; hmax caps it)
            rho = -log(m0[l]) * ipm1
            rho1 = -log(m1[l]) * ip
            if rho1 < rho:
                rho = rho1
            hl = exp(rho) * rhofac
            if hl > job.hmax:
                hl = job.hmax
            if not (0.1 * hl > fabs(w.t[l]) * 2.220446049250313e-16 and hl > 0.0):
                w.h[l] = hl
                w.st[l] = ST_STEP_TOO_SMALL
                continue
            w.h[l] = hl
            adaptive_step_end(job, &w, l)
            w.acc[l] = 1
            pw[l] = w.h[l]
        if chk:
            taylor_stiffness_test(job, &w, X + nL, m0, m1, JB, GI, GO, sel)
        # --- K_k = x_k h^k, y_new = y + sum_k K_k (highest order first)
        for k in range(1, p + 1):
            Kk = w.K + k * nL
            Xk = X + k * nL
            for i in range(n):
                for l in range(L):
                    Kk[i * L + l] = Xk[i * L + l] * pw[l]
            for l in range(L):
                pw[l] *= w.h[l]
        # y_new = y + (K_p + K_{p-1} + ... + K_1), summed in that order, contiguously
        memcpy(w.YN, w.K + p * nL, nL * sizeof(double))
        for k in range(p - 1, 0, -1):
            Kk = w.K + k * nL
            for q in range(nL):
                w.YN[q] = w.YN[q] + Kk[q]
        for q in range(nL):
            w.YN[q] = w.Y[q] + w.YN[q]
        anyacc = 0
        for l in range(L):
            if w.acc[l]:
                anyacc = 1
        fstat = 0
        if anyacc and job.gtol > 0.0:
            fstat = call_f(job, &w, w.YN, FN)
        for l in range(L):
            if not w.acc[l]:
                continue
            w.nf[l] += 2 if job.gtol > 0.0 else 1
            accepted_diverges(job, &w, l, FN, fstat)
        if job.escape_on:
            escape_crossings(job, &w)
        if anyacc:
            step_outputs(job, tb, &w)
        for l in range(L):
            if w.idx[l] < 0 or w.st[l] != ST_RUNNING:
                continue
            w.steps[l] += 1
            advance_accepted(job, &w, l, FN, 0)
            if w.stiff[l] and w.st[l] == ST_RUNNING:
                w.st[l] = ST_STIFF
            check_max_steps(job, &w, l)
        live = refill(job, tb, &w)
    worker_stats(&w, stats, t_start)
    free(X)
    free(TW)
    free(JB)
    free(GI)
    free(GO)
    free(sel)
    work_free(&w)
    return 0


cdef void fill_taylor(Tab* tb, int64_t order) except *:
    """The Tab of method "taylor": K slots 0..order (dense output: tb.incr == 2, deg = order),
    no step-size heuristic at the start (err_kind 0: the first step is Jorba & Zou's)."""
    if order < 2:
        raise ValueError(f"taylor_order must be >= 2, got {order}")
    memset(tb, 0, sizeof(Tab))
    tb.S = 1
    tb.nk = order + 1
    tb.err_kind = 0
    tb.order = order
    tb.deg = order
    tb.incr = 2


cdef void fill_tab(Tab* tb, tab) except *:
    A = np.ascontiguousarray(tab.A, dtype=np.float64)
    P = np.ascontiguousarray(tab.P, dtype=np.float64)
    nk = int(tab.nk)
    if nk > MAXK or P.shape[1] > MAXD:
        raise ValueError("tableau too large for the kernel")
    memset(tb, 0, sizeof(Tab))
    tb.S = tab.S
    tb.fsal = 1 if tab.fsal else 0
    if tb.fsal and (tab.err_kind == 0 or tab.e[tab.S - 1] == 0.0):
        # run_worker relies on it: a non-finite f(y_new) must make the step fail
        raise ValueError("an FSAL tableau must weigh its last stage in the error estimate")
    tb.knew = tab.knew
    tb.nk = nk
    tb.n_extra = tab.n_extra
    tb.err_kind = tab.err_kind
    tb.order = tab.order
    tb.deg = P.shape[1]
    for i in range(nk):
        tb.b[i] = tab.b[i]
        tb.e[i] = tab.e[i]
        tb.e3[i] = tab.e3[i]
        for j in range(nk):
            tb.A[i][j] = A[i, j]
        for j in range(tb.deg):
            tb.P[i][j] = P[i, j]
    tb.safe = tab.safe
    tb.fac1 = tab.fac1
    tb.fac2 = tab.fac2
    tb.beta = tab.beta
    tb.expo1 = tab.expo1
    tb.stiff_test = 1 if tab.stiff_test else 0


cdef void fill_ros(Tab* tb, Ros* rs, tab) except *:
    """A RosenbrockTableau into the kernel's Ros and, for the shared code, Tab layouts."""
    a = np.ascontiguousarray(tab.a, dtype=np.float64)
    C = np.ascontiguousarray(tab.C, dtype=np.float64)
    P = np.ascontiguousarray(tab.P, dtype=np.float64)
    S = int(tab.S)
    if S > MAXS or S + 1 > MAXK or P.shape[1] > MAXD:
        raise ValueError("Rosenbrock tableau too large for the kernel")
    memset(tb, 0, sizeof(Tab))
    memset(rs, 0, sizeof(Ros))
    rs.S = S
    rs.gamma = float(tab.gamma)
    for i in range(S):
        rs.m[i] = tab.m[i]
        rs.e[i] = tab.e[i]
        for j in range(S):
            rs.a[i][j] = a[i, j]
            rs.C[i][j] = C[i, j]
    tb.S = S
    tb.nk = S + 1
    tb.err_kind = 1
    tb.order = tab.order
    tb.deg = P.shape[1]
    tb.incr = 1
    for i in range(S):
        for j in range(tb.deg):
            tb.P[i + 1][j] = P[i, j]
    tb.safe = tab.safe
    tb.fac1 = tab.fac1
    tb.fac2 = tab.fac2
    tb.expo1 = tab.expo


cdef void fill_bdf(Tab* tb, Bdf* bd, method, double rtol) except *:
    """A narrowflow.tableaus.MultistepMethod into the kernel's Bdf and, for the shared code,
    Tab layouts: K slot 0 = f(y), slots 1..max_order+3 the differences D_j; dense output
    from D (tb.incr == 3); the first step from Hairer's heuristic for BDF1, whose local error
    is O(h^2) (scipy's select_initial_step with order 1 also takes h ~ tol^(1/2))."""
    cdef int q
    if method.max_order > BDF_MAXQ:
        raise ValueError(f"max_order must be <= {BDF_MAXQ}, got {method.max_order}")
    memset(tb, 0, sizeof(Tab))
    memset(bd, 0, sizeof(Bdf))
    bd.maxord = method.max_order
    bd.maxiter = method.newton_maxiter
    if not 1 <= bd.maxiter <= BDF_MAXIT:
        raise ValueError(f"newton_maxiter must be in [1, {BDF_MAXIT}], got {bd.maxiter}")
    for q in range(1, bd.maxiter + 1):
        bd.safety[q] = 0.9 * (2 * bd.maxiter + 1) / (2 * bd.maxiter + q)
    for q in range(bd.maxord + 1):
        bd.alpha[q] = method.alpha[q]
        bd.gam[q] = method.gamma[q]
        bd.errc[q] = method.error_const[q]
        bd.ialpha[q] = 1.0 / method.alpha[q] if q > 0 else 0.0
        bdf_R(q, 1.0, &bd.U[q][0])
    bd.minfac = method.min_factor
    bd.maxfac = method.max_factor
    bd.newton_kappa = method.newton_kappa
    bd.min_growth = method.min_growth
    if not 0 <= method.jacobian_every <= 2**31 - 1:
        raise ValueError(f"jacobian_every must be >= 0, got {method.jacobian_every}")
    bd.jac_every = method.jacobian_every
    tb.S = 1
    tb.nk = bd.maxord + 4
    tb.err_kind = 1
    # not 1: h ~ tol^(1/1) started NF4 at h ~ 1e-10 (rtol 1e-8), and the step then took 15-25
    # evaluations to grow ten-fold every second step to the scale of the flow
    tb.order = 2
    tb.incr = 3


def _check_shape(name, arr, shape):
    if arr is None:
        raise ValueError(f"{name}: an array of shape {shape} is required, got None")
    got = tuple(arr.shape[:arr.ndim])
    if got != shape:
        raise ValueError(f"{name} must have shape {shape}, got {got}")


cdef class KernelOptions:
    """The scalar options of one `integrate` call, typed and checked once.

    Times are in the flow's units. t1 may be inf (then gtol > 0 should end the
    trajectories). h_init > 0 fixes the first step of adaptive methods; dt is the step of
    fixed-step ones. gtol <= 0 disables the convergence test; escape = NaN disables the
    escape time; bound: DIVERGED beyond |y|_inf > bound (inf: no bound). max_step > 0
    bounds adaptive steps (default t1 - t0). lanes: trajectories per right-hand-side call;
    threads: OpenMP workers. profile: time every right-hand-side call. jac_address: the
    Jacobian cfunc (Rosenbrock and BDF methods). resume: continue the counters, save points
    and escape times already in the outputs. stiff_switch (DOP853, or the Taylor method with
    jac_address): a trajectory found stiff (stiff_steps tests in a row with h|lambda| >
    stiff_hlam, for the Taylor method also ||J||_F ||f|| / ||J f|| >= stiff_ratio) stops
    with status 6 (internal).
    interruptible (main thread only): SIGINT stops every worker within one step.
    taylor_address / taylor_order / taylor_work: the Taylor method's cfunc, order and
    scratch doubles per worker (tab is then ignored); taylor_factor: its step as a fraction
    of the estimated radius of convergence (0: Jorba & Zou's exp(-0.7/(p-1))/e^2).
    """
    cdef public double t0, t1, rtol, atol, h_init, dt, gtol, bound, escape, max_step
    cdef public double stiff_hlam, taylor_factor, stiff_ratio
    cdef public int64_t max_steps, lanes, taylor_order, taylor_work
    cdef public int threads, stiff_steps
    cdef public bint profile, resume, stiff_switch, interruptible
    cdef public uintptr_t jac_address, taylor_address

    def __init__(self, *, double t0=0.0, double t1=1.0, double rtol=1e-8, double atol=1e-10,
                 double h_init=0.0, double dt=0.0, double gtol=0.0, double bound=INFINITY,
                 int64_t max_steps=1000000, double escape=NAN, double max_step=0.0,
                 int64_t lanes=16, int threads=1, bint profile=False, uintptr_t jac_address=0,
                 bint resume=False, bint stiff_switch=False, double stiff_hlam=6.1,
                 int stiff_steps=15, bint interruptible=False, uintptr_t taylor_address=0,
                 int64_t taylor_order=0, int64_t taylor_work=0, double taylor_factor=0.0,
                 double stiff_ratio=0.0):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not bound > 0.0:
            raise ValueError(f"bound must be positive, got {bound}")
        if not t1 > t0:
            raise ValueError(f"t1 must be > t0, got t0={t0}, t1={t1}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not 0.0 <= taylor_factor < 1.0:
            raise ValueError(f"taylor_factor must be in [0, 1), got {taylor_factor}")
        self.t0, self.t1, self.rtol, self.atol = t0, t1, rtol, atol
        self.h_init, self.dt, self.gtol, self.bound = h_init, dt, gtol, bound
        self.max_steps, self.escape, self.max_step = max_steps, escape, max_step
        self.lanes, self.threads, self.profile = lanes, threads, profile
        self.jac_address, self.resume, self.stiff_switch = jac_address, resume, stiff_switch
        self.stiff_hlam, self.stiff_steps, self.interruptible = stiff_hlam, stiff_steps, interruptible
        self.taylor_address, self.taylor_order = taylor_address, taylor_order
        self.taylor_work, self.taylor_factor = taylor_work, taylor_factor
        self.stiff_ratio = stiff_ratio

    _FIELDS = ("t0", "t1", "rtol", "atol", "h_init", "dt", "gtol", "bound", "max_steps",
               "escape", "max_step", "lanes", "threads", "profile", "jac_address", "resume",
               "stiff_switch", "stiff_hlam", "stiff_steps", "interruptible", "taylor_address",
               "taylor_order", "taylor_work", "taylor_factor", "stiff_ratio")

    def replace(self, **changes):
        """A copy with some fields changed (checked again)."""
        kw = {name: getattr(self, name) for name in KernelOptions._FIELDS}
        for name in changes:
            if name not in kw:
                raise TypeError(f"KernelOptions has no field {name!r}")
        kw.update(changes)
        return KernelOptions(**kw)

    def __repr__(self):
        return "KernelOptions(" + ", ".join(f"{k}={getattr(self, k)!r}"
                                            for k in KernelOptions._FIELDS) + ")"


def integrate(uintptr_t f_address, uintptr_t loss_address, const double[::1] params,
              const double[:, ::1] y0, tab, KernelOptions opts not None,
              const double[::1] tsave, dict out not None, const int64_t[::1] rows=None,
              const double[::1] t_start=None, const double[::1] h_start=None,
              double[::1] h_last=None):
    """Integrate the trajectories y0 (N, n) from opts.t0 to opts.t1; fills `out` in place.

    f_address / loss_address: addresses of cfuncs with the signature of ext/rhs_abi.pxd
    (the flow, n outputs per lane, and a scalar per lane). tab: a narrowflow.tableaus
    Tableau, RosenbrockTableau or MultistepMethod (None for the Taylor method). opts: the
    scalar options (KernelOptions). tsave (K,): sorted save times (may be empty).
    out: the output arrays by name, each of exactly its shape (ValueError naming the array
    otherwise): y_final (N, n) float64; t_final, nfev, n_accepted, n_rejected (N,)
    float64/int64; status (N,) int8; njev (N,) int64 or absent; with save points
    loss_saved (N, K) and y_saved (N, K, n) or absent (losses only); with an escape
    threshold escape_time (N,).
    A row of y0 beyond the bound (or non-finite) stops at t0 as DIVERGED with nfev 0.
    rows (M,): integrate only these rows (default: all); t_start (N,): start times per row
    (default t0); h_start (N,): first steps per row (<= 0: heuristic); h_last (N,): receives
    the step each trajectory would take next.
    After SIGINT (opts.interruptible) running and never-started trajectories get status 5
    (INTERRUPTED), the finished ones keep their results, and KeyboardInterrupt is raised.
    Returns (rhs_calls, lane_evaluations_used, ns inside the right-hand side (profile only),
    ns inside the workers), summed over workers.
    """
    cdef double t0 = opts.t0, t1 = opts.t1, rtol = opts.rtol, atol = opts.atol
    cdef double h_init = opts.h_init, dt = opts.dt, gtol = opts.gtol, bound = opts.bound
    cdef double escape = opts.escape, max_step = opts.max_step, stiff_hlam = opts.stiff_hlam
    cdef int64_t max_steps = opts.max_steps, lanes = opts.lanes
    cdef int64_t taylor_order = opts.taylor_order, taylor_work = opts.taylor_work
    cdef int threads = opts.threads, stiff_steps = opts.stiff_steps
    cdef bint profile = opts.profile, resume = opts.resume, stiff_switch = opts.stiff_switch
    cdef bint interruptible = opts.interruptible
    cdef uintptr_t jac_address = opts.jac_address, taylor_address = opts.taylor_address
    for name in ("y_final", "t_final", "status", "nfev", "n_accepted", "n_rejected"):
        if out.get(name) is None:
            raise ValueError(f"out[{name!r}]: an array is required, got None")
    cdef double[:, ::1] y_final = out["y_final"]
    cdef double[::1] t_final = out["t_final"]
    cdef int8_t[::1] status = out["status"]
    cdef int64_t[::1] nfev = out["nfev"]
    cdef int64_t[::1] n_accepted = out["n_accepted"]
    cdef int64_t[::1] n_rejected = out["n_rejected"]
    cdef int64_t[::1] njev = out.get("njev")
    cdef double[:, :, ::1] y_saved = out.get("y_saved")
    cdef double[:, ::1] loss_saved = out.get("loss_saved")
    cdef double[::1] escape_time = out.get("escape_time")
    cdef Tab tb
    cdef Ros rs
    cdef Bdf bd
    cdef Job job
    cdef int64_t N = y0.shape[0], n = y0.shape[1], w, nw, nq
    cdef int64_t[:, ::1] st
    cdef int[::1] errs
    cdef int64_t K = tsave.shape[0]
    cdef bint tay = taylor_address != 0
    cdef bint bdf = (not tay) and hasattr(tab, "max_order")
    cdef bint ros = (not tay) and (not bdf) and hasattr(tab, "gamma")
    if tay:
        fill_taylor(&tb, taylor_order)
        if stiff_switch and jac_address == 0:
            raise ValueError("jac_address: the Taylor method's stiffness test (stiff_switch) "
                             "needs the Jacobian's cfunc")
    elif ros or bdf:
        if ros:
            fill_ros(&tb, &rs, tab)
        else:
            fill_bdf(&tb, &bd, tab, rtol)
        if jac_address == 0:
            raise ValueError(f"jac_address: method {tab.name!r} needs the Jacobian's cfunc")
    else:
        fill_tab(&tb, tab)
    # the workers write without the GIL: every output must have exactly its shape
    _check_shape("y_final", y_final, (N, n))
    for name, arr in (("t_final", t_final), ("status", status), ("nfev", nfev),
                      ("n_accepted", n_accepted), ("n_rejected", n_rejected)):
        _check_shape(name, arr, (N,))
    if K > 0:
        _check_shape("loss_saved", loss_saved, (N, K))
        if y_saved is not None:
            _check_shape("y_saved", y_saved, (N, K, n))
    if escape == escape:
        _check_shape("escape_time", escape_time, (N,))
    for name, arr in (("njev", njev), ("h_last", h_last), ("t_start", t_start),
                      ("h_start", h_start)):
        if arr is not None:
            _check_shape(name, arr, (N,))
    nq = N
    if rows is not None:
        nq = rows.shape[0]
        if nq and (np.min(rows) < 0 or np.max(rows) >= N):
            raise ValueError(f"rows must lie in [0, {N}), got [{np.min(rows)}, {np.max(rows)}]")
    if nq == 0:
        return 0, 0, 0, 0
    memset(&job, 0, sizeof(Job))
    job.f = <rhs_fn> f_address
    job.loss = <lane_fn> loss_address
    job.params = &params[0]
    job.n = n
    job.L = lanes
    job.N = nq
    job.y0 = &y0[0, 0]
    job.t0 = t0
    job.t1 = t1
    job.rtol = rtol
    job.atol = atol
    job.h_init = h_init
    job.dt = dt
    job.gtol = gtol
    # fabs(v) <= bound is false for NaN; with a finite bound also for inf (inf means no bound)
    job.bound = bound if bound < DBL_MAX else DBL_MAX
    job.hmax = t1 - t0
    if max_step > 0.0 and max_step < job.hmax:
        job.hmax = max_step
    job.max_steps = max_steps
    job.K = K
    job.tsave = &tsave[0] if job.K > 0 else NULL
    job.escape_on = 0 if escape != escape else 1
    job.escape = escape
    job.y_final = &y_final[0, 0]
    job.t_final = &t_final[0]
    job.status = &status[0]
    job.nfev = &nfev[0]
    job.nacc = &n_accepted[0]
    job.nrej = &n_rejected[0]
    if job.K > 0:
        job.y_saved = &y_saved[0, 0, 0] if y_saved is not None else NULL
        job.loss_saved = &loss_saved[0, 0]
    if job.escape_on:
        job.escape_time = &escape_time[0]
    job.profile = 1 if profile else 0
    job.next = 0
    job.jac = <rhs_fn> jac_address if (ros or bdf or (tay and stiff_switch)) else NULL
    job.njev = &njev[0] if njev is not None else NULL
    job.h_last = &h_last[0] if h_last is not None else NULL
    job.rows = &rows[0] if rows is not None else NULL
    job.t_start = &t_start[0] if t_start is not None else NULL
    job.h_start = &h_start[0] if h_start is not None else NULL
    job.resume = 1 if resume else 0
    job.stiff_switch = 1 if stiff_switch else 0
    job.stiff_hlam = stiff_hlam
    job.stiff_steps = stiff_steps
    job.stiff_ratio = opts.stiff_ratio
    job.taylor = <taylor_fn> taylor_address if tay else NULL
    job.torder = taylor_order
    job.twork = taylor_work
    job.tfac = opts.taylor_factor
    # one worker per thread, each pulling trajectories from the shared queue
    nw = threads
    if nw > (nq + lanes - 1) // lanes:
        nw = (nq + lanes - 1) // lanes
    st = np.zeros((nw, 4), dtype=np.int64)
    errs = np.zeros(nw, dtype=np.intc)
    nf_reset_finished()
    if interruptible:
        nf_clear_interrupt()
        if nf_install_sigint() != 0:
            interruptible = False
    try:
        with nogil:
            for w in prange(nw, schedule='dynamic', chunksize=1, num_threads=threads):
                if ros:
                    errs[w] = run_worker_ros(&job, &tb, &rs, &st[w, 0])
                elif bdf:
                    errs[w] = run_worker_bdf(&job, &tb, &bd, &st[w, 0])
                elif tay:
                    errs[w] = run_worker_taylor(&job, &tb, &st[w, 0])
                else:
                    errs[w] = run_worker(&job, &tb, &st[w, 0])
    finally:
        if interruptible:
            nf_restore_sigint()
    if interruptible and nf_is_interrupted():
        nf_clear_interrupt()
        # the queue entries no worker took: never started
        todo = np.arange(min(job.next, nq), nq)
        status_arr = np.asarray(status)
        status_arr[np.asarray(rows)[todo] if rows is not None else todo] = ST_INTERRUPTED
        raise KeyboardInterrupt("narrowflow: ensemble integration interrupted")
    for w in range(nw):
        if errs[w] != 0:
            raise MemoryError("ensemble kernel: could not allocate the lane buffers")
    return tuple(int(v) for v in np.asarray(st).sum(axis=0))


def status_codes():
    """The kernel's status numbers by name (tests check them against narrowflow.ensemble.Status);
    STIFF is internal (method="auto" continues those trajectories)."""
    return dict(RUNNING=ST_RUNNING, SUCCESS=ST_SUCCESS, CONVERGED=ST_CONVERGED,
                DIVERGED=ST_DIVERGED, MAX_STEPS=ST_MAX_STEPS, STEP_TOO_SMALL=ST_STEP_TOO_SMALL,
                INTERRUPTED=ST_INTERRUPTED, STIFF=ST_STIFF)


def finished_count():
    """Trajectories written out by the running (or last) integrate() call, all threads."""
    return int(nf_finished_count())


def eval_lanes(uintptr_t address, const double[::1] params, const double[:, ::1] y,
               int64_t lanes=16, int threads=1):
    """Scalar function per trajectory (e.g. the loss) of the states y (N, n), in padded groups.

    Every state is evaluated in a group of exactly `lanes` lanes (the last group padded with
    zeros), so each value is independent of N and of the group it falls in.
    """
    cdef int64_t N = y.shape[0], n = y.shape[1], g, ng, i, l, k
    cdef lane_fn f = <lane_fn> address
    cdef double* buf
    cdef int64_t failed = 0
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = np.full(N, np.nan)
    cdef double[::1] o = out
    if N == 0:
        return out
    ng = (N + lanes - 1) // lanes
    with nogil:
        for g in prange(ng, schedule='static', num_threads=threads):
            buf = <double*> malloc((n + 1) * lanes * sizeof(double))
            if buf == NULL:
                failed += 1            # a reduction: raised below, after the parallel region
                continue
            for l in range(lanes):
                k = g * lanes + l
                for i in range(n):
                    buf[i * lanes + l] = y[k, i] if k < N else 0.0
            f(lanes, 0.0, buf, buf + n * lanes, &params[0])
            for l in range(lanes):
                k = g * lanes + l
                if k < N:
                    o[k] = buf[n * lanes + l]
            free(buf)
    if failed:
        raise MemoryError(f"eval_lanes: could not allocate the lane buffers of {failed} groups")
    return out
