/* cnnlab's matrix product for linear layers on a CPU: c = p q, plus a bias on every row,
 * float32; the forward and both gradients of nn.Linear are one such product each.
 *
 * PyTorch's linear layers call MKL's sgemm, which ran LeNet's products at about a third of
 * the FMA peak on an AMD EPYC with AVX-512 (256 x 400 by 400 x 120 in 133 us on 2 threads;
 * docs/speed.md). Here a thread takes tiles of ROWS rows by COLS vectors of columns of c
 * whose sums stay in registers over the whole of k: each step loads one vector of q per
 * column vector and broadcasts one value of p per row. p is read through two strides, so
 * a transposed operand (the weight gradient's) needs no copy; q's rows are contiguous, and
 * a row's columns past its last whole vector are loaded and stored under a mask.
 *
 * Every value of c is one thread's sum over k in order, starting from the bias (or zero):
 * the results depend on the inputs only, not on the thread count.
 */
#include "cpu_common.h"
#include "cpu_vector.h"

#define ROWS 6
#define COLS (REGS >= 32 ? 4 : 2) /* vectors: ROWS * COLS sums, COLS of q, one of p */

typedef struct {
    long m, n, k; /* c is m x n, each value a sum over k */
    long ps, pk;  /* p(i, t) = p[i * ps + t * pk] */
    long qs, cs;  /* q(t, j) = q[t * qs + j]; c(i, j) = c[i * cs + j] */
} Product;

#if defined(__AVX512F__)
#define FIRST(count) ((__mmask16)((1u << (count)) - 1)) /* the first count lanes */
#elif defined(__AVX__)
#define FIRST(count) ((__m256i)((vi){0, 1, 2, 3, 4, 5, 6, 7} < (vi){0} + (count)))
#endif

/* The first count (1..V) floats at f, the other lanes zero; and back. */
INLINE vf load_part(const float *f, int count) {
#if defined(__AVX512F__)
    return (vf)_mm512_maskz_loadu_ps(FIRST(count), f);
#elif defined(__AVX__)
    return (vf)_mm256_maskload_ps(f, FIRST(count));
#else
    vf v = {0};
    for (int l = 0; l < count; l++) v[l] = f[l];
    return v;
#endif
}

INLINE void store_part(float *f, vf v, int count) {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(f, FIRST(count), (__m512)v);
#elif defined(__AVX__)
    _mm256_maskstore_ps(f, FIRST(count), (__m256)v);
#else
    for (int l = 0; l < count; l++) f[l] = v[l];
#endif
}

/* Vector v of the nv at f: whole, or the last of them with only `last` floats. */
INLINE vf load_at(const float *f, int v, const int nv, const int whole, int last) {
    return whole || v < nv - 1 ? *(const vfu *)(f + v * V) : load_part(f + v * V, last);
}

INLINE void store_at(float *f, int v, const int nv, const int whole, int last, vf value) {
    if (whole || v < nv - 1) *(vfu *)(f + v * V) = value;
    else store_part(f + v * V, value, last);
}

/* c's r rows from i0 at the nv column vectors from j0 (all whole, or the last with `last`
 * floats). */
INLINE void tile(const float *p, const float *q, const float *bias, float *c, const Product *s,
                 long i0, long j0, const int r, const int nv, const int whole, int last) {
    vf acc[ROWS * COLS];
    for (int v = 0; v < nv; v++) {
        vf b = bias ? load_at(bias + j0, v, nv, whole, last) : (vf){0};
        for (int i = 0; i < r; i++) acc[i * nv + v] = b;
    }
    const float *pi = p + i0 * s->ps;
    for (long t = 0; t < s->k; t++) {
        const float *qt = q + t * s->qs + j0;
        vf qv[COLS];
        for (int v = 0; v < nv; v++) qv[v] = load_at(qt, v, nv, whole, last);
        for (int i = 0; i < r; i++) {
            float pv = pi[i * s->ps + t * s->pk];
            for (int v = 0; v < nv; v++) acc[i * nv + v] += qv[v] * pv;
        }
    }
    for (int i = 0; i < r; i++) {
        float *ci = c + (i0 + i) * s->cs + j0;
        for (int v = 0; v < nv; v++) store_at(ci, v, nv, whole, last, acc[i * nv + v]);
    }
}

/* The rows i0.. (ROWS of them, or fewer at the end) at the column panel j0.. of nv vectors. */
static void panel_tile(const float *p, const float *q, const float *bias, float *c,
                       const Product *s, long i0, long j0, int nv) {
    long rest = s->n - j0 - (nv - 1) * V; /* floats from the last vector on */
    int last = rest < V ? (int)rest : V, whole = last == V;
    int r = s->m - i0 < ROWS ? (int)(s->m - i0) : ROWS;
    for (int i = 0; i < r; i += r == ROWS ? ROWS : 1) {
        switch ((r == ROWS) * 32 + whole * 8 + nv) {
#define CASE(NV) \
    case 32 + 8 + NV: tile(p, q, bias, c, s, i0, j0, ROWS, NV, 1, V); break; \
    case 32 + NV: tile(p, q, bias, c, s, i0, j0, ROWS, NV, 0, last); break; \
    case 8 + NV: tile(p, q, bias, c, s, i0 + i, j0, 1, NV, 1, V); break; \
    case NV: tile(p, q, bias, c, s, i0 + i, j0, 1, NV, 0, last); break;
        CASE(1) CASE(2)
#if COLS > 2
        CASE(3) CASE(4)
#endif
#undef CASE
        }
    }
}

/* c = p q (+ bias, n floats, on every row; NULL: none). */
void cnnlab_product(const float *p, const float *q, const float *bias, float *c,
                    const Product *s, long threads) {
    long vectors = (s->n + V - 1) / V;
    long panels = (vectors + COLS - 1) / COLS, blocks = (s->m + ROWS - 1) / ROWS;
    #pragma omp parallel num_threads(threads_for(panels * blocks, threads))
    {
        FLUSH_DENORMALS();
        /* each thread a run of rows, all columns: threads writing beside each other in
         * one row shared its cache lines where a row is not a whole number of lines (84
         * floats: 23.7 against 9.7 us) */
        #pragma omp for collapse(2) schedule(static)
        for (long b = 0; b < blocks; b++)
            for (long j = 0; j < panels; j++) {
                int nv = vectors - j * COLS < COLS ? (int)(vectors - j * COLS) : COLS;
                panel_tile(p, q, bias, c, s, b * ROWS, j * COLS * V, nv);
            }
    }
}
