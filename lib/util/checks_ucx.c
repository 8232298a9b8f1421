#include "util/checks_ucx.h"

zero_status_t zero_status_from_ucs(ucs_status_t status)
{
    switch (status) {
    case UCS_OK:                   return ZERO_OK;
    case UCS_INPROGRESS:           return ZERO_INPROGRESS;
    case UCS_ERR_NO_MEMORY:        return ZERO_ERR_NO_MEMORY;
    case UCS_ERR_INVALID_PARAM:    return ZERO_ERR_INVALID_ARG;
    case UCS_ERR_TIMED_OUT:        return ZERO_ERR_TIMEOUT;
    case UCS_ERR_CANCELED:         return ZERO_ERR_ABORTED;
    case UCS_ERR_UNSUPPORTED:      return ZERO_ERR_UNSUPPORTED;
    case UCS_ERR_IO_ERROR:         return ZERO_ERR_IO;
    case UCS_ERR_MESSAGE_TRUNCATED: return ZERO_ERR_PROTOCOL;
    default:                       return ZERO_ERR_COMM;
    }
}
