/*
 * libFuzzer target for the zero-optd wire decoders (lib/offload/optd_wire.c):
 * every message a hostile client can send a server and a hostile "server" can
 * send a rank's remote store.
 *
 * Every input goes to the header decoder as a request and as a reply, and its
 * body to every body decoder; the contract is checked, not only memory
 * safety (a violation traps):
 *   - an accepted header's message is exactly header + body_len bytes (a
 *     split reply's header: exactly the header, status 0, of STEP, LAMB2 or
 *     READ), and body_len is within ZERO_OPTD_MAX_BODY;
 *   - an accepted STEP has 1..MAX_ELEMS elements of a known dtype and a body
 *     of exactly head + count * element size; an accepted READ has no data and
 *     an accepted WRITE exactly count fp32 values;
 *   - an accepted HELLO declares 1..3 groups, at most 2 states, no length
 *     beyond its groups;
 *   - an accepted LAMB1 has 1..MAX_ELEMS elements of a known gradient dtype,
 *     a body of exactly head + count * element size, a chunk that is a
 *     multiple of 64 within the bound (so its reply, 16 bytes per chunk,
 *     fits a message), a known level, and zero in the fields of phase 2; an
 *     accepted LAMB2 is exactly the head, with a known weight dtype;
 *   - an accepted split request's first message (since version 6) is a STEP or
 *     LAMB1 header (never STEP_REGION, whose gradient is in the region) with
 *     ZERO_OPTD_SPLIT and exactly its head, announcing a
 *     gradient of 1 .. 4 x MAX_ELEMS bytes, which the header decoder refuses
 *     as it is and takes once joined (the bit cleared);
 *   - what an accepted message decodes to, encoded again, decodes the same;
 *   - the doorway's request and answer (version 8): an accepted one is
 *     exactly its head and its bounded variable part, and encodes to the
 *     same bytes; every prefix of it is SHORT (never accepted, never
 *     refused for a fault the whole message does not have).
 * Seed corpus: tests/fuzz/corpus/optd/ (docs/testing.md).
 */
#include "offload/optd_wire.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CHECK(cond) \
    do { \
        if (!(cond)) \
            __builtin_trap(); \
    } while (0)

static unsigned char again[ZERO_OPTD_MAX_MESSAGE];

