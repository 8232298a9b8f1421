/*
 * The zero-optd wire format (docs/optd.md, "Protocol"), as pure functions over
 * byte buffers: no UCX, no allocation, no logging, no global state.
 * optd_server.c and store_remote.c move the bytes as UCX tagged messages (one
 * request or reply per message) and call these on each complete message;
 * tests/fuzz/fuzz_optd.c feeds them arbitrary bytes.
 *
 * A message is a 32-byte header and a body of body_len bytes. Integers and
 * floats are little-endian (fp32 IEEE bit patterns, 16-bit values as stored).
 *   0  u32 magic "ZOPD"      4  u16 version     6  u16 type
 *   8  i32 status (replies)  12 u32 body_len
 *   16 u64 conn_key (the key the server gave this connection, both ways)
 *   24 u64 seq (the client's request number, echoed in the reply)
 * UCX tags: a request travels on its connection's key, its reply on the key
 * with ZERO_OPTD_TAG_REPLY set (UCX keeps messages of one endpoint and tag in
 * order, so replies come back in request order). The key comes in the
 * doorway's answer (version 8; before, in a WELCOME message on a new
 * endpoint), below.
 * A reply whose body is an array the client hands to its caller (STEP and
 * LAMB2: the weights; READ: the values) is split (version 5): its header
 * alone, type | ZERO_OPTD_REPLY | ZERO_OPTD_SPLIT, status 0 and body_len the
 * array's bytes, then the array as a message of its own on the reply's tag |
 * ZERO_OPTD_TAG_DATA, so the client receives it straight into the caller's
 * buffer (docs/optd.md, "The weights' own message"). Error replies are never
 * split. A STEP or LAMB1 request is split the same way (version 6): its
 * header and head alone, type | ZERO_OPTD_SPLIT and body_len the whole body
 * (head and gradient), then the gradient as a message of its own on the
 * request's tag | ZERO_OPTD_TAG_DATA, sent from the caller's buffer; the
 * server receives it into its slot right after the head and joins the two
 * (zero_optd_join_split_request) before the body is decoded
 * (docs/optd.md, "The gradient's own message"). On a same-host data
 * connection whose ATTACH got a region (version 7), STEP goes as STEP_REGION
 * instead: the gradient and the weights are in a region slot, so neither
 * the request nor its reply is split (docs/optd.md, "One-sided on one host:
 * the region").
 * Every decoder checks the message's size against the header and the body's
 * size against what its fields imply, and every count against its bound, so
 * a decoded message can be used without further length checks. What a
 * decoder cannot know (whether a group or range exists on this server) the
 * server checks.
 */
#ifndef ZERO_OFFLOAD_OPTD_WIRE_H
#define ZERO_OFFLOAD_OPTD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define ZERO_OPTD_MAGIC 0x44504f5au         /* "ZOPD" as little-endian bytes */
/* 2: HELLO's reply carries a body (the same-host data port); 3: LAMB1 and
 * LAMB2 (Lamb's two phases on the server) and the longer bound on a body;
 * 4: HELLO's reply carries the data connection's ticket; 5: split replies
 * (ZERO_OPTD_SPLIT); 6: split STEP and LAMB1 requests (the gradient as its
 * own message on the request tag | ZERO_OPTD_TAG_DATA); 7: the same-host data
 * connection's region (ATTACH asks for it, its reply hands it over,
 * STEP_REGION steps from it). Main went from 5 to 7 in one merge. 8: the
 * doorway (a TCP handshake of zero-optd's own hands out UCX worker
 * addresses; no UCX listener, no WELCOME; HELLO's reply names the doorway's
 * port for a data connection). */
#define ZERO_OPTD_VERSION 8u
#define ZERO_OPTD_HEADER_BYTES 32u
#define ZERO_OPTD_TOKEN_BYTES 16u           /* = ZERO_COMM_TOKEN_BYTES */
#define ZERO_OPTD_MAX_GROUPS 3              /* = ZERO_DTYPE_COUNT */
#define ZERO_OPTD_MAX_FIELDS 3              /* = ZERO_STORE_NUM_FIELDS */
/* Elements one STEP, READ or WRITE message carries at most: the client cuts
 * ranges into pieces of this size (4 MiB of fp32), which bounds every buffer. */
