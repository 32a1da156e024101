// Causal attention of a few new queries over an fp32, bf16 or fp16 KV cache (decode and speculative
// verification), AVX2 + FMA, OpenMP over chunks of the keys.
//
// Why hand-written: for one query row PyTorch 2.13's CPU SDPA runs its flash kernel, which
// tiles for long query blocks; at decode (1 query, a few hundred keys, 9 heads) it measured
// ~110-170 us per layer in the model on this machine, against ~35 us for these loops, and it is called
// once per layer per token.  Prompt processing (many queries) stays with SDPA.
//
// Shapes (strided form): q and out (B, T, H, D) contiguous; k and v hold positions 0..start+T-1 of each
// kv head with element strides (batch, position `row`, head), the last dimension D
// contiguous: a slice of a preallocated cache in either layout.  Query t sees keys
// 0..start+t.  Head h reads kv head h / (H / KV) (GQA/MQA).  D must be a multiple of 32.

#include <immintrin.h>
#include <cmath>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace {

struct Half {  // an IEEE fp16 value, distinct from bf16's plain uint16_t
    uint16_t bits;
};

inline __m256 load8(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

}  // namespace

// Where the keys and values of a query row live.  `Strided`: B rows of T queries each over a
// (batch, position, head) strided cache, query t of batch b seeing positions 0..start+t.
// `Paged`: N independent query rows (continuous batching), row r belonging to sequence
// seq[r] at position pos[r], whose position s lives in block table[seq][s / block] at slot
// s % block of a shared pool.  Either way a row's arithmetic depends only on its own
// sequence, so a token comes out the same whatever else shares the call.
struct Strided {
    int64_t T, start, batch_stride, row, head_stride;
    int64_t batch(int64_t r) const { return r / T; }
    int64_t length(int64_t r) const { return start + r % T + 1; }
    int64_t offset(int64_t b, int64_t s, int64_t kvh) const { return b * batch_stride + s * row + kvh * head_stride; }
};

struct Paged {
    const int64_t* seq;
    const int64_t* pos;
    const int32_t* table;
    int64_t max_blocks, block, block_stride, row, head_stride;
    int64_t batch(int64_t r) const { return seq[r]; }
    int64_t length(int64_t r) const { return pos[r] + 1; }
    int64_t offset(int64_t b, int64_t s, int64_t kvh) const {
        return int64_t(table[b * max_blocks + s / block]) * block_stride + (s % block) * row + kvh * head_stride;
    }
};

// Split-K ("flash-decoding"): the keys are cut into chunks of CHUNK positions so that even one
// query with a handful of kv heads gives both cores work; each (query row, kv head, chunk)
// job reads its K/V rows once for all the query heads that share them and leaves a partial
// softmax (max, sum, unnormalised output) that a second pass merges.
template <typename E, typename Layout>
void attend(const float* q, int64_t R, int64_t H, int64_t D, const E* k, const E* v, int64_t KV, int64_t max_len,
            const Layout& at, float scale, float* out) {
    constexpr int64_t CHUNK = 128;
    const int64_t group = H / KV, chunks = (max_len + CHUNK - 1) / CHUNK;
    const int64_t jobs = R * KV * chunks;
    std::vector<float> part_out(jobs * group * D), part_max(jobs * group), part_sum(jobs * group);
#pragma omp parallel
    {
        std::vector<float> p(group * CHUNK);
        std::vector<int64_t> rows(CHUNK);
#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; ++job) {
            const int64_t c = job % chunks, kvh = (job / chunks) % KV, r = job / (chunks * KV);
            const int64_t b = at.batch(r), len = at.length(r);
            const int64_t lo = c * CHUNK, hi = lo + CHUNK < len ? lo + CHUNK : len;
            const float* qg = q + (r * H + kvh * group) * D;
            float* pmax = &part_max[job * group];
            float* psum = &part_sum[job * group];
            float* pout = &part_out[job * group * D];
            if (lo >= hi) {  // the chunk lies after this query's causal horizon
                for (int64_t i = 0; i < group; ++i) pmax[i] = -INFINITY, psum[i] = 0.0f;
                continue;
            }
            const int64_t n = hi - lo;
            for (int64_t s = 0; s < n; ++s) rows[s] = at.offset(b, lo + s, kvh);
            for (int64_t s = 0; s < n; ++s) {
                const E* ks = k + rows[s];
                for (int64_t d = 0; d < D; d += 16) {  // rows are strided: help the prefetcher
                    if (s + 8 < n) _mm_prefetch(reinterpret_cast<const char*>(k + rows[s + 8] + d), _MM_HINT_T0);
                    _mm_prefetch(reinterpret_cast<const char*>(v + rows[s] + d), _MM_HINT_T1);
                }
                for (int64_t i = 0; i < group; ++i) {
                    const float* qv = qg + i * D;
                    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                    for (int64_t d = 0; d < D; d += 16) {
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qv + d), load8(ks + d), a0);
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qv + d + 8), load8(ks + d + 8), a1);
                    }
                    p[i * CHUNK + s] = hsum(_mm256_add_ps(a0, a1)) * scale;
                }
            }
            for (int64_t i = 0; i < group; ++i) {
                float* pi = &p[i * CHUNK];
                float best = -INFINITY;
                for (int64_t s = 0; s < n; ++s) best = pi[s] > best ? pi[s] : best;
                const __m256 top = _mm256_set1_ps(best);
                __m256 total = _mm256_setzero_ps();
                int64_t s = 0;
                for (; s + 8 <= n; s += 8) {
                    const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(pi + s), top));
                    _mm256_storeu_ps(pi + s, e);
                    total = _mm256_add_ps(total, e);
                }
                float sum = hsum(total);
                for (; s < n; ++s) sum += (pi[s] = std::exp(pi[s] - best));
                pmax[i] = best, psum[i] = sum;
                for (int64_t d = 0; d < D; d += 32) {
                    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps(),
                           c3 = _mm256_setzero_ps();
                    for (int64_t j = 0; j < n; ++j) {
                        const __m256 w = _mm256_set1_ps(pi[j]);
                        const E* vs = v + rows[j] + d;
                        c0 = _mm256_fmadd_ps(w, load8(vs), c0);
                        c1 = _mm256_fmadd_ps(w, load8(vs + 8), c1);
                        c2 = _mm256_fmadd_ps(w, load8(vs + 16), c2);
                        c3 = _mm256_fmadd_ps(w, load8(vs + 24), c3);
                    }
                    float* o = pout + i * D + d;
                    _mm256_storeu_ps(o, c0), _mm256_storeu_ps(o + 8, c1);
                    _mm256_storeu_ps(o + 16, c2), _mm256_storeu_ps(o + 24, c3);
                }
            }
        }
        // Merge the chunks of each (query row, head): rescale to the common max, then normalise.
