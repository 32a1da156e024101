// SwiGLU's elementwise half, silu(gate) * up, over fp32 (AVX2 + FMA).
//
// Why hand-written: in PyTorch it is two ops and a temporary (F.silu, then a multiply) on
// every layer of every decode step; here it is one pass, and the fused decode step
// (decode.cpp) and the PyTorch path call the same function, so both compute the same bits.
// silu(g) = g * sigmoid(g), sigmoid from e^-|g| so the exponential never overflows:
// sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0.

#include <immintrin.h>
#include <cstring>
#include <cstdint>

#include "simd.h"

namespace {

inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 e = exp_neg(_mm256_or_ps(g, _mm256_set1_ps(-0.0f)));  // e^-|g|
    const __m256 negative = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 sigmoid = _mm256_div_ps(_mm256_blendv_ps(one, e, negative), _mm256_add_ps(one, e));
    return _mm256_mul_ps(_mm256_mul_ps(g, sigmoid), u);
}

}  // namespace

extern "C" {

// out may be gate or up itself.  The last n % 8 values go through the same vector code
// (padded), so a value's bits never depend on where it sits in the call.
void dscoder_silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        alignas(32) float g[8] = {}, u[8] = {}, o[8];
        std::memcpy(g, gate + i, (n - i) * sizeof(float));
        std::memcpy(u, up + i, (n - i) * sizeof(float));
        _mm256_store_ps(o, silu_mul8(_mm256_load_ps(g), _mm256_load_ps(u)));
        std::memcpy(out + i, o, (n - i) * sizeof(float));
    }
}

}  // extern "C"
