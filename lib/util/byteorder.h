/*
 * Fixed-order 16-, 32- and 64-bit integers in byte buffers (wire records,
 * file trailers), whatever the host's byte order.
 */
#ifndef ZERO_UTIL_BYTEORDER_H
#define ZERO_UTIL_BYTEORDER_H

#include <stdint.h>

static inline void zero_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t zero_get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void zero_put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint32_t zero_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void zero_put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline uint16_t zero_get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline void zero_put_le64(unsigned char *p, uint64_t v)
{
    zero_put_le32(p, (uint32_t)v);
    zero_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t zero_get_le64(const unsigned char *p)
{
    return (uint64_t)zero_get_le32(p) | (uint64_t)zero_get_le32(p + 4) << 32;
}

#endif /* ZERO_UTIL_BYTEORDER_H */
