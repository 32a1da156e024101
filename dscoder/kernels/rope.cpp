// Rotary position embedding of fp32 (B, T, H, D) tensors by full-width (T, D) tables.
//
// Why hand-written: in PyTorch the rotation is ten small ops (chunk, cat, mul, addcmul,
// views) and a decode step applies it twice per layer; this is one call.  Same formula as
// model.apply_rope: out = x * cos + swapped(x) * sin, where swapped exchanges the halves
// (Llama) or the two members of each adjacent pair (DeepSeek-V2).

#include <cstdint>

extern "C" {

void dscoder_rope(const float* x, int64_t B, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin,
                  int64_t interleaved, float* out) {
    const int64_t half = D / 2;
    for (int64_t bt = 0; bt < B * T; ++bt) {
        const float* c = cos + (bt % T) * D;
        const float* s = sin + (bt % T) * D;
        for (int64_t h = 0; h < H; ++h) {
            const float* xr = x + (bt * H + h) * D;
            float* o = out + (bt * H + h) * D;
            if (interleaved) {
                for (int64_t i = 0; i < D; i += 2) {
                    o[i] = xr[i] * c[i] + xr[i + 1] * s[i];
                    o[i + 1] = xr[i + 1] * c[i + 1] + xr[i] * s[i + 1];
                }
            } else {
                for (int64_t i = 0; i < half; ++i) {
                    o[i] = xr[i] * c[i] + xr[i + half] * s[i];
                    o[i + half] = xr[i + half] * c[i + half] + xr[i] * s[i + half];
                }
            }
        }
    }
}

}  // extern "C"
