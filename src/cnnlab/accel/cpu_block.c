/* cnnlab's fused CPU block: convolution (stride 1, square kernel, zero padding) ->
 * activation (sigmoid or ReLU) -> 2x2 pooling with stride 2 (average or maximum),
 * forward and backward, for float32 NCHW tensors.
 *
 * Built at first use by cnnlab/accel/cpu.py with the system's C compiler and loaded with
 * ctypes; no Python or torch headers. Images are split over OpenMP threads in fixed
 * contiguous chunks and each thread's weight gradient is summed in thread order, so the
 * results depend only on the inputs and the thread count.
 *
 * One image at a time, every map is kept "row-flattened" with the padded input's row
 * stride Wp: output position (y, x) lives at t = y * Wp + x, and the columns x >= Wo of
 * each row are spare. Then a correlation tap (i, j) is one shift of the whole flattened
 * plane by i * Wp + j, and every inner loop runs over one long contiguous range that
 * vectorises whole, instead of over rows of 10 or 28 values.
 *
 * Where the output maps come in whole vectors (16, 32, ...), the spare columns (40% of
 * the work for a 10x10 output of a 14-wide input) are avoided instead: the maps are kept
 * "channel-vectorised", the maps of one position in the lanes, at p * o for position
 * p = y * Wo + x, and the forward and weight-gradient loops broadcast one input value
 * against a vector of weights or gradients. The input gradient is computed row-flattened
 * in both layouts.
 */
#include "cpu_common.h"

/* One vector is one register of the target: V lanes, and register blocks sized so that
 * the inner loops' accumulators stay in the REGS vector registers (16 with AVX2 or SSE,
 * 32 with AVX-512 or NEON). */
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

/* Output maps computed together, sharing each input load: all of them up to 8. */
static long group(long maps) { return maps < 8 ? maps : 8; }
static long grouped(long maps) { return (maps + group(maps) - 1) / group(maps) * group(maps); }
/* The row-flattened weight gradient takes maps 4 at a time, or 3 where that avoids
 * padding (the book's 6); wg_maps(o) rounded up to a multiple of that. */
static int wg_group(long maps) { return maps % 4 == 0 || maps % 3 != 0 ? 4 : 3; }
static long wg_maps(long maps) { return (maps + wg_group(maps) - 1) / wg_group(maps) * wg_group(maps); }
/* Whole vectors: planes start on vector boundaries, so the loads of g are aligned. */
static long whole(long floats) { return (floats + V - 1) / V * V; }

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float s) { return (vf){0} + s; }

typedef struct {
    long n, c, h, w, o, k, pad, act, pool; /* act: 0 sigmoid, 1 relu; pool: 0 avg, 1 max */
} Shape;

typedef struct {
    long hp, wp, ho, wo, hq, wq, kk;
    long len;     /* flattened output range, rounded up to whole vectors */
    long plane;   /* floats in one padded input plane, with room for the last shifts */
    long gplane;  /* floats in one padded gradient plane (see backward) */
    int cv;       /* channel-vectorised activations (else row-flattened) */
    long os, ys, xs, kept; /* strides of a map, a row, a column, and floats per image */
} Dims;

static Dims dims_of(const Shape *s) {
    Dims d;
    d.hp = s->h + 2 * s->pad; d.wp = s->w + 2 * s->pad;
    d.ho = d.hp - s->k + 1; d.wo = d.wp - s->k + 1;
    d.hq = d.ho / 2; d.wq = d.wo / 2; d.kk = s->k * s->k;
    d.len = whole(d.ho * d.wp);
    long rows = d.len > d.hp * d.wp ? d.len : d.hp * d.wp;
    d.plane = whole(rows + (s->k - 1) * (d.wp + 1) + V);
    d.gplane = whole((d.ho + 2 * (s->k - 1)) * d.wp + d.len + 2 * V);
    d.cv = s->o % V == 0;
    d.os = d.cv ? 1 : d.len; d.ys = d.cv ? d.wo * s->o : d.wp; d.xs = d.cv ? s->o : 1;
    d.kept = d.cv ? d.ho * d.wo * s->o : s->o * d.len;
    return d;
}

