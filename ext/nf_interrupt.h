/* Ctrl-C for the ensemble kernel. While the kernel runs without the GIL, Python's own
 * SIGINT handler cannot run (it runs between bytecodes of the main thread, which is one
 * of the kernel's workers). integrate() therefore installs this C handler for the length
 * of the run (from the main thread only): it sets a flag that every worker reads once
 * per step, and the previous handler is put back before integrate() raises
 * KeyboardInterrupt. nf_finished counts the trajectories written out, for tests that
 * wait on the kernel's progress. */
#ifndef NF_INTERRUPT_H
#define NF_INTERRUPT_H
#include <signal.h>
#include <stdint.h>
#include <string.h>

static volatile sig_atomic_t nf_interrupted = 0;
static int64_t nf_finished = 0;
static struct sigaction nf_previous_sigint;

static void nf_on_sigint(int sig) {
    (void) sig;
    nf_interrupted = 1;
}

static int nf_install_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nf_on_sigint;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGINT, &sa, &nf_previous_sigint);
}

static void nf_restore_sigint(void) {
    sigaction(SIGINT, &nf_previous_sigint, NULL);
}

static inline int nf_is_interrupted(void) { return nf_interrupted != 0; }
static inline void nf_clear_interrupt(void) { nf_interrupted = 0; }
static inline void nf_count_finished(void) {
    __atomic_fetch_add(&nf_finished, 1, __ATOMIC_RELAXED);
}
static inline int64_t nf_finished_count(void) {
    return __atomic_load_n(&nf_finished, __ATOMIC_RELAXED);
}
static inline void nf_reset_finished(void) {
    __atomic_store_n(&nf_finished, 0, __ATOMIC_RELAXED);
}
#endif
