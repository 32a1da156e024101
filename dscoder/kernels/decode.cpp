// A whole decode step of a dense (Llama-style, V1) model's layers in one call.
//
// Why: with the kernels below doing the arithmetic, a 30-layer model's decode step was
// ~8.5 ms of which ~4.8 ms were kernels; the rest was Python and PyTorch's dispatcher
// walking ~25 small ops per layer (views, slices, empty tensors, silu, adds).  llama.cpp
// pays none of that, gpt-fast compiles it away; here the layer loop moves into C++ and
// calls the same kernels the PyTorch path calls (same functions, same order, same
// arguments), so a fused step gives bit-identical hidden states to the unfused one.
//
// One step covers R rows: B sequences x T new tokens over contiguous caches (plain decode,
// speculative verification, same positions in every sequence), or N independent rows over
// the serving engine's paged pools.  Rows up to the kernels' own limit; prompts stay with
// PyTorch (GEMM and SDPA).

#include <immintrin.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

extern "C" {
void dscoder_rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* y);
void dscoder_rope(const float* x, int64_t B, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin,
                  int64_t interleaved, float* out);
void dscoder_f32_matmul(const float* x, int64_t M, int64_t K, const float* w, int64_t N, const float* bias, float* y);
void dscoder_int8_matmul(const float* x, int64_t M, int64_t K, const int8_t* q, const float* scale, int64_t N,
                         const float* bias, float* y);
void dscoder_int4_matmul(const float* x, int64_t M, int64_t K, const uint8_t* q, const uint16_t* scales,
                         const uint16_t* mins, int64_t N, int64_t G, const float* bias, float* y);
void dscoder_silu_mul(const float* gate, const float* up, int64_t n, float* out);
struct QMatrix {  // qmatvec.cpp's
    int64_t kind, N, G;
    const void* q;
    const void* scales;
    const void* mins;
    const float* bias;
    float* y;
};
void dscoder_quant_matmul_group(const float* x, int64_t M, int64_t K, const QMatrix* mats, int64_t count);
#define DSCODER_ATTEND_ARGS(E)                                                                                \
    const float* q, int64_t B, int64_t T, int64_t H, int64_t D, const E* k, const E* v, int64_t KV, int64_t s0, \
        int64_t s1, int64_t s2, int64_t start, float scale, float* out
void dscoder_attend(DSCODER_ATTEND_ARGS(float));
void dscoder_attend_bf16(DSCODER_ATTEND_ARGS(uint16_t));
void dscoder_attend_fp16(DSCODER_ATTEND_ARGS(uint16_t));
#define DSCODER_PAGED_ARGS(E)                                                                                    \
    const float* q, int64_t N, int64_t H, int64_t D, const E* k, const E* v, int64_t KV, const int64_t* seq,      \
        const int64_t* pos, int64_t max_len, const int32_t* tables, int64_t width, int64_t block, int64_t s0,      \
        int64_t s1, int64_t s2, float scale, float* out
void dscoder_paged_attend(DSCODER_PAGED_ARGS(float));
void dscoder_paged_attend_bf16(DSCODER_PAGED_ARGS(uint16_t));
void dscoder_paged_attend_fp16(DSCODER_PAGED_ARGS(uint16_t));
}

