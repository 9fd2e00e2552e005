/* cnnlab's fused CPU block: convolution (stride 1, square kernel, zero padding) ->
 * activation (sigmoid or ReLU) -> 2x2 pooling with stride 2 (average or maximum),
 * forward and backward, for float32 NCHW tensors.
 *
 * Built at first use by cnnlab/accel/cpu.py with the system's C compiler and loaded with
 * ctypes; no Python or torch headers.
 *
 * Images go V at a time, one in each lane of a vector: a map value is a vector of V
 * images' values, and every loop is a plain loop over maps, rows and columns of whole
 * vectors. No lane is ever spent on a border, a spare column or the end of a row (laid
 * out one image at a time, a 10x10 map's rows of a 14-wide input waste 40% of the
 * lanes, and the input gradient's taps that miss the map half of them), and lanes are
 * summed only once, for the weight gradient. The images of a batch are taken in groups of
 * V, the last group's unused lanes zero; a group's activations are kept for backward in
 * this layout. Groups are split over OpenMP threads in fixed contiguous chunks and each
 * thread's weight gradient is summed in thread order, so the results depend only on the
 * inputs and the thread count.
 */
#include "cpu_common.h"
#include "cpu_vector.h"

/* Register blocks: the convolutions take up to MAPS maps at X adjacent positions (MAPS * X
 * sums, X input vectors and a weight), the weight gradient WG_MAPS maps by WG_TAPS taps
 * (their sums, the maps' gradients and an input vector). */
#define MAPS 6
#define X (REGS >= 32 ? 4 : 2)
#define WG_MAPS (REGS >= 32 ? 4 : 2)
#define WG_TAPS 5
#define MARGIN (X - 1) /* zero vectors each side of a gradient row (see input_grad_at) */

typedef struct {
    long n, c, h, w, o, k, pad, act, pool; /* act: 0 sigmoid, 1 relu; pool: 0 avg, 1 max */
} Shape;

typedef struct {
    long hp, wp, ho, wo, hq, wq, kk;
    long groups; /* of V images */
    long xs;     /* vectors of a group's padded input: xl[(y * c + ci) * wp + x] */
    long as;     /* of its activations: al[(o * ho + y) * wo + x] */
    long ys;     /* of its pooled output or gradient: [(o * hq + y) * wq + x] */
    long gw;     /* a gradient row: gl[(y * o + oi) * gw + MARGIN + x] */
} Dims;

static Dims dims_of(const Shape *s) {
    Dims d;
    d.hp = s->h + 2 * s->pad; d.wp = s->w + 2 * s->pad;
    d.ho = d.hp - s->k + 1; d.wo = d.wp - s->k + 1;
    d.hq = d.ho / 2; d.wq = d.wo / 2; d.kk = s->k * s->k;
    d.groups = (s->n + V - 1) / V;
    d.xs = d.hp * s->c * d.wp; d.as = s->o * d.ho * d.wo; d.ys = s->o * d.hq * d.wq;
    d.gw = d.wo + 2 * MARGIN;
    return d;
}

/* Floats of the kept activations of the whole batch (the forward's a). */
long cnnlab_block_kept(const Shape *s) {
    Dims d = dims_of(s);
    return d.groups * d.as * V;
}


/* A group's lanes: dst[t] = the t-th float of each of its m images (count floats, images
 * stride floats apart in src), lanes past m zero; and back. */
INLINE void gather_by(const float *src, long stride, long count, vf *dst, const int m) {
    for (long t = 0; t < count; t++) {
        vf v = {0};
        for (int l = 0; l < m; l++) v[l] = src[l * stride + t];
        dst[t] = v;
    }
}

INLINE void scatter_by(const vf *src, long count, float *dst, long stride, const int m) {
    for (long t = 0; t < count; t++)
        for (int l = 0; l < m; l++) dst[l * stride + t] = src[t][l];
}

#if V == 8 && defined(__AVX__)
#define SQUARES 1
/* The V x V floats of r transposed in registers (the compiler builds a vector of V images'
 * floats one lane at a time otherwise: a gather or scatter took 3-4 times the operations
 * with AVX2's 8 lanes, and with AVX-512's 16 a masked broadcast per lane). */
