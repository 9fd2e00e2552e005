/* Runs cnnlab's matrix product (cpu_dense.c) outside Python, for the kernels built for
 * another architecture and run under an emulator (tests/accel/test_cpu.py). Reads m, n,
 * k, whether p is read transposed and whether there is a bias (5 longs), then the float32
 * p (m x k, or k x m where transposed), q (k x n) and bias (n) from stdin; writes
 * c = p q (+ bias), m x n, to stdout. */
#include <stdio.h>
#include <stdlib.h>

typedef struct { long m, n, k, ps, pk, qs, cs; } Product;
void cnnlab_product(const float *p, const float *q, const float *bias, float *c,
                    const Product *s, long threads);

static float *input(long count) {
    float *p = malloc(sizeof(float) * (count ? count : 1));
    if (!p || fread(p, sizeof(float), count, stdin) != (size_t)count) exit(2);
    return p;
}

int main(void) {
    long h[5];
    if (fread(h, sizeof h, 1, stdin) != 1) return 1;
    long m = h[0], n = h[1], k = h[2], transposed = h[3], with_bias = h[4];
    float *p = input(m * k), *q = input(k * n), *bias = with_bias ? input(n) : NULL;
    float *c = malloc(sizeof(float) * (m * n ? m * n : 1));
    if (!c) return 4;
    Product s = {m, n, k, transposed ? 1 : k, transposed ? m : 1, n, n};
    cnnlab_product(p, q, bias, c, &s, 2);
    if (fwrite(c, sizeof(float), m * n, stdout) != (size_t)(m * n)) return 3;
    return 0;
}
