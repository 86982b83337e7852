// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_CKERNELSUPPORT_H
#define DPOLOSS_CKERNELSUPPORT_H

// What the Swift kernels need from C: the build's target features, streaming
// stores and a per-thread scratch buffer.

#include "CPUFeatures.h"
#include "NonTemporalStore.h"
#include "ThreadScratch.h"

#endif
