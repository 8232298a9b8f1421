/*
 * The rendezvous wire parsers (lib/comm/rdv_wire.c) on messages with known
 * verdicts: valid ones, each refusal reason, truncations, and the early
 * rejection of a stranger on its first wrong byte. tests/fuzz/fuzz_rendezvous.c
 * feeds the same parsers arbitrary bytes.
 */
#include "test_main.h"
#include "comm/rdv_wire.h"
#include "util/byteorder.h"

#include <string.h>

static const unsigned char token[ZERO_RDV_TOKEN_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const zero_rdv_job_t job3 = {3, token};

static zero_rdv_parse_t hello_verdict(const unsigned char *h, size_t len)
{
    zero_rdv_hello_t out;
    size_t need = 0;
    return zero_rdv_hello_parse(h, len, &job3, &out, &need);
}

static void test_hello(void)
{
    unsigned char h[ZERO_RDV_HELLO_BYTES], bad[ZERO_RDV_HELLO_BYTES];
    zero_rdv_hello_t out;
    size_t need = 0;

    zero_rdv_hello_write(h, &job3, 2, 300);
    CU_ASSERT_EQUAL(zero_rdv_hello_parse(h, sizeof(h), &job3, &out, &need), ZERO_RDV_PARSE_OK);
    CU_ASSERT_EQUAL(need, ZERO_RDV_HELLO_BYTES);
    CU_ASSERT(out.rank == 2 && out.world == 3 && out.record_len == 300 && out.version == ZERO_RDV_VERSION);
    /* every proper prefix: wait for more */
    for (size_t k = 0; k < sizeof(h); k++) {
        CU_ASSERT_EQUAL(zero_rdv_hello_parse(h, k, &job3, &out, &need), ZERO_RDV_PARSE_MORE);
        CU_ASSERT_EQUAL(need, ZERO_RDV_HELLO_BYTES);
    }
    /* a stranger is told apart on its first byte */
    CU_ASSERT_EQUAL(hello_verdict((const unsigned char *)"G", 1), ZERO_RDV_PARSE_NOT_RDV);
    CU_ASSERT_EQUAL(hello_verdict((const unsigned char *)"ZERO-RX", 7), ZERO_RDV_PARSE_NOT_RDV);
    /* each refusal, checked in order: token before anything else */
    memcpy(bad, h, sizeof(h));
    bad[24 + 15] ^= 0x80;
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_TOKEN);
    zero_put_be32(bad + 8, 9);      /* wrong version too: the token still wins */
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_TOKEN);
    memcpy(bad, h, sizeof(h));
    zero_put_be32(bad + 8, 2);
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_VERSION);
    zero_rdv_hello_write(bad, &job3, 0, 300);           /* rank 0 does not join itself */
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_WORLD);
    zero_rdv_hello_write(bad, &job3, 3, 300);           /* outside the world */
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_WORLD);
    memcpy(bad, h, sizeof(h));
    zero_put_be32(bad + 16, 4);                         /* another world size */
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_WORLD);
    zero_rdv_hello_write(bad, &job3, 1, 0);
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_LENGTH);
    zero_rdv_hello_write(bad, &job3, 1, ZERO_RDV_MAX_BLOB + 1);
    CU_ASSERT_EQUAL(zero_rdv_hello_parse(bad, sizeof(bad), &job3, &out, &need), ZERO_RDV_PARSE_LENGTH);
    CU_ASSERT_EQUAL(out.record_len, ZERO_RDV_MAX_BLOB + 1);   /* the fields are there for the message */
    zero_rdv_hello_write(bad, &job3, 1, ZERO_RDV_MAX_BLOB);
    CU_ASSERT_EQUAL(hello_verdict(bad, sizeof(bad)), ZERO_RDV_PARSE_OK);
    /* what rank 0 answers each */
    CU_ASSERT_EQUAL(zero_rdv_refusal_of(ZERO_RDV_PARSE_TOKEN), ZERO_RDV_REFUSED_TOKEN);
    CU_ASSERT_EQUAL(zero_rdv_refusal_of(ZERO_RDV_PARSE_WORLD), ZERO_RDV_REFUSED_WORLD);
    CU_ASSERT_EQUAL(zero_rdv_refusal_of(ZERO_RDV_PARSE_NOT_RDV), ZERO_RDV_ACCEPTED);
}

/* An answer for job3: records of 5, 1 and 7 bytes, @p extra_len extra bytes. */
static size_t make_reply(unsigned char *buf, uint32_t extra_len)
{
    static const uint32_t lens[3] = {5, 1, 7};
    unsigned char *p = buf;
    zero_rdv_reply_head_write(p, &job3, extra_len);
    p += ZERO_RDV_REPLY_HEAD_BYTES;
    for (int r = 0; r < 3; r++, p += 4)
        zero_put_be32(p, lens[r]);
    for (int r = 0; r < 3; r++)
        for (uint32_t i = 0; i < lens[r]; i++)
            *p++ = (unsigned char)(16 * r + i);
    for (uint32_t i = 0; i < extra_len; i++)
        *p++ = 0xee;
    return (size_t)(p - buf);
}

