/*
 * HDF5 error translation (see util/checks.h for the pattern): the one place
 * libzero reads HDF5's error stack.
 *
 * HDF5 calls return a negative herr_t or hid_t on failure and push a stack of
 * messages, from the API call down to the function that failed. HDF5 clears
 * that stack at the start of its next API call (a clean-up's H5Dclose, say),
 * so it must be read when the failure happens: zero_hdf5_quiet() installs a
 * handler that does so, in place of HDF5's own printing (each error reaches
 * the user once, through libzero's log). The handler keeps, per thread, the
 * innermost message (the most specific: "checksum error", "truncated file")
 * and the errno of the system call that failed under HDF5's file driver, if
 * any ("No space left on device" is the cause a user needs first, and the
 * driver's long message can bury it).
 *
 *   zero_hdf5_quiet();
 *   if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
 *       zero_hdf5_last_error(why, sizeof(why));   (then log or record "cannot open <path>: <why>")
 *
 * lib/ckpt reports through ckpt_fail_h5 (ckpt_internal.h), which appends this
 * cause and records the rank's first error for the cross-rank agreement; there
 * is no separate check macro, since every HDF5 failure there needs its own
 * status (ZERO_ERR_IO for a file that cannot be written, ZERO_ERR_CHECKPOINT
 * for a damaged one).
 */
#ifndef ZERO_UTIL_CHECKS_HDF5_H
#define ZERO_UTIL_CHECKS_HDF5_H

#include <hdf5.h>
#include "util/checks.h"

/* Replaces HDF5's error printing on the default stack by the capture above.
 * Call it before HDF5 calls whose failures you report (cheap; idempotent). */
void zero_hdf5_quiet(void);

/* The cause of the last failed HDF5 call on this thread, into @p buf (one
 * line): "<errno text> (HDF5: <innermost message>)" when a system call failed
 * under HDF5, else "<innermost message>", else "HDF5 error" (nothing captured:
 * zero_hdf5_quiet was not called). */
void zero_hdf5_last_error(char *buf, size_t size);

#endif /* ZERO_UTIL_CHECKS_HDF5_H */
