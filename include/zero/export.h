/*
 * Symbol export and language glue shared by every public header.
 *
 * libzero is built with -fvisibility=hidden: only declarations marked ZERO_API
 * are part of the ABI. Trainers never need to define anything to use it.
 */
#ifndef ZERO_EXPORT_H
#define ZERO_EXPORT_H

#if defined(ZERO_BUILDING_LIBRARY) && defined(__GNUC__)
#define ZERO_API __attribute__((visibility("default")))
#else
#define ZERO_API
#endif

#ifdef __cplusplus
#define ZERO_BEGIN_DECLS extern "C" {
#define ZERO_END_DECLS }
#else
#define ZERO_BEGIN_DECLS
#define ZERO_END_DECLS
#endif

/* printf-style format checking on the library's variadic calls. */
#if defined(__GNUC__)
#define ZERO_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define ZERO_PRINTF(fmt_idx, arg_idx)
#endif

#endif /* ZERO_EXPORT_H */