static void test_reply(void)
{
    unsigned char buf[256];
    zero_rdv_reply_t r;
    size_t need = 0, len = make_reply(buf, 9), have;

    CU_ASSERT_EQUAL(len, 64 + 12 + 13 + 9);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, len + 5, &job3, &r, &need), ZERO_RDV_PARSE_OK);
    CU_ASSERT_EQUAL(need, len);             /* bytes after the answer are not part of it */
    CU_ASSERT_EQUAL(r.world, 3);
    CU_ASSERT_EQUAL(zero_rdv_reply_record_len(&r, 2), 7);
    CU_ASSERT_PTR_EQUAL(r.records, buf + 64 + 12);
    CU_ASSERT_EQUAL(r.records[5], 16);      /* rank 1's record starts after rank 0's 5 bytes */
    CU_ASSERT_PTR_EQUAL(r.extra, buf + len - 9);
    /* read as a rank reads it: header, then lengths, then everything */
    have = 0;
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, have, &job3, &r, &need), ZERO_RDV_PARSE_MORE);
    CU_ASSERT_EQUAL(need, 64);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, need, &job3, &r, &need), ZERO_RDV_PARSE_MORE);
    CU_ASSERT_EQUAL(need, 64 + 12);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, need, &job3, &r, &need), ZERO_RDV_PARSE_MORE);
    CU_ASSERT_EQUAL(need, len);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, need, &job3, &r, &need), ZERO_RDV_PARSE_OK);

    /* a refusal is complete in its header and carries no token */
    zero_rdv_refusal_write(buf, ZERO_RDV_REFUSED_TOKEN);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, 64, &job3, &r, &need), ZERO_RDV_PARSE_REFUSED);
    CU_ASSERT_EQUAL(r.code, ZERO_RDV_REFUSED_TOKEN);
    CU_ASSERT_PTR_NOT_NULL(strstr(zero_rdv_refusal_string(r.code), "token mismatch"));
    for (int i = 24; i < 64; i++)
        CU_ASSERT_EQUAL(buf[i], 0);
    CU_ASSERT_PTR_NULL(strstr(zero_rdv_refusal_string(ZERO_RDV_REFUSED_WORLD), "token"));

    /* another job's token, another world size, bad lengths */
    make_reply(buf, 0);
    buf[30] ^= 1;
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, 64, &job3, &r, &need), ZERO_RDV_PARSE_TOKEN);
    make_reply(buf, 0);
    zero_put_be32(buf + 12, 4);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, 64, &job3, &r, &need), ZERO_RDV_PARSE_WORLD);
    make_reply(buf, 0);
    zero_put_be32(buf + 16, ZERO_RDV_MAX_EXTRA + 1);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, 64, &job3, &r, &need), ZERO_RDV_PARSE_LENGTH);
    CU_ASSERT_EQUAL(r.bad_rank, 3);         /* = world: the extra bytes */
    len = make_reply(buf, 0);
    zero_put_be32(buf + 64 + 4, 0x7fffffffu);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse(buf, len, &job3, &r, &need), ZERO_RDV_PARSE_LENGTH);
    CU_ASSERT(r.bad_rank == 1 && r.bad_len == 0x7fffffffu);
    CU_ASSERT_EQUAL(zero_rdv_reply_parse((const unsigned char *)"ZERO-RDV", 8, &job3, &r, &need),
                    ZERO_RDV_PARSE_NOT_RDV);
}

static void test_frame(void)
{
    unsigned char f[ZERO_RDV_FRAME_BYTES];
    zero_rdv_frame_t out;
    size_t need = 0;
    zero_rdv_frame_write(f, ZERO_RDV_FRAME_ABORT, 2, 0xfffffffau, 1);
    CU_ASSERT_EQUAL(zero_rdv_frame_parse(f, sizeof(f), &out, &need), ZERO_RDV_PARSE_OK);
    CU_ASSERT(out.type == ZERO_RDV_FRAME_ABORT && out.arg == 2 && out.arg2 == 0xfffffffau && out.arg3 == 1);
    CU_ASSERT_EQUAL(zero_rdv_frame_parse(f, 19, &out, &need), ZERO_RDV_PARSE_MORE);
    zero_put_be32(f + 4, 9);
    CU_ASSERT_EQUAL(zero_rdv_frame_parse(f, sizeof(f), &out, &need), ZERO_RDV_PARSE_TYPE);
    f[1] ^= 1;
    CU_ASSERT_EQUAL(zero_rdv_frame_parse(f, 2, &out, &need), ZERO_RDV_PARSE_NOT_RDV);
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"hello: valid, prefixes, each refusal", test_hello},
        {"answer: valid, stepwise, refusal, foreign, lengths", test_reply},
        {"control frames", test_frame},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"rendezvous wire", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