static inline void transpose(vf r[V]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = (vf)_mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = (vf)_mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
#elif V == 16 && defined(__AVX512F__)
#define SQUARES 1
/* As AVX2's, within each 128-bit lane; then lane L of the four rows' blocks that hold
 * column 4 L + c is gathered into row 4 L + c. */
static inline void transpose(vf r[V]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* u[4 i + c], lane L: column 4 L + c of rows 4 i.. */
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        __m512 s0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);      /* A0 A1 B0 B1 */
        __m512 s1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);      /* A2 A3 B2 B3 */
        __m512 s2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44); /* C0 C1 D0 D1 */
        __m512 s3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee); /* C2 C3 D2 D3 */
        r[c] = (vf)_mm512_shuffle_f32x4(s0, s2, 0x88);               /* A0 B0 C0 D0 */
        r[4 + c] = (vf)_mm512_shuffle_f32x4(s0, s2, 0xdd);
        r[8 + c] = (vf)_mm512_shuffle_f32x4(s1, s3, 0x88);
        r[12 + c] = (vf)_mm512_shuffle_f32x4(s1, s3, 0xdd);
    }
}
#endif

#ifdef SQUARES
/* r[i]: the (t + i)-th float of each of V images, stride floats apart in src. */
static inline void load_square(const float *src, long stride, long t, vf r[V]) {
    for (int l = 0; l < V; l++) r[l] = *(const vfu *)(src + l * stride + t);
    transpose(r);
}

/* V floats of each of V images at t (t + V <= count). */
static inline void gather_square(const float *src, long stride, long t, vf *dst) {
    vf r[V];
    load_square(src, stride, t, r);
    for (int i = 0; i < V; i++) dst[t + i] = r[i];
}

static inline void scatter_square(const vf *src, long t, float *dst, long stride) {
    vf r[V];
    for (int i = 0; i < V; i++) r[i] = src[t + i];
    transpose(r);
    for (int l = 0; l < V; l++) *(vfu *)(dst + l * stride + t) = r[l];
}
#endif

static void gather(const float *src, long stride, long count, int m, vf *dst) {
#ifdef SQUARES
    if (m == V && count >= V) {
        for (long t = 0; t + V <= count; t += V) gather_square(src, stride, t, dst);
        if (count % V) gather_square(src, stride, count - V, dst); /* the last V, overlapping */
        return;
    }
#endif
    if (m == V) gather_by(src, stride, count, dst, V); /* the loop known whole: vectorised */
    else gather_by(src, stride, count, dst, m);
}

static void scatter(const vf *src, long count, int m, float *dst, long stride) {
#ifdef SQUARES
    if (m == V && count >= V) {
        for (long t = 0; t + V <= count; t += V) scatter_square(src, t, dst, stride);
        if (count % V) scatter_square(src, count - V, dst, stride);
        return;
    }
#endif
    if (m == V) scatter_by(src, count, dst, stride, V);
    else scatter_by(src, count, dst, stride, m);
}

/* The padded input xl of the group's m images from x (its border stays zero). */
static void gather_input(const float *x, const Shape *s, const Dims *d, int m, vf *xl) {
    long image = s->c * s->h * s->w;
#ifdef SQUARES
    if (m == V && s->w < V && image >= V) { /* rows shorter than a square: squares across rows */
        for (long t0 = 0; t0 < image; t0 += V) {
            long t = t0 + V <= image ? t0 : image - V; /* the last V, overlapping */
            long c = t / (s->h * s->w), y = t / s->w % s->h, col = t % s->w;
            vf r[V];
            load_square(x, image, t, r);
            for (int i = 0; i < V; i++) {
                xl[((y + s->pad) * s->c + c) * d->wp + col + s->pad] = r[i];
                if (++col == s->w) {
                    col = 0;
                    if (++y == s->h) y = 0, c++;
                }
            }
        }
        return;
    }
#endif
    for (long c = 0; c < s->c; c++)
        for (long y = 0; y < s->h; y++)
            gather(x + (c * s->h + y) * s->w, image, s->w, m,
                   xl + ((y + s->pad) * s->c + c) * d->wp + s->pad);
}

/* The heart of both convolutions: acc[x * B + b] = the sum over rows r < rows and taps
 * j0 <= j <= j1 of in[r * in_rs + x + step * j] * w[r * w_rs + j * w_js + b], for B maps
 * at XB adjacent positions. The taps are the outer loop, so the inner one is long. */
