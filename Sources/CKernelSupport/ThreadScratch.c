// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#include "ThreadScratch.h"

static _Thread_local double thread_scratch[DPO_THREAD_SCRATCH_COUNT]
    __attribute__((aligned(64)));

double *dpo_thread_scratch(void) { return thread_scratch; }
