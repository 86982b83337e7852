// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_COPENBLAS_SHIM_H
#define DPOLOSS_COPENBLAS_SHIM_H

// Debian's libopenblas-dev puts cblas.h on the default include path through
// update-alternatives, so this resolves with or without pkg-config.
#include <cblas.h>

#endif
