/* What cnnlab's CPU kernels (cpu_block.c, cpu_norm.c) share: headers, the thread count
 * of a piece of work, denormal flushing, and allocation that fails cleanly.
 *
 * Every allocation is checked: a kernel that cannot get its working memory returns
 * CNNLAB_OUT_OF_MEMORY (0 otherwise) after freeing what it had, and the Python side
 * raises MemoryError, instead of writing through a null pointer and killing the process
 * (a notebook's kernel with it). */
#ifndef CNNLAB_CPU_COMMON_H
#define CNNLAB_CPU_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FLUSH_DENORMALS() _mm_setcsr(_mm_getcsr() | 0x8040) /* FTZ and DAZ */
#else
#define FLUSH_DENORMALS()
#endif

#define INLINE static inline __attribute__((always_inline))
#define CNNLAB_OUT_OF_MEMORY 1
#define ALIGN 64 /* bytes: a cache line, and any vector of any target */

/* count items of size bytes, 64-byte aligned, zeroed if asked; NULL where the size is
 * negative (an overflowed shape), beyond what can be addressed, or not to be had. */
static inline void *allocate(long count, long size, int zero) {
    if (count < 0 || size <= 0 || count > (PTRDIFF_MAX - ALIGN) / size) return NULL;
    size_t bytes = ((size_t)(count ? count : 1) * (size_t)size + ALIGN - 1) / ALIGN * ALIGN;
    void *p = aligned_alloc(ALIGN, bytes);
    if (p && zero) memset(p, 0, bytes);
    return p;
}

/* Record, from any thread, that an allocation failed. */
static inline void failed_to_allocate(int *failed) {
    #pragma omp atomic write
    *failed = CNNLAB_OUT_OF_MEMORY;
}

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Threads for work items: at most one per item, at least one. */
static inline int threads_for(long items, long threads) {
    return (int)(items < threads ? (items > 0 ? items : 1) : threads);
}

#endif
