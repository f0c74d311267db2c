# The one C signature of narrowflow's compiled right-hand sides (Numba cfuncs).
# narrowflow.rhs.RHS_SIGNATURE is its Numba twin; tests/test_rhs.py calls a
# cfunc through this typedef to check that the two agree.
#
#   status = f(lanes, t, y, dy, params)
#
# lanes  : number of trajectories evaluated in this call (SIMD lanes), >= 1
# t      : time (autonomous flows ignore it)
# y, dy  : structure-of-arrays, y[i*lanes + l] is state component i of lane l
# params : flat float64 block built by narrowflow.rhs (data set and constants)
# status : 0 on success, non-zero on failure; non-finite values are returned
#          as NaN/inf in dy (compiled with error_model='numpy'), never raised.
from libc.stdint cimport int64_t

ctypedef int (*rhs_fn)(int64_t lanes, double t, const double* y, double* dy,
                       const double* params) noexcept nogil

# Same signature for scalar outputs per lane (e.g. the loss): out[l].
ctypedef rhs_fn lane_fn

# Taylor coefficients (narrowflow.taylor): X[(k*n + i)*lanes + l], X[0] = the states on
# entry, X[1..order] written; work: narrowflow.taylor's work_size(order, lanes, n_data)
# doubles. Returns 0, or 1 when a coefficient is not finite.
ctypedef int (*taylor_fn)(int64_t lanes, int64_t order, double* x, double* work,
                          const double* params) noexcept nogil