#define ZERO_OPTD_MAX_ELEMS ((uint64_t)1 << 20)
#define ZERO_OPTD_HELLO_BODY 64u
/* the port of the doorway a same-host data connection is asked for at (u32;
 * 0: none offered), a reserved u32, and the ticket that doorway request must
 * carry (u64) */
#define ZERO_OPTD_HELLO_REPLY_BODY 16u
/* the control connection's key (u64), the token, flags (u32), and for a
 * region the slots and elements per slot the client asks for (u32 each), a
 * reserved u32 (0) */
#define ZERO_OPTD_ATTACH_BODY 40u
#define ZERO_OPTD_ATTACH_REGION 1u          /* ATTACH flag: the client asks for a region */
/* ATTACH's reply body: the region's address in the server (u64), slots,
 * elements per slot, the packed rkey's bytes (u32 each), a reserved u32 (0),
 * then the packed rkey. No region: every field 0 and no rkey. */
#define ZERO_OPTD_ATTACH_REPLY_HEAD 24u
#define ZERO_OPTD_MAX_RKEY 1024u            /* a packed rkey's bytes at most */
#define ZERO_OPTD_MAX_REGION_SLOTS 32u
/* slots x elements per slot at most: 64 MiB of region per data connection */
#define ZERO_OPTD_MAX_REGION_ELEMS ((uint64_t)1 << 23)
#define ZERO_OPTD_STEP_REGION_BODY 88u      /* STEP's head, the slot (u32), a reserved u32 (0) */
#define ZERO_OPTD_STEP_HEAD 80u             /* STEP body before the gradient */
#define ZERO_OPTD_RANGE_HEAD 24u            /* READ / WRITE body before the data */
#define ZERO_OPTD_LAMB_HEAD 96u             /* LAMB1 body before the gradient; all of LAMB2's body */
#define ZERO_OPTD_MAX_HEAD 96u              /* the longest head before an array (LAMB_HEAD) */
#define ZERO_OPTD_MAX_TEXT 512u             /* an error reply's message */
#define ZERO_OPTD_MAX_BODY (ZERO_OPTD_MAX_HEAD + 4u * (uint32_t)ZERO_OPTD_MAX_ELEMS)
#define ZERO_OPTD_MAX_MESSAGE (ZERO_OPTD_HEADER_BYTES + ZERO_OPTD_MAX_BODY)
/* Slice elements per group one connection may declare (bounded so the bytes
 * implied by a hello cannot overflow; the memory limit is the real bound). */
#define ZERO_OPTD_MAX_LENGTH ((uint64_t)1 << 40)

typedef enum zero_optd_type {
    ZERO_OPTD_ERROR = 0,   /* reply only: the refusal of a message the server could not read */
    ZERO_OPTD_HELLO = 1,   /* token, rank, the slices this connection will hold */
    ZERO_OPTD_STEP = 2,    /* a gradient piece and the step's hyper-parameters -> updated weights */
    ZERO_OPTD_READ = 3,    /* a piece of one field -> its fp32 values */
    ZERO_OPTD_WRITE = 4,   /* fp32 values of a piece of one field */
    ZERO_OPTD_BYE = 5,     /* the client is done; its state is freed */
    ZERO_OPTD_ATTACH = 6,  /* first message of a same-host data connection: whose state it uses */
    ZERO_OPTD_LAMB1 = 7,   /* Lamb phase 1: a gradient piece -> per-chunk sums of w^2 and u^2 */
    ZERO_OPTD_LAMB2 = 8,   /* Lamb phase 2: a parameter's summed norms -> updated weights */
    ZERO_OPTD_STEP_REGION = 9,   /* STEP with the gradient in a region slot -> the weights in that slot */
    ZERO_OPTD_TYPE_END
} zero_optd_type_t;

#define ZERO_OPTD_TAG_REPLY ((uint64_t)1 << 63)
/* A split reply's array: on the reply's tag with this bit set too. Keys have
 * it clear (and bit 63), so the tag is no other connection's. */
#define ZERO_OPTD_TAG_DATA ((uint64_t)1 << 62)

/* A reply has its request's type with this bit set. */
#define ZERO_OPTD_REPLY 0x8000u
/* A reply's header with this bit too is a split reply's: the header alone,
 * its body_len bytes following as their own message (ZERO_OPTD_TAG_DATA).
 * On a STEP or LAMB1 request: the header and the head alone, the gradient
 * following as its own message (ZERO_OPTD_TAG_DATA on the request's tag). */
#define ZERO_OPTD_SPLIT 0x4000u

