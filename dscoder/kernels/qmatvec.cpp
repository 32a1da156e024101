// Weight-only quantized matrix-vector products for CPU decode (AVX2 + FMA + F16C, OpenMP).
//
// Why hand-written: at decode time a linear layer is a matrix-vector product whose cost is
// reading the weights, so fewer bytes per weight should mean proportionally faster steps.
// PyTorch 2.13's packed CPU kernels (_weight_int8pack_mm, _weight_int4pack_mm_for_cpu)
// reach under 1 GB/s effective on AVX2, slower than plain fp32; these loops stream the
// packed weights once, dequantize in registers and accumulate in fp32.
//
// Layouts (row-major over output features n, input features k):
//   int8: q int8 [N, K], scale fp32 [N]            w[n,k] = q[n,k] * scale[n]
//   int4: q uint8 [N, K/2], scale/min fp16 [N, K/G] w[n,k] = q * scale[n,g] + min[n,g]
//         G is 32, 64 or 128; when G does not divide K the last group is shorter.
//         Inside each run of 32 weights, byte i holds weight i (low nibble) and weight
//         i + 16 (high nibble), so one 16-byte load unpacks to 32 consecutive weights.
// Rows of x are processed in tiles of up to 3 so unpacked weights are reused across rows
// (speculative verification and small batches); every product accumulates exactly the
// dequantized weight times x, so the pure-PyTorch path agrees to fp32 rounding.

#include <immintrin.h>
#include <cstdint>
#include <cstring>

namespace {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Four vectors of 8 dequantized weights from 16 packed bytes (32 weights).
inline void unpack32(const uint8_t* p, __m256 scale, __m256 minv, __m256 w[4]) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(bytes, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), scale, minv);
    w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), scale, minv);
    w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), scale, minv);
    w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), scale, minv);
}

template <int R>
void int4_rows(const float* x, int64_t K, const uint8_t* q, const uint16_t* scales, const uint16_t* mins,
               int64_t N, int64_t G, const float* bias, float* y) {
    const int64_t groups = (K + G - 1) / G;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        __m256 acc[R][4];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
        const uint8_t* row = q + n * (K / 2);
        for (int64_t g = 0; g < groups; ++g) {
            const __m256 s = _mm256_set1_ps(half_to_float(scales[n * groups + g]));
            const __m256 m = _mm256_set1_ps(half_to_float(mins[n * groups + g]));
            const int64_t end = (g + 1) * G < K ? (g + 1) * G : K;
            for (int64_t k = g * G; k < end; k += 32) {
                __m256 w[4];
                unpack32(row + k / 2, s, m, w);
                for (int r = 0; r < R; ++r) {
                    const float* xr = x + r * K + k;
                    for (int j = 0; j < 4; ++j)
                        acc[r][j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(xr + 8 * j), acc[r][j]);
                }
            }
        }
        for (int r = 0; r < R; ++r) {
            float v = hsum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
            y[r * N + n] = v + (bias ? bias[n] : 0.0f);
        }
    }
}

template <int R>
void int8_rows(const float* x, int64_t K, const int8_t* q, const float* scale, int64_t N, const float* bias,
               float* y) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        __m256 acc[R][4];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
        const int8_t* row = q + n * K;
        for (int64_t k = 0; k < K; k += 32) {
            __m256 w[4];
            const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
            const __m128i b0 = _mm256_castsi256_si128(bytes), b1 = _mm256_extracti128_si256(bytes, 1);
            w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b0));
            w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b0, 8)));
            w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b1));
            w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b1, 8)));
            for (int r = 0; r < R; ++r) {
                const float* xr = x + r * K + k;
                for (int j = 0; j < 4; ++j)
                    acc[r][j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(xr + 8 * j), acc[r][j]);
            }
        }
        for (int r = 0; r < R; ++r) {
            float v = hsum(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
            y[r * N + n] = v * scale[n] + (bias ? bias[n] : 0.0f);
        }
    }
}

}  // namespace

extern "C" {

// y[M, N] = x[M, K] @ dequant(W)^T (+ bias). K must be a multiple of 32.
void dscoder_int4_matmul(const float* x, int64_t M, int64_t K, const uint8_t* q, const uint16_t* scales,
                         const uint16_t* mins, int64_t N, int64_t G, const float* bias, float* y) {
    int64_t r = 0;
    for (; r + 3 <= M; r += 3) int4_rows<3>(x + r * K, K, q, scales, mins, N, G, bias, y + r * N);
    if (M - r == 2) int4_rows<2>(x + r * K, K, q, scales, mins, N, G, bias, y + r * N);
    if (M - r == 1) int4_rows<1>(x + r * K, K, q, scales, mins, N, G, bias, y + r * N);
}

void dscoder_int8_matmul(const float* x, int64_t M, int64_t K, const int8_t* q, const float* scale, int64_t N,
                         const float* bias, float* y) {
    int64_t r = 0;
    for (; r + 3 <= M; r += 3) int8_rows<3>(x + r * K, K, q, scale, N, bias, y + r * N);
    if (M - r == 2) int8_rows<2>(x + r * K, K, q, scale, N, bias, y + r * N);
    if (M - r == 1) int8_rows<1>(x + r * K, K, q, scale, N, bias, y + r * N);
}

// The whole fp32 weight [N, K], for prompt processing, where a dense matmul over many rows
// amortises one dequantization.
void dscoder_int4_dequant(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t N, int64_t K,
                          int64_t G, float* out) {
    const int64_t groups = (K + G - 1) / G;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t g = 0; g < groups; ++g) {
            const __m256 s = _mm256_set1_ps(half_to_float(scales[n * groups + g]));
            const __m256 m = _mm256_set1_ps(half_to_float(mins[n * groups + g]));
            const int64_t end = (g + 1) * G < K ? (g + 1) * G : K;
            for (int64_t k = g * G; k < end; k += 32) {
                __m256 w[4];
                unpack32(q + n * (K / 2) + k / 2, s, m, w);
                for (int j = 0; j < 4; ++j) _mm256_storeu_ps(out + n * K + k + 8 * j, w[j]);
            }
        }
    }
}

void dscoder_int8_dequant(const int8_t* q, const float* scale, int64_t N, int64_t K, float* out) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const __m256 s = _mm256_set1_ps(scale[n]);
        for (int64_t k = 0; k < K; k += 8) {
            const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + n * K + k)));
            _mm256_storeu_ps(out + n * K + k, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
    }
}

}  // extern "C"
