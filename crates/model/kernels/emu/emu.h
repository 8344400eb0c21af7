// A CPU emulation of the small part of CUDA that kernels/*.cu use, so that
// the kernels' indexing, tiling, masking and warp reductions can be checked
// without a GPU (tests/cuda_emulated.rs). Each CUDA thread of a block is a
// std::thread; __syncthreads is a block barrier and the warp shuffles go
// through a per-warp exchange buffer between two warp barriers. Blocks run
// one after another, so a kernel's __shared__ arrays (function statics here)
// are never used by two blocks at once. What this cannot check: timing,
// memory coalescing, bank conflicts, and the GPU's own float rounding
// (__expf is expf here).
#pragma once
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace emu {
inline std::barrier<>* block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline float exchange[32][32];  // [warp][lane], up to 1024 threads

// Runs `kernel` over the grid, block by block, a thread per CUDA thread.
template <class Kernel>
void launch(dim3 grid, dim3 block, Kernel kernel) {
    gridDim = grid;
    blockDim = block;
    const unsigned n = block.x, warps = (n + 31) / 32;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(n);
                block_barrier = &barrier;
                warp_barriers.clear();
                for (unsigned w = 0; w < warps; ++w)
                    warp_barriers.push_back(std::make_unique<std::barrier<>>(w + 1 < warps ? 32 : n - 32 * w));
                std::vector<std::thread> threads;
                for (unsigned t = 0; t < n; ++t)
                    threads.emplace_back([&, t] {
                        threadIdx = {t, 0, 0};
                        blockIdx = {bx, by, bz};
                        kernel();
                        // An exited thread no longer holds up the others.
                        barrier.arrive_and_drop();
                        warp_barriers[t / 32]->arrive_and_drop();
                    });
                for (auto& t : threads) t.join();
            }
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

inline float __shfl_sync(unsigned, float v, int src) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu::exchange[w][l] = v;
    emu::warp_barriers[w]->arrive_and_wait();
    const float r = emu::exchange[w][src & 31];
    emu::warp_barriers[w]->arrive_and_wait();
    return r;
}
inline float __shfl_xor_sync(unsigned mask, float v, int offset) {
    return __shfl_sync(mask, v, (int)(threadIdx.x % 32) ^ offset);
}
// cuda_bf16.h's storage type and its two conversions: widening is exact,
// narrowing rounds to nearest even (NaN stays a quiet NaN), as the GPU and
// the `half` crate on the CPU side both do.
struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
