// DPOLoss: a fast, exact Direct Preference Optimization loss kernel.
// SPDX-License-Identifier: Apache-2.0

// Counts heap allocations per thread by defining glibc's allocation entry
// points in the test executable, which the dynamic linker then binds every
// library to (ELF symbol interposition), and forwarding to glibc's own
// implementations. `free` is not replaced: the memory still comes from
// glibc's allocator. glibc documents this kind of replacement in "Replacing
// malloc" of its manual.

#include <errno.h>
#include <stddef.h>

#include "AllocationCounter.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

// initial-exec: reading the counter never calls __tls_get_addr, which could
// allocate and recurse into malloc.
static _Thread_local long allocation_count
    __attribute__((tls_model("initial-exec")));

long dpo_thread_allocation_count(void) { return allocation_count; }

void *malloc(size_t size) {
  allocation_count += 1;
  return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
  allocation_count += 1;
  return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
  allocation_count += 1;
  return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size) {
  allocation_count += 1;
  return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
  allocation_count += 1;
  return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
  allocation_count += 1;
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
    return EINVAL;
  }
  void *pointer = __libc_memalign(alignment, size);
  if (pointer == NULL) {
    return ENOMEM;
  }
  *result = pointer;
  return 0;
}