/* Floats of the kept activations per image (the forward's a, see below). */
long cnnlab_block_kept(const Shape *s) { return dims_of(s).kept; }

/* The channel-vectorised register tile: G vectors of maps (of the o / V) at once, and up
 * to 12 / G positions: 12 accumulators, G weight vectors and one broadcast input stay in
 * 16 registers (sized for AVX2; AVX-512's 32 leave room). */
static int cv_maps(long groups) { return groups >= 2 ? 2 : 1; }
static int cv_span(int g) { return 12 / g; }

/* The channel-vectorised forward of image rows: X adjacent outputs of row y, for the G
 * vectors of maps og..og+G-1, from the padded input xp; wv[c][tap][og] are weight vectors. */
INLINE void cv_row_by(const float *xp, const vf *wv, const vf *bias, const Shape *s,
                      const Dims *d, long y, long x0, long og, float *an, const int X,
                      const int G) {
    long groups = s->o / V;
    vf acc[12]; /* acc[x * G + g] */
    for (int x = 0; x < X; x++)
        for (int g = 0; g < G; g++) acc[x * G + g] = bias[og + g];
    for (long c = 0; c < s->c; c++)
        for (long i = 0; i < s->k; i++) {
            const float *row = xp + c * d->plane + (y + i) * d->wp + x0;
            const vf *wr = wv + (c * d->kk + i * s->k) * groups + og;
            for (long j = 0; j < s->k; j++) {
                vf w[2];
                for (int g = 0; g < G; g++) w[g] = wr[j * groups + g];
                for (int x = 0; x < X; x++) {
                    float r = row[x + j]; /* broadcast (splat would add a zero) */
                    for (int g = 0; g < G; g++) acc[x * G + g] += w[g] * r;
                }
            }
        }
    for (int x = 0; x < X; x++)
        for (int g = 0; g < G; g++)
            store(an + (y * d->wo + x0 + x) * s->o + (og + g) * V, acc[x * G + g]);
}

static void cv_conv(const float *xp, const vf *wv, const vf *bias, const Shape *s,
                    const Dims *d, float *an) {
    long groups = s->o / V;
    for (long og = 0; og < groups;) {
        int g = og + 1 < groups ? cv_maps(groups) : 1, span = cv_span(g);
        for (long y = 0; y < d->ho; y++)
            for (long x0 = 0; x0 < d->wo; x0 += span)
                switch ((d->wo - x0 < span ? d->wo - x0 : span) * 4 + g) {
#define ONE(X) case X * 4 + 1: cv_row_by(xp, wv, bias, s, d, y, x0, og, an, X, 1); break;
#define TWO(X) case X * 4 + 2: cv_row_by(xp, wv, bias, s, d, y, x0, og, an, X, 2); break;
                ONE(1) ONE(2) ONE(3) ONE(4) ONE(5) ONE(6)
                ONE(7) ONE(8) ONE(9) ONE(10) ONE(11) ONE(12) /* span 12 with one vector */
                TWO(1) TWO(2) TWO(3) TWO(4) TWO(5) TWO(6)    /* 6 with two */
#undef ONE
#undef TWO
                }
        og += g;
    }
}

/* wv[c][tap][og] = the weights of maps og * V ... og * V + V - 1, and the bias vectors
 * (NULL if they cannot be allocated). */
static vf *cv_weights(const float *w, const float *bias, const Shape *s, const Dims *d) {
    long groups = s->o / V;
    vf *wv = allocate((s->c * d->kk + 1) * groups, sizeof(vf), 0);
    if (!wv) return NULL;
    for (long o = 0; o < s->o; o++) {
        for (long c = 0; c < s->c; c++)
            for (long tap = 0; tap < d->kk; tap++)
                wv[(c * d->kk + tap) * groups + o / V][o % V] = w[(o * s->c + c) * d->kk + tap];
        wv[s->c * d->kk * groups + o / V][o % V] = bias[o];
    }
    return wv;
}

static float *zeroed(long floats) { return allocate(whole(floats), sizeof(float), 1); }

