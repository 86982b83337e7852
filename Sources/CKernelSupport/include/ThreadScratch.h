// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_THREADSCRATCH_H
#define DPOLOSS_THREADSCRATCH_H

// Doubles in each thread's scratch buffer: three chunk buffers of 512.
#define DPO_THREAD_SCRATCH_COUNT 1536

// Returns the calling thread's scratch buffer of DPO_THREAD_SCRATCH_COUNT
// doubles, 64-byte aligned. The kernels use it for their chunk buffers, so
// that a call makes no heap allocation: Swift's withUnsafeTemporaryAllocation
// uses the heap above 1 KiB. The buffer is thread-local storage; the C
// runtime may allocate it on a thread's first call, never after. A kernel
// must not call another kernel while it uses the buffer.
double *dpo_thread_scratch(void);

#endif
