/*
 * zero-ckpt-merge (path in argv[1]): merging the same model's checkpoints
 * saved at world sizes 1-4 (stage 3) and at stage 0 gives byte-identical
 * safetensors files; the safetensors file parses (header JSON, dtypes, shapes,
 * offsets) and holds exactly the master weights (bit-exact for fp32, equal to
 * the library's rounding for bf16/fp16); the .h5 output reads back the same
 * through HDF5; --list prints the tags and tensor table; bad input exits 2;
 * and peak RSS while merging a 56 MiB model with an 8 MiB largest tensor
 * stays within 3x the largest tensor above the tool's baseline (its --list RSS).
 */
#include "test_main.h"
#include "ckpt/ckpt_internal.h"
#include "ckpt_fixture.h"
#include "util/half.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static const char *tool;
static char dir[64];

static int run(const char *args, char *out, size_t out_size)
{
    char cmd[2048];
    FILE *p;
    size_t n = 0;
    int st;
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", tool, args);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (out != NULL) {
        while (n + 1 < out_size) {
            size_t r = fread(out + n, 1, out_size - n - 1, p);
            if (r == 0)
                break;
            n += r;
        }
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0) {
        }
    }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int suite_init(void)
{
    zero_layout_t *L;
    char tag[32];
    strcpy(dir, "/tmp/zero-ckpt-merge-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    for (int w = 1; w <= 4; w++) {
        if (zero_layout_build(fix_params, FIX_NPARAM, w, 64, 500, &L) != ZERO_OK)
            return -1;
        snprintf(tag, sizeof(tag), "w%d", w);
        if (fix_sim_save(dir, tag, L, w, 3, 50, 2) != ZERO_OK)
            return -1;
        zero_layout_destroy(L);
    }
    if (zero_layout_build(fix_params, FIX_NPARAM, 1, 8, 3000, &L) != ZERO_OK)
        return -1;
    if (fix_sim_save(dir, "stage0", L, 2, 0, 50, 2) != ZERO_OK)   /* latest */
        return -1;
    zero_layout_destroy(L);
    return 0;
}

static int suite_clean(void)
{
    ckpt_err_t e = {0};
    ckpt_remove_tree(dir, &e);
    return 0;
}

/* Parses a safetensors file and checks every tensor against the fixture. */
static void check_safetensors(const char *path, const char *dtype)
{
    size_t len = 0, hlen = 0, esize = strcmp(dtype, "F32") == 0 ? 4 : 2;
    char *buf = slurp(path, &len), *hjson;
    cJSON *h;
    int tensors = 0;
    size_t data_end = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_FATAL(len >= 8);
    for (int k = 7; k >= 0; k--)
        hlen = hlen << 8 | (unsigned char)buf[k];
    CU_ASSERT_FATAL(8 + hlen <= len);
    CU_ASSERT_EQUAL((8 + hlen) % 8, 0);
    hjson = strndup(buf + 8, hlen);
    h = cJSON_Parse(hjson);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    for (cJSON *t = h->child; t != NULL; t = t->next) {
        const zero_layout_param_desc_t *d = NULL;
        cJSON *sh = cJSON_GetObjectItem(t, "shape"), *off = cJSON_GetObjectItem(t, "data_offsets");
        size_t numel = 1, b, e;
        if (strcmp(t->string, "__metadata__") == 0)
            continue;
        for (int i = 0; i < FIX_NPARAM; i++)
            if (strcmp(fix_params[i].name, t->string) == 0)
                d = &fix_params[i];
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        tensors++;
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(t, "dtype")->valuestring, dtype);
        CU_ASSERT_EQUAL(cJSON_GetArraySize(sh), d->ndim);
        for (int k = 0; k < d->ndim; k++) {
            CU_ASSERT_EQUAL((int64_t)cJSON_GetArrayItem(sh, k)->valuedouble, d->shape[k]);
            numel *= (size_t)d->shape[k];
        }
        b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        CU_ASSERT_EQUAL(e - b, numel * esize);
        CU_ASSERT_FATAL(8 + hlen + e <= len);
        data_end = e > data_end ? e : data_end;
        for (size_t i = 0; i < numel; i++) {
            const unsigned char *p = (const unsigned char *)buf + 8 + hlen + b + i * esize;
            float want = fix_value(d->name, i, 0);
            if (esize == 4) {
                uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                if (u != zero_f32_bits(want)) {
                    CU_FAIL("fp32 tensor value differs");
                    break;
                }
            } else {
                uint16_t u = (uint16_t)(p[0] | p[1] << 8);
                uint16_t w = strcmp(dtype, "BF16") == 0 ? zero_f32_to_bf16(want) : zero_f32_to_f16(want);
                if (u != w) {
                    CU_FAIL("16-bit tensor value differs");
                    break;
                }
            }
        }
    }
    CU_ASSERT_EQUAL(tensors, FIX_NPARAM);
    CU_ASSERT_EQUAL(8 + hlen + data_end, len);
    cJSON_Delete(h);
    free(hjson);
    free(buf);
}

