// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

#ifndef DPOLOSS_NONTEMPORALSTORE_H
#define DPOLOSS_NONTEMPORALSTORE_H

// Streaming (non-temporal) stores for outputs too large to stay in cache:
// they skip the read-for-ownership of each cache line, so writing a gradient
// costs its own bytes of memory traffic instead of twice that. Swift has no
// such store, so these inline functions wrap Clang's builtin. Swift imports
// `dpo_double8` as `SIMD8<Double>`.

typedef double dpo_double8 __attribute__((ext_vector_type(8)));
typedef double dpo_double4 __attribute__((ext_vector_type(4)));
typedef double dpo_double2 __attribute__((ext_vector_type(2)));

// Stores eight doubles at `pointer`, which must be 16-byte aligned, as four
// 16-byte streaming stores. Consecutive calls fill whole cache lines.
static inline void dpo_stream_store8(double *pointer, dpo_double8 value) {
  // An empty asm that claims to change `value` keeps it in whole registers.
  // Without it, LLVM narrows the whole computation that feeds these 16-byte
  // stores into 16-byte vector operations, which is up to four times the
  // work. SSE2 registers are 16 bytes anyway.
#if defined(__AVX512F__)
  __asm__("" : "+v"(value));
#elif defined(__AVX__)
  dpo_double4 low = value.lo;
  dpo_double4 high = value.hi;
  __asm__("" : "+v"(low), "+v"(high));
  value.lo = low;
  value.hi = high;
#endif
  __builtin_nontemporal_store(value.s01, (dpo_double2 *)pointer);
  __builtin_nontemporal_store(value.s23, (dpo_double2 *)(pointer + 2));
  __builtin_nontemporal_store(value.s45, (dpo_double2 *)(pointer + 4));
  __builtin_nontemporal_store(value.s67, (dpo_double2 *)(pointer + 6));
}

// Asks the hardware to start loading the cache line at `pointer`, for
// reading soon. Never faults, even past the end of an allocation.
static inline void dpo_prefetch(const double *pointer) {
  __builtin_prefetch(pointer, 0, 3);
}

// Orders earlier streaming stores before later stores, so that another
// thread that reads a later store also reads the streamed data.
static inline void dpo_store_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_sfence();
#else
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

#endif
