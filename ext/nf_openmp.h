/* OpenMP shims: the same calls compile with and without -fopenmp. */
#ifndef NF_OPENMP_H
#define NF_OPENMP_H
#ifdef _OPENMP
#include <omp.h>
#define NF_HAVE_OPENMP 1
static int nf_max_threads(void) { return omp_get_max_threads(); }
static void nf_set_threads(int n) { omp_set_num_threads(n); }
static int nf_thread_id(void) { return omp_get_thread_num(); }
#else
#define NF_HAVE_OPENMP 0
static int nf_max_threads(void) { return 1; }
static void nf_set_threads(int n) { (void)n; }
static int nf_thread_id(void) { return 0; }
#endif
#endif
