/* The quick-start's C run (quickstart_c.c), callable from the C++ test. */
#ifndef QUICKSTART_C_H
#define QUICKSTART_C_H

#include "quickstart_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Trains QS_STEPS optimizer steps through the C API. Writes each step's mean
 * loss into losses[QS_STEPS] and the final weights (W then b) into
 * weights[QS_OUT * QS_IN + QS_OUT]. Returns 0, or -1 after printing the
 * engine's last error.
 */
int qs_run_c(float *losses, float *weights);

#ifdef __cplusplus
}
#endif

#endif /* QUICKSTART_C_H */
