// Quantized matrix-vector products for CPU decode (AVX2 + FMA + F16C, OpenMP).
//
// Why hand-written: at decode time a linear layer is a matrix-vector product whose cost
// should be reading the weights, so fewer bytes per weight should mean proportionally
// faster steps.  PyTorch 2.13's packed CPU kernels (_weight_int8pack_mm,
// _weight_int4pack_mm_for_cpu) reach under 1 GB/s effective on AVX2, slower than plain
// fp32.  Unpacking int4 to fp32 and multiplying in fp32 (our first version) is
// compute-bound at ~5 GB/s on this machine, so, like llama.cpp, the activations are
// quantized in blocks of 32 (to int16 here) and the block dot products are exact integer
// arithmetic (madd), scaled once per block: about 3x fewer instructions per weight.
//
// Layouts (row-major over output features n, input features k):
//   int8: q int8 [N, K], scale fp32 [N]            w[n,k] = q[n,k] * scale[n]
//   int4: q uint8 [N, K/2], scale/min fp16 [N, K/G] w[n,k] = q * scale[n,g] + min[n,g]
//         G is 32, 64 or 128; when G does not divide K the last group is shorter.
//         Inside each run of 32 weights, byte i holds weight i (low nibble) and weight
//         i + 16 (high nibble), so one 16-byte load unpacks to 32 consecutive weights.
// Rows of x are processed in tiles of up to 4 (tiles.h) so unpacked weights are reused across
// rows (speculative verification and small batches).  quant.QuantLinear's PyTorch path does the
// same integer arithmetic, so the two agree to fp32 rounding.

#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simd.h"
#include "tiles.h"

namespace {

// Not _cvtsh_ss: GCC builds it by inserting into the previous value's register, a
// loop-carried dependency that cost 7 cycles per block here.
inline float half_to_float(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

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

// Rows r.. of quantized activations (int16 for int8 weights, int8 for int4 weights).
template <typename Q>
struct RowsView {
    const Q* q;
    const float* d;
    const float* dsum;
};

// Activations in blocks of 32: d = max|x| / L, q = round_half_even(x * (1/d)), and d * sum(q)
// for the int4 minimum term; quant.quantize_activations is the same arithmetic in PyTorch.
//   - int4 weights: 8 bits (L = 127), as llama.cpp's Q4_1 x Q8_1: a block's dot product is then
//     one u8 x s8 multiply-add (maddubs+madd on AVX2, one vpdpbusd with VNNI, the same exact
//     integers either way), about half the instructions of 16 bits, and the rounding costs
//     nothing measurable next to the weights' own 4 bits (tests/model/test_quant.py's perplexity);
//   - int8 weights: 16 bits (L = 32767): 8-bit activations cost the int8 model 0.5% perplexity
//     on the embedded model, against a 1% budget that its weights already use a third of.
template <typename Q>
struct QuantizedRows {
    std::vector<Q> q;
    std::vector<float> d, dsum;
    QuantizedRows(const float* x, int64_t rows, int64_t K) : q(rows * K), d(rows * K / 32), dsum(rows * K / 32) {
        constexpr float levels = sizeof(Q) == 1 ? 127.0f : 32767.0f;
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (int64_t b = 0; b < rows * K / 32; ++b) {
            __m256 v[4], amax = _mm256_setzero_ps();
            for (int j = 0; j < 4; ++j) {
                v[j] = _mm256_loadu_ps(x + 32 * b + 8 * j);
                amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
            }
            __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
            m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            m = _mm_max_ss(m, _mm_movehdup_ps(m));
            const float scale = _mm_cvtss_f32(m) / levels, inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
            __m256i qi[4];
            for (int j = 0; j < 4; ++j)
                qi[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], _mm256_set1_ps(inverse)),
                                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            // packs interleaves the 128-bit lanes; a permutation restores the order
            const __m256i lo = _mm256_packs_epi32(qi[0], qi[1]), hi = _mm256_packs_epi32(qi[2], qi[3]);
            if constexpr (sizeof(Q) == 1) {
                const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(lo, hi),
                                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(&q[32 * b]), bytes);
            } else {
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(&q[32 * b]), _mm256_permute4x64_epi64(lo, 0xD8));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(&q[32 * b + 16]), _mm256_permute4x64_epi64(hi, 0xD8));
            }
            const __m256i sums = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
            alignas(32) int32_t lanes[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sums);
            int32_t total = 0;
            for (int j = 0; j < 8; ++j) total += lanes[j];
            d[b] = scale;
            dsum[b] = scale * static_cast<float>(total);
        }
    }
    RowsView<Q> slice(int64_t row, int64_t K) const { return {&q[row * K], &d[row * K / 32], &dsum[row * K / 32]}; }
};

