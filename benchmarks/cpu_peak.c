/* The CPU's float32 multiply-add rate: each thread runs 12 independent chains of 16-lane
 * fused multiply-adds (enough to cover the latency), so the loop runs at the issue limit.
 * Built and called by benchmarks/cpu_kernels.py. */
#include <string.h>
typedef float vf __attribute__((vector_size(64)));

float cnnlab_peak_fma(long iterations, int threads) {
    float total = 0;
    #pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        vf acc[12], x = (vf){0} + 0.999999f, y = (vf){0} + 1e-7f;
        for (int i = 0; i < 12; i++) acc[i] = (vf){0} + (float)i;
        for (long n = 0; n < iterations; n++)
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * x + y;
        for (int i = 0; i < 12; i++)
            for (int l = 0; l < 16; l++) total += acc[i][l];
    }
    return total;
}