/* out[q][t] = sum over ic, tap of wt[q][ic][tap] * in[ic][t + off[tap]], t < len, for
 * nout maps, B at a time (wt has grouped(nout) rows, zero past nout); in planes are in_cs
 * apart and zero outside [lo, hi), out planes out_cs apart. off is monotonic, so the taps
 * that read inside [lo, hi) are a range, and only those are computed. Where B * 2 of the
 * accumulators fit the registers, two vectors of t share each broadcast weight. */
INLINE void correlate_at(const float *in, long cin, long in_cs, long lo, long hi, float *out,
                         long nout, long out_cs, long t, const float *w0, const long *off,
                         long kk, long q, const int B, const int T) {
    long first = 0, last = kk;
    while (first < last && (t + off[first] + T * V <= lo || t + off[first] >= hi)) first++;
    while (last > first && (t + off[last - 1] + T * V <= lo || t + off[last - 1] >= hi)) last--;
    vf acc[16] = {{0}}; /* acc[b * T + u] */
    for (long ic = 0; ic < cin; ic++) {
        const float *src = in + ic * in_cs + t;
        const float *wr = w0 + ic * kk;
        for (long tap = first; tap < last; tap++) {
            vf v[2];
            for (int u = 0; u < T; u++) v[u] = load(src + off[tap] + u * V);
            for (int b = 0; b < B; b++) {
                float w = wr[b * cin * kk + tap];
                for (int u = 0; u < T; u++) acc[b * T + u] += v[u] * w;
            }
        }
    }
    for (int b = 0; b < B && q + b < nout; b++)
        for (int u = 0; u < T; u++) store(out + (q + b) * out_cs + t + u * V, acc[b * T + u]);
}

INLINE void correlate_by(const float *in, long cin, long in_cs, long lo, long hi, float *out,
                         long nout, long out_cs, long len, const float *wt, const long *off,
                         long kk, const int B) {
    const int T = B * 2 <= (REGS >= 32 ? 16 : 12) ? 2 : 1;
    for (long q = 0; q < nout; q += B) {
        const float *w0 = wt + q * cin * kk;
        long t = 0;
        for (; t + T * V <= len; t += T * V)
            correlate_at(in, cin, in_cs, lo, hi, out, nout, out_cs, t, w0, off, kk, q, B, T);
        if (t < len) /* the last vector */
            correlate_at(in, cin, in_cs, lo, hi, out, nout, out_cs, t, w0, off, kk, q, B, 1);
    }
}

static void correlate(const float *in, long cin, long in_cs, long lo, long hi, float *out,
                      long nout, long out_cs, long len, const float *wt, const long *off,
                      long kk) {
    switch (group(nout)) { /* one specialised loop per group size */
#define CASE(B) case B: \
        correlate_by(in, cin, in_cs, lo, hi, out, nout, out_cs, len, wt, off, kk, B); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    }
}

/* The sigmoid of a vector, with exp as 2^n * p(r) (Cephes' polynomial, relative error
 * < 2e-7): n rounded by the 1.5 * 2^23 trick, 2^n from its bits; 1 / d as the hardware's
 * reciprocal estimate (14 bits with AVX-512, 12 with AVX) and one Newton step, which
 * squares its error, instead of a division. About 17 vector operations. */
typedef int vi __attribute__((vector_size(V * sizeof(int))));

/* x limited to [lo, hi], NaN kept (the instructions return their second operand then). */
static inline vf clamp(vf x, float lo, float hi) {
#if defined(__AVX512F__)
    return (vf)_mm512_min_ps((__m512)splat(hi), _mm512_max_ps((__m512)splat(lo), (__m512)x));
#elif defined(__AVX__)
    return (vf)_mm256_min_ps((__m256)splat(hi), _mm256_max_ps((__m256)splat(lo), (__m256)x));
#elif defined(__SSE__)
    return (vf)_mm_min_ps((__m128)splat(hi), _mm_max_ps((__m128)splat(lo), (__m128)x));
#else
    vi low = x < splat(lo), high = x > splat(hi);
    x = (vf)(((vi)splat(lo) & low) | ((vi)x & ~low));
    return (vf)(((vi)splat(hi) & high) | ((vi)x & ~high));
#endif
}

