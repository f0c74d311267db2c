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
