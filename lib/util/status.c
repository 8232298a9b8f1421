#include "zero_build_config.h"
#include <zero/status.h>
#include <zero/version.h>

const char *zero_status_string(zero_status_t status)
{
    switch (status) {
    case ZERO_OK:              return "success";
    case ZERO_INPROGRESS:      return "operation in progress";
    case ZERO_ERR_INVALID_ARG: return "invalid argument";
    case ZERO_ERR_NO_MEMORY:   return "out of memory";
    case ZERO_ERR_IO:          return "input/output error";
    case ZERO_ERR_CONFIG:      return "invalid configuration";
    case ZERO_ERR_UNSUPPORTED: return "unsupported feature";
    case ZERO_ERR_COMM:        return "communication error";
    case ZERO_ERR_TIMEOUT:     return "timed out";
    case ZERO_ERR_CUDA:        return "CUDA error";
    case ZERO_ERR_NCCL:        return "NCCL error";
    case ZERO_ERR_HDF5:        return "HDF5 error";
    case ZERO_ERR_STATE:       return "call not valid in the current state";
    case ZERO_ERR_CHECKPOINT:  return "invalid checkpoint";
    case ZERO_ERR_LOSS_SCALE:  return "loss scale at minimum and still overflowing";
    case ZERO_ERR_NOT_FOUND:   return "not found";
    case ZERO_ERR_PROTOCOL:    return "protocol error";
    case ZERO_ERR_ABORTED:     return "aborted";
    case ZERO_ERR_OVERFLOW:    return "value too large";
    case ZERO_ERR_INTERNAL:    return "internal error";
    }
    return "unknown status";
}

const char *zero_version(void)
{
    return ZERO_VERSION_STRING;
}

int zero_version_code(void)
{
    return ZERO_VERSION_CODE;
}