#pragma omp for schedule(static)
        for (int64_t head = 0; head < R * H; ++head) {
            const int64_t h = head % H, r = head / H, kvh = h / group, i = h % group;
            const int64_t first = (r * KV + kvh) * chunks;
            float best = -INFINITY;
            for (int64_t c = 0; c < chunks; ++c) best = std::fmax(best, part_max[(first + c) * group + i]);
            float* o = out + head * D;
            for (int64_t d = 0; d < D; ++d) o[d] = 0.0f;
            float sum = 0.0f;
            for (int64_t c = 0; c < chunks; ++c) {
                const int64_t at = (first + c) * group + i;
                if (part_sum[at] == 0.0f) continue;
                const float w = std::exp(part_max[at] - best);
                sum += w * part_sum[at];
                const float* po = &part_out[at * D];
                for (int64_t d = 0; d < D; ++d) o[d] += w * po[d];
            }
            const float inv = 1.0f / sum;
            for (int64_t d = 0; d < D; ++d) o[d] *= inv;
        }
    }
}

template <typename E>
void attend_strided(const float* q, int64_t B, int64_t T, int64_t H, int64_t D, const E* k, const E* v, int64_t KV,
                    int64_t batch_stride, int64_t row, int64_t head_stride, int64_t start, float scale, float* out) {
    attend(q, B * T, H, D, k, v, KV, start + T, Strided{T, start, batch_stride, row, head_stride}, scale, out);
}

template <typename E>
void attend_paged(const float* q, int64_t N, int64_t H, int64_t D, const E* k, const E* v, int64_t KV,
                  const int64_t* seq, const int64_t* pos, int64_t max_len, const int32_t* table, int64_t max_blocks,
                  int64_t block, int64_t block_stride, int64_t row, int64_t head_stride, float scale, float* out) {
    attend(q, N, H, D, k, v, KV, max_len, Paged{seq, pos, table, max_blocks, block, block_stride, row, head_stride},
           scale, out);
}

extern "C" {

void dscoder_attend(const float* q, int64_t B, int64_t T, int64_t H, int64_t D, const float* k, const float* v,
                    int64_t KV, int64_t batch_stride, int64_t row, int64_t head_stride, int64_t start, float scale,
                    float* out) {
    attend_strided(q, B, T, H, D, k, v, KV, batch_stride, row, head_stride, start, scale, out);
}

// The same over a bf16 or fp16 cache (widened to fp32 in registers; the arithmetic stays fp32).
void dscoder_attend_bf16(const float* q, int64_t B, int64_t T, int64_t H, int64_t D, const uint16_t* k,
                         const uint16_t* v, int64_t KV, int64_t batch_stride, int64_t row, int64_t head_stride,
                         int64_t start, float scale, float* out) {
    attend_strided(q, B, T, H, D, k, v, KV, batch_stride, row, head_stride, start, scale, out);
}

void dscoder_attend_fp16(const float* q, int64_t B, int64_t T, int64_t H, int64_t D, const uint16_t* k,
                         const uint16_t* v, int64_t KV, int64_t batch_stride, int64_t row, int64_t head_stride,
                         int64_t start, float scale, float* out) {
    attend_strided(q, B, T, H, D, reinterpret_cast<const Half*>(k), reinterpret_cast<const Half*>(v), KV,
                   batch_stride, row, head_stride, start, scale, out);
}

// Paged: N query rows of continuous batching over a block pool (see `Paged`).
#define DSCODER_PAGED(NAME, E, CAST)                                                                             \
    void NAME(const float* q, int64_t N, int64_t H, int64_t D, const E* k, const E* v, int64_t KV,                \
              const int64_t* seq, const int64_t* pos, int64_t max_len, const int32_t* table, int64_t max_blocks, \
              int64_t block, int64_t block_stride, int64_t row, int64_t head_stride, float scale, float* out) {   \
        attend_paged(q, N, H, D, CAST(k), CAST(v), KV, seq, pos, max_len, table, max_blocks, block, block_stride,  \
                     row, head_stride, scale, out);                                                             \
    }
#define DSCODER_SAME(p) (p)
#define DSCODER_HALF(p) reinterpret_cast<const Half*>(p)
DSCODER_PAGED(dscoder_paged_attend, float, DSCODER_SAME)
DSCODER_PAGED(dscoder_paged_attend_bf16, uint16_t, DSCODER_SAME)
DSCODER_PAGED(dscoder_paged_attend_fp16, uint16_t, DSCODER_HALF)

}  // extern "C"
