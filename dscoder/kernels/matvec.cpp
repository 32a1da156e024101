// Dense fp32 and bf16 matrix-vector products for CPU decode (AVX2 + FMA, OpenMP).
//
// Why hand-written: for one row of activations against a [N, K] weight, PyTorch 2.13's
// F.linear reached ~5 GB/s on this machine's decode shapes (576 -> 576/1536), a third of
// what two cores can stream; a decode step is nothing but these products.  bf16 weights
// are widened to fp32 in registers (a 16-bit shift), so they cost half the bytes of fp32
// with fp32 arithmetic.  Accumulation is fp32 in both cases.

#include <immintrin.h>
#include <cstdint>
#include <algorithm>
#include <cstring>

#include "simd.h"
#include "tiles.h"

namespace {

inline float widen(float v) { return v; }

inline float widen(uint16_t bits) {
    uint32_t wide = static_cast<uint32_t>(bits) << 16;
    float v;
    std::memcpy(&v, &wide, sizeof v);
    return v;
}

// y[r, n] = x[r, :] . w[n, :] (+ bias[n]) for R rows and the weight rows n0..n1, so each weight row is
// read once per tile of R rows.
template <int R, typename W>
void rows(const float* x, int64_t K, const W* w, int64_t n0, int64_t n1, int64_t N, const float* bias, float* y) {
    for (int64_t n = n0; n < n1; ++n) {
        __m256 acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const W* row = w + n * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m256 w0 = load8(row + k), w1 = load8(row + k + 8);
            for (int r = 0; r < R; ++r) {
                acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * K + k), acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + r * K + k + 8), acc[r][1]);
            }
        }
        for (int r = 0; r < R; ++r) {
            float v = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
            for (int64_t j = k; j < K; ++j) v += x[r * K + j] * widen(row[j]);
            y[r * N + n] = v + (bias ? bias[n] : 0.0f);
        }
    }
}

// The weight is walked in slabs of ~128 KiB, and every row tile runs over a slab while it is
// in cache: with more than one tile (7+ rows) a large weight (the output head: 113 MB in
// fp32 for SmolLM2) is then streamed from memory once instead of once per tile.  Each
// y[r, n] is computed by the same instructions whatever the slab or tile, so results do
// not depend on how many rows share the call.
template <typename W>
void matmul(const float* x, int64_t M, int64_t K, const W* w, int64_t N, const float* bias, float* y) {
    const int64_t slab = std::max<int64_t>(8, (int64_t(1) << 17) / (K * int64_t(sizeof(W))));
    const int64_t slabs = (N + slab - 1) / slab;
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < slabs; ++s) {
        const int64_t n0 = s * slab, n1 = std::min(N, n0 + slab);
        over_row_tiles<6>(M, [&](auto R, int64_t r) {
            rows<decltype(R)::value>(x + r * K, K, w, n0, n1, N, bias, y + r * N);
        });
    }
}

}  // namespace

extern "C" {

// y[M, N] = x[M, K] @ w[N, K]^T (+ bias), x and y fp32.
void dscoder_f32_matmul(const float* x, int64_t M, int64_t K, const float* w, int64_t N, const float* bias,
                        float* y) {
    matmul(x, M, K, w, N, bias, y);
}

void dscoder_bf16_matmul(const float* x, int64_t M, int64_t K, const uint16_t* w, int64_t N, const float* bias,
                         float* y) {
    matmul(x, M, K, w, N, bias, y);
}

}  // extern "C"
