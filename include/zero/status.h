/*
 * Status codes returned by every libzero call.
 *
 * ZERO_OK is 0, ZERO_INPROGRESS (a non-blocking operation has not finished) is
 * positive, and every error is negative. The function that detects an error
 * logs it once, with its exact cause (file, dataset, JSON path, peer rank,
 * errno text); the status itself only names the class of the error.
 */
#ifndef ZERO_STATUS_H
#define ZERO_STATUS_H

#include <zero/export.h>

ZERO_BEGIN_DECLS

typedef enum zero_status {
    ZERO_OK               = 0,   /**< success */
    ZERO_INPROGRESS       = 1,   /**< a non-blocking operation is still running */

    ZERO_ERR_INVALID_ARG  = -1,  /**< a NULL or out-of-range argument, a bad flag */
    ZERO_ERR_NO_MEMORY    = -2,  /**< host, pinned or device allocation failed */
    ZERO_ERR_IO           = -3,  /**< a file or socket operation failed (errno text is logged) */
    ZERO_ERR_CONFIG       = -4,  /**< the JSON config is malformed or inconsistent */
    ZERO_ERR_UNSUPPORTED  = -5,  /**< a requested feature is not available; never silently downgraded */
    ZERO_ERR_COMM         = -6,  /**< a peer died, refused or sent something malformed */
    ZERO_ERR_TIMEOUT      = -7,  /**< an operation did not finish within its configured bound */
    ZERO_ERR_CUDA         = -8,  /**< the CUDA runtime reported an error */
    ZERO_ERR_NCCL         = -9,  /**< NCCL reported an error */
    ZERO_ERR_HDF5         = -10, /**< the HDF5 library reported an error */
    ZERO_ERR_STATE        = -11, /**< a call made in the wrong order (e.g. register after setup) */
    ZERO_ERR_CHECKPOINT   = -12, /**< a checkpoint is missing, corrupt or does not match the model */
    ZERO_ERR_LOSS_SCALE   = -13, /**< fp16 overflow with the loss scale already at its minimum */
    ZERO_ERR_NOT_FOUND    = -14, /**< a named object (file, parameter, key) does not exist */
    ZERO_ERR_PROTOCOL     = -15, /**< a rendezvous or wire message is malformed or unauthenticated */
    ZERO_ERR_ABORTED      = -16, /**< the operation was cancelled because the job is shutting down */
    ZERO_ERR_OVERFLOW     = -17, /**< a size or count does not fit the type that must hold it */
    ZERO_ERR_INTERNAL     = -18  /**< an internal invariant failed: a bug in libzero, please report */
} zero_status_t;

/**
 * A short, static, human-readable description of a status code.
 * Never returns NULL; an unknown code gives "unknown status".
 * Thread safety: safe from any thread.
 */
ZERO_API const char *zero_status_string(zero_status_t status);

/** The library version as "MAJOR.MINOR.PATCH" (static string, never NULL). */
ZERO_API const char *zero_version(void);

/** The library version as ZERO_VERSION_CODE of the library actually loaded. */
ZERO_API int zero_version_code(void);

ZERO_END_DECLS

#endif /* ZERO_STATUS_H */