typedef enum zero_optd_parse {
    ZERO_OPTD_PARSE_OK = 0,
    ZERO_OPTD_PARSE_SHORT,     /* fewer bytes than a header, or than the header says */
    ZERO_OPTD_PARSE_MAGIC,     /* not a zero-optd message */
    ZERO_OPTD_PARSE_VERSION,   /* another protocol version */
    ZERO_OPTD_PARSE_TYPE,      /* unknown type, or a reply where a request is expected (or back) */
    ZERO_OPTD_PARSE_LENGTH,    /* a length or count outside its bound, or not matching the body */
    ZERO_OPTD_PARSE_FIELD      /* a field value outside its range (dtype, optimizer, group, field) */
} zero_optd_parse_t;

/* A static phrase for a verdict ("ok", "bad magic", ...). */
const char *zero_optd_parse_string(zero_optd_parse_t verdict);

typedef struct zero_optd_header {
    uint32_t version;
    uint32_t type;            /* zero_optd_type_t, | ZERO_OPTD_REPLY for replies */
    int32_t status;           /* replies: a zero_status_t; 0 = done */
    uint32_t body_len;
    uint64_t conn_key, seq;
} zero_optd_header_t;

typedef struct zero_optd_hello {
    unsigned char token[ZERO_OPTD_TOKEN_BYTES];
    uint32_t rank;
    uint32_t num_groups;      /* 1 .. ZERO_OPTD_MAX_GROUPS */
    uint32_t num_states;      /* 0 .. ZERO_OPTD_MAX_FIELDS - 1 */
    uint64_t length[ZERO_OPTD_MAX_GROUPS];   /* elements per field of each group on this server (0 beyond num_groups) */
} zero_optd_hello_t;

/* The optimizers a server runs (lib/optim's elementwise kernels). */
typedef enum zero_optd_optimizer {
    ZERO_OPTD_ADAM = 1,       /* Adam or AdamW (flags) */
    ZERO_OPTD_SGD = 2,
    ZERO_OPTD_ADAGRAD = 3,
    ZERO_OPTD_LION = 4,
    ZERO_OPTD_OPTIMIZER_END
} zero_optd_optimizer_t;

#define ZERO_OPTD_FLAG_ADAM_W_MODE 1u
#define ZERO_OPTD_FLAG_BIAS_CORRECTION 2u
#define ZERO_OPTD_FLAG_NESTEROV 4u
#define ZERO_OPTD_FLAGS_ALL 7u

/* Element types on the wire: gradients and weights are 0 = fp32, 1 = fp16,
 * 2 = bf16 (zero_dtype_t's numbering). */
typedef struct zero_optd_step {
    uint32_t group, optimizer, grad_dtype, weight_dtype;
    uint64_t begin, count;    /* elements of the server's slice of the group */
    int64_t step;             /* from 1 */
    float lr, beta1, beta2, eps, weight_decay, momentum, dampening, lr_decay, grad_scale;
    uint32_t flags;           /* ZERO_OPTD_FLAG_* */
    const void *grad;         /* [count] of grad_dtype, inside the decoded buffer (little-endian); STEP_REGION: NULL */
    uint32_t slot;            /* STEP_REGION: the region slot holding the gradient (bounded by the server) */
} zero_optd_step_t;

/*
 * LAMB1 and LAMB2: Lamb's two phases over [begin, begin + count) of the
 * server's slice of one group, which lies inside one parameter's range on the
 * client (docs/optd.md, "Lamb on the server"). Both bodies start with the
 * same 96-byte head:
 *   0 group u32   4 isa u32 (lib/optim's level: 0 C, 1 AVX2, 2 AVX-512)
 *   8 grad_dtype u32 (LAMB1; 0 in LAMB2)   12 weight_dtype u32 (LAMB2; 0 in LAMB1)
 *   16 begin u64   24 count u64   32 step i64   40 chunk u32   44 flags u32
 *   48 lr, beta1, beta2, eps, weight_decay, max_coeff, min_coeff, grad_scale (f32 each)
 *   80 w_sq f64   88 u_sq f64 (LAMB2: the parameter's sums over every rank; 0 in LAMB1)
 * LAMB1's gradient (count of grad_dtype) follows; its reply is the sums of
 * w^2 then of u^2 of each chunk of @c chunk elements from begin
 * (ceil(count / chunk) f64 each), formed by the client's kernels (@c isa),
 * so the client adds them up exactly as its own kernel would. LAMB2's reply
 * is the updated weights (count of weight_dtype).
 */