INLINE void correlate(const vf *in, long in_rs, long step, long rows, long j0, long j1,
                      const float *w, long w_rs, long w_js, vf *acc, const int B, const int XB) {
    for (int t = 0; t < B * XB; t++) acc[t] = (vf){0};
    for (long j = j0; j <= j1; j++)
        for (long r = 0; r < rows; r++) {
            const vf *p = in + r * in_rs + step * j;
            const float *wr = w + r * w_rs + j * w_js;
            vf v[X];
            for (int x = 0; x < XB; x++) v[x] = p[x];
            for (int b = 0; b < B; b++) {
                float wv = wr[b];
                for (int x = 0; x < XB; x++) acc[x * B + b] += v[x] * wv;
            }
        }
}

/* x limited to [lo, hi], NaN kept (the instructions return their second operand then). */
static inline vf clamp(vf x, float lo, float hi) {
#if defined(__AVX512F__)
    return (vf)_mm512_min_ps((__m512)splat(hi), _mm512_max_ps((__m512)splat(lo), (__m512)x));
#elif defined(__AVX__)
    return (vf)_mm256_min_ps((__m256)splat(hi), _mm256_max_ps((__m256)splat(lo), (__m256)x));
#elif defined(__SSE__)
    return (vf)_mm_min_ps((__m128)splat(hi), _mm_max_ps((__m128)splat(lo), (__m128)x));
#else
    x = pick(x < splat(lo), splat(lo), x);
    return pick(x > splat(hi), splat(hi), x);
#endif
}

/* The sigmoid of a vector, with exp as 2^n * p(r): n rounded by the 1.5 * 2^23 trick, 2^n
 * from its bits, p of degree 5 fitted to exp on [-ln 2 / 2, ln 2 / 2] for the least
 * largest relative error (2e-7 in float arithmetic, as Cephes' degree-7 one it replaced:
 * the sigmoid within 4e-7 of torch's either way); 1 / d as the hardware's reciprocal
 * estimate (14 bits with AVX-512, 12 with AVX) and one Newton step, which squares its
 * error, instead of a division. About 19 vector operations. */