static inline vf sigmoid(vf v) {
    vf x = clamp(-v, -87.0f, 88.0f);
    vf n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f; p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f; p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vf e = (vf)((__builtin_convertvector(n, vi) + 127) << 23);
    vf d = 1.0f + p * e;
#if defined(__AVX512F__)
    vf q = (vf)_mm512_rcp14_ps((__m512)d);
    return q * (2.0f - d * q);
#elif defined(__AVX__)
    vf q = (vf)_mm256_rcp_ps((__m256)d);
    return q * (2.0f - d * q);
#else
    return 1.0f / d;
#endif
}

/* z[t] = act(z[t] + b) over len floats (whole vectors), a plane's spare columns included. */
static void activate(float *z, long len, float b, long relu) {
    if (relu)
        for (long t = 0; t < len; t++) { float v = z[t] + b; z[t] = v < 0 ? 0 : v; } /* NaN stays */
    else
        for (long t = 0; t < len; t += V) store(z + t, sigmoid(load(z + t) + b));
}

static void pad_input(const float *x, const Shape *s, const Dims *d, float *xp) {
    memset(xp, 0, sizeof(float) * s->c * d->plane);
    for (long c = 0; c < s->c; c++)
        for (long y = 0; y < s->h; y++)
            memcpy(xp + c * d->plane + (y + s->pad) * d->wp + s->pad,
                   x + (c * s->h + y) * s->w, sizeof(float) * s->w);
}

static long *forward_offsets(const Shape *s, const Dims *d) {
    long *off = allocate(d->kk, sizeof(long), 0);
    if (!off) return NULL;
    for (long i = 0; i < s->k; i++)
        for (long j = 0; j < s->k; j++) off[i * s->k + j] = i * d->wp + j;
    return off;
}

/* One image's activations an[o][t] = act(conv + bias), row-flattened, from its padded
 * input xp. */
static void activations(const float *xp, const float *wt, const float *bias, const long *off,
                        const Shape *s, const Dims *d, float *an) {
    long lo = s->pad * d->wp + s->pad, hi = (s->pad + s->h - 1) * d->wp + s->pad + s->w;
    correlate(xp, s->c, d->plane, lo, hi, an, s->o, d->len, d->len, wt, off, d->kk);
    for (long o = 0; o < s->o; o++) activate(an + o * d->len, d->len, bias[o], s->act);
}

static float *padded_weights(const float *w, const Shape *s, const Dims *d) {
    float *wt = allocate(grouped(s->o) * s->c * d->kk, sizeof(float), 1);
    if (wt) memcpy(wt, w, sizeof(float) * s->o * s->c * d->kk);
    return wt;
}

/* The pooling of pool(), its columns xs apart and the kind fixed. */
INLINE void pool_rows(const float *an, const Shape *s, const Dims *d, float *yn,
                      const long xs, const int max) {
    for (long o = 0; o < s->o; o++)
        for (long yy = 0; yy < d->hq; yy++) {
            const float *r0 = an + o * d->os + 2 * yy * d->ys, *r1 = r0 + d->ys;
            float *out = yn + (o * d->hq + yy) * d->wq;
            for (long xx = 0; xx < d->wq; xx++) {
                float v00 = r0[2 * xx * xs], v01 = r0[(2 * xx + 1) * xs];
                float v10 = r1[2 * xx * xs], v11 = r1[(2 * xx + 1) * xs];
                float m = v00 > v01 ? v00 : v01;
                float m2 = v10 > v11 ? v10 : v11;
                out[xx] = max ? (m >= m2 ? m : m2) : ((v00 + v01) + (v10 + v11)) * 0.25f;
            }
        }
}

/* yn[o][yy][xx]: one image's 2x2 pooling of its activations an (in either layout); the
 * row-flattened cases specialised so that the compiler vectorises their rows. */
static void pool(const float *an, const Shape *s, const Dims *d, float *yn) {
    if (d->xs == 1 && s->pool) pool_rows(an, s, d, yn, 1, 1);
    else if (d->xs == 1) pool_rows(an, s, d, yn, 1, 0);
    else pool_rows(an, s, d, yn, d->xs, (int)s->pool);
}

/* y: (n, o, hq, wq) pooled output; a: (n, kept) the activations (row-flattened, or
 * channel-vectorised where d.cv), kept for backward (measured: recomputing them there is
 * slower, even for one input channel). 0, or CNNLAB_OUT_OF_MEMORY. */