namespace {

enum Kind : int64_t { F32 = 1, INT8 = 2, INT4 = 3 };
enum CacheType : int64_t { CACHE_F32 = 0, CACHE_BF16 = 1, CACHE_F16 = 2 };

// Mirrored by ctypes structures in dscoder/model/fused.py: keep the field order in step.
struct LinearDesc {
    int64_t kind, n, k, group;
    const void* weight;  // fp32 [n, k], or the packed int8/int4 values
    const void* scales;
    const void* mins;
    const float* bias;
};

struct LayerDesc {
    LinearDesc q, k, v, o, gate, up, down;
    const float* input_norm;
    const float* post_norm;
};

struct ModelDesc {
    int64_t layers, hidden, heads, kv_heads, head_dim, intermediate, cache_type;
    float eps, scale;
    const LayerDesc* layer;
};

// Where this step's keys and values go and come from.  Contiguous: per layer a (B, max_len,
// KV, D) cache, rows written at start..start+T-1.  Paged (seq != nullptr): per layer pools
// (blocks, block, KV, D); row r goes to pool row slots[r], and attends as dscoder_paged_attend says.
struct CacheDesc {
    void* const* k;
    void* const* v;
    int64_t max_len, start;
    const int64_t* seq;
    const int64_t* pos;
    int64_t max_pos;
    const int32_t* tables;
    int64_t width, block;
    const int64_t* slots;
};

void linear(const LinearDesc& l, const float* x, int64_t rows, float* y) {
    switch (l.kind) {
        case F32:
            dscoder_f32_matmul(x, rows, l.k, static_cast<const float*>(l.weight), l.n, l.bias, y);
            break;
        case INT8:
            dscoder_int8_matmul(x, rows, l.k, static_cast<const int8_t*>(l.weight), static_cast<const float*>(l.scales),
                                l.n, l.bias, y);
            break;
        default:
            dscoder_int4_matmul(x, rows, l.k, static_cast<const uint8_t*>(l.weight),
                                static_cast<const uint16_t*>(l.scales), static_cast<const uint16_t*>(l.mins), l.n,
                                l.group, l.bias, y);
    }
}

// Projections of one input (q/k/v, gate/up): one call for all when every one is quantized
// (one activation quantization, one parallel loop), else one call each.  Same arithmetic per
// output either way.
void linears(std::initializer_list<std::pair<const LinearDesc*, float*>> outs, const float* x, int64_t rows) {
    QMatrix mats[4];
    int64_t count = 0;
    for (const auto& [l, y] : outs) {
        const LinearDesc& first = *outs.begin()->first;
        if (l->kind == F32 || l->kind != first.kind || l->k != first.k) {
            for (const auto& [each, out] : outs) linear(*each, x, rows, out);
            return;
        }
        mats[count++] = QMatrix{l->kind, l->n, l->group, l->weight, l->scales, l->mins, l->bias, y};
    }
    dscoder_quant_matmul_group(x, rows, outs.begin()->first->k, mats, count);
}

// fp32 -> bf16 rounding to nearest even, as PyTorch's conversion does (NaN stays a NaN).
inline uint16_t to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
    return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline uint16_t to_fp16(float f) {
    return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}

// Store n values of src at dst (an element offset into a cache of the given type).
void store(void* base, int64_t offset, const float* src, int64_t n, int64_t type) {
    if (type == CACHE_F32) {
        std::memcpy(static_cast<float*>(base) + offset, src, n * sizeof(float));
        return;
    }
    uint16_t* dst = static_cast<uint16_t*>(base) + offset;
    for (int64_t i = 0; i < n; ++i) dst[i] = type == CACHE_BF16 ? to_bf16(src[i]) : to_fp16(src[i]);
}

void attend(const ModelDesc& m, const CacheDesc& c, int64_t layer, const float* q, int64_t B, int64_t T,
            float* out) {
    const int64_t H = m.heads, D = m.head_dim, KV = m.kv_heads;
    const void* k = c.k[layer];
    const void* v = c.v[layer];
    // Element strides of (batch or block, position or slot, head); both layouts are contiguous.
    const int64_t s2 = D, s1 = KV * D, s0 = (c.seq ? c.block : c.max_len) * KV * D;
    if (c.seq) {
        const auto* k16 = static_cast<const uint16_t*>(k);
        const auto* v16 = static_cast<const uint16_t*>(v);
        if (m.cache_type == CACHE_F32)
            dscoder_paged_attend(q, B * T, H, D, static_cast<const float*>(k), static_cast<const float*>(v), KV, c.seq,
                                 c.pos, c.max_pos, c.tables, c.width, c.block, s0, s1, s2, m.scale, out);
        else if (m.cache_type == CACHE_BF16)
            dscoder_paged_attend_bf16(q, B * T, H, D, k16, v16, KV, c.seq, c.pos, c.max_pos, c.tables, c.width,
                                      c.block, s0, s1, s2, m.scale, out);
        else
            dscoder_paged_attend_fp16(q, B * T, H, D, k16, v16, KV, c.seq, c.pos, c.max_pos, c.tables, c.width,
                                      c.block, s0, s1, s2, m.scale, out);
        return;
    }
    if (m.cache_type == CACHE_F32)
        dscoder_attend(q, B, T, H, D, static_cast<const float*>(k), static_cast<const float*>(v), KV, s0, s1, s2,
                       c.start, m.scale, out);
    else if (m.cache_type == CACHE_BF16)
        dscoder_attend_bf16(q, B, T, H, D, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), KV, s0,
                            s1, s2, c.start, m.scale, out);
    else
        dscoder_attend_fp16(q, B, T, H, D, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), KV, s0,
                            s1, s2, c.start, m.scale, out);
}

}  // namespace

extern "C" {

// x: the residual stream (B*T rows of `hidden`), updated in place through every layer.
// cos/sin: full-width RoPE tables, one row per row of x (model.rope_tables' layout).
void dscoder_decode_layers(const ModelDesc* model, float* x, int64_t B, int64_t T, const float* cos,
                           const float* sin, const CacheDesc* cache) {
    const ModelDesc& m = *model;
    const CacheDesc& c = *cache;
    const int64_t R = B * T, hidden = m.hidden, D = m.head_dim, qd = m.heads * D, kvd = m.kv_heads * D;
    std::vector<float> h(R * hidden), q(R * qd), k(R * kvd), v(R * kvd), qr(R * qd), kr(R * kvd), att(R * qd),
        proj(R * hidden), gate(R * m.intermediate), up(R * m.intermediate);
    for (int64_t i = 0; i < m.layers; ++i) {
        const LayerDesc& l = m.layer[i];
        dscoder_rms_norm(x, R, hidden, l.input_norm, m.eps, h.data());
        linears({{&l.q, q.data()}, {&l.k, k.data()}, {&l.v, v.data()}}, h.data(), R);
        // One table row per row of x: as (1, R, heads, D) the kernel pairs row r with table row r.
        dscoder_rope(q.data(), 1, R, m.heads, D, cos, sin, 0, qr.data());
        dscoder_rope(k.data(), 1, R, m.kv_heads, D, cos, sin, 0, kr.data());
        for (int64_t r = 0; r < R; ++r) {
            const int64_t row = c.seq ? c.slots[r] : (r / T) * c.max_len + c.start + r % T;
            store(c.k[i], row * kvd, &kr[r * kvd], kvd, m.cache_type);
            store(c.v[i], row * kvd, &v[r * kvd], kvd, m.cache_type);
        }
        attend(m, c, i, qr.data(), B, T, att.data());
        linear(l.o, att.data(), R, proj.data());
        for (int64_t j = 0; j < R * hidden; ++j) x[j] += proj[j];
        dscoder_rms_norm(x, R, hidden, l.post_norm, m.eps, h.data());
        linears({{&l.gate, gate.data()}, {&l.up, up.data()}}, h.data(), R);
        dscoder_silu_mul(gate.data(), up.data(), R * m.intermediate, gate.data());
        linear(l.down, gate.data(), R, proj.data());
        for (int64_t j = 0; j < R * hidden; ++j) x[j] += proj[j];
    }
}

}  // extern "C"