#define ZERO_OPTD_ISA_COUNT 3u
#define ZERO_OPTD_FLAG_EPS_INSIDE_SQRT 8u
#define ZERO_OPTD_LAMB_FLAGS (ZERO_OPTD_FLAG_BIAS_CORRECTION | ZERO_OPTD_FLAG_EPS_INSIDE_SQRT)

typedef struct zero_optd_lamb {
    uint32_t group, isa, grad_dtype, weight_dtype;
    uint64_t begin, count;    /* 1 .. ZERO_OPTD_MAX_ELEMS */
    int64_t step;
    uint32_t chunk;           /* a multiple of 64 in 64 .. ZERO_OPTD_MAX_ELEMS */
    uint32_t flags;           /* ZERO_OPTD_LAMB_FLAGS */
    float lr, beta1, beta2, eps, weight_decay, max_coeff, min_coeff, grad_scale;
    double w_sq, u_sq;
    const void *grad;         /* LAMB1: [count] of grad_dtype inside the decoded buffer; LAMB2: NULL */
} zero_optd_lamb_t;

/* Chunks (so f64 pairs in LAMB1's reply) of a @p count-element piece. */
static inline uint64_t zero_optd_lamb_chunks(uint64_t count, uint32_t chunk)
{
    return chunk == 0 ? 0 : (count + chunk - 1) / chunk;
}

typedef struct zero_optd_range {
    uint32_t group, field;
    uint64_t begin, count;    /* 1 .. ZERO_OPTD_MAX_ELEMS */
    const void *data;         /* WRITE: [count] fp32 inside the decoded buffer; READ: NULL */
} zero_optd_range_t;

/* Bytes per element of a wire dtype (0 when unknown). */
size_t zero_optd_dtype_size(uint32_t dtype);

/* Checks the header of the message @p buf of @p len bytes: magic, version,
 * type (a request when @p want_reply is 0, a reply otherwise), body_len <=
 * ZERO_OPTD_MAX_BODY and len == header + body_len. A split reply's header
 * (ZERO_OPTD_SPLIT, replies only, of STEP, LAMB2 or READ) must have status 0
 * and len == header: its body comes on its own. h->type keeps both bits. */
zero_optd_parse_t zero_optd_decode_header(const unsigned char *buf, size_t len, int want_reply,
                                          zero_optd_header_t *h);
/* A split request's first message, @p buf of @p len bytes (on the server's
 * UCX thread, before the gradient's receive is posted): magic, version, a
 * STEP or LAMB1 request with ZERO_OPTD_SPLIT, len == header + that type's
 * head, and a gradient of 1 .. 4 x ZERO_OPTD_MAX_ELEMS bytes to follow
 * (body_len - head, in *grad_bytes_p). zero_optd_decode_header refuses such
 * a header: the body's decoders only ever see the joined message. */
zero_optd_parse_t zero_optd_decode_split_request(const unsigned char *buf, size_t len, zero_optd_header_t *h,
                                                 size_t *grad_bytes_p);
/* Makes the split request whose header is at @p buf, its gradient received
 * right after its head, the whole message of version 5 would have been (the
 * ZERO_OPTD_SPLIT bit cleared), for zero_optd_decode_header. */
void zero_optd_join_split_request(unsigned char *buf);
/* Body decoders: @p body, @p len as the header says. */
zero_optd_parse_t zero_optd_decode_hello(const unsigned char *body, size_t len, zero_optd_hello_t *hello);
zero_optd_parse_t zero_optd_decode_step(const unsigned char *body, size_t len, zero_optd_step_t *step);
/* READ (@p with_data 0: no data follows) and WRITE (@p with_data 1). */
zero_optd_parse_t zero_optd_decode_range(const unsigned char *body, size_t len, int with_data,
                                         zero_optd_range_t *range);

/* LAMB1 (@p phase 1: the gradient follows the head) and LAMB2 (@p phase 2:
 * the head alone); fields unused by the phase must be 0. */
zero_optd_parse_t zero_optd_decode_lamb(const unsigned char *body, size_t len, int phase, zero_optd_lamb_t *lamb);

/* ATTACH: the key of the client's control connection (the one that said
 * HELLO) and the job token; with ZERO_OPTD_ATTACH_REGION the region it asks
 * for (1..ZERO_OPTD_MAX_REGION_SLOTS slots of 1..ZERO_OPTD_MAX_ELEMS
 * elements, at most ZERO_OPTD_MAX_REGION_ELEMS in all; both 0 without). */