int cnnlab_block_forward(const float *x, const float *w, const float *bias, float *y,
                         float *a, const Shape *s, long threads) {
    Dims d = dims_of(s);
    long *off = forward_offsets(s, &d);
    float *wt = d.cv ? NULL : padded_weights(w, s, &d);
    vf *wv = d.cv ? cv_weights(w, bias, s, &d) : NULL;
    const int ready = off && (d.cv ? (void *)wv : (void *)wt);
    int failed = ready ? 0 : CNNLAB_OUT_OF_MEMORY;
    int nt = threads_for(s->n, threads);
    #pragma omp parallel num_threads(nt)
    {
        FLUSH_DENORMALS();
        float *xp = ready ? zeroed(s->c * d.plane) : NULL;
        if (!xp) failed_to_allocate(&failed);
        #pragma omp for schedule(static)
        for (long n = 0; n < s->n; n++) {
            if (!xp) continue;
            pad_input(x + n * s->c * s->h * s->w, s, &d, xp);
            float *an = a + n * d.kept;
            if (d.cv) {
                cv_conv(xp, wv, wv + s->c * d.kk * (s->o / V), s, &d, an);
                activate(an, d.kept, 0, s->act);
            } else {
                activations(xp, wt, bias, off, s, &d, an);
            }
            pool(an, s, &d, y + n * s->o * d.hq * d.wq);
        }
        free(xp);
    }
    free(wt); free(wv); free(off);
    return failed;
}

/* g *= act'(a), from the activations a, over count values. */
static void derivative(float *g, const float *a, long count, long relu) {
    if (relu)
        for (long t = 0; t < count; t++) g[t] = a[t] > 0 ? g[t] : 0;
    else
        for (long t = 0; t < count; t++) g[t] *= a[t] * (1.0f - a[t]);
}

/* The pooling's gradient, window by window: a quarter of gy to each of the 4 positions,
 * or all of it to the first maximum in reading order, as torch does. */
static void scatter_pooled(const float *gy, const float *an, const Shape *s, const Dims *d,
                           float *g, long g_os, long g_ys, long g_xs) {
    long to[4] = {0, g_xs, g_ys, g_ys + g_xs};
    for (long o = 0; o < s->o; o++) {
        const float *gyo = gy + o * d->hq * d->wq;
        for (long yy = 0; yy < d->hq; yy++)
            for (long xx = 0; xx < d->wq; xx++) {
                float gv = gyo[yy * d->wq + xx];
                const float *p = an + o * d->os + 2 * yy * d->ys + 2 * xx * d->xs;
                float *q = g + o * g_os + 2 * yy * g_ys + 2 * xx * g_xs;
                if (s->pool) {
                    int best = 0; float m = p[0];
                    if (p[d->xs] > m) { m = p[d->xs]; best = 1; }
                    if (p[d->ys] > m) { m = p[d->ys]; best = 2; }
                    if (p[d->ys + d->xs] > m) best = 3;
                    q[to[best]] = gv;
                } else {
                    for (int k = 0; k < 4; k++) q[to[k]] = gv * 0.25f;
                }
            }
    }
}

/* g (maps g_os, rows g_ys, columns g_xs apart; zero outside the pooled area): the
 * gradient at the convolution's output, from the pooled gradient gy and the kept
 * activations an of one image. */
