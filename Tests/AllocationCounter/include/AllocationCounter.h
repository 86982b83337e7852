// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_ALLOCATIONCOUNTER_H
#define DPOLOSS_ALLOCATIONCOUNTER_H

// Returns how many heap allocations (malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign) the calling thread has made since
// it started. Only the test executable links this, so the counts include
// allocations by Swift's runtime and by OpenBLAS.
long dpo_thread_allocation_count(void);

#endif
