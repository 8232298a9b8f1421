/*
 * The rendezvous wire format (docs/comm.md, "Rendezvous"), as pure functions
 * over byte buffers: no sockets, no allocation, no logging, no global state.
 * rendezvous.c does the I/O and calls these on whatever bytes have arrived so
 * far; tests/fuzz/fuzz_rendezvous.c feeds them arbitrary bytes.
 *
 * Every parser takes the bytes received so far (@p buf, @p len; @p buf may be
 * NULL when @p len is 0) and answers one of:
 *   ZERO_RDV_PARSE_OK    a complete, valid message (its size in *need_p);
 *   ZERO_RDV_PARSE_MORE  the bytes are a valid prefix: wait until *need_p bytes
 *                        in all have arrived, then call again;
 *   any other value      the message is refused; the reason is final (more
 *                        bytes would not change it), so the caller can drop
 *                        the connection at once. A wrong magic is seen on the
 *                        first byte that differs.
 * Integers are big-endian. Parsers never read past @p len.
 */
#ifndef ZERO_COMM_RDV_WIRE_H
#define ZERO_COMM_RDV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define ZERO_RDV_VERSION 1u
#define ZERO_RDV_TOKEN_BYTES 16           /* = ZERO_COMM_TOKEN_BYTES */
#define ZERO_RDV_HELLO_BYTES 64           /* client -> rank 0, first message */
#define ZERO_RDV_REPLY_HEAD_BYTES 64      /* rank 0 -> client, answer header */
#define ZERO_RDV_FRAME_BYTES 20           /* control frames, both ways, after the rendezvous */
#define ZERO_RDV_MAX_BLOB (64u * 1024u)   /* one rank's record */
#define ZERO_RDV_MAX_EXTRA 4096u          /* rank 0's extra bytes (the NCCL unique id) */
#define ZERO_RDV_MAX_WORLD 65536          /* = ZERO_COMM_MAX_WORLD */

typedef enum zero_rdv_parse {
    ZERO_RDV_PARSE_OK = 0,
    ZERO_RDV_PARSE_MORE,      /* valid so far; *need_p bytes in all are needed */
    ZERO_RDV_PARSE_NOT_RDV,   /* wrong magic: not a libzero rendezvous message at all */
    ZERO_RDV_PARSE_TOKEN,     /* the job token differs */
    ZERO_RDV_PARSE_VERSION,   /* another protocol version */
    ZERO_RDV_PARSE_WORLD,     /* rank or world size does not fit the job */
    ZERO_RDV_PARSE_LENGTH,    /* a length outside its bound */
    ZERO_RDV_PARSE_REFUSED,   /* reply only: rank 0 refused this client (reply->code says why) */
    ZERO_RDV_PARSE_TYPE       /* frame only: unknown frame type */
} zero_rdv_parse_t;

/* Why rank 0 refused a client: bytes 20-23 of a reply header (0 = accepted).
 * A refusal carries no token and nothing else of the job. */
typedef enum zero_rdv_refusal {
    ZERO_RDV_ACCEPTED = 0,
    ZERO_RDV_REFUSED_TOKEN = 1,        /* token mismatch */
    ZERO_RDV_REFUSED_VERSION = 2,      /* protocol version mismatch */
    ZERO_RDV_REFUSED_WORLD = 3,        /* rank / world size do not fit rank 0's job */
    ZERO_RDV_REFUSED_RANK_TAKEN = 4,   /* another connection already joined as this rank */
    ZERO_RDV_REFUSED_LENGTH = 5        /* record length outside [1, ZERO_RDV_MAX_BLOB] */
} zero_rdv_refusal_t;

/* Control frames after the rendezvous (see rendezvous.c for their meaning). */
typedef enum zero_rdv_frame_type {
    ZERO_RDV_FRAME_BYE = 1,
    ZERO_RDV_FRAME_BYE_ACK = 2,
    ZERO_RDV_FRAME_ABORT = 3,
    ZERO_RDV_FRAME_FAILED = 4
} zero_rdv_frame_type_t;

