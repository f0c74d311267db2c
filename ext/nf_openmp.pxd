cdef extern from "nf_openmp.h" nogil:
    const int NF_HAVE_OPENMP
    int nf_max_threads()
    void nf_set_threads(int n)
    int nf_thread_id()
