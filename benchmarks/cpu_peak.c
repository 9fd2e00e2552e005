/* The CPU's float32 multiply-add rate for the instruction set it is compiled for: each
 * thread runs 12 independent chains of one-register fused multiply-adds (16 lanes with
 * AVX-512, 8 with AVX, 4 otherwise), enough to cover the latency, so the loop runs at the
 * issue limit. Built with a target's flags and called by benchmarks/cpu_kernels.py. */
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vf __attribute__((vector_size(LANES * sizeof(float))));

int cnnlab_peak_lanes(void) { return LANES; }

float cnnlab_peak_fma(long iterations, int threads) {
    float total = 0;
    #pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        vf acc[12], x = (vf){0} + 0.999999f, y = (vf){0} + 1e-7f;
        for (int i = 0; i < 12; i++) acc[i] = (vf){0} + (float)i;
        for (long n = 0; n < iterations; n++)
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * x + y;
        for (int i = 0; i < 12; i++)
            for (int l = 0; l < LANES; l++) total += acc[i][l];
    }
    return total;
}