static void check_body(const unsigned char *body, size_t len)
{
    zero_optd_hello_t hello, hello2;
    zero_optd_step_t step, step2;
    zero_optd_range_t range, range2;
    zero_optd_attach_t attach, attach2;
    zero_optd_attach_reply_t ar, ar2;
    zero_optd_lamb_t lamb, lamb2;

    if (zero_optd_decode_hello(body, len, &hello) == ZERO_OPTD_PARSE_OK) {
        CHECK(len == ZERO_OPTD_HELLO_BODY);
        CHECK(hello.num_groups >= 1 && hello.num_groups <= ZERO_OPTD_MAX_GROUPS);
        CHECK(hello.num_states <= ZERO_OPTD_MAX_FIELDS - 1);
        for (uint32_t g = hello.num_groups; g < ZERO_OPTD_MAX_GROUPS; g++)
            CHECK(hello.length[g] == 0);
        zero_optd_encode_hello(again, &hello);
        CHECK(zero_optd_decode_hello(again, ZERO_OPTD_HELLO_BODY, &hello2) == ZERO_OPTD_PARSE_OK);
        CHECK(memcmp(hello.token, hello2.token, sizeof(hello.token)) == 0 && hello.rank == hello2.rank &&
              hello.num_groups == hello2.num_groups && hello.num_states == hello2.num_states &&
              memcmp(hello.length, hello2.length, sizeof(hello.length)) == 0);
    }
    if (zero_optd_decode_step(body, len, &step) == ZERO_OPTD_PARSE_OK) {
        size_t es = zero_optd_dtype_size(step.grad_dtype);
        CHECK(es != 0 && zero_optd_dtype_size(step.weight_dtype) != 0);
        CHECK(step.count >= 1 && step.count <= ZERO_OPTD_MAX_ELEMS);
        CHECK(len == ZERO_OPTD_STEP_HEAD + step.count * es);
        CHECK((const unsigned char *)step.grad == body + ZERO_OPTD_STEP_HEAD);
        zero_optd_encode_step_head(again, &step);
        CHECK(memcmp(again, body, ZERO_OPTD_STEP_HEAD) == 0);   /* every head byte is a field */
        memcpy(again + ZERO_OPTD_STEP_HEAD, body + ZERO_OPTD_STEP_HEAD, len - ZERO_OPTD_STEP_HEAD);
        CHECK(zero_optd_decode_step(again, len, &step2) == ZERO_OPTD_PARSE_OK);
        CHECK(step2.count == step.count && step2.begin == step.begin && step2.flags == step.flags);
    }
    for (int phase = 1; phase <= 2; phase++)
        if (zero_optd_decode_lamb(body, len, phase, &lamb) == ZERO_OPTD_PARSE_OK) {
            size_t es = zero_optd_dtype_size(phase == 1 ? lamb.grad_dtype : lamb.weight_dtype);
            CHECK(es != 0 && lamb.isa < ZERO_OPTD_ISA_COUNT && (lamb.flags & ~ZERO_OPTD_LAMB_FLAGS) == 0);
            CHECK(lamb.count >= 1 && lamb.count <= ZERO_OPTD_MAX_ELEMS);
            CHECK(lamb.chunk >= 64 && lamb.chunk % 64 == 0 && lamb.chunk <= ZERO_OPTD_MAX_ELEMS);
            CHECK(ZERO_OPTD_HEADER_BYTES + 16 * zero_optd_lamb_chunks(lamb.count, lamb.chunk) <= ZERO_OPTD_MAX_MESSAGE);
            if (phase == 1) {
                CHECK(len == ZERO_OPTD_LAMB_HEAD + lamb.count * es);
                CHECK((const unsigned char *)lamb.grad == body + ZERO_OPTD_LAMB_HEAD);
                CHECK(lamb.weight_dtype == 0 && lamb.w_sq == 0.0 && lamb.u_sq == 0.0);
            } else {
                CHECK(len == ZERO_OPTD_LAMB_HEAD && lamb.grad == NULL && lamb.grad_dtype == 0);
            }
            zero_optd_encode_lamb_head(again, &lamb);
            CHECK(memcmp(again, body, ZERO_OPTD_LAMB_HEAD) == 0);   /* every head byte is a field */
            memcpy(again + ZERO_OPTD_LAMB_HEAD, body + ZERO_OPTD_LAMB_HEAD, len - ZERO_OPTD_LAMB_HEAD);
            CHECK(zero_optd_decode_lamb(again, len, phase, &lamb2) == ZERO_OPTD_PARSE_OK);
            CHECK(lamb2.count == lamb.count && lamb2.begin == lamb.begin && lamb2.chunk == lamb.chunk &&
                  memcmp(&lamb2.w_sq, &lamb.w_sq, sizeof(double)) == 0);
        }
    if (zero_optd_decode_attach(body, len, &attach) == ZERO_OPTD_PARSE_OK) {
        CHECK(len == ZERO_OPTD_ATTACH_BODY);
        zero_optd_encode_attach(again, &attach);
        CHECK(memcmp(again, body, ZERO_OPTD_ATTACH_BODY) == 0);   /* every byte is a field */
        CHECK(zero_optd_decode_attach(again, len, &attach2) == ZERO_OPTD_PARSE_OK &&
              attach2.control_key == attach.control_key);
        if (attach.flags & ZERO_OPTD_ATTACH_REGION)
            CHECK(attach.slots >= 1 && attach.slots <= ZERO_OPTD_MAX_REGION_SLOTS && attach.slot_elems >= 1 &&
                  attach.slot_elems <= ZERO_OPTD_MAX_ELEMS &&
                  (uint64_t)attach.slots * attach.slot_elems <= ZERO_OPTD_MAX_REGION_ELEMS);
        else
            CHECK(attach.slots == 0 && attach.slot_elems == 0);
    }
    if (zero_optd_decode_attach_reply(body, len, &ar) == ZERO_OPTD_PARSE_OK) {
        CHECK(ar.rkey_len <= ZERO_OPTD_MAX_RKEY && len == ZERO_OPTD_ATTACH_REPLY_HEAD + ar.rkey_len);
        CHECK(ar.rkey_len == 0 ? ar.rkey == NULL && ar.slots == 0 && ar.address == 0
                               : ar.rkey == body + ZERO_OPTD_ATTACH_REPLY_HEAD && ar.slots >= 1 &&
                                     ar.slots <= ZERO_OPTD_MAX_REGION_SLOTS && ar.address != 0 &&
                                     (uint64_t)ar.slots * ar.slot_elems <= ZERO_OPTD_MAX_REGION_ELEMS);
        zero_optd_encode_attach_reply(again, &ar);
        CHECK(memcmp(again, body, len) == 0);   /* every byte is a field or the rkey */
        CHECK(zero_optd_decode_attach_reply(again, len, &ar2) == ZERO_OPTD_PARSE_OK && ar2.slots == ar.slots);
    }
    if (zero_optd_decode_step_region(body, len, &step) == ZERO_OPTD_PARSE_OK) {
        CHECK(len == ZERO_OPTD_STEP_REGION_BODY && step.grad == NULL);
        CHECK(step.count >= 1 && step.count <= ZERO_OPTD_MAX_ELEMS);
        CHECK(zero_optd_dtype_size(step.grad_dtype) != 0 && zero_optd_dtype_size(step.weight_dtype) != 0);
        zero_optd_encode_step_region(again, &step);
        CHECK(memcmp(again, body, ZERO_OPTD_STEP_REGION_BODY) == 0);   /* every byte is a field */
        CHECK(zero_optd_decode_step_region(again, len, &step2) == ZERO_OPTD_PARSE_OK && step2.slot == step.slot);
    }
    for (int with_data = 0; with_data < 2; with_data++)
        if (zero_optd_decode_range(body, len, with_data, &range) == ZERO_OPTD_PARSE_OK) {
            CHECK(range.group < ZERO_OPTD_MAX_GROUPS && range.field < ZERO_OPTD_MAX_FIELDS);
            CHECK(range.count >= 1 && range.count <= ZERO_OPTD_MAX_ELEMS);
            CHECK(len == ZERO_OPTD_RANGE_HEAD + (with_data ? range.count * 4 : 0));
            CHECK(with_data ? range.data == body + ZERO_OPTD_RANGE_HEAD : range.data == NULL);
            zero_optd_encode_range_head(again, &range);
            CHECK(memcmp(again, body, ZERO_OPTD_RANGE_HEAD) == 0);
            CHECK(zero_optd_decode_range(body, len, with_data, &range2) == ZERO_OPTD_PARSE_OK);
        }
}

