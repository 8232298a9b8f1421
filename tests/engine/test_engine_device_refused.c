/*
 * An engine asked for device memory where there is none: a build without the
 * cuda feature, or a CUDA build on a machine without a visible GPU. The
 * creation fails with ZERO_ERR_UNSUPPORTED and one ERROR that says which, and
 * leaves nothing allocated. Where a GPU is visible there is nothing to refuse:
 * exit 77 (engine-device covers that machine).
 */
#include "test_main.h"
#include "zero_build_config.h"

#include <stdio.h>
#include <string.h>
#include <zero/zero.h>

#if HAVE_CUDA
#include "util/cuda_module.h"
#endif

static const char config[] = "{\"train_batch_size\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                             " \"zero_optimization\": {\"stage\": 2}, \"bf16\": {\"enabled\": true}}";

static void test_device_memory_refused(void)
{
    ZERO_TEST_MEM_MARK();
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_MEM_KIND,
                               .config_json = config, .mem_kind = ZERO_MEM_DEVICE};
    zero_engine_h e = NULL;
    const char *first_error;
    zero_test_first_error_begin();
    CU_ASSERT_EQUAL(zero_engine_create(&ep, &e), ZERO_ERR_UNSUPPORTED);
    first_error = zero_test_first_error_end();
    CU_ASSERT_PTR_NULL(e);
    printf("\n  refused with: %s\n", first_error);
#if HAVE_CUDA
    /* The build has CUDA: either the module is not found, or it loads and no device is visible. */
    if (zero_cuda_probe() != NULL) {
        CU_ASSERT_PTR_NOT_NULL(strstr(first_error, "no CUDA device is visible"));
    } else {
        CU_ASSERT_PTR_NOT_NULL(strstr(first_error, "could not be loaded"));
    }
#else
    CU_ASSERT_PTR_NOT_NULL(strstr(first_error, "libzero was built without it"));
    CU_ASSERT_PTR_NOT_NULL(strstr(first_error, "mem_kind device"));
#endif
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
#if HAVE_CUDA
    int count = 0;
    if (zero_cuda_probe() != NULL && ZERO_CUDA(cudaGetDeviceCount)(&count) == cudaSuccess && count > 0) {
        printf("a CUDA device is visible: nothing to refuse (engine-device runs there); skipped\n");
        return 77;
    }
#endif
    CU_TestInfo tests[] = {
        {"mem_kind device without CUDA or a GPU: ZERO_ERR_UNSUPPORTED, saying which", test_device_memory_refused},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-device-refused", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
