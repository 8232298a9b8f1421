/*
 * libFuzzer target for the rendezvous wire parsers (lib/comm/rdv_wire.c): the
 * bytes a hostile client can send rank 0 (hello) and a hostile "rank 0" can
 * send a rank (answer, control frames).
 *
 * Every input goes to every parser, for a job of world size 2 and 3 with the
 * token "0123456789abcdef", and the parsers' contract is checked, not only
 * their memory safety (a violation traps):
 *   - a verdict other than MORE is final: no prefix of the input gets another
 *     final verdict, and a prefix that is too short gets MORE;
 *   - MORE asks for more bytes than were given; OK's size fits the input;
 *   - an accepted hello has a rank in 1..size-1 and a bounded record length;
 *   - an accepted answer's records and extra bytes lie inside the input and
 *     add up to its size;
 *   - fed the way a rank reads it (exactly the bytes asked for, in steps),
 *     an answer gets the verdict it gets whole;
 *   - a hello written from an accepted hello's fields parses back the same.
 * Seed corpus: tests/fuzz/corpus/rendezvous/ (docs/testing.md).
 */
#include "comm/rdv_wire.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CHECK(cond) \
    do { \
        if (!(cond)) \
            __builtin_trap(); \
    } while (0)

static const unsigned char fuzz_token[ZERO_RDV_TOKEN_BYTES] = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                               '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};

/* The prefix rule: shorter inputs get MORE or the same final verdict. */
static void check_prefixes_hello(const uint8_t *data, size_t size, const zero_rdv_job_t *job, zero_rdv_parse_t full)
{
    size_t limit = size < ZERO_RDV_HELLO_BYTES + 1 ? size : ZERO_RDV_HELLO_BYTES + 1;
    for (size_t k = 0; k < limit; k++) {
        zero_rdv_hello_t h;
        size_t need = 0;
        zero_rdv_parse_t v = zero_rdv_hello_parse(data, k, job, &h, &need);
        if (v == ZERO_RDV_PARSE_MORE)
            CHECK(need > k);
        else
            CHECK(v == full);
    }
}

static void fuzz_hello(const uint8_t *data, size_t size, const zero_rdv_job_t *job)
{
    zero_rdv_hello_t h;
    size_t need = 0;
    zero_rdv_parse_t v = zero_rdv_hello_parse(data, size, job, &h, &need);
    switch (v) {
    case ZERO_RDV_PARSE_MORE:
        CHECK(need == ZERO_RDV_HELLO_BYTES && size < need);
        break;
    case ZERO_RDV_PARSE_OK: {
        unsigned char again[ZERO_RDV_HELLO_BYTES];
        zero_rdv_hello_t h2;
        size_t need2 = 0;
        CHECK(need == ZERO_RDV_HELLO_BYTES && size >= need);
        CHECK(h.rank >= 1 && h.rank < job->size && h.world == job->size);
        CHECK(h.record_len >= 1 && h.record_len <= ZERO_RDV_MAX_BLOB && h.version == ZERO_RDV_VERSION);
        zero_rdv_hello_write(again, job, h.rank, h.record_len);
        CHECK(zero_rdv_hello_parse(again, sizeof(again), job, &h2, &need2) == ZERO_RDV_PARSE_OK);
        CHECK(h2.rank == h.rank && h2.record_len == h.record_len);
        break;
    }
    case ZERO_RDV_PARSE_NOT_RDV:
    case ZERO_RDV_PARSE_TOKEN:
    case ZERO_RDV_PARSE_VERSION:
    case ZERO_RDV_PARSE_WORLD:
    case ZERO_RDV_PARSE_LENGTH:
        CHECK(zero_rdv_refusal_string(zero_rdv_refusal_of(v)) != NULL);
        break;
    default:
        CHECK(0);   /* REFUSED and TYPE belong to other messages */
    }
    check_prefixes_hello(data, size, job, v);
}

static void fuzz_reply(const uint8_t *data, size_t size, const zero_rdv_job_t *job)
{
    zero_rdv_reply_t r;
    size_t need = 0, have, step_need;
    zero_rdv_parse_t v = zero_rdv_reply_parse(data, size, job, &r, &need), step;
    switch (v) {
    case ZERO_RDV_PARSE_MORE:
        CHECK(need > size);
        break;
    case ZERO_RDV_PARSE_OK: {
        const unsigned char *p = r.records;
        CHECK(need <= size && r.world == job->size && r.extra_len <= ZERO_RDV_MAX_EXTRA);
        CHECK(r.lens == data + ZERO_RDV_REPLY_HEAD_BYTES);
        for (uint32_t i = 0; i < r.world; i++) {
            uint32_t len = zero_rdv_reply_record_len(&r, i);
            CHECK(len >= 1 && len <= ZERO_RDV_MAX_BLOB);
            p += len;
        }
        CHECK(p == r.extra && r.extra + r.extra_len == data + need);
        break;
    }
    case ZERO_RDV_PARSE_REFUSED:
        CHECK(need == ZERO_RDV_REPLY_HEAD_BYTES && r.code != ZERO_RDV_ACCEPTED);
        CHECK(zero_rdv_refusal_string(r.code) != NULL);
        break;
    case ZERO_RDV_PARSE_NOT_RDV:
    case ZERO_RDV_PARSE_TOKEN:
    case ZERO_RDV_PARSE_VERSION:
    case ZERO_RDV_PARSE_WORLD:
    case ZERO_RDV_PARSE_LENGTH:
        break;
    default:
        CHECK(0);
    }
    /* As a rank reads it: exactly the bytes asked for, one step at a time. */
    have = 1;
    for (;;) {
        if (have > size)
            have = size;
        step = zero_rdv_reply_parse(data, have, job, &r, &step_need);
        if (step != ZERO_RDV_PARSE_MORE || have == size)
            break;
        CHECK(step_need > have);
        have = step_need;
    }
    CHECK(step == v || (step == ZERO_RDV_PARSE_MORE && v == ZERO_RDV_PARSE_MORE));
}

static void fuzz_frame(const uint8_t *data, size_t size)
{
    zero_rdv_frame_t f;
    size_t need = 0;
    zero_rdv_parse_t v = zero_rdv_frame_parse(data, size, &f, &need);
    if (v == ZERO_RDV_PARSE_MORE) {
        CHECK(need == ZERO_RDV_FRAME_BYTES && size < need);
    } else if (v == ZERO_RDV_PARSE_OK) {
        unsigned char again[ZERO_RDV_FRAME_BYTES];
        zero_rdv_frame_t f2;
        CHECK(need == ZERO_RDV_FRAME_BYTES && f.type >= ZERO_RDV_FRAME_BYE && f.type <= ZERO_RDV_FRAME_FAILED);
        zero_rdv_frame_write(again, (zero_rdv_frame_type_t)f.type, f.arg, f.arg2, f.arg3);
        CHECK(memcmp(again, data, sizeof(again)) == 0);
        CHECK(zero_rdv_frame_parse(again, sizeof(again), &f2, &need) == ZERO_RDV_PARSE_OK);
    } else {
        CHECK(v == ZERO_RDV_PARSE_NOT_RDV || v == ZERO_RDV_PARSE_TYPE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (uint32_t world = 2; world <= 3; world++) {
        zero_rdv_job_t job = {world, fuzz_token};
        fuzz_hello(data, size, &job);
        fuzz_reply(data, size, &job);
    }
    fuzz_frame(data, size);
    return 0;
}