/* What a message is checked against: the job as this process knows it. */
typedef struct zero_rdv_job {
    uint32_t size;                                /* world size, >= 2 */
    const unsigned char *token;                   /* ZERO_RDV_TOKEN_BYTES (all zero without a token) */
} zero_rdv_job_t;

typedef struct zero_rdv_hello {
    uint32_t version, rank, world;
    uint32_t record_len;                          /* bytes of record that follow the hello */
} zero_rdv_hello_t;

typedef struct zero_rdv_reply {
    uint32_t version;
    uint32_t code;                                /* zero_rdv_refusal_t; 0 on OK */
    uint32_t world, extra_len;
    uint32_t bad_rank, bad_len;                   /* LENGTH: whose record length (bad_rank == world: the extra) */
    const unsigned char *lens;                    /* world big-endian u32 record lengths, in buf */
    const unsigned char *records;                 /* the records, concatenated, in buf */
    const unsigned char *extra;                   /* extra_len bytes, in buf */
} zero_rdv_reply_t;

typedef struct zero_rdv_frame {
    uint32_t type;                                /* zero_rdv_frame_type_t */
    uint32_t arg, arg2, arg3;
} zero_rdv_frame_t;

/* Rank 0 parses a client's hello (magic, token, version, rank in 1..size-1,
 * world, record length in [1, ZERO_RDV_MAX_BLOB], checked in that order; the
 * token in constant time). Once all 64 bytes are in, *hello_p is filled
 * whatever the verdict (a refusal's message can name the fields). */
zero_rdv_parse_t zero_rdv_hello_parse(const unsigned char *buf, size_t len, const zero_rdv_job_t *job,
                                      zero_rdv_hello_t *hello_p, size_t *need_p);

/* A client parses rank 0's answer: header, record lengths, records, extra
 * bytes. A refusal (ZERO_RDV_PARSE_REFUSED, code in reply_p->code) is
 * recognised from the header alone; an acceptance must carry the job's token
 * and world size. The header's fields are in *reply_p as far as they were
 * read, whatever the verdict (for the caller's message); on OK the pointers
 * point into @p buf and *need_p is the size of the whole answer (bytes after
 * it are not part of it). */
zero_rdv_parse_t zero_rdv_reply_parse(const unsigned char *buf, size_t len, const zero_rdv_job_t *job,
                                      zero_rdv_reply_t *reply_p, size_t *need_p);

/* Either side parses a control frame. */
zero_rdv_parse_t zero_rdv_frame_parse(const unsigned char *buf, size_t len, zero_rdv_frame_t *frame_p,
                                      size_t *need_p);

/* Record @p rank's length from a parsed reply (rank < reply->world). */
uint32_t zero_rdv_reply_record_len(const zero_rdv_reply_t *reply, uint32_t rank);

/* Writers: exactly ZERO_RDV_HELLO_BYTES, ZERO_RDV_REPLY_HEAD_BYTES or ZERO_RDV_FRAME_BYTES bytes. */
void zero_rdv_hello_write(unsigned char *out, const zero_rdv_job_t *job, uint32_t rank, uint32_t record_len);
void zero_rdv_reply_head_write(unsigned char *out, const zero_rdv_job_t *job, uint32_t extra_len);
void zero_rdv_refusal_write(unsigned char *out, zero_rdv_refusal_t code);
void zero_rdv_frame_write(unsigned char *out, zero_rdv_frame_type_t type, uint32_t arg, uint32_t arg2, uint32_t arg3);

/* Short static descriptions for log messages (never NULL). */
const char *zero_rdv_parse_string(zero_rdv_parse_t verdict);
const char *zero_rdv_refusal_string(uint32_t code);

/* The refusal rank 0 answers a client whose hello got @p verdict (TOKEN,
 * VERSION, WORLD or LENGTH). Any other verdict gives ZERO_RDV_ACCEPTED: OK is
 * no refusal, and a NOT_RDV client is not answered at all. */
zero_rdv_refusal_t zero_rdv_refusal_of(zero_rdv_parse_t verdict);

#endif /* ZERO_COMM_RDV_WIRE_H */
