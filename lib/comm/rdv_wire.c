/* The rendezvous wire format: pure parsers and writers (see rdv_wire.h). */
#include "comm/rdv_wire.h"
#include "util/byteorder.h"

#include <string.h>

#define HELLO_MAGIC "ZERO-RDV"
#define REPLY_MAGIC "ZERO-RPL"
#define MAGIC_BYTES 8
#define FRAME_MAGIC 0x5a46524du    /* "ZFRM" */

/* Constant-time comparison: the time taken does not depend on where a guess differs. */
static int token_equal(const unsigned char *a, const unsigned char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < ZERO_RDV_TOKEN_BYTES; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* The first min(len, n) bytes of @p buf match @p magic: a stranger is told
 * apart on its first wrong byte rather than after a whole message. */
static int prefix_matches(const unsigned char *buf, size_t len, const unsigned char *magic, size_t n)
{
    size_t k = len < n ? len : n;
    return k == 0 || memcmp(buf, magic, k) == 0;
}

static zero_rdv_parse_t need(size_t *need_p, size_t n)
{
    *need_p = n;
    return ZERO_RDV_PARSE_MORE;
}

zero_rdv_parse_t zero_rdv_hello_parse(const unsigned char *buf, size_t len, const zero_rdv_job_t *job,
                                      zero_rdv_hello_t *hello_p, size_t *need_p)
{
    zero_rdv_hello_t h;
    if (!prefix_matches(buf, len, (const unsigned char *)HELLO_MAGIC, MAGIC_BYTES))
        return ZERO_RDV_PARSE_NOT_RDV;
    if (len < ZERO_RDV_HELLO_BYTES)
        return need(need_p, ZERO_RDV_HELLO_BYTES);
    h.version = zero_get_be32(buf + 8);
    h.rank = zero_get_be32(buf + 12);
    h.world = zero_get_be32(buf + 16);
    h.record_len = zero_get_be32(buf + 20);
    *hello_p = h;   /* also on a refusal: its log message names the fields */
    *need_p = ZERO_RDV_HELLO_BYTES;
    /* The token first: a stranger learns nothing about the job's shape. */
    if (!token_equal(buf + 24, job->token))
        return ZERO_RDV_PARSE_TOKEN;
    if (h.version != ZERO_RDV_VERSION)
        return ZERO_RDV_PARSE_VERSION;
    if (h.world != job->size || h.rank == 0 || h.rank >= job->size)
        return ZERO_RDV_PARSE_WORLD;
    if (h.record_len == 0 || h.record_len > ZERO_RDV_MAX_BLOB)
        return ZERO_RDV_PARSE_LENGTH;
    return ZERO_RDV_PARSE_OK;
}

zero_rdv_parse_t zero_rdv_reply_parse(const unsigned char *buf, size_t len, const zero_rdv_job_t *job,
                                      zero_rdv_reply_t *reply_p, size_t *need_p)
{
    zero_rdv_reply_t *r = reply_p;
    size_t total;
    memset(r, 0, sizeof(*r));
    if (!prefix_matches(buf, len, (const unsigned char *)REPLY_MAGIC, MAGIC_BYTES))
        return ZERO_RDV_PARSE_NOT_RDV;
    if (len < ZERO_RDV_REPLY_HEAD_BYTES)
        return need(need_p, ZERO_RDV_REPLY_HEAD_BYTES);
    r->version = zero_get_be32(buf + 8);
    r->world = zero_get_be32(buf + 12);
    r->extra_len = zero_get_be32(buf + 16);
    r->code = zero_get_be32(buf + 20);
    if (r->version != ZERO_RDV_VERSION)
        return ZERO_RDV_PARSE_VERSION;
    if (r->code != ZERO_RDV_ACCEPTED) {
        *need_p = ZERO_RDV_REPLY_HEAD_BYTES;     /* a refusal is complete in its header */
        return ZERO_RDV_PARSE_REFUSED;
    }
    if (!token_equal(buf + 24, job->token))
        return ZERO_RDV_PARSE_TOKEN;
    if (r->world != job->size || r->world > ZERO_RDV_MAX_WORLD)
        return ZERO_RDV_PARSE_WORLD;
    if (r->extra_len > ZERO_RDV_MAX_EXTRA) {
        r->bad_rank = r->world;
        return ZERO_RDV_PARSE_LENGTH;
    }
    total = ZERO_RDV_REPLY_HEAD_BYTES + 4 * (size_t)r->world;
    if (len < total)
        return need(need_p, total);
    r->lens = buf + ZERO_RDV_REPLY_HEAD_BYTES;
    for (uint32_t i = 0; i < r->world; i++) {
        uint32_t l = zero_get_be32(r->lens + 4 * (size_t)i);
        if (l == 0 || l > ZERO_RDV_MAX_BLOB) {
            r->bad_rank = i;
            r->bad_len = l;
            return ZERO_RDV_PARSE_LENGTH;
        }
        total += l;     /* at most 65536 * 64 KiB: no overflow in a 64-bit size_t */
    }
    r->records = r->lens + 4 * (size_t)r->world;
    total += r->extra_len;
    if (len < total)
        return need(need_p, total);
    r->extra = buf + total - r->extra_len;
    *need_p = total;
    return ZERO_RDV_PARSE_OK;
}

zero_rdv_parse_t zero_rdv_frame_parse(const unsigned char *buf, size_t len, zero_rdv_frame_t *frame_p,
                                      size_t *need_p)
{
    unsigned char magic[4];
    zero_rdv_frame_t f;
    zero_put_be32(magic, FRAME_MAGIC);
    if (!prefix_matches(buf, len, magic, sizeof(magic)))
        return ZERO_RDV_PARSE_NOT_RDV;
    if (len < ZERO_RDV_FRAME_BYTES)
        return need(need_p, ZERO_RDV_FRAME_BYTES);
    f.type = zero_get_be32(buf + 4);
    f.arg = zero_get_be32(buf + 8);
    f.arg2 = zero_get_be32(buf + 12);
    f.arg3 = zero_get_be32(buf + 16);
    if (f.type < ZERO_RDV_FRAME_BYE || f.type > ZERO_RDV_FRAME_FAILED)
        return ZERO_RDV_PARSE_TYPE;
    *frame_p = f;
    *need_p = ZERO_RDV_FRAME_BYTES;
    return ZERO_RDV_PARSE_OK;
}

uint32_t zero_rdv_reply_record_len(const zero_rdv_reply_t *reply, uint32_t rank)
{
    return zero_get_be32(reply->lens + 4 * (size_t)rank);
}

void zero_rdv_hello_write(unsigned char *out, const zero_rdv_job_t *job, uint32_t rank, uint32_t record_len)
{
    memset(out, 0, ZERO_RDV_HELLO_BYTES);
    memcpy(out, HELLO_MAGIC, MAGIC_BYTES);
    zero_put_be32(out + 8, ZERO_RDV_VERSION);
    zero_put_be32(out + 12, rank);
    zero_put_be32(out + 16, job->size);
    zero_put_be32(out + 20, record_len);
    memcpy(out + 24, job->token, ZERO_RDV_TOKEN_BYTES);
}

void zero_rdv_reply_head_write(unsigned char *out, const zero_rdv_job_t *job, uint32_t extra_len)
{
    memset(out, 0, ZERO_RDV_REPLY_HEAD_BYTES);
    memcpy(out, REPLY_MAGIC, MAGIC_BYTES);
    zero_put_be32(out + 8, ZERO_RDV_VERSION);
    zero_put_be32(out + 12, job->size);
    zero_put_be32(out + 16, extra_len);
    zero_put_be32(out + 20, ZERO_RDV_ACCEPTED);
    memcpy(out + 24, job->token, ZERO_RDV_TOKEN_BYTES);
}

void zero_rdv_refusal_write(unsigned char *out, zero_rdv_refusal_t code)
{
    memset(out, 0, ZERO_RDV_REPLY_HEAD_BYTES);
    memcpy(out, REPLY_MAGIC, MAGIC_BYTES);
    zero_put_be32(out + 8, ZERO_RDV_VERSION);
    zero_put_be32(out + 20, (uint32_t)code);
}

void zero_rdv_frame_write(unsigned char *out, zero_rdv_frame_type_t type, uint32_t arg, uint32_t arg2, uint32_t arg3)
{
    zero_put_be32(out, FRAME_MAGIC);
    zero_put_be32(out + 4, (uint32_t)type);
    zero_put_be32(out + 8, arg);
    zero_put_be32(out + 12, arg2);
    zero_put_be32(out + 16, arg3);
}

const char *zero_rdv_parse_string(zero_rdv_parse_t verdict)
{
    switch (verdict) {
    case ZERO_RDV_PARSE_OK: return "valid";
    case ZERO_RDV_PARSE_MORE: return "incomplete";
    case ZERO_RDV_PARSE_NOT_RDV: return "not a libzero rendezvous message";
    case ZERO_RDV_PARSE_TOKEN: return "wrong job token";
    case ZERO_RDV_PARSE_VERSION: return "other protocol version";
    case ZERO_RDV_PARSE_WORLD: return "rank or world size does not fit the job";
    case ZERO_RDV_PARSE_LENGTH: return "length out of bounds";
    case ZERO_RDV_PARSE_REFUSED: return "refused";
    case ZERO_RDV_PARSE_TYPE: return "unknown frame type";
    }
    return "unknown verdict";
}

const char *zero_rdv_refusal_string(uint32_t code)
{
    switch (code) {
    case ZERO_RDV_ACCEPTED: return "accepted";
    case ZERO_RDV_REFUSED_TOKEN:
        return "token mismatch (this rank's ZERO_JOB_TOKEN differs from rank 0's: ranks of two jobs on one port?)";
    case ZERO_RDV_REFUSED_VERSION: return "protocol version mismatch (ranks built against different libzero versions?)";
    case ZERO_RDV_REFUSED_WORLD: return "rank or world size does not fit rank 0's job (WORLD_SIZE differs between ranks?)";
    case ZERO_RDV_REFUSED_RANK_TAKEN: return "another process already joined as this rank (two ranks with one RANK?)";
    case ZERO_RDV_REFUSED_LENGTH: return "address record length refused";
    }
    return "unknown refusal code";
}

zero_rdv_refusal_t zero_rdv_refusal_of(zero_rdv_parse_t verdict)
{
    switch (verdict) {
    case ZERO_RDV_PARSE_TOKEN: return ZERO_RDV_REFUSED_TOKEN;
    case ZERO_RDV_PARSE_VERSION: return ZERO_RDV_REFUSED_VERSION;
    case ZERO_RDV_PARSE_WORLD: return ZERO_RDV_REFUSED_WORLD;
    case ZERO_RDV_PARSE_LENGTH: return ZERO_RDV_REFUSED_LENGTH;
    default: return ZERO_RDV_ACCEPTED;
    }
}
