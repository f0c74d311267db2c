
"""Call a compiled right-hand side through its C address, from nogil code.

Used by the tests (the C signature seen from Cython must match the Numba one)
and by the right-hand-side micro-benchmark. The integrators live elsewhere.
"""
from libc.stdint cimport int64_t, uintptr_t
from rhs_abi cimport rhs_fn
import numpy as np
cimport numpy as cnp
from time import perf_counter

cnp.import_array()


def call(uintptr_t address, int64_t lanes, double t, const double[::1] y,
         const double[::1] params, int64_t n_out):
    """Evaluate the function at `address` once; returns (out (n_out*lanes,), status)."""
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    if y.shape[0] % lanes:
        raise ValueError("y length must be a multiple of lanes")
    out = np.full(n_out * lanes, np.nan)
    cdef double[::1] o = out
    cdef rhs_fn f = <rhs_fn> address
    cdef int status
    with nogil:
        status = f(lanes, t, &y[0], &o[0], &params[0])
    return out, status


def time_per_call(uintptr_t address, int64_t lanes, const double[::1] y,
                  const double[::1] params, int64_t n_out, int64_t repeats):
    """Seconds per call of the function at `address`, averaged over `repeats` calls."""
    out = np.zeros(n_out * lanes)
    cdef double[::1] o = out
    cdef rhs_fn f = <rhs_fn> address
    cdef int64_t r
    cdef int status = 0
    t0 = perf_counter()
    with nogil:
        for r in range(repeats):
            status |= f(lanes, 0.0, &y[0], &o[0], &params[0])
    return (perf_counter() - t0) / repeats