static void preactivation_grad(const float *gy, const float *an, const Shape *s,
                               const Dims *d, float *g, long g_os, long g_ys, long g_xs) {
    if (d->cv)
        memset(g, 0, sizeof(float) * d->kept);
    else
        for (long o = 0; o < s->o; o++) memset(g + o * g_os, 0, sizeof(float) * d->len);
    if (!s->pool && g_xs == 1) { /* average pooling, row-flattened: rows that vectorise */
        for (long o = 0; o < s->o; o++)
            for (long yy = 0; yy < d->hq; yy++) {
                const float *gyr = gy + (o * d->hq + yy) * d->wq;
                float *q0 = g + o * g_os + 2 * yy * g_ys, *q1 = q0 + g_ys;
                for (long xx = 0; xx < d->wq; xx++) {
                    float v = gyr[xx] * 0.25f;
                    q0[2 * xx] = v; q0[2 * xx + 1] = v; q1[2 * xx] = v; q1[2 * xx + 1] = v;
                }
            }
    } else if (g_xs == 1) { /* maximum pooling, row-flattened: branch-free rows */
        for (long o = 0; o < s->o; o++)
            for (long yy = 0; yy < d->hq; yy++) {
                const float *restrict gyr = gy + (o * d->hq + yy) * d->wq;
                const float *restrict r0 = an + o * d->os + 2 * yy * d->ys;
                const float *restrict r1 = r0 + d->ys;
                float *restrict q0 = g + o * g_os + 2 * yy * g_ys;
                float *restrict q1 = q0 + g_ys;
                for (long xx = 0; xx < d->wq; xx++) {
                    float a0 = r0[2 * xx], a1 = r0[2 * xx + 1], a2 = r1[2 * xx], a3 = r1[2 * xx + 1];
                    float v = gyr[xx];
                    float m = a1 > a0 ? a1 : a0;
                    float m2 = a2 > m ? a2 : m;
                    float v3 = a3 > m2 ? v : 0;        /* the last strictly greater wins */
                    float v2 = a3 > m2 ? 0 : (a2 > m ? v : 0);
                    float rest = v - v3 - v2;           /* v where neither a2 nor a3 won */
                    float v1 = a1 > a0 ? rest : 0;
                    q0[2 * xx] = rest - v1; q0[2 * xx + 1] = v1;
                    q1[2 * xx] = v2; q1[2 * xx + 1] = v3;
                }
            }
    } else {
        scatter_pooled(gy, an, s, d, g, g_os, g_ys, g_xs);
    }
    if (d->cv)
        derivative(g, an, d->kept, s->act);
    else
        for (long o = 0; o < s->o; o++) derivative(g + o * g_os, an + o * d->os, d->len, s->act);
}

/* The channel-vectorised weight gradient of J taps (i, j0 ...) of input plane c for the
 * G vectors of maps og..: acc[j][og + g] += sum over positions of g[p][og + g] * xp[c][p + tap]. */
INLINE void cv_taps_by(const float *gn, const float *src, const Shape *s, const Dims *d,
                       long og, vf *acc, const int J, const int G) {
    long groups = s->o / V;
    vf sum[12]; /* sum[j * G + g] */
    for (int j = 0; j < J; j++)
        for (int g = 0; g < G; g++) sum[j * G + g] = acc[j * groups + g];
    for (long y = 0; y < d->ho; y++)
        for (long x = 0; x < d->wo; x++) {
            vf gv[2];
            for (int g = 0; g < G; g++) gv[g] = load(gn + (y * d->wo + x) * s->o + (og + g) * V);
            const float *r = src + y * d->wp + x;
            for (int j = 0; j < J; j++)
                for (int g = 0; g < G; g++) sum[j * G + g] += gv[g] * r[j];
        }
    for (int j = 0; j < J; j++)
        for (int g = 0; g < G; g++) acc[j * groups + g] = sum[j * G + g];
}

/* acc[c][tap][og] += the weight gradient's vectors, acc[c * kk][og] the bias's. */
static void cv_weight_grad(const float *gn, const float *xp, const Shape *s, const Dims *d,
                           vf *acc) {
    long groups = s->o / V;
    for (long og = 0; og < groups;) {
        int g = og + 1 < groups ? cv_maps(groups) : 1, span = cv_span(g);
        for (long c = 0; c < s->c; c++)
            for (long i = 0; i < s->k; i++)
                for (long j = 0; j < s->k; j += span) {
                    const float *src = xp + c * d->plane + i * d->wp + j;
                    vf *at = acc + (c * d->kk + i * s->k + j) * groups + og;
                    switch ((s->k - j < span ? s->k - j : span) * 4 + g) {
#define ONE(J) case J * 4 + 1: cv_taps_by(gn, src, s, d, og, at, J, 1); break;
#define TWO(J) case J * 4 + 2: cv_taps_by(gn, src, s, d, og, at, J, 2); break;
                    ONE(1) ONE(2) ONE(3) ONE(4) ONE(5) ONE(6)
                    ONE(7) ONE(8) ONE(9) ONE(10) ONE(11) ONE(12)
                    TWO(1) TWO(2) TWO(3) TWO(4) TWO(5) TWO(6)
#undef ONE
#undef TWO
                    }
                }
        og += g;
    }
    vf *bias = acc + s->c * d->kk * groups;
    for (long p = 0; p < d->ho * d->wo; p++)
        for (long og = 0; og < groups; og++) bias[og] += load(gn + p * s->o + og * V);
}

