/*
 * Integrity of a rank file's metadata (format version 2,
 * docs/checkpoint-format.md "Integrity").
 *
 * The metadata of a rank file -- every attribute of every group and dataset,
 * the values of every dataset outside /shard (the partition map, config_json),
 * and the type, shape, layout and filters of every dataset -- is turned into a
 * list of items, one per object, in a fixed order (objects and attributes by
 * name). Each item is hashed with SHA-256 over a canonical serialization of
 * its name, datatype, dataspace and raw stored value. The root attribute
 * `meta_digest` (a string) lists them, one "<sha256 hex> <item>" line each,
 * and ends with a line "<sha256 hex> *" over all the lines before it. The
 * tensors under /shard are covered chunk by chunk by Fletcher-32 instead.
 *
 * Reading the items back through HDF5 and comparing them with the list names
 * every object whose value, type or presence changed; a damaged list itself
 * fails its own last line.
 */
#ifndef ZERO_CKPT_CKPT_DIGEST_H
#define ZERO_CKPT_CKPT_DIGEST_H

#include "ckpt/ckpt_internal.h"

#include <hdf5.h>

/* The root attribute holding the digest list. */
#define CKPT_META_DIGEST_ATTR "meta_digest"

/*
 * Computes the digest list of the open file @p file (everything written so
 * far) and stores it as the root attribute meta_digest: the last metadata
 * written to a rank file. Errors are logged naming @p path; returns -1.
 */
int ckpt_meta_digest_write(hid_t file, const char *path, ckpt_err_t *err);

/*
 * Checks the open file @p file against its meta_digest. Every damaged object
 * is logged (ERROR) naming @p path and the object (the first is recorded in
 * @p err, status ZERO_ERR_CHECKPOINT). Returns the number of damaged objects
 * (0: intact). A file without meta_digest counts as one damaged object; the
 * caller decides beforehand whether its format version needs one.
 */
int ckpt_meta_digest_check(hid_t file, const char *path, ckpt_err_t *err);

#endif /* ZERO_CKPT_CKPT_DIGEST_H */