typedef struct zero_optd_attach {
    uint64_t control_key;
    unsigned char token[ZERO_OPTD_TOKEN_BYTES];
    uint32_t flags;
    uint32_t slots, slot_elems;
} zero_optd_attach_t;
zero_optd_parse_t zero_optd_decode_attach(const unsigned char *body, size_t len, zero_optd_attach_t *attach);

/*
 * The region of a same-host data connection (docs/optd.md, "One-sided on
 * one host"): @c slots slots of @c slot_elems elements, slot k at
 * address + k * zero_optd_region_slot_bytes(slot_elems); a slot holds a
 * STEP_REGION's gradient in its first slot_elems * 4 bytes and the weights
 * the server writes back in the next slot_elems * 4 (room for fp32 either
 * way). The client reaches it through the packed rkey (ucp_rkey_ptr).
 */
typedef struct zero_optd_attach_reply {
    uint64_t address;         /* 0 with no region */
    uint32_t slots, slot_elems, rkey_len;
    const void *rkey;         /* [rkey_len] inside the decoded buffer; NULL with no region */
} zero_optd_attach_reply_t;
static inline uint64_t zero_optd_region_slot_bytes(uint32_t slot_elems)
{
    return (uint64_t)slot_elems * 8u;
}
zero_optd_parse_t zero_optd_decode_attach_reply(const unsigned char *body, size_t len,
                                                zero_optd_attach_reply_t *reply);
/* ZERO_OPTD_ATTACH_REPLY_HEAD + reply->rkey_len bytes */
void zero_optd_encode_attach_reply(unsigned char *body, const zero_optd_attach_reply_t *reply);

/* STEP_REGION: STEP's head (count 1..ZERO_OPTD_MAX_ELEMS), then the slot;
 * no gradient follows (step->grad NULL). Whether the slot exists and holds
 * count elements the server checks against the region it allocated. */
zero_optd_parse_t zero_optd_decode_step_region(const unsigned char *body, size_t len, zero_optd_step_t *step);
void zero_optd_encode_step_region(unsigned char *body, const zero_optd_step_t *step);   /* STEP_REGION_BODY */

/* Encoders write exactly the sizes named (header: ZERO_OPTD_HEADER_BYTES). */
void zero_optd_encode_header(unsigned char *buf, const zero_optd_header_t *h);
void zero_optd_encode_hello(unsigned char *body, const zero_optd_hello_t *hello);    /* HELLO_BODY */
void zero_optd_encode_step_head(unsigned char *body, const zero_optd_step_t *step);  /* STEP_HEAD; grad follows */
void zero_optd_encode_range_head(unsigned char *body, const zero_optd_range_t *range);  /* RANGE_HEAD */
void zero_optd_encode_lamb_head(unsigned char *body, const zero_optd_lamb_t *lamb);     /* LAMB_HEAD; LAMB1's grad follows */
void zero_optd_encode_attach(unsigned char *body, const zero_optd_attach_t *attach);   /* ATTACH_BODY */

/*
 * The doorway (version 8; docs/optd.md, "The doorway"): before any UCX
 * object exists for a client, it asks for a connection over a plain TCP
 * connection to zero-optd's --listen address, one request and one answer,
 * and the server closes the socket. Accepted, each side creates its UCX
 * endpoint from the other's worker address; refused, the answer says why.
 * Request (client to server):
 *   0  u32 magic "ZOPD"   4  u16 version   6  u16 kind (ZERO_OPTD_DOOR_*)
 *   8  u32 address_len (1 .. ZERO_OPTD_MAX_WORKER_ADDRESS)   12 u32 reserved (0)
 *   16 the job token (16 bytes)
 *   32 u64 ticket (data: the one HELLO's reply handed out; control: 0)
 *   40 the client worker's UCX address (address_len bytes)
 * Answer (server to client):
 *   0  u32 magic   4  u16 version   6  u16 kind (the request's; 0 when it had none)
 *   8  i32 status (0: accepted; else a zero_status_t)
 *   12 u32 len (accepted: the address's bytes, 1 .. ZERO_OPTD_MAX_WORKER_ADDRESS;
 *      refused: the text's, 0 .. ZERO_OPTD_MAX_DOOR_TEXT)
 *   16 u64 conn_key (accepted: the connection's key; refused: 0)
 *   24 accepted: the UCX worker address to connect to (the control worker's,
 *      or the data connection's own worker's); refused: the reason, text
 *      without a NUL
 * Both decoders take a prefix of a stream: ZERO_OPTD_PARSE_SHORT means more
 * bytes are needed; once the head is in (len >= the head) and passed its
 * checks, the message's whole size is known: the head plus address_len
 * (request) or len (answer), which the decoder sets before it answers SHORT.
 */