/* For M maps of g from go and J taps (i, j0..j0+J-1) of one input plane's row i from
 * src: acc[b][j] += g[b][t] * src[t + j] lane by lane, acc's rows ostride apart. */
INLINE void taps_by(const float *go, long g_cs, const float *src, long len, vf *acc,
                    long ostride, const int M, const int J) {
    vf sum[4][5];
    for (int b = 0; b < M; b++)
        for (int j = 0; j < J; j++) sum[b][j] = acc[b * ostride + j];
    for (long t = 0; t < len; t += V) {
        vf gv[4];
        for (int b = 0; b < M; b++) gv[b] = load(go + b * g_cs + t);
        for (int j = 0; j < J; j++) {
            vf v = load(src + t + j);
            for (int b = 0; b < M; b++) sum[b][j] += gv[b] * v;
        }
    }
    for (int b = 0; b < M; b++)
        for (int j = 0; j < J; j++) acc[b * ostride + j] = sum[b][j];
}

/* acc[o][c][tap] += sum_t g[o][t] * xp[c][t + off[tap]] lane by lane, and
 * acc[wg_maps(o)][0][o] += sum_t g[o][t] (the bias); lanes are summed after the last image.
 * g has wg_maps(o) planes, zero past o. */
static void weight_grad(const float *g, long g_cs, const float *xp, const Shape *s,
                        const Dims *d, vf *acc) {
    long ostride = s->c * d->kk;
    int m = wg_group(s->o);
    /* taps per pass: M * J sums, M gradient vectors and one input vector in registers */
    long taps = REGS >= 32 ? 5 : m == 3 ? 3 : 2;
    for (long o = 0; o < s->o; o += m)
        for (long c = 0; c < s->c; c++)
            for (long i = 0; i < s->k; i++)
                for (long j = 0; j < s->k; j += taps) {
                    const float *go = g + o * g_cs, *src = xp + c * d->plane + i * d->wp + j;
                    vf *at = acc + o * ostride + c * d->kk + i * s->k + j;
                    switch ((s->k - j < taps ? s->k - j : taps) * 8 + m) {
#define CASE(M, J) case J * 8 + M: taps_by(go, g_cs, src, d->len, at, ostride, M, J); break;
                    CASE(3, 1) CASE(3, 2) CASE(3, 3) CASE(3, 4) CASE(3, 5)
                    CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4) CASE(4, 5)
#undef CASE
                    }
                }
    vf *bias = acc + wg_maps(s->o) * ostride;
    for (long o = 0; o < s->o; o++)
        for (long t = 0; t < d->len; t += V) bias[o] += load(g + o * g_cs + t);
}

static float lane_sum(vf v) {
    float sum = 0;
    for (int l = 0; l < V; l++) sum += v[l];
    return sum;
}

/* a: the forward's kept activations; gx may be NULL (the input needs no gradient). gw
 * and gb are overwritten. 0, or CNNLAB_OUT_OF_MEMORY. */