// One block's exact integer dot product: 32 int16 weights (as two halves) by 32 int16
// activations, madd multiplying pairs into 8 int32 lanes (|sum| < 2^31 for |w| <= 127).
inline __m256 block_dot(__m256i w0, __m256i w1, const int16_t* x) {
    const __m256i lo = _mm256_madd_epi16(w0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    const __m256i hi = _mm256_madd_epi16(w1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16)));
    return _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
}

// One block's exact integer dot product of 32 unsigned 4-bit weights (bytes) by 32 int8
// activations: |each pair| <= 2 * 15 * 127, so maddubs never saturates and the int32 lanes
// hold the same sums as VNNI's vpdpbusd computes in one instruction.
inline __m256 block_dot_u4(__m256i w, const int8_t* x) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
#if defined(__AVXVNNI__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, xv));
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xv));
#else
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), _mm256_set1_epi16(1)));
#endif
}

// Per output row n: the block scales (weight scale * activation scale) and the minimum
// term sum_b min[g(b)] * d[b] * sum(q_x in b), computed once, 8 blocks at a time for G = 32
// (where every block has its own fp16 scale), so the block loop is integer work only.
constexpr int64_t MAX_BLOCKS = 4096;  // K up to 131072

template <int R>
inline void int4_row_scales(RowsView<int8_t> x, int64_t blocks, const uint16_t* scales, const uint16_t* mins, int shift,
                            float sd[R][MAX_BLOCKS], float low[R]) {
    for (int r = 0; r < R; ++r) {
        const float* d = x.d + r * blocks;
        const float* ds = x.dsum + r * blocks;
        __m256 acc = _mm256_setzero_ps();
        int64_t b = 0;
        if (shift == 0) {
            for (; b + 8 <= blocks; b += 8) {
                const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + b)));
                const __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + b)));
                _mm256_storeu_ps(&sd[r][b], _mm256_mul_ps(sc, _mm256_loadu_ps(d + b)));
                acc = _mm256_fmadd_ps(mn, _mm256_loadu_ps(ds + b), acc);
            }
        }
        float total = hsum(acc);
        for (; b < blocks; ++b) {
            sd[r][b] = half_to_float(scales[b >> shift]) * d[b];
            total += half_to_float(mins[b >> shift]) * ds[b];
        }
        low[r] = total;
    }
}

// One quantized weight matrix and where its products go (a kernel call may take several that
// share their input: a layer's q/k/v, or gate/up).  Mirrored in decode.cpp.
struct QMatrix {
    int64_t kind;  // 2: int8 per output row, 3: int4 in groups of G
    int64_t N, G;
    const void* q;
    const void* scales;
    const void* mins;
    const float* bias;
    float* y;
};

// Output row n of an int4 matrix for R rows of activations.
template <int R>
inline void int4_row(RowsView<int8_t> x, int64_t K, const QMatrix& m, int64_t n) {
    const int64_t groups = (K + m.G - 1) / m.G, blocks = K / 32;
    const int shift = m.G == 128 ? 2 : m.G == 64 ? 1 : 0;  // block -> group without a division
    const __m128i mask = _mm_set1_epi8(0x0F);
    const auto* scales = static_cast<const uint16_t*>(m.scales);
    const auto* mins = static_cast<const uint16_t*>(m.mins);
    alignas(32) float sd[R][MAX_BLOCKS];
    float low[R];
    int4_row_scales<R>(x, blocks, scales + n * groups, mins + n * groups, shift, sd, low);
    // Two accumulators per row (even and odd blocks) halve the FMA dependency chain.
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const uint8_t* row = static_cast<const uint8_t*>(m.q) + n * (K / 2);
    auto block = [&](int64_t b, int e) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
        // weights 0..15 (low nibbles) then 16..31 (high nibbles): the activations' order
        const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), _mm_and_si128(bytes, mask));
        for (int r = 0; r < R; ++r)
            acc[r][e] = _mm256_fmadd_ps(block_dot_u4(w, &x.q[r * K + 32 * b]), _mm256_broadcast_ss(&sd[r][b]),
                                        acc[r][e]);
    };
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) block(b, 0), block(b + 1, 1);
    if (b < blocks) block(b, 0);
    for (int r = 0; r < R; ++r)
        m.y[r * m.N + n] = hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + low[r] + (m.bias ? m.bias[n] : 0.0f);
}