/* The doorway's decoders on @p data; the server and the client feed them a
 * growing prefix of a stream, so every prefix of an accepted message must be
 * SHORT. */
static void check_door(const uint8_t *data, size_t size)
{
    zero_optd_door_request_t rq, rq2;
    zero_optd_door_answer_t an, an2;
    if (zero_optd_decode_door_request(data, size, &rq) == ZERO_OPTD_PARSE_OK) {
        CHECK(rq.kind == ZERO_OPTD_DOOR_CONTROL || rq.kind == ZERO_OPTD_DOOR_DATA);
        CHECK(rq.address_len >= 1 && rq.address_len <= ZERO_OPTD_MAX_WORKER_ADDRESS);
        CHECK(size == ZERO_OPTD_DOOR_REQUEST_HEAD + rq.address_len);
        CHECK((const uint8_t *)rq.address == data + ZERO_OPTD_DOOR_REQUEST_HEAD);
        CHECK(rq.kind == ZERO_OPTD_DOOR_DATA || rq.ticket == 0);
        CHECK(zero_optd_encode_door_request(again, &rq) == size && memcmp(again, data, size) == 0);
        for (size_t n = 0; n < size; n++)
            CHECK(zero_optd_decode_door_request(data, n, &rq2) == ZERO_OPTD_PARSE_SHORT);
    }
    if (zero_optd_decode_door_answer(data, size, &an) == ZERO_OPTD_PARSE_OK) {
        CHECK(size == ZERO_OPTD_DOOR_ANSWER_HEAD + an.len);
        if (an.status == 0)
            CHECK(an.len >= 1 && an.len <= ZERO_OPTD_MAX_WORKER_ADDRESS && an.text == NULL && an.kind != 0 &&
                  (const uint8_t *)an.address == data + ZERO_OPTD_DOOR_ANSWER_HEAD);
        else
            CHECK(an.len <= ZERO_OPTD_MAX_DOOR_TEXT && an.address == NULL && an.conn_key == 0 &&
                  (const uint8_t *)an.text == data + ZERO_OPTD_DOOR_ANSWER_HEAD);
        CHECK(zero_optd_encode_door_answer(again, &an) == size && memcmp(again, data, size) == 0);
        for (size_t n = 0; n < size; n++)
            CHECK(zero_optd_decode_door_answer(data, n, &an2) == ZERO_OPTD_PARSE_SHORT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ZERO_OPTD_MAX_MESSAGE)
        return 0;
    check_door(data, size);
    for (int want_reply = 0; want_reply < 2; want_reply++) {
        zero_optd_header_t h, h2;
        zero_optd_parse_t v = zero_optd_decode_header(data, size, want_reply, &h);
        if (v != ZERO_OPTD_PARSE_OK)
            continue;
        CHECK(h.body_len <= ZERO_OPTD_MAX_BODY);
        if (h.type & ZERO_OPTD_SPLIT) {   /* a split reply's header: alone, status 0, an array's type */
            uint32_t t = h.type & ~(ZERO_OPTD_REPLY | ZERO_OPTD_SPLIT);
            CHECK(want_reply && size == ZERO_OPTD_HEADER_BYTES && h.status == 0);
            CHECK(t == ZERO_OPTD_STEP || t == ZERO_OPTD_LAMB2 || t == ZERO_OPTD_READ);
        } else {
            CHECK(size == ZERO_OPTD_HEADER_BYTES + (size_t)h.body_len);
        }
        CHECK(((h.type & ZERO_OPTD_REPLY) != 0) == (want_reply != 0));
        zero_optd_encode_header(again, &h);
        CHECK(memcmp(again, data, ZERO_OPTD_HEADER_BYTES) == 0);
        CHECK(zero_optd_decode_header(data, size, want_reply, &h2) == ZERO_OPTD_PARSE_OK);
    }
    {
        zero_optd_header_t h;
        size_t grad = 0;
        if (zero_optd_decode_split_request(data, size, &h, &grad) == ZERO_OPTD_PARSE_OK) {
            size_t head = (h.type & ~ZERO_OPTD_SPLIT) == ZERO_OPTD_STEP ? ZERO_OPTD_STEP_HEAD : ZERO_OPTD_LAMB_HEAD;
            CHECK(h.type == (ZERO_OPTD_STEP | ZERO_OPTD_SPLIT) || h.type == (ZERO_OPTD_LAMB1 | ZERO_OPTD_SPLIT));
            CHECK(size == ZERO_OPTD_HEADER_BYTES + head && grad >= 1 && grad <= 4 * ZERO_OPTD_MAX_ELEMS);
            CHECK(h.body_len == head + grad && h.body_len <= ZERO_OPTD_MAX_BODY);
            CHECK(zero_optd_decode_header(data, size, 0, &h) != ZERO_OPTD_PARSE_OK);
            /* joined: the head, then a zero gradient of the announced size */
            memcpy(again, data, size);
            memset(again + size, 0, grad);
            zero_optd_join_split_request(again);
            CHECK(zero_optd_decode_header(again, size + grad, 0, &h) == ZERO_OPTD_PARSE_OK);
            CHECK(h.type == ZERO_OPTD_STEP || h.type == ZERO_OPTD_LAMB1);
        }
    }
    /* bodies are decoded whatever the header says: the server calls the decoder its header type names */
    if (size >= ZERO_OPTD_HEADER_BYTES)
        check_body(data + ZERO_OPTD_HEADER_BYTES, size - ZERO_OPTD_HEADER_BYTES);
    check_body(data, size);
    return 0;
}
