// Row tiling shared by the matmul kernels: M rows of activations are processed MAX at a
// time (then one smaller tile), so each weight row is read once per tile.  A row's own
// arithmetic never depends on the tile it lands in, so a token gets bit-identical results
// alone (decode) or among others (speculative verification).
#pragma once

#include <cstdint>
#include <type_traits>

template <int MAX, typename F>
inline void over_row_tiles(int64_t M, F&& f) {
    int64_t r = 0;
    for (; r + MAX <= M; r += MAX) f(std::integral_constant<int, MAX>{}, r);
    if constexpr (MAX > 1) {
        if (M - r > 0) {
            over_row_tiles<MAX - 1>(M - r, [&](auto R, int64_t offset) { f(R, r + offset); });
        }
    }
}
