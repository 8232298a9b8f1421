/*
 * libzero: ZeRO-sharded data-parallel training for C and C++ trainers.
 *
 * The umbrella header: include this one and link -lzero (pkg-config zero).
 * Each header below is self-contained and documented in full. Every header
 * compiles as C11 and as C++17/C++20; C++ programs may also include
 * <zero/zero.hpp>, an optional RAII wrapper with exceptions (docs/cpp.md).
 */
#ifndef ZERO_ZERO_H
#define ZERO_ZERO_H

#include <zero/export.h>
#include <zero/version.h>
#include <zero/status.h>
#include <zero/log.h>
#include <zero/memory.h>
#include <zero/types.h>
#include <zero/convert.h>
#include <zero/config.h>
#include <zero/comm.h>
#include <zero/engine.h>
#include <zero/sampler.h>

#endif /* ZERO_ZERO_H */
