#include "test_main.h"
#include "util/alloc.h"
#include <zero/log.h>

#include <CUnit/Basic.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

void zero_test_check_no_leak(const zero_mem_stats_t *mark, const char *file, unsigned line)
{
    zero_mem_stats_t now;
    int leaked = 0;
    zero_mem_get_stats(&now);
    for (int k = 0; k < ZERO_MEM_KIND_COUNT; k++) {
        if (now.live_bytes[k] != mark->live_bytes[k] || now.live_count[k] != mark->live_count[k]) {
            fprintf(stderr, "%s:%u: %s memory: %llu bytes in %llu allocations before, %llu in %llu after\n",
                    file, line, zero_mem_kind_string((zero_mem_kind_t)k),
                    (unsigned long long)mark->live_bytes[k], (unsigned long long)mark->live_count[k],
                    (unsigned long long)now.live_bytes[k], (unsigned long long)now.live_count[k]);
            leaked = 1;
        }
    }
    if (leaked)
        zero_mem_report_live();
    CU_assertImplementation(!leaked, line, "no libzero memory leaked", file, "", CU_FALSE);
}

const char *zero_test_configs_dir(void)
{
    return ZERO_TEST_CONFIGS_DIR;
}

int zero_test_dir_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static char first_error[1024];

static void catch_first_error(zero_log_level_t level, int rank, const char *module, const char *message,
                              void *user_data)
{
    (void)rank;
    (void)module;
    (void)user_data;
    if (level == ZERO_LOG_LEVEL_ERROR && first_error[0] == '\0')
        snprintf(first_error, sizeof(first_error), "%s", message);
}

void zero_test_first_error_begin(void)
{
    first_error[0] = '\0';
    zero_log_set_callback(catch_first_error, NULL);
}

const char *zero_test_first_error_end(void)
{
    zero_log_set_callback(NULL, NULL);
    return first_error;
}

void zero_test_die_with_parent(pid_t parent)
{
    /* the signal goes when the forking thread ends; tests fork from CUnit's
     * (the main) thread, which lives until the process ends */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
}

uint64_t zero_test_xorshift(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* ZERO_TEST_ONLY=TEXT: only the tests whose name holds TEXT run (the rest
 * are made inactive, which does not count as a failure). For running one
 * test of a binary many times, e.g. to count a rare failure. Returns how
 * many tests' names hold it. */
static unsigned only_tests_named(const char *text)
{
    unsigned kept = 0;
    for (CU_pSuite suite = CU_get_registry()->pSuite; suite != NULL; suite = suite->pNext)
        for (CU_pTest test = suite->pTest; test != NULL; test = test->pNext) {
            if (strstr(test->pName, text) == NULL)
                CU_set_test_active(test, CU_FALSE);
            else
                kept++;
        }
    CU_set_fail_on_inactive(CU_FALSE);
    return kept;
}

int zero_test_main(int argc, char **argv, CU_SuiteInfo *suites)
{
    unsigned failures;
    const char *only = getenv("ZERO_TEST_ONLY");
    (void)argc;
    (void)argv;
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 1;
    }
    if (CU_register_suites(suites) != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        return 1;
    }
    /* a name that matches nothing (a typo) fails, rather than pass with no test run */
    if (only != NULL && only[0] != '\0' && only_tests_named(only) == 0) {
        fprintf(stderr, "ZERO_TEST_ONLY=%s: no test of this binary has it in its name\n", only);
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed() +
               CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