#define ZERO_OPTD_DOOR_REQUEST_HEAD 40u
#define ZERO_OPTD_DOOR_ANSWER_HEAD 24u
/* A UCX worker address's bytes at most (one with tcp, posix and sysv on a
 * host with a few interfaces is a few hundred; InfiniBand devices add tens
 * of bytes each) */
#define ZERO_OPTD_MAX_WORKER_ADDRESS 8192u
#define ZERO_OPTD_MAX_DOOR_TEXT 256u
#define ZERO_OPTD_DOOR_REQUEST_MAX (ZERO_OPTD_DOOR_REQUEST_HEAD + ZERO_OPTD_MAX_WORKER_ADDRESS)
#define ZERO_OPTD_DOOR_ANSWER_MAX (ZERO_OPTD_DOOR_ANSWER_HEAD + ZERO_OPTD_MAX_WORKER_ADDRESS)

typedef enum zero_optd_door_kind {
    ZERO_OPTD_DOOR_CONTROL = 1,   /* a control connection (peer-failure mode, HELLO follows) */
    ZERO_OPTD_DOOR_DATA = 2       /* a same-host data connection (shared memory, ATTACH follows) */
} zero_optd_door_kind_t;

typedef struct zero_optd_door_request {
    uint32_t version;         /* set before a VERSION verdict too, so a refusal can name it */
    uint32_t kind;            /* zero_optd_door_kind_t */
    uint32_t address_len;
    unsigned char token[ZERO_OPTD_TOKEN_BYTES];
    uint64_t ticket;
    const void *address;      /* [address_len] inside the decoded buffer */
} zero_optd_door_request_t;

typedef struct zero_optd_door_answer {
    uint32_t kind;
    int32_t status;
    uint32_t len;
    uint64_t conn_key;
    const void *address;      /* accepted: [len] inside the decoded buffer; refused: NULL */
    const char *text;         /* refused: [len] bytes (no NUL) inside the decoded buffer; accepted: NULL */
} zero_optd_door_answer_t;

/* A request's first @p len bytes: SHORT (more needed; address_len set once
 * the head is in and good), MAGIC, VERSION (req->version set), TYPE (no such
 * kind), LENGTH (address_len 0 or over the bound, or bytes beyond the
 * request), FIELD (the reserved word not 0, a control request with a
 * ticket), or OK with every field set. */
zero_optd_parse_t zero_optd_decode_door_request(const unsigned char *buf, size_t len, zero_optd_door_request_t *req);
/* Writes the request, ZERO_OPTD_DOOR_REQUEST_HEAD + req->address_len bytes
 * (the caller keeps address_len within its bound); returns that size. */
size_t zero_optd_encode_door_request(unsigned char *buf, const zero_optd_door_request_t *req);
/* An answer's first @p len bytes, as the request's decoder does: SHORT
 * (ans->len set once the head is in and good), MAGIC, VERSION, TYPE (a kind
 * other than the two, or 0 on an acceptance), LENGTH (len outside its bound
 * for the status, or bytes beyond the answer), FIELD (a refusal with a
 * key), or OK. */
zero_optd_parse_t zero_optd_decode_door_answer(const unsigned char *buf, size_t len, zero_optd_door_answer_t *ans);
/* Writes the answer, ZERO_OPTD_DOOR_ANSWER_HEAD + ans->len bytes, from
 * ans->address (accepted) or ans->text (refused); returns that size. */
size_t zero_optd_encode_door_answer(unsigned char *buf, const zero_optd_door_answer_t *ans);

/* The 32-hex-digit form of a job token (ZERO_JOB_TOKEN, --token-file; one
 * trailing newline allowed) -> 16 bytes. Returns 0 on success, -1 otherwise. */
int zero_optd_token_parse(const char *text, size_t len, unsigned char token[ZERO_OPTD_TOKEN_BYTES]);

#endif /* ZERO_OFFLOAD_OPTD_WIRE_H */
