/*
 * The CUDA module (lib/util/cuda_module.h): libzero.so links neither the CUDA
 * runtime nor NCCL; device support comes from libzero-cuda.so, loaded at run
 * time. The module is looked for once per process, so each case is its own
 * test run, chosen by ZERO_TEST_CUDA_MODULE_CASE (tests/util/meson.build):
 *   absent  - ZERO_CUDA_MODULE names a file that does not exist: asking for
 *             device memory fails with ZERO_ERR_UNSUPPORTED and one error that
 *             names the module and where it was looked for; host memory works.
 *   foreign - ZERO_CUDA_MODULE names a library that is not the module.
 *   present - the build's module (CUDA builds): it loads and its interface
 *             matches, GPU or not.
 *   pinned  - the build's module, with tests/util/cuda_count_shim.c in
 *             LD_PRELOAD counting cudaFreeHost: pinned memory is freed the
 *             way it was obtained (cudaHostAlloc where a device is usable,
 *             else posix_memalign + mlock, which CUDA is never asked to free)
 *             and leaves no CUDA error behind.
 */
#include "test_main.h"

#include "zero_build_config.h"
#include "util/alloc.h"
#include "util/cuda_module.h"
#include "util/log.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int errors;
    char message[2048];
} capture_t;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user_data)
{
    capture_t *c = user_data;
    (void)rank;
    (void)module;
    if (level == ZERO_LOG_LEVEL_ERROR) {
        c->errors++;
        snprintf(c->message, sizeof(c->message), "%s", message);
    }
}

static const char *test_case(void)
{
    const char *c = getenv("ZERO_TEST_CUDA_MODULE_CASE");
    return c != NULL ? c : "absent";
}

/* A device allocation that must fail for want of the module: one error, naming it. */
static void expect_device_refused(const char *reason_part)
{
    ZERO_TEST_MEM_MARK();
    capture_t c = {0};
    void *p = (void *)0x1;
    zero_log_level_t old = zero_log_get_level();
    zero_log_set_callback(capture, &c);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    CU_ASSERT_EQUAL(zero_mem_alloc(ZERO_MEM_DEVICE, 4096, "test-weights", &p), ZERO_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(c.errors, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "allocating 4096 bytes of device memory for test-weights"));
#if HAVE_CUDA
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, ZERO_CUDA_MODULE_NAME));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, getenv("ZERO_CUDA_MODULE")));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, reason_part));
    CU_ASSERT_PTR_NULL(zero_cuda_probe());
#else
    (void)reason_part;
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "built without"));
#endif
    /* the same for a copy into device memory, and nothing allocated */
    {
        char host[16] = {0};
        CU_ASSERT_EQUAL(zero_mem_copy(ZERO_MEM_DEVICE, (void *)0x1000, ZERO_MEM_HOST, host, sizeof(host)),
                        ZERO_ERR_UNSUPPORTED);
        CU_ASSERT_EQUAL(c.errors, 2);
    }
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);
    printf("\n    the error: %s\n", c.message);
    ZERO_TEST_ASSERT_NO_LEAK();
}

#if HAVE_CUDA
/*
 * Before, every pinned block went to cudaFreeHost first, which for a
 * posix_memalign block (no device) failed and left its error for the next
 * cudaGetLastError; now only cudaHostAlloc's blocks do. Checked by counting
 * the calls (the shim), and by the last error where the runtime works (a
 * driver with no device visible: cudaGetLastError is clear after a read; here
 * without a driver it answers the same error every time, hence "as before").
 * The logging and the quiet allocation, and a 0-byte block.
 */
static void expect_pinned_freed_as_obtained(const zero_cuda_api_t *api)
{
    ZERO_TEST_MEM_MARK();
    static const size_t sizes[] = {1 << 20, 0, 4096};
    long (*calls)(void) = NULL, (*forwarded)(void) = NULL;
    int count = 0, device = api->cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    *(void **)&calls = dlsym(RTLD_DEFAULT, "zero_test_cuda_free_host_calls");
    *(void **)&forwarded = dlsym(RTLD_DEFAULT, "zero_test_cuda_free_host_forwarded");
    CU_ASSERT_PTR_NOT_NULL_FATAL(calls);   /* the shim is in LD_PRELOAD (meson.build) */
    CU_ASSERT_PTR_NOT_NULL_FATAL(forwarded);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *p = NULL;
        long before;
        cudaError_t clean;
        zero_status_t st = i == 2 ? zero_mem_alloc_pinned_try(sizes[i], "pinned-freed", &p, NULL, 0)
                                  : zero_mem_alloc(ZERO_MEM_PINNED, sizes[i], "pinned-freed", &p);
        CU_ASSERT_EQUAL_FATAL(st, ZERO_OK);
        memset(p, 1, sizes[i]);
        (void)api->cudaGetLastError();   /* the allocation's own probe (no device: cudaGetDeviceCount's error) */
        clean = api->cudaGetLastError();
        before = calls();
        zero_mem_free(p);
        CU_ASSERT_EQUAL(calls() - before, device ? 1 : 0);
        CU_ASSERT_EQUAL(api->cudaGetLastError(), clean);
    }
    /* Every call the shim counted reached the runtime (CUDA's own freeing is
     * what the device half checks): one more, of nothing, to have one here. */
    (void)api->cudaFreeHost(NULL);
    (void)api->cudaGetLastError();
    CU_ASSERT_EQUAL(forwarded(), calls());
    printf("\n    device %s, cudaFreeHost called %ld time%s in all, %ld reached the runtime\n",
           device ? "present" : "absent", calls(), calls() == 1 ? "" : "s", forwarded());
    ZERO_TEST_ASSERT_NO_LEAK();
}
#endif

static void test_module_case(void)
{
    const char *which = test_case();
    if (strcmp(which, "absent") == 0) {
        void *p = NULL;
        expect_device_refused("No such file");
        /* host memory does not need the module */
        CU_ASSERT_EQUAL(zero_mem_alloc(ZERO_MEM_HOST, 4096, "host", &p), ZERO_OK);
        zero_mem_free(p);
    } else if (strcmp(which, "foreign") == 0) {
        expect_device_refused("no symbol " ZERO_CUDA_MODULE_ENTRY);
    } else if (strcmp(which, "present") == 0) {
#if HAVE_CUDA
        const zero_cuda_api_t *api = zero_cuda_probe();
        CU_ASSERT_PTR_NOT_NULL_FATAL(api);
        CU_ASSERT_EQUAL(api->abi, ZERO_CUDA_MODULE_ABI);
        CU_ASSERT_PTR_NOT_NULL(api->ncclAllReduce);
        CU_ASSERT_PTR_NOT_NULL(api->zero_cuda_flag_nonfinite);
        CU_ASSERT_EQUAL(zero_cuda_require("a test"), ZERO_OK);
#else
        CU_FAIL("the 'present' case runs only in CUDA builds");
#endif
    } else if (strcmp(which, "pinned") == 0) {
#if HAVE_CUDA
        const zero_cuda_api_t *api = zero_cuda_probe();
        CU_ASSERT_PTR_NOT_NULL_FATAL(api);
        expect_pinned_freed_as_obtained(api);
#else
        CU_FAIL("the 'pinned' case runs only in CUDA builds");
#endif
    } else {
        CU_FAIL("unknown ZERO_TEST_CUDA_MODULE_CASE");
    }
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"the CUDA module: absent, foreign or present", test_module_case},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"cuda-module", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return zero_test_main(argc, argv, suites);
}
