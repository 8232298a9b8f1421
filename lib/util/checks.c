#include "util/checks.h"

zero_status_t zero_status_from_errno(int err)
{
    switch (err) {
    case 0:            return ZERO_OK;
    case ENOMEM:       return ZERO_ERR_NO_MEMORY;
    case ETIMEDOUT:    return ZERO_ERR_TIMEOUT;
    case ENOENT:       return ZERO_ERR_NOT_FOUND;
    case EINVAL:       return ZERO_ERR_INVALID_ARG;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:  return ZERO_ERR_COMM;
    case EOVERFLOW:
    case ERANGE:       return ZERO_ERR_OVERFLOW;
    case ECANCELED:    return ZERO_ERR_ABORTED;
    default:           return ZERO_ERR_IO;
    }
}
