/* The zero-optd wire format: pure encoders and decoders (optd_wire.h). */
#include "offload/optd_wire.h"
#include "util/byteorder.h"

#include <string.h>

/* Bulk arrays (gradients, weights, state) travel as the host stores them. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "zero-optd sends fp32 and 16-bit arrays as stored: little-endian hosts only"
#endif

const char *zero_optd_parse_string(zero_optd_parse_t verdict)
{
    switch (verdict) {
    case ZERO_OPTD_PARSE_OK: return "ok";
    case ZERO_OPTD_PARSE_SHORT: return "message shorter than its header says";
    case ZERO_OPTD_PARSE_MAGIC: return "not a zero-optd message (bad magic)";
    case ZERO_OPTD_PARSE_VERSION: return "another protocol version";
    case ZERO_OPTD_PARSE_TYPE: return "unknown or unexpected message type";
    case ZERO_OPTD_PARSE_LENGTH: return "a length or count outside its bound";
    case ZERO_OPTD_PARSE_FIELD: return "a field value outside its range";
    }
    return "unknown verdict";
}

size_t zero_optd_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case 0: return 4;          /* fp32 */
    case 1: case 2: return 2;  /* fp16, bf16 */
    default: return 0;
    }
}

static float get_f32(const unsigned char *p)
{
    uint32_t bits = zero_get_le32(p);
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static void put_f32(unsigned char *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    zero_put_le32(p, bits);
}

/* The header's fields into @p h, checking its size, magic and version. */
static zero_optd_parse_t read_header(const unsigned char *buf, size_t len, zero_optd_header_t *h)
{
    if (len < ZERO_OPTD_HEADER_BYTES)
        return ZERO_OPTD_PARSE_SHORT;
    if (zero_get_le32(buf) != ZERO_OPTD_MAGIC)
        return ZERO_OPTD_PARSE_MAGIC;
    h->version = zero_get_le16(buf + 4);
    if (h->version != ZERO_OPTD_VERSION)
        return ZERO_OPTD_PARSE_VERSION;
    h->type = zero_get_le16(buf + 6);
    h->status = (int32_t)zero_get_le32(buf + 8);
    h->body_len = zero_get_le32(buf + 12);
    h->conn_key = zero_get_le64(buf + 16);
    h->seq = zero_get_le64(buf + 24);
    return ZERO_OPTD_PARSE_OK;
}

zero_optd_parse_t zero_optd_decode_header(const unsigned char *buf, size_t len, int want_reply,
                                          zero_optd_header_t *h)
{
    uint32_t type;
    int split;
    zero_optd_parse_t v = read_header(buf, len, h);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    type = h->type;
    if ((want_reply != 0) != ((type & ZERO_OPTD_REPLY) != 0))
        return ZERO_OPTD_PARSE_TYPE;
    type &= ~ZERO_OPTD_REPLY;
    split = (type & ZERO_OPTD_SPLIT) != 0;
    type &= ~ZERO_OPTD_SPLIT;
    if ((type < ZERO_OPTD_HELLO && !(want_reply && type == ZERO_OPTD_ERROR)) || type >= ZERO_OPTD_TYPE_END)
        return ZERO_OPTD_PARSE_TYPE;
    if (split && !(want_reply && (type == ZERO_OPTD_STEP || type == ZERO_OPTD_LAMB2 || type == ZERO_OPTD_READ)))
        return ZERO_OPTD_PARSE_TYPE;
    if (h->body_len > ZERO_OPTD_MAX_BODY)
        return ZERO_OPTD_PARSE_LENGTH;
    if (split) {   /* the header alone; its body is the next message on the data tag */
        if (h->status != 0)
            return ZERO_OPTD_PARSE_FIELD;
        return len == ZERO_OPTD_HEADER_BYTES ? ZERO_OPTD_PARSE_OK : ZERO_OPTD_PARSE_LENGTH;
    }
    if (len < ZERO_OPTD_HEADER_BYTES + (size_t)h->body_len)
        return ZERO_OPTD_PARSE_SHORT;
    if (len > ZERO_OPTD_HEADER_BYTES + (size_t)h->body_len)
        return ZERO_OPTD_PARSE_LENGTH;
    return ZERO_OPTD_PARSE_OK;
}

zero_optd_parse_t zero_optd_decode_split_request(const unsigned char *buf, size_t len, zero_optd_header_t *h,
                                                 size_t *grad_bytes_p)
{
    uint32_t head;
    zero_optd_parse_t v = read_header(buf, len, h);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    if (h->type == (ZERO_OPTD_STEP | ZERO_OPTD_SPLIT))
        head = ZERO_OPTD_STEP_HEAD;
    else if (h->type == (ZERO_OPTD_LAMB1 | ZERO_OPTD_SPLIT))
        head = ZERO_OPTD_LAMB_HEAD;
    else
        return ZERO_OPTD_PARSE_TYPE;
    if (len != ZERO_OPTD_HEADER_BYTES + (size_t)head)
        return ZERO_OPTD_PARSE_LENGTH;
    if (h->body_len <= head || h->body_len - head > 4u * (uint32_t)ZERO_OPTD_MAX_ELEMS)
        return ZERO_OPTD_PARSE_LENGTH;
    *grad_bytes_p = h->body_len - head;
    return ZERO_OPTD_PARSE_OK;
}

void zero_optd_join_split_request(unsigned char *buf)
{
    zero_put_le16(buf + 6, (uint16_t)(zero_get_le16(buf + 6) & ~ZERO_OPTD_SPLIT));
}

/* The first 8 bytes every frame shares (a message's header, the doorway's
 * request and answer): magic, version, and its type or kind. */
static void put_start(unsigned char *buf, uint32_t type)
{
    zero_put_le32(buf, ZERO_OPTD_MAGIC);
    zero_put_le16(buf + 4, (uint16_t)ZERO_OPTD_VERSION);
    zero_put_le16(buf + 6, (uint16_t)type);
}

void zero_optd_encode_header(unsigned char *buf, const zero_optd_header_t *h)
{
    put_start(buf, h->type);
    zero_put_le32(buf + 8, (uint32_t)h->status);
    zero_put_le32(buf + 12, h->body_len);
    zero_put_le64(buf + 16, h->conn_key);
    zero_put_le64(buf + 24, h->seq);
}

/* HELLO body: token[16], rank u32, num_groups u32, num_states u32, pad u32,
 * length u64 x 3, pad to 64. */
zero_optd_parse_t zero_optd_decode_hello(const unsigned char *body, size_t len, zero_optd_hello_t *hello)
{
    if (len != ZERO_OPTD_HELLO_BODY)
        return ZERO_OPTD_PARSE_LENGTH;
    memcpy(hello->token, body, ZERO_OPTD_TOKEN_BYTES);
    hello->rank = zero_get_le32(body + 16);
    hello->num_groups = zero_get_le32(body + 20);
    hello->num_states = zero_get_le32(body + 24);
    if (hello->num_groups < 1 || hello->num_groups > ZERO_OPTD_MAX_GROUPS ||
        hello->num_states > ZERO_OPTD_MAX_FIELDS - 1)
        return ZERO_OPTD_PARSE_FIELD;
    for (int g = 0; g < ZERO_OPTD_MAX_GROUPS; g++) {
        hello->length[g] = zero_get_le64(body + 32 + 8 * g);
        if (hello->length[g] > ZERO_OPTD_MAX_LENGTH)
            return ZERO_OPTD_PARSE_LENGTH;
        if ((uint32_t)g >= hello->num_groups && hello->length[g] != 0)
            return ZERO_OPTD_PARSE_FIELD;
    }
    return ZERO_OPTD_PARSE_OK;
}

void zero_optd_encode_hello(unsigned char *body, const zero_optd_hello_t *hello)
{
    memset(body, 0, ZERO_OPTD_HELLO_BODY);
    memcpy(body, hello->token, ZERO_OPTD_TOKEN_BYTES);
    zero_put_le32(body + 16, hello->rank);
    zero_put_le32(body + 20, hello->num_groups);
    zero_put_le32(body + 24, hello->num_states);
    for (int g = 0; g < ZERO_OPTD_MAX_GROUPS; g++)
        zero_put_le64(body + 32 + 8 * g, hello->length[g]);
}

/* A region of @p slots slots of @p elems elements: both within their bounds, or (@p want 0) both 0. */
static int region_shape_ok(int want, uint32_t slots, uint32_t elems)
{
    if (!want)
        return slots == 0 && elems == 0;
    return slots >= 1 && slots <= ZERO_OPTD_MAX_REGION_SLOTS && elems >= 1 && elems <= ZERO_OPTD_MAX_ELEMS &&
           (uint64_t)slots * elems <= ZERO_OPTD_MAX_REGION_ELEMS;
}

/* ATTACH body: control key u64, token[16], flags, slots, slot_elems, reserved (u32 each). */
zero_optd_parse_t zero_optd_decode_attach(const unsigned char *body, size_t len, zero_optd_attach_t *attach)
{
    if (len != ZERO_OPTD_ATTACH_BODY)
        return ZERO_OPTD_PARSE_LENGTH;
    attach->control_key = zero_get_le64(body);
    memcpy(attach->token, body + 8, ZERO_OPTD_TOKEN_BYTES);
    attach->flags = zero_get_le32(body + 24);
    attach->slots = zero_get_le32(body + 28);
    attach->slot_elems = zero_get_le32(body + 32);
    if ((attach->flags & ~ZERO_OPTD_ATTACH_REGION) != 0 || zero_get_le32(body + 36) != 0)
        return ZERO_OPTD_PARSE_FIELD;
    if (!region_shape_ok((attach->flags & ZERO_OPTD_ATTACH_REGION) != 0, attach->slots, attach->slot_elems))
        return ZERO_OPTD_PARSE_LENGTH;
    return ZERO_OPTD_PARSE_OK;
}

void zero_optd_encode_attach(unsigned char *body, const zero_optd_attach_t *attach)
{
    zero_put_le64(body, attach->control_key);
    memcpy(body + 8, attach->token, ZERO_OPTD_TOKEN_BYTES);
    zero_put_le32(body + 24, attach->flags);
    zero_put_le32(body + 28, attach->slots);
    zero_put_le32(body + 32, attach->slot_elems);
    zero_put_le32(body + 36, 0);
}

/* ATTACH's reply body: address u64, slots, slot_elems, rkey_len, reserved (u32 each), the rkey. */
zero_optd_parse_t zero_optd_decode_attach_reply(const unsigned char *body, size_t len,
                                                zero_optd_attach_reply_t *reply)
{
    int region;
    if (len < ZERO_OPTD_ATTACH_REPLY_HEAD)
        return ZERO_OPTD_PARSE_LENGTH;
    reply->address = zero_get_le64(body);
    reply->slots = zero_get_le32(body + 8);
    reply->slot_elems = zero_get_le32(body + 12);
    reply->rkey_len = zero_get_le32(body + 16);
    reply->rkey = NULL;
    if (zero_get_le32(body + 20) != 0)
        return ZERO_OPTD_PARSE_FIELD;
    if (reply->rkey_len > ZERO_OPTD_MAX_RKEY || len - ZERO_OPTD_ATTACH_REPLY_HEAD != reply->rkey_len)
        return ZERO_OPTD_PARSE_LENGTH;
    region = reply->rkey_len != 0;
    if (!region_shape_ok(region, reply->slots, reply->slot_elems) || (region != (reply->address != 0)))
        return ZERO_OPTD_PARSE_FIELD;
    if (region)
        reply->rkey = body + ZERO_OPTD_ATTACH_REPLY_HEAD;
    return ZERO_OPTD_PARSE_OK;
}

void zero_optd_encode_attach_reply(unsigned char *body, const zero_optd_attach_reply_t *reply)
{
    zero_put_le64(body, reply->address);
    zero_put_le32(body + 8, reply->slots);
    zero_put_le32(body + 12, reply->slot_elems);
    zero_put_le32(body + 16, reply->rkey_len);
    zero_put_le32(body + 20, 0);
    if (reply->rkey_len != 0)
        memcpy(body + ZERO_OPTD_ATTACH_REPLY_HEAD, reply->rkey, reply->rkey_len);
}

/* The bounds every message with an array shares: 1..MAX_ELEMS elements at
 * an offset of at most MAX_LENGTH, and a body that is the head and exactly
 * @p count elements of @p es bytes (0: no array follows). */
static zero_optd_parse_t array_ok(size_t len, size_t head, uint64_t begin, uint64_t count, size_t es)
{
    if (count < 1 || count > ZERO_OPTD_MAX_ELEMS || begin > ZERO_OPTD_MAX_LENGTH)
        return ZERO_OPTD_PARSE_LENGTH;
    return len - head == count * es ? ZERO_OPTD_PARSE_OK : ZERO_OPTD_PARSE_LENGTH;
}

/* STEP head: group, optimizer, grad_dtype, weight_dtype (u32 each), begin,
 * count, step (u64 each), nine f32, flags u32 = 80 bytes; the gradient follows. */
/* STEP's head fields; whether they are in range (the array is the caller's to check). */
static zero_optd_parse_t step_head(const unsigned char *body, zero_optd_step_t *s)
{
    s->group = zero_get_le32(body);
    s->optimizer = zero_get_le32(body + 4);
    s->grad_dtype = zero_get_le32(body + 8);
    s->weight_dtype = zero_get_le32(body + 12);
    s->begin = zero_get_le64(body + 16);
    s->count = zero_get_le64(body + 24);
    s->step = (int64_t)zero_get_le64(body + 32);
    s->lr = get_f32(body + 40);
    s->beta1 = get_f32(body + 44);
    s->beta2 = get_f32(body + 48);
    s->eps = get_f32(body + 52);
    s->weight_decay = get_f32(body + 56);
    s->momentum = get_f32(body + 60);
    s->dampening = get_f32(body + 64);
    s->lr_decay = get_f32(body + 68);
    s->grad_scale = get_f32(body + 72);
    s->flags = zero_get_le32(body + 76);
    s->grad = NULL;
    s->slot = 0;
    if (s->group >= ZERO_OPTD_MAX_GROUPS || s->optimizer < ZERO_OPTD_ADAM || s->optimizer >= ZERO_OPTD_OPTIMIZER_END ||
        zero_optd_dtype_size(s->grad_dtype) == 0 || zero_optd_dtype_size(s->weight_dtype) == 0 ||
        (s->flags & ~ZERO_OPTD_FLAGS_ALL) != 0)
        return ZERO_OPTD_PARSE_FIELD;
    return ZERO_OPTD_PARSE_OK;
}

/* STEP head: group, optimizer, grad_dtype, weight_dtype (u32 each), begin,
 * count, step (u64 each), nine f32, flags u32 = 80 bytes; the gradient follows. */
zero_optd_parse_t zero_optd_decode_step(const unsigned char *body, size_t len, zero_optd_step_t *s)
{
    zero_optd_parse_t v;
    if (len < ZERO_OPTD_STEP_HEAD)
        return ZERO_OPTD_PARSE_LENGTH;
    v = step_head(body, s);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    s->grad = body + ZERO_OPTD_STEP_HEAD;
    return array_ok(len, ZERO_OPTD_STEP_HEAD, s->begin, s->count, zero_optd_dtype_size(s->grad_dtype));
}

/* STEP_REGION: STEP's head, slot u32, reserved u32 (0). */
zero_optd_parse_t zero_optd_decode_step_region(const unsigned char *body, size_t len, zero_optd_step_t *s)
{
    zero_optd_parse_t v;
    if (len != ZERO_OPTD_STEP_REGION_BODY)
        return ZERO_OPTD_PARSE_LENGTH;
    v = step_head(body, s);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    s->slot = zero_get_le32(body + ZERO_OPTD_STEP_HEAD);
    if (zero_get_le32(body + ZERO_OPTD_STEP_HEAD + 4) != 0)
        return ZERO_OPTD_PARSE_FIELD;
    /* the count's bounds, with no array after the head */
    return array_ok(ZERO_OPTD_STEP_HEAD, ZERO_OPTD_STEP_HEAD, s->begin, s->count, 0);
}

void zero_optd_encode_step_region(unsigned char *body, const zero_optd_step_t *s)
{
    zero_optd_encode_step_head(body, s);
    zero_put_le32(body + ZERO_OPTD_STEP_HEAD, s->slot);
    zero_put_le32(body + ZERO_OPTD_STEP_HEAD + 4, 0);
}

void zero_optd_encode_step_head(unsigned char *body, const zero_optd_step_t *s)
{
    zero_put_le32(body, s->group);
    zero_put_le32(body + 4, s->optimizer);
    zero_put_le32(body + 8, s->grad_dtype);
    zero_put_le32(body + 12, s->weight_dtype);
    zero_put_le64(body + 16, s->begin);
    zero_put_le64(body + 24, s->count);
    zero_put_le64(body + 32, (uint64_t)s->step);
    put_f32(body + 40, s->lr);
    put_f32(body + 44, s->beta1);
    put_f32(body + 48, s->beta2);
    put_f32(body + 52, s->eps);
    put_f32(body + 56, s->weight_decay);
    put_f32(body + 60, s->momentum);
    put_f32(body + 64, s->dampening);
    put_f32(body + 68, s->lr_decay);
    put_f32(body + 72, s->grad_scale);
    zero_put_le32(body + 76, s->flags);
}

static double get_f64(const unsigned char *p)
{
    uint64_t bits = zero_get_le64(p);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void put_f64(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    zero_put_le64(p, bits);
}

/* The LAMB head (optd_wire.h); LAMB1's gradient follows it. */
zero_optd_parse_t zero_optd_decode_lamb(const unsigned char *body, size_t len, int phase, zero_optd_lamb_t *l)
{
    size_t es;
    if (len < ZERO_OPTD_LAMB_HEAD)
        return ZERO_OPTD_PARSE_LENGTH;
    l->group = zero_get_le32(body);
    l->isa = zero_get_le32(body + 4);
    l->grad_dtype = zero_get_le32(body + 8);
    l->weight_dtype = zero_get_le32(body + 12);
    l->begin = zero_get_le64(body + 16);
    l->count = zero_get_le64(body + 24);
    l->step = (int64_t)zero_get_le64(body + 32);
    l->chunk = zero_get_le32(body + 40);
    l->flags = zero_get_le32(body + 44);
    l->lr = get_f32(body + 48);
    l->beta1 = get_f32(body + 52);
    l->beta2 = get_f32(body + 56);
    l->eps = get_f32(body + 60);
    l->weight_decay = get_f32(body + 64);
    l->max_coeff = get_f32(body + 68);
    l->min_coeff = get_f32(body + 72);
    l->grad_scale = get_f32(body + 76);
    l->w_sq = get_f64(body + 80);
    l->u_sq = get_f64(body + 88);
    l->grad = phase == 1 ? body + ZERO_OPTD_LAMB_HEAD : NULL;
    if (l->group >= ZERO_OPTD_MAX_GROUPS || l->isa >= ZERO_OPTD_ISA_COUNT || (l->flags & ~ZERO_OPTD_LAMB_FLAGS) != 0 ||
        l->chunk < 64 || l->chunk % 64 != 0 || l->chunk > ZERO_OPTD_MAX_ELEMS)
        return ZERO_OPTD_PARSE_FIELD;
    if (phase == 1) {
        /* the weight dtype and the sums are phase 2's: zero here, so every byte has one meaning */
        es = zero_optd_dtype_size(l->grad_dtype);
        if (es == 0 || l->weight_dtype != 0 || zero_get_le64(body + 80) != 0 || zero_get_le64(body + 88) != 0)
            return ZERO_OPTD_PARSE_FIELD;
    } else {
        es = 0;
        if (zero_optd_dtype_size(l->weight_dtype) == 0 || l->grad_dtype != 0)
            return ZERO_OPTD_PARSE_FIELD;
    }
    return array_ok(len, ZERO_OPTD_LAMB_HEAD, l->begin, l->count, es);
}

void zero_optd_encode_lamb_head(unsigned char *body, const zero_optd_lamb_t *l)
{
    zero_put_le32(body, l->group);
    zero_put_le32(body + 4, l->isa);
    zero_put_le32(body + 8, l->grad_dtype);
    zero_put_le32(body + 12, l->weight_dtype);
    zero_put_le64(body + 16, l->begin);
    zero_put_le64(body + 24, l->count);
    zero_put_le64(body + 32, (uint64_t)l->step);
    zero_put_le32(body + 40, l->chunk);
    zero_put_le32(body + 44, l->flags);
    put_f32(body + 48, l->lr);
    put_f32(body + 52, l->beta1);
    put_f32(body + 56, l->beta2);
    put_f32(body + 60, l->eps);
    put_f32(body + 64, l->weight_decay);
    put_f32(body + 68, l->max_coeff);
    put_f32(body + 72, l->min_coeff);
    put_f32(body + 76, l->grad_scale);
    put_f64(body + 80, l->w_sq);
    put_f64(body + 88, l->u_sq);
}

/* READ / WRITE head: group u32, field u32, begin u64, count u64; WRITE's fp32 data follows. */
zero_optd_parse_t zero_optd_decode_range(const unsigned char *body, size_t len, int with_data,
                                         zero_optd_range_t *r)
{
    if (len < ZERO_OPTD_RANGE_HEAD)
        return ZERO_OPTD_PARSE_LENGTH;
    r->group = zero_get_le32(body);
    r->field = zero_get_le32(body + 4);
    r->begin = zero_get_le64(body + 8);
    r->count = zero_get_le64(body + 16);
    r->data = with_data ? body + ZERO_OPTD_RANGE_HEAD : NULL;
    if (r->group >= ZERO_OPTD_MAX_GROUPS || r->field >= ZERO_OPTD_MAX_FIELDS)
        return ZERO_OPTD_PARSE_FIELD;
    return array_ok(len, ZERO_OPTD_RANGE_HEAD, r->begin, r->count, with_data ? 4 : 0);
}

void zero_optd_encode_range_head(unsigned char *body, const zero_optd_range_t *r)
{
    zero_put_le32(body, r->group);
    zero_put_le32(body + 4, r->field);
    zero_put_le64(body + 8, r->begin);
    zero_put_le64(body + 16, r->count);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int zero_optd_token_parse(const char *text, size_t len, unsigned char token[ZERO_OPTD_TOKEN_BYTES])
{
    if (len == 2 * ZERO_OPTD_TOKEN_BYTES + 1 && text[len - 1] == '\n')
        len--;
    if (len != 2 * ZERO_OPTD_TOKEN_BYTES)
        return -1;
    for (size_t i = 0; i < ZERO_OPTD_TOKEN_BYTES; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        token[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* The doorway's request and answer (optd_wire.h, docs/optd.md "The doorway"). */

/* magic and version of a doorway message's first 8 bytes (len >= 8) */
static zero_optd_parse_t door_start(const unsigned char *buf, uint32_t *version_p)
{
    if (zero_get_le32(buf) != ZERO_OPTD_MAGIC)
        return ZERO_OPTD_PARSE_MAGIC;
    *version_p = zero_get_le16(buf + 4);
    return *version_p == ZERO_OPTD_VERSION ? ZERO_OPTD_PARSE_OK : ZERO_OPTD_PARSE_VERSION;
}

/* SHORT until @p len reaches @p total, LENGTH beyond it */
static zero_optd_parse_t door_whole(size_t len, size_t total)
{
    return len < total ? ZERO_OPTD_PARSE_SHORT : len > total ? ZERO_OPTD_PARSE_LENGTH : ZERO_OPTD_PARSE_OK;
}

zero_optd_parse_t zero_optd_decode_door_request(const unsigned char *buf, size_t len, zero_optd_door_request_t *req)
{
    zero_optd_parse_t v;
    memset(req, 0, sizeof(*req));
    if (len < 8)   /* magic and version are judged as soon as they are in */
        return len >= 4 && zero_get_le32(buf) != ZERO_OPTD_MAGIC ? ZERO_OPTD_PARSE_MAGIC : ZERO_OPTD_PARSE_SHORT;
    v = door_start(buf, &req->version);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    if (len < ZERO_OPTD_DOOR_REQUEST_HEAD)
        return ZERO_OPTD_PARSE_SHORT;
    req->kind = zero_get_le16(buf + 6);
    if (req->kind != ZERO_OPTD_DOOR_CONTROL && req->kind != ZERO_OPTD_DOOR_DATA)
        return ZERO_OPTD_PARSE_TYPE;
    req->address_len = zero_get_le32(buf + 8);
    if (req->address_len == 0 || req->address_len > ZERO_OPTD_MAX_WORKER_ADDRESS)
        return ZERO_OPTD_PARSE_LENGTH;
    memcpy(req->token, buf + 16, ZERO_OPTD_TOKEN_BYTES);
    req->ticket = zero_get_le64(buf + 32);
    if (zero_get_le32(buf + 12) != 0 || (req->kind == ZERO_OPTD_DOOR_CONTROL && req->ticket != 0))
        return ZERO_OPTD_PARSE_FIELD;
    v = door_whole(len, ZERO_OPTD_DOOR_REQUEST_HEAD + (size_t)req->address_len);
    if (v == ZERO_OPTD_PARSE_OK)
        req->address = buf + ZERO_OPTD_DOOR_REQUEST_HEAD;
    return v;
}

size_t zero_optd_encode_door_request(unsigned char *buf, const zero_optd_door_request_t *req)
{
    put_start(buf, req->kind);
    zero_put_le32(buf + 8, req->address_len);
    zero_put_le32(buf + 12, 0);
    memcpy(buf + 16, req->token, ZERO_OPTD_TOKEN_BYTES);
    zero_put_le64(buf + 32, req->ticket);
    if (req->address_len != 0)
        memcpy(buf + ZERO_OPTD_DOOR_REQUEST_HEAD, req->address, req->address_len);
    return ZERO_OPTD_DOOR_REQUEST_HEAD + (size_t)req->address_len;
}

zero_optd_parse_t zero_optd_decode_door_answer(const unsigned char *buf, size_t len, zero_optd_door_answer_t *ans)
{
    uint32_t version;
    zero_optd_parse_t v;
    int accepted;
    memset(ans, 0, sizeof(*ans));
    if (len < ZERO_OPTD_DOOR_ANSWER_HEAD)
        return len >= 4 && zero_get_le32(buf) != ZERO_OPTD_MAGIC ? ZERO_OPTD_PARSE_MAGIC : ZERO_OPTD_PARSE_SHORT;
    v = door_start(buf, &version);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    ans->kind = zero_get_le16(buf + 6);
    ans->status = (int32_t)zero_get_le32(buf + 8);
    ans->len = zero_get_le32(buf + 12);
    ans->conn_key = zero_get_le64(buf + 16);
    accepted = ans->status == 0;
    if (ans->kind > ZERO_OPTD_DOOR_DATA || (accepted && ans->kind == 0))
        return ZERO_OPTD_PARSE_TYPE;
    if (accepted ? ans->len == 0 || ans->len > ZERO_OPTD_MAX_WORKER_ADDRESS : ans->len > ZERO_OPTD_MAX_DOOR_TEXT)
        return ZERO_OPTD_PARSE_LENGTH;
    if (!accepted && ans->conn_key != 0)
        return ZERO_OPTD_PARSE_FIELD;
    v = door_whole(len, ZERO_OPTD_DOOR_ANSWER_HEAD + (size_t)ans->len);
    if (v != ZERO_OPTD_PARSE_OK)
        return v;
    if (accepted)
        ans->address = buf + ZERO_OPTD_DOOR_ANSWER_HEAD;
    else
        ans->text = (const char *)buf + ZERO_OPTD_DOOR_ANSWER_HEAD;
    return ZERO_OPTD_PARSE_OK;
}

size_t zero_optd_encode_door_answer(unsigned char *buf, const zero_optd_door_answer_t *ans)
{
    put_start(buf, ans->kind);
    zero_put_le32(buf + 8, (uint32_t)ans->status);
    zero_put_le32(buf + 12, ans->len);
    zero_put_le64(buf + 16, ans->conn_key);
    if (ans->len != 0)
        memcpy(buf + ZERO_OPTD_DOOR_ANSWER_HEAD, ans->status == 0 ? ans->address : (const void *)ans->text, ans->len);
    return ZERO_OPTD_DOOR_ANSWER_HEAD + (size_t)ans->len;
}
