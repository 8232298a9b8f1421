/*
 * Shared CUnit driver. Every suite binary calls zero_test_main(); it runs the
 * suites, prints CUnit's report, and exits non-zero when anything failed
 * (CU_basic_run_tests() alone reports success even when tests fail).
 * ZERO_TEST_ONLY=TEXT in the environment runs only the tests whose name
 * holds TEXT (to run one test many times); a TEXT no name holds fails.
 *
 * Leak checks: ZERO_TEST_MEM_MARK() before a test body and
 * ZERO_TEST_ASSERT_NO_LEAK() after it assert that libzero's counted memory of
 * every kind returned to where it was.
 */
#ifndef ZERO_TEST_MAIN_H
#define ZERO_TEST_MAIN_H

#include <CUnit/CUnit.h>
#include <zero/memory.h>

#include <stdint.h>
#include <sys/types.h>

int zero_test_main(int argc, char **argv, CU_SuiteInfo *suites);

/* Asserts that live counters equal those in @p mark (prints the live buffers if not). */
void zero_test_check_no_leak(const zero_mem_stats_t *mark, const char *file, unsigned line);

#define ZERO_TEST_MEM_MARK() \
    zero_mem_stats_t zero_test_mark_; \
    zero_mem_get_stats(&zero_test_mark_)
#define ZERO_TEST_ASSERT_NO_LEAK() zero_test_check_no_leak(&zero_test_mark_, __FILE__, __LINE__)

/* Path of the DeepSpeed-style config fixtures in this repository (tests/configs). */
const char *zero_test_configs_dir(void);

/* Entries of @p dir other than . and .. (-1: cannot be opened). */
int zero_test_dir_entries(const char *dir);

/* Called first in a child that a test forked: the child (and what it
 * execs: the death signal survives exec) is killed when the test process
 * that forked it, @p parent, dies, so that a test that crashes leaves no
 * zero-optd or client behind (a stopped one would hold meson's output pipe
 * open and hang the run). Exits at once if @p parent is already gone. */
void zero_test_die_with_parent(pid_t parent);

/* The next value of a xorshift64 sequence kept in *@p state (not 0):
 * reproducible test data. */
uint64_t zero_test_xorshift(uint64_t *state);

/* Catches the first ERROR libzero logs from begin to end (a log callback, so
 * nothing reaches stderr meanwhile); end returns it ("" when none). */
void zero_test_first_error_begin(void);
const char *zero_test_first_error_end(void);

#endif /* ZERO_TEST_MAIN_H */
