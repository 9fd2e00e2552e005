/* Runs cnnlab's fused block (cpu_block.c) outside Python, for the kernels built for
 * another architecture and run under an emulator (tests/accel/test_cpu.py).
 * Reads the shape (n c h w o k pad act pool, as 9 longs) and the float32 x, weight, bias
 * and pooled gradient from stdin; writes the output, then the input, weight and bias
 * gradients, to stdout. */
#include <stdio.h>
#include <stdlib.h>

typedef struct { long n, c, h, w, o, k, pad, act, pool; } Shape;
long cnnlab_block_kept(const Shape *s);
int cnnlab_block_forward(const float *x, const float *w, const float *bias, float *y,
                         float *a, const Shape *s, long threads);
int cnnlab_block_backward(const float *x, const float *w, const float *a, const float *gy,
                          float *gx, float *gw, float *gb, const Shape *s, long threads);

static float *input(long count) {
    float *p = malloc(sizeof(float) * (count ? count : 1));
    if (!p || fread(p, sizeof(float), count, stdin) != (size_t)count) exit(2);
    return p;
}

static void output(const float *p, long count) {
    if (fwrite(p, sizeof(float), count, stdout) != (size_t)count) exit(3);
}

int main(void) {
    Shape s;
    if (fread(&s, sizeof s, 1, stdin) != 1) return 1;
    long ho = s.h + 2 * s.pad - s.k + 1, wo = s.w + 2 * s.pad - s.k + 1;
    long nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.k * s.k;
    long ny = s.n * s.o * (ho / 2) * (wo / 2);
    float *x = input(nx), *w = input(nw), *b = input(s.o), *gy = input(ny);
    float *y = malloc(sizeof(float) * ny), *gx = malloc(sizeof(float) * nx);
    float *gw = malloc(sizeof(float) * nw), *gb = malloc(sizeof(float) * s.o);
    float *a = malloc(sizeof(float) * cnnlab_block_kept(&s));
    if (!y || !gx || !gw || !gb || !a) return 4;
    if (cnnlab_block_forward(x, w, b, y, a, &s, 2) || cnnlab_block_backward(x, w, a, gy, gx, gw, gb, &s, 2))
        return 5;
    output(y, ny); output(gx, nx); output(gw, nw); output(gb, s.o);
    return 0;
}