// Output row n of an int8 matrix for R rows of activations.
template <int R>
inline void int8_row(RowsView<int16_t> x, int64_t K, const QMatrix& m, int64_t n) {
    const int64_t blocks = K / 32;
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const int8_t* row = static_cast<const int8_t*>(m.q) + n * K;
    auto block = [&](int64_t b, int e) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * b));
        const __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bytes));
        const __m256i w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bytes, 1));
        for (int r = 0; r < R; ++r)
            acc[r][e] = _mm256_fmadd_ps(block_dot(w0, w1, &x.q[r * K + 32 * b]), _mm256_set1_ps(x.d[r * blocks + b]),
                                        acc[r][e]);
    };
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) block(b, 0), block(b + 1, 1);
    if (b < blocks) block(b, 0);
    const float scale = static_cast<const float*>(m.scales)[n];
    for (int r = 0; r < R; ++r)
        m.y[r * m.N + n] = hsum(_mm256_add_ps(acc[r][0], acc[r][1])) * scale + (m.bias ? m.bias[n] : 0.0f);
}

// Every output row of `count` matrices that share the input x (M rows, K columns), in one
// parallel loop per tile of rows: the activations are quantized once, and the threads
// start and meet once instead of once per matrix.  A row's arithmetic is the same whatever
// shares the call.
template <typename Q>
void matmul_group(const float* x, int64_t M, int64_t K, const QMatrix* mats, int64_t count) {
    const QuantizedRows<Q> xq(x, M, K);
    int64_t total = 0;
    for (int64_t j = 0; j < count; ++j) total += mats[j].N;
    over_row_tiles<4>(M, [&](auto R, int64_t r) {
        constexpr int rows = decltype(R)::value;
        const RowsView<Q> view = xq.slice(r, K);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < total; ++i) {
            int64_t j = 0, n = i;
            while (n >= mats[j].N) n -= mats[j++].N;
            QMatrix m = mats[j];
            m.y += r * m.N;
            if constexpr (sizeof(Q) == 1)
                int4_row<rows>(view, K, m, n);
            else
                int8_row<rows>(view, K, m, n);
        }
    });
}

}  // namespace

extern "C" {

// y[M, N] = x[M, K] @ dequant(W)^T (+ bias), with x quantized to int8 blocks first. K must be a
// multiple of 32.  Each row's result depends only on that row, whatever M is, so a token
// gets the same logits alone or inside a speculative batch.
void dscoder_int4_matmul(const float* x, int64_t M, int64_t K, const uint8_t* q, const uint16_t* scales,
                         const uint16_t* mins, int64_t N, int64_t G, const float* bias, float* y) {
    const QMatrix m{3, N, G, q, scales, mins, bias, y};
    matmul_group<int8_t>(x, M, K, &m, 1);
}

void dscoder_int8_matmul(const float* x, int64_t M, int64_t K, const int8_t* q, const float* scale, int64_t N,
                         const float* bias, float* y) {
    const QMatrix m{2, N, 0, q, scale, nullptr, bias, y};
    matmul_group<int16_t>(x, M, K, &m, 1);
}

// Several matrices of one kind (all int8 or all int4) over the same input in one call (see matmul_group).
void dscoder_quant_matmul_group(const float* x, int64_t M, int64_t K, const QMatrix* mats, int64_t count) {
    if (mats[0].kind == 3)
        matmul_group<int8_t>(x, M, K, mats, count);
    else
        matmul_group<int16_t>(x, M, K, mats, count);
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
