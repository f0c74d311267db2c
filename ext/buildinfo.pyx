"""Report how the kernels were compiled (OpenMP or serial)."""
from nf_openmp cimport NF_HAVE_OPENMP, nf_max_threads


def openmp_enabled():
    """True when the extensions were compiled and linked with OpenMP."""
    return bool(NF_HAVE_OPENMP)


def max_threads():
    """Threads an OpenMP parallel region would use now (1 in a serial build)."""
    return nf_max_threads()