static void test_identical_across_world_sizes(void)
{
    char args[512], path[256], *first = NULL;
    size_t first_len = 0;
    const char *tags[] = {"w1", "w2", "w3", "w4", "stage0"};
    for (int i = 0; i < 5; i++) {
        size_t len = 0;
        char *data;
        snprintf(path, sizeof(path), "%s/merged-%s.safetensors", dir, tags[i]);
        snprintf(args, sizeof(args), "%s --tag %s -o %s", dir, tags[i], path);
        CU_ASSERT_EQUAL_FATAL(run(args, NULL, 0), 0);
        data = slurp(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(data);
        if (first == NULL) {
            first = data;
            first_len = len;
            check_safetensors(path, "F32");
        } else {
            CU_ASSERT_EQUAL(len, first_len);
            CU_ASSERT(len == first_len && memcmp(first, data, len) == 0);
            free(data);
        }
    }
    free(first);
}

static void test_dtypes(void)
{
    char args[512], path[256];
    snprintf(path, sizeof(path), "%s/m-bf16.safetensors", dir);
    snprintf(args, sizeof(args), "%s --tag w3 -o %s --dtype bf16", dir, path);
    CU_ASSERT_EQUAL_FATAL(run(args, NULL, 0), 0);
    check_safetensors(path, "BF16");
    snprintf(path, sizeof(path), "%s/m-fp16.safetensors", dir);
    snprintf(args, sizeof(args), "%s -o %s --dtype fp16", dir, path);   /* latest */
    CU_ASSERT_EQUAL_FATAL(run(args, NULL, 0), 0);
    check_safetensors(path, "F16");
}

static void test_h5_output(void)
{
    const char *tags[] = {"w1", "w4"};
    for (int t = 0; t < 2; t++) {
        char args[512], path[256];
        hid_t f;
        snprintf(path, sizeof(path), "%s/merged-%s.h5", dir, tags[t]);
        snprintf(args, sizeof(args), "%s --tag %s -o %s", dir, tags[t], path);
        CU_ASSERT_EQUAL_FATAL(run(args, NULL, 0), 0);
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        CU_ASSERT_FATAL(f >= 0);
        for (int i = 0; i < FIX_NPARAM; i++) {
            const zero_layout_param_desc_t *d = &fix_params[i];
            hid_t ds = H5Dopen2(f, d->name, H5P_DEFAULT), sp;
            hsize_t dims[8] = {0};
            size_t numel = 1;
            float *v;
            CU_ASSERT_FATAL(ds >= 0);
            sp = H5Dget_space(ds);
            CU_ASSERT_EQUAL(H5Sget_simple_extent_ndims(sp), d->ndim);
            H5Sget_simple_extent_dims(sp, dims, NULL);
            for (int k = 0; k < d->ndim; k++) {
                CU_ASSERT_EQUAL((int64_t)dims[k], d->shape[k]);
                numel *= (size_t)d->shape[k];
            }
            v = malloc(numel * sizeof(float));
            CU_ASSERT(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
            for (size_t j = 0; j < numel; j++)
                if (v[j] != fix_value(d->name, j, 0)) {
                    CU_FAIL("h5 tensor value differs");
                    break;
                }
            free(v);
            H5Sclose(sp);
            H5Dclose(ds);
        }
        H5Fclose(f);
    }
}

static void test_list(void)
{
    char out[16384], args[256];
    snprintf(args, sizeof(args), "--list %s --tag w3", dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "  w1\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "  stage0  (latest)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "tag: w3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "world_size: 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "stage: 3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "global_steps: 50"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "dtypes: bf16 fp32"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "fc2.weight"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "[11, 300]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "[7, 13, 3]"));
    snprintf(args, sizeof(args), "--list %s", dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "tag: stage0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "world_size: 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "stage: 0"));
}