static inline vf sigmoid(vf v) {
    vf x = clamp(-v, -87.0f, 88.0f);
    vf n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = splat(8.2976548001e-3f);
    p = p * r + 4.1915383190e-2f; p = p * r + 1.6667574644e-1f;
    p = p * r + 4.9998894334e-1f; p = p * r + 9.9999970198e-1f;
    p = p * r + 1.0000001192f;
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

static inline vf activate(vf z, long relu) {
    return relu ? pick(z < splat(0), splat(0), z) : sigmoid(z); /* NaN stays */
}

/* B maps o0.. of row y at XB positions x0..: al = act(the convolution + bias). The input
 * rows it reads, (y + i, ci) for every tap row i and input map ci, are one run of xl's
 * rows from y * c, and their weights wf[i][ci][j][o] one run at the same stride. */
INLINE void convolve_at(const vf *xl, const float *wf, const float *bias, const Shape *s,
                        const Dims *d, long y, long x0, long o0, vfu *al, const int B,
                        const int XB) {
    vf acc[MAPS * X];
    correlate(xl + y * s->c * d->wp + x0, d->wp, 1, s->k * s->c, 0, s->k - 1, wf + o0,
              s->k * s->o, s->o, acc, B, XB);
    for (int b = 0; b < B; b++)
        for (int x = 0; x < XB; x++)
            al[((o0 + b) * d->ho + y) * d->wo + x0 + x] =
                activate(acc[x * B + b] + bias[o0 + b], s->act);
}

static void convolve(const vf *xl, const float *wf, const float *bias, const Shape *s,
                     const Dims *d, vfu *al) {
    for (long o0 = 0; o0 < s->o; o0 += MAPS)
        for (long y = 0; y < d->ho; y++)
            for (long x0 = 0; x0 < d->wo;) {
                int xb = d->wo - x0 >= X ? X : 1;
                switch ((s->o - o0 < MAPS ? s->o - o0 : MAPS) * 8 + xb) {
#define CASE(B) \
    case B * 8 + X: convolve_at(xl, wf, bias, s, d, y, x0, o0, al, B, X); break; \
    case B * 8 + 1: convolve_at(xl, wf, bias, s, d, y, x0, o0, al, B, 1); break;
                CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
                }
                x0 += xb;
            }
}

/* yl: the 2x2 pooling of al (torch's order of comparisons for the maximum). */
static void pool(const vfu *al, const Shape *s, const Dims *d, vf *yl) {
    for (long o = 0; o < s->o; o++)
        for (long yy = 0; yy < d->hq; yy++)
            for (long xx = 0; xx < d->wq; xx++) {
                const vfu *p = al + (o * d->ho + 2 * yy) * d->wo + 2 * xx;
                vf v00 = p[0], v01 = p[1], v10 = p[d->wo], v11 = p[d->wo + 1];
                vf m = pick(v00 > v01, v00, v01), m2 = pick(v10 > v11, v10, v11);
                yl[(o * d->hq + yy) * d->wq + xx] =
                    s->pool ? pick(m >= m2, m, m2) : ((v00 + v01) + (v10 + v11)) * 0.25f;
            }
}

/* The weights w[o][c][i][j] rearranged for the forward's convolution, wf[i][c][j][o], or
 * for the input gradient's, wb[k - 1 - i][o][j][c] (NULL if they cannot be allocated). */
static float *arranged(const float *w, const Shape *s, int backward) {
    long k = s->k;
    float *to = allocate(s->o * s->c * k * k, sizeof(float), 0);
    if (to)
        for (long o = 0; o < s->o; o++)
            for (long c = 0; c < s->c; c++)
                for (long i = 0; i < k; i++)
                    for (long j = 0; j < k; j++)
                        to[backward ? (((k - 1 - i) * s->o + o) * k + j) * s->c + c
                                    : ((i * s->c + c) * k + j) * s->o + o] =
                            w[((o * s->c + c) * k + i) * k + j];
    return to;
}

/* y: (n, o, hq, wq) pooled output; a: cnnlab_block_kept floats, the activations kept for
 * backward, or NULL where no backward follows. 0, or CNNLAB_OUT_OF_MEMORY. */
int cnnlab_block_forward(const float *x, const float *w, const float *bias, float *y,
                         float *a, const Shape *s, long threads) {
    Dims d = dims_of(s);
    float *wf = arranged(w, s, 0);
    int failed = wf ? 0 : CNNLAB_OUT_OF_MEMORY;
    int nt = threads_for(d.groups, threads);
    #pragma omp parallel num_threads(nt)
    {
        FLUSH_DENORMALS();
        vf *xl = wf ? allocate(d.xs, sizeof(vf), 1) : NULL;
        vf *yl = wf ? allocate(d.ys, sizeof(vf), 0) : NULL;
        vf *scratch = wf && !a ? allocate(d.as, sizeof(vf), 0) : NULL; /* a group's al */
        int have = xl && yl && (a || scratch);
        if (!have) failed_to_allocate(&failed);
        #pragma omp for schedule(static)
        for (long g = 0; g < d.groups; g++) {
            if (!have) continue;
            long n0 = g * V;
            int m = s->n - n0 < V ? (int)(s->n - n0) : V;
            vfu *al = a ? (vfu *)a + g * d.as : scratch;
            gather_input(x + n0 * s->c * s->h * s->w, s, &d, m, xl);
            convolve(xl, wf, bias, s, &d, al);
            pool(al, s, &d, yl);
            scatter(yl, d.ys, m, y + n0 * d.ys, d.ys);
        }
        free(xl); free(yl); free(scratch);
    }
    free(wf);
    return failed;
}

/* gl: the gradient at the convolution's output, from the pooled gradient gyl and the
 * kept activations al (zero outside the pooled area: gl's positions past the last
 * window are never written). */
static void preactivation_grad(const vf *gyl, const vfu *al, const Shape *s, const Dims *d,
                               vf *gl) {
    for (long o = 0; o < s->o; o++)
        for (long yy = 0; yy < d->hq; yy++)
            for (long xx = 0; xx < d->wq; xx++) {
                const vfu *p = al + (o * d->ho + 2 * yy) * d->wo + 2 * xx;
                vf *q = gl + (2 * yy * s->o + o) * d->gw + MARGIN + 2 * xx;
                vf a[4] = {p[0], p[1], p[d->wo], p[d->wo + 1]}, g[4];
                vf v = gyl[(o * d->hq + yy) * d->wq + xx];
                if (s->pool) { /* all to the first maximum in reading order, as torch does */
                    vi b1 = a[1] > a[0];
                    vf m = pick(b1, a[1], a[0]);
                    vi b2 = a[2] > m;
                    vf m2 = pick(b2, a[2], m);
                    vi b3 = a[3] > m2;
                    g[3] = pick(b3, v, splat(0));
                    g[2] = pick(b3, splat(0), pick(b2, v, splat(0)));
                    vf rest = v - g[3] - g[2];
                    g[1] = pick(b1, rest, splat(0));
                    g[0] = rest - g[1];
                } else {
                    for (int t = 0; t < 4; t++) g[t] = v * 0.25f;
                }
                for (int t = 0; t < 4; t++)
                    g[t] = s->act ? pick(a[t] > splat(0), g[t], splat(0))
                                  : g[t] * (a[t] * (1.0f - a[t]));
                q[0] = g[0]; q[1] = g[1];
                q[s->o * d->gw] = g[2]; q[s->o * d->gw + 1] = g[3];
            }
}

/* acc[((o * c + ci) * k + i) * k + j] += the sum over positions of
 * g[o][y][x] * x[ci][y + i][x + j], for B maps o0.. and J taps j0.. of (ci, i). */
INLINE void weight_grad_at(const vf *gl, const vf *xl, const Shape *s, const Dims *d,
                           long o0, long c, long i, long j0, vf *acc, const int B,
                           const int J) {
    vf sum[WG_MAPS * WG_TAPS]; /* sum[b * J + j] */
    vf *at = acc + ((o0 * s->c + c) * s->k + i) * s->k + j0;
    long map = s->c * s->k * s->k; /* acc's maps apart */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++) sum[b * J + j] = at[b * map + j];
    for (long y = 0; y < d->ho; y++) {
        const vf *gr = gl + (y * s->o + o0) * d->gw + MARGIN;
        const vf *xr = xl + ((y + i) * s->c + c) * d->wp + j0;
        for (long x = 0; x < d->wo; x++) {
            vf gv[WG_MAPS];
            for (int b = 0; b < B; b++) gv[b] = gr[b * d->gw + x];
            for (int j = 0; j < J; j++) {
                vf xv = xr[x + j];
                for (int b = 0; b < B; b++) sum[b * J + j] += gv[b] * xv;
            }
        }
    }
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++) at[b * map + j] = sum[b * J + j];
}

