/* The vectors of cnnlab's lane-wise kernels (cpu_block.c, cpu_dense.c): one vector is one
 * register of the target the flags enable. */
#ifndef CNNLAB_CPU_VECTOR_H
#define CNNLAB_CPU_VECTOR_H

/* V lanes, and register blocks sized so that the inner loops' accumulators stay in the
 * REGS vector registers (16 with AVX2 or SSE, 32 with AVX-512 or NEON). */
#if defined(__AVX512F__)
#define V 16
#define REGS 32
#elif defined(__AVX__)
#define V 8
#define REGS 16
#elif defined(__aarch64__)
#define V 4
#define REGS 32
#else
#define V 4
#define REGS 16
#endif
typedef float vf __attribute__((vector_size(V * sizeof(float))));
typedef int vi __attribute__((vector_size(V * sizeof(int))));
/* For vectors in a tensor of the caller's: no alignment assumed. */
typedef vf vfu __attribute__((aligned(sizeof(float))));

static inline vf splat(float s) { return (vf){0} + s; }
static inline vf pick(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

#endif
