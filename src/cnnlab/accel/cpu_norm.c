/* cnnlab's fused CPU batch-norm block: batch normalisation with the batch's statistics
 * (training) -> 2x2 maximum pooling with stride 2 -> ReLU, forward and backward, for a
 * float32 channels-last tensor x of n images of h x w positions with c channels, seen as
 * rows[n * h * w][c].
 *
 * Eagerly, PyTorch runs these three layers as six passes over the full-size maps, and its
 * channels-last batch norm is slow for few channels (8 in --recipe best's first block).
 * Here the forward reads x twice (the statistics, then normalise, pool and activate in one
 * go) and writes a quarter of it; the backward reads x twice and writes its gradient once.
 * Only the winner of each window has a gradient from the pooling, so the backward's sums
 * run over the pooled positions. The channels (a multiple of 8) go 8 to a vector.
 *
 * Rows are split over OpenMP threads in fixed contiguous chunks and each thread's sums are
 * added in thread order, so the results depend only on the inputs and the thread count.
 * Sums are in double.
 */
#include <math.h>

#include "cpu_common.h"

typedef struct {
    long n, h, w, c;
} NormShape;

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef unsigned char v8b __attribute__((vector_size(8)));

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8i ld_arg(const unsigned char *p) {
    v8b b; memcpy(&b, p, sizeof b); return __builtin_convertvector(b, v8i);
}
static inline void st_arg(unsigned char *p, v8i k) {
    v8b b = __builtin_convertvector(k, v8b); memcpy(p, &b, sizeof b);
}
static inline v8d wide(v8 v) { return __builtin_convertvector(v, v8d); }
/* where mask: a, else b */
static inline v8 pick(v8i mask, v8 a, v8 b) { return (v8)(((v8i)a & mask) | ((v8i)b & ~mask)); }
static inline v8i pick_i(v8i mask, v8i a, v8i b) { return (a & mask) | (b & ~mask); }

/* Window position k of pooled (n, i, j): 0 (2i, 2j), 1 (2i, 2j+1), 2 (2i+1, 2j),
 * 3 (2i+1, 2j+1), the order in which PyTorch scans a window (the first maximum wins). */
static long window_row(const NormShape *s, long n, long i, long j, int k) {
    return (n * s->h + 2 * i + (k >> 1)) * s->w + 2 * j + (k & 1);
}

/* Per-thread sums, nt slots of width doubles each, thread t's at t * width: the first
 * slot += the others, in thread order. */
static void reduce(double *sums, int nt, long width) {
    for (int t = 1; t < nt; t++)
        for (long i = 0; i < width; i++) sums[i] += sums[t * width + i];
}

static void add_lanes(double *to, v8d v) { for (int l = 0; l < 8; l++) to[l] += v[l]; }

/* y (n, h/2, w/2, c) = relu(maxpool(batch_norm(x))); arg: each pooled value's window
 * position (for backward); mean, var (biased), invstd: the batch's statistics. 0, or
 * CNNLAB_OUT_OF_MEMORY. */
int cnnlab_norm_forward(const float *x, const float *gamma, const float *beta, double eps,
                         float *y, unsigned char *arg, float *mean, float *var,
                         float *invstd, const NormShape *s, long threads) {
    long c = s->c, rows = s->n * s->h * s->w, hq = s->h / 2, wq = s->w / 2;
    int nt = threads_for(rows / 1024, threads);
    double *sums = allocate(2 * c * nt, sizeof(double), 1); /* [thread][sum, squares][c] */
    float *alpha = allocate(2 * c, sizeof(float), 0);
    if (!sums || !alpha) {
        free(sums); free(alpha);
        return CNNLAB_OUT_OF_MEMORY;
    }
    float *shift = alpha + c;
    #pragma omp parallel num_threads(nt)
    {
        int me = thread_id();
        double *sum = sums + 2 * c * me, *sq = sum + c;
        for (long t = 0; t < c; t += 8) {
            v8d a = {0}, b = {0};
            for (long r = rows * me / nt; r < rows * (me + 1) / nt; r++) {
                v8d v = wide(ld(x + r * c + t));
                a += v;
                b += v * v;
            }
            add_lanes(sum + t, a);
            add_lanes(sq + t, b);
        }
    }
    reduce(sums, nt, 2 * c);
    for (long ch = 0; ch < c; ch++) {
        double m = sums[ch] / rows, v = sums[c + ch] / rows - m * m;
        v = v > 0 ? v : 0;
        mean[ch] = (float)m;
        var[ch] = (float)v;
        invstd[ch] = (float)(1 / sqrt(v + eps));
        alpha[ch] = invstd[ch] * gamma[ch]; /* as PyTorch: x * alpha + (beta - mean * alpha) */
        shift[ch] = beta[ch] - mean[ch] * alpha[ch];
    }
    const v8i one = {1, 1, 1, 1, 1, 1, 1, 1};
    int pt = threads_for(s->n * hq, threads);
    #pragma omp parallel num_threads(pt)
    {
        FLUSH_DENORMALS();
        #pragma omp for schedule(static)
        for (long ni = 0; ni < s->n * hq; ni++) {
            long n = ni / hq, i = ni % hq;
            for (long j = 0; j < wq; j++) {
                const float *x0 = x + window_row(s, n, i, j, 0) * c, *x2 = x0 + s->w * c;
                long q = (ni * wq + j) * c;
                for (long t = 0; t < c; t += 8) {
                    v8 a = ld(alpha + t), b = ld(shift + t), best = ld(x0 + t) * a + b, v;
                    v8i k = {0}, more;
                    v = ld(x0 + c + t) * a + b; more = v > best; k = pick_i(more, one, k);
                    best = pick(more, v, best);
                    v = ld(x2 + t) * a + b; more = v > best; k = pick_i(more, one + one, k);
                    best = pick(more, v, best);
                    v = ld(x2 + c + t) * a + b; more = v > best; k = pick_i(more, one * 3, k);
                    best = pick(more, v, best);
                    st(y + q + t, pick(best > 0, best, (v8){0}));
                    st_arg(arg + q + t, k);
                }
            }
        }
    }
    free(alpha);
    free(sums);
    return 0;
}