/* acc: the weight gradient's sums (lane by lane, as weight_grad_at), then the bias's. */
static void weight_grad(const vf *gl, const vf *xl, const Shape *s, const Dims *d,
                        vf *acc) {
    for (long o0 = 0; o0 < s->o; o0 += WG_MAPS)
        for (long c = 0; c < s->c; c++)
            for (long i = 0; i < s->k; i++)
                for (long j0 = 0; j0 < s->k; j0 += WG_TAPS) {
                    int b = s->o - o0 < WG_MAPS ? s->o - o0 : WG_MAPS;
                    int j = s->k - j0 < WG_TAPS ? s->k - j0 : WG_TAPS;
                    switch (b * 8 + j) {
#define CASE(B, J) case B * 8 + J: weight_grad_at(gl, xl, s, d, o0, c, i, j0, acc, B, J); break;
                    CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4) CASE(1, 5)
                    CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4) CASE(2, 5)
#if WG_MAPS > 2
                    CASE(3, 1) CASE(3, 2) CASE(3, 3) CASE(3, 4) CASE(3, 5)
                    CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4) CASE(4, 5)
#endif
#undef CASE
                    }
                }
    vf *bias = acc + s->o * s->c * s->k * s->k;
    for (long y = 0; y < d->ho; y++)
        for (long o = 0; o < s->o; o++)
            for (long x = 0; x < d->wo; x++) bias[o] += gl[(y * s->o + o) * d->gw + MARGIN + x];
}

/* The input gradient: gx[c][y][x] = the sum over o and the taps (i, j) that land inside
 * g of g[o][y + pad - i][x + pad - j] * w[o][c][i][j], only those taps computed. For
 * output row y the rows (yo, o) of gl it reads, yo = y + pad - i, are one run, and their
 * weights wb[k - 1 - i][o][j][c] one run at the same stride. MARGIN zero vectors each
 * side of a gradient row supply the zeros where a tap misses some of X positions. This
 * computes B input maps c0.. at XB positions x0... */
