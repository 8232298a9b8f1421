/*
 * zero-optd for tests of the remote store and its users (test_common):
 * a server on a thread of the test process, the zero-optd tool as a process
 * of its own (to kill or stop it), and a check of the error a call logged.
 */
#ifndef ZERO_TEST_OPTD_H
#define ZERO_TEST_OPTD_H

#include "offload/optd_server.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct zero_test_optd {
    zero_optd_server_t *server;
    pthread_t thread;
    volatile sig_atomic_t stop;
    char addr[64];   /* "127.0.0.1:PORT" */
} zero_test_optd_t;

/* Starts a server with @p opts (its host and port are set here: 127.0.0.1,
 * a free port) on a thread of this process. Returns 0, or -1. */
int zero_test_optd_start(zero_test_optd_t *t, zero_optd_server_opts_t *opts);
/* Stops and destroys it. */
void zero_test_optd_stop(zero_test_optd_t *t);

/* Starts $ZERO_BUILD_DIR/tools/zero-optd/zero-optd on 127.0.0.1 (a free
 * port) with @p token (16 bytes) as its ZERO_JOB_TOKEN and writes its
 * "127.0.0.1:PORT" to @p addr. Returns its pid, or -1 (none left running). */
pid_t zero_test_optd_spawn(const unsigned char token[16], char *addr, size_t addr_len);

/* Whether this thread logged an error containing @p needle since @p mark
 * (zero_log_error_mark); says on stderr what it found when not. */
int zero_test_error_has(uint64_t mark, const char *needle);

#endif /* ZERO_TEST_OPTD_H */