/* gx (n, h, w, c) and the affine parameters' gradients ggamma, gbeta, from gy, the
 * gradient of the forward's y; x, gamma, arg, mean, invstd and y as the forward left them.
 * 0, or CNNLAB_OUT_OF_MEMORY. */
int cnnlab_norm_backward(const float *x, const float *gamma, const unsigned char *arg,
                          const float *mean, const float *invstd, const float *y,
                          const float *gy, float *gx, float *ggamma, float *gbeta,
                          const NormShape *s, long threads) {
    long c = s->c, rows = s->n * s->h * s->w, hq = s->h / 2, wq = s->w / 2;
    const v8i one = {1, 1, 1, 1, 1, 1, 1, 1};
    int nt = threads_for(s->n * hq, threads);
    double *sums = allocate(2 * c * nt, sizeof(double), 1); /* [thread][sum dy, sum dy x][c] */
    float *scale = allocate(3 * c, sizeof(float), 0);
    if (!sums || !scale) {
        free(sums); free(scale);
        return CNNLAB_OUT_OF_MEMORY;
    }
    float *slope = scale + c, *offset = slope + c;
    /* dy: y's gradient at each window's winner where y > 0, else 0 */
    #pragma omp parallel num_threads(nt)
    {
        int me = thread_id();
        double *sdy = sums + 2 * c * me, *sdx = sdy + c;
        long lo = s->n * hq * me / nt, hi = s->n * hq * (me + 1) / nt;
        for (long t = 0; t < c; t += 8) {
            v8d a = {0}, b = {0};
            v8 m = ld(mean + t);
            for (long ni = lo; ni < hi; ni++) {
                long n = ni / hq, i = ni % hq;
                for (long j = 0; j < wq; j++) {
                    long q = (ni * wq + j) * c + t;
                    const float *x0 = x + window_row(s, n, i, j, 0) * c + t, *x2 = x0 + s->w * c;
                    v8i k = ld_arg(arg + q);
                    v8 g = pick(ld(y + q) > 0, ld(gy + q), (v8){0});
                    v8 xk = pick(k == one, ld(x0 + c), ld(x0));
                    xk = pick(k == one + one, ld(x2), xk);
                    xk = pick(k == one * 3, ld(x2 + c), xk);
                    a += wide(g);
                    b += wide(g) * wide(xk - m);
                }
            }
            add_lanes(sdy + t, a);
            add_lanes(sdx + t, b);
        }
    }
    reduce(sums, nt, 2 * c);
    /* gx = (dy - (x - mean) * slope - mean(dy)) * invstd * gamma, with slope = sum(dy (x -
     * mean)) invstd^2 / rows, as PyTorch; computed as (dy - x * slope - offset) * scale. */
    for (long ch = 0; ch < c; ch++) {
        gbeta[ch] = (float)sums[ch];
        ggamma[ch] = (float)(sums[c + ch] * invstd[ch]);
        scale[ch] = invstd[ch] * gamma[ch];
        slope[ch] = (float)(sums[c + ch] * invstd[ch] * invstd[ch] / rows);
        offset[ch] = (float)(sums[ch] / rows) - mean[ch] * slope[ch];
    }
    int pt = threads_for(s->n * s->h, threads);
    #pragma omp parallel num_threads(pt)
    {
        FLUSH_DENORMALS();
        #pragma omp for schedule(static)
        for (long nr = 0; nr < s->n * s->h; nr++) {
            long n = nr / s->h, r = nr % s->h, i = r / 2;
            for (long col = 0; col < s->w; col++) {
                long p = (nr * s->w + col) * c, j = col / 2;
                int pooled = i < hq && j < wq;
                long q = ((n * hq + i) * wq + j) * c;
                v8i k = one * (int)((r & 1) * 2 + (col & 1));
                for (long t = 0; t < c; t += 8) {
                    v8 dy = {0};
                    if (pooled)
                        dy = pick((ld_arg(arg + q + t) == k) & (ld(y + q + t) > 0),
                                  ld(gy + q + t), dy);
                    st(gx + p + t, (dy - ld(x + p + t) * ld(slope + t) - ld(offset + t))
                                       * ld(scale + t));
                }
            }
        }
    }
    free(scale);
    free(sums);
    return 0;
}