INLINE void input_grad_at(const vf *gl, const float *wb, const Shape *s, const Dims *d,
                          long y, long x0, long c0, vf *gxl, const int B, const int XB) {
    long k = s->k, kc = k * s->c;
    long y0 = y + s->pad - (k - 1), y1 = y + s->pad;                /* yo = y + pad - i */
    long j0 = x0 + s->pad - (d->wo - 1), j1 = x0 + XB - 1 + s->pad; /* some 0 <= xo < wo */
    if (y0 < 0) y0 = 0;
    if (y1 > d->ho - 1) y1 = d->ho - 1;
    if (j0 < 0) j0 = 0;
    if (j1 > k - 1) j1 = k - 1;
    vf acc[MAPS * X];
    correlate(gl + y0 * s->o * d->gw + MARGIN + x0 + s->pad, d->gw, -1,
              y1 < y0 ? 0 : (y1 - y0 + 1) * s->o, j0, j1,
              wb + (y0 + k - 1 - y - s->pad) * s->o * kc + c0, kc, s->c, acc, B, XB);
    for (int b = 0; b < B; b++)
        for (int x = 0; x < XB; x++) gxl[((c0 + b) * s->h + y) * s->w + x0 + x] = acc[x * B + b];
}

static void input_grad(const vf *gl, const float *wb, const Shape *s, const Dims *d,
                       vf *gxl) {
    for (long c0 = 0; c0 < s->c; c0 += MAPS)
        for (long y = 0; y < s->h; y++)
            for (long x0 = 0; x0 < s->w;) {
                int xb = s->w - x0 >= X ? X : 1;
                switch ((s->c - c0 < MAPS ? s->c - c0 : MAPS) * 8 + xb) {
#define CASE(B) \
    case B * 8 + X: input_grad_at(gl, wb, s, d, y, x0, c0, gxl, B, X); break; \
    case B * 8 + 1: input_grad_at(gl, wb, s, d, y, x0, c0, gxl, B, 1); break;
                CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
                }
                x0 += xb;
            }
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
    long nacc = s->o * s->c * d.kk + s->o; /* vectors of weight and bias sums */
    long image = s->c * s->h * s->w;
    int nt = threads_for(d.groups, threads);
    float *wb = gx ? arranged(w, s, 1) : NULL;
    vf *partial = allocate(nt * nacc, sizeof(vf), 1);
    if ((gx && !wb) || !partial) {
        free(wb); free(partial);
        return CNNLAB_OUT_OF_MEMORY;
    }
    int failed = 0;
    #pragma omp parallel num_threads(nt)
    {
        FLUSH_DENORMALS();
        vf *acc = partial + thread_id() * nacc;
        vf *xl = allocate(d.xs, sizeof(vf), 1), *gyl = allocate(d.ys, sizeof(vf), 0);
        vf *gl = allocate(d.ho * s->o * d.gw, sizeof(vf), 1);
        vf *gxl = gx ? allocate(image, sizeof(vf), 0) : NULL;
        int have = xl && gyl && gl && (gxl || !gx);
        if (!have) failed_to_allocate(&failed);
        #pragma omp for schedule(static)
        for (long g = 0; g < d.groups; g++) {
            if (!have) continue;
            long n0 = g * V;
            int m = s->n - n0 < V ? (int)(s->n - n0) : V;
            gather_input(x + n0 * image, s, &d, m, xl);
            gather(gy + n0 * d.ys, d.ys, d.ys, m, gyl); /* lanes past m zero: no gradient */
            preactivation_grad(gyl, (const vfu *)a + g * d.as, s, &d, gl);
            weight_grad(gl, xl, s, &d, acc);
            if (gx) {
                input_grad(gl, wb, s, &d, gxl);
                scatter(gxl, image, m, gx + n0 * image, image);
            }
        }
        free(xl); free(gyl); free(gl); free(gxl);
    }
    if (!failed) {
        for (int t = 1; t < nt; t++) /* in thread order: the same sums for the same count */
            for (long i = 0; i < nacc; i++) partial[i] += partial[t * nacc + i];
        for (long i = 0; i < s->o * s->c * d.kk; i++) gw[i] = lane_sum(partial[i]);
        for (long o = 0; o < s->o; o++) gb[o] = lane_sum(partial[s->o * s->c * d.kk + o]);
    }
    free(partial); free(wb);
    return failed;
}
