/* Shared work queue of the ensemble kernel: one atomic counter, the index of the next
 * trajectory to start. GCC/Clang builtins, so it compiles with and without OpenMP. */
#ifndef NF_ENSEMBLE_QUEUE_H
#define NF_ENSEMBLE_QUEUE_H
#include <stdint.h>
static inline int64_t nf_fetch_add(int64_t *p, int64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
#endif