int cnnlab_block_backward(const float *x, const float *w, const float *a, const float *gy,
                           float *gx, float *gw, float *gb, const Shape *s, long threads) {
    Dims d = dims_of(s);
    long gmaps = wg_maps(s->o), groups = s->o / V;
    /* vectors of weight and bias sums */
    long nacc = d.cv ? (s->c * d.kk + 1) * groups : gmaps * s->c * d.kk + s->o;
    /* the input gradient is the full correlation of g with the flipped kernel: with g
     * placed k - 1 rows and columns into a zero plane of row stride wp (the spare columns
     * supply the zeros left of each row), tap (i, j) reads it shifted by -(i * wp + j). */
    long *back = allocate(d.kk, sizeof(long), 0);
    float *wt = allocate(grouped(s->c) * s->o * d.kk, sizeof(float), 1); /* wt[c][o][tap] */
    int nt = threads_for(s->n, threads);
    vf *partial = allocate(nt * nacc, sizeof(vf), 1);
    if (!back || !wt || !partial) {
        free(back); free(wt); free(partial);
        return CNNLAB_OUT_OF_MEMORY;
    }
    int failed = 0;
    for (long o = 0; o < s->o; o++)
        for (long c = 0; c < s->c; c++)
            for (long tap = 0; tap < d.kk; tap++)
                wt[(c * s->o + o) * d.kk + tap] = w[(o * s->c + c) * d.kk + tap];
    long lead = whole((s->k - 1) * d.wp + (s->k - 1) + V); /* zeros before g in its plane */
    for (long i = 0; i < s->k; i++)
        for (long j = 0; j < s->k; j++) back[i * s->k + j] = lead - i * d.wp - j;
    long gx_len = whole(d.hp * d.wp);
    #pragma omp parallel num_threads(nt)
    {
        FLUSH_DENORMALS();
        int me = thread_id();
        float *xp = zeroed(s->c * d.plane);
        long g_cs = lead + d.gplane;
        float *gplanes = zeroed(gmaps * g_cs);
        float *gxp = gx ? zeroed(s->c * gx_len) : NULL;
        float *gn = d.cv ? zeroed(d.kept) : NULL;
        int have = xp && gplanes && (gxp || !gx) && (gn || !d.cv);
        if (!have) failed_to_allocate(&failed);
        #pragma omp for schedule(static)
        for (long n = 0; n < s->n; n++) {
            if (!have) continue;
            pad_input(x + n * s->c * s->h * s->w, s, &d, xp);
            const float *gyn = gy + n * s->o * d.hq * d.wq, *an = a + n * d.kept;
            if (d.cv) {
                preactivation_grad(gyn, an, s, &d, gn, d.os, d.ys, d.xs);
                cv_weight_grad(gn, xp, s, &d, partial + me * nacc);
                if (gx) /* the input gradient's correlation reads g row-flattened */
                    for (long y = 0; y < d.ho; y++)
                        for (long x = 0; x < d.wo; x++)
                            for (long o = 0; o < s->o; o++)
                                gplanes[lead + o * g_cs + y * d.wp + x] =
                                    gn[(y * d.wo + x) * s->o + o];
            } else {
                preactivation_grad(gyn, an, s, &d, gplanes + lead, g_cs, d.wp, 1);
                weight_grad(gplanes + lead, g_cs, xp, s, &d, partial + me * nacc);
            }
            if (gx) {
                correlate(gplanes, s->o, g_cs, lead, lead + d.ho * d.wp, gxp, s->c, gx_len,
                          gx_len, wt, back, d.kk);
                float *gxn = gx + n * s->c * s->h * s->w;
                for (long c = 0; c < s->c; c++)
                    for (long yy = 0; yy < s->h; yy++)
                        memcpy(gxn + (c * s->h + yy) * s->w,
                               gxp + c * gx_len + (yy + s->pad) * d.wp + s->pad,
                               sizeof(float) * s->w);
            }
        }
        free(xp); free(gplanes); free(gxp); free(gn);
    }
    if (failed) {
        free(partial); free(wt); free(back);
        return failed;
    }
    for (int t = 1; t < nt; t++) /* in thread order: the same sums for the same thread count */
        for (long i = 0; i < nacc; i++) partial[i] += partial[t * nacc + i];
    if (d.cv) {
        for (long o = 0; o < s->o; o++) {
            for (long i = 0; i < s->c * d.kk; i++)
                gw[o * s->c * d.kk + i] = partial[i * groups + o / V][o % V];
            gb[o] = partial[s->c * d.kk * groups + o / V][o % V];
        }
    } else {
        for (long i = 0; i < s->o * s->c * d.kk; i++) gw[i] = lane_sum(partial[i]);
        for (long o = 0; o < s->o; o++) gb[o] = lane_sum(partial[gmaps * s->c * d.kk + o]);
    }
    free(partial); free(wt); free(back);
    return 0;
}
