// RMSNorm over fp32 rows: y = x / sqrt(mean(x^2) + eps) * weight, or without the weight when it is
// NULL (AVX2 + FMA, OpenMP over rows).
//
// Why hand-written: PyTorch 2.13's CPU F.rms_norm is not fused (pow, mean, rsqrt, two
// copies: ~38 us per call here), and a decode step normalises 2 rows per layer; this loop
// takes a few microseconds, most of it the call itself.

#include <immintrin.h>
#include <cmath>
#include <cstdint>

#include "simd.h"

extern "C" {

void dscoder_rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* y) {
#pragma omp parallel for schedule(static) if (rows > 16)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        __m256 acc = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= dim; k += 8) {
            const __m256 v = _mm256_loadu_ps(xr + k);
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        float sum = hsum(acc);
        for (; k < dim; ++k) sum += xr[k] * xr[k];
        const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
        const __m256 vinv = _mm256_set1_ps(inv);
        float* yr = y + r * dim;
        for (k = 0; k + 8 <= dim; k += 8)
            _mm256_storeu_ps(yr + k, weight ? _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), vinv),
                                                            _mm256_loadu_ps(weight + k))
                                            : _mm256_mul_ps(_mm256_loadu_ps(xr + k), vinv));
        for (; k < dim; ++k) yr[k] = weight ? xr[k] * inv * weight[k] : xr[k] * inv;
    }
}

}  // extern "C"