static void test_bad_input(void)
{
    char out[4096], args[512];
    CU_ASSERT_EQUAL(run("--help", out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage: zero-ckpt-merge"));
    CU_ASSERT_EQUAL(run("", out, sizeof(out)), 2);
    CU_ASSERT_EQUAL(run("/nonexistent/dir -o /tmp/x.safetensors", out, sizeof(out)), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/nonexistent/dir/latest does not exist"));
    snprintf(args, sizeof(args), "%s -o %s/x.bin", dir, dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 2);
    snprintf(args, sizeof(args), "%s -o %s/x.h5 --dtype fp64", dir, dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 2);
    snprintf(args, sizeof(args), "%s --tag nope -o %s/x.h5", dir, dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 2);
    snprintf(args, sizeof(args), "%s --bogus", dir);
    CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 2);
    /* a corrupt shard: exit 2 naming the file, and no output left behind */
    {
        char path[512];
        FILE *f;
        snprintf(path, sizeof(path), "%s/w2/zero_rank_00001.h5", dir);
        {
            hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), ds = H5Dopen2(h, "/shard/group0/master", H5P_DEFAULT);
            hid_t sp = H5Dget_space(ds);
            hsize_t coord[1], size = 0;
            haddr_t addr = 0;
            unsigned mask = 0;
            CU_ASSERT(H5Dget_chunk_info(ds, sp, 0, coord, &mask, &addr, &size) >= 0);
            H5Sclose(sp);
            H5Dclose(ds);
            H5Fclose(h);
            f = fopen(path, "r+b");
            fseek(f, (long)addr + 64, SEEK_SET);
            fputc(0x5a, f);   /* inside the first chunk of the master weights */
            fclose(f);
        }
        snprintf(args, sizeof(args), "%s --tag w2 -o %s/bad.safetensors", dir, dir);
        CU_ASSERT_EQUAL(run(args, out, sizeof(out)), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "zero_rank_00001.h5"));
        snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
        CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
    }
}

static long stat_value(const char *out, const char *key)
{
    const char *p = strstr(out, key);
    return p ? atol(p + strlen(key)) : -1;
}

static void test_peak_rss(void)
{
    enum { N = 12 };
    zero_layout_param_desc_t d[N + 1];
    char names[N + 1][32], sub[128], args[512], out[4096];
    zero_layout_t *L;
    long base, peak, largest;
    snprintf(sub, sizeof(sub), "%s/big", dir);
    for (int i = 0; i <= N; i++) {
        snprintf(names[i], sizeof(names[i]), "layer%d.weight", i);
        d[i].name = names[i];
        d[i].dtype = ZERO_BF16;
        d[i].ndim = 2;
        d[i].shape[0] = 1024;
        d[i].shape[1] = i == 5 ? 2048 : 1024;   /* one 8 MiB tensor, twelve of 4 MiB (fp32) */
    }
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, N + 1, 2, 64, 1 << 21, &L), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(fix_sim_save(sub, "big", L, 2, 3, 1, 0), ZERO_OK);
    zero_layout_destroy(L);
    snprintf(args, sizeof(args), "--list %s --stats", sub);
    CU_ASSERT_EQUAL_FATAL(run(args, out, sizeof(out)), 0);
    base = stat_value(out, "peak_rss_bytes=");
    snprintf(args, sizeof(args), "%s -o %s/big.safetensors --stats", sub, dir);
    CU_ASSERT_EQUAL_FATAL(run(args, out, sizeof(out)), 0);
    peak = stat_value(out, "peak_rss_bytes=");
    largest = stat_value(out, "largest_tensor_bytes=");
    printf("\n  merge peak RSS %ld bytes, --list baseline %ld, largest tensor %ld, model %ld\n", peak, base, largest,
           56L << 20);
    CU_ASSERT_EQUAL(largest, 8L << 20);
    CU_ASSERT(base > 0 && peak > 0);
    CU_ASSERT(peak - base <= 3 * largest);
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"identical_across_world_sizes", test_identical_across_world_sizes},
        {"dtypes", test_dtypes},
        {"h5_output", test_h5_output},
        {"list", test_list},
        {"peak_rss", test_peak_rss},
        {"bad_input", test_bad_input},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"ckpt-merge", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    if (argc < 2) {
        fprintf(stderr, "usage: test_merge PATH/zero-ckpt-merge\n");
        return 2;
    }
    tool = argv[1];
    return zero_test_main(argc, argv, suites);
}
