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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <memory>
#include <thread>
#include <type_traits>
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
#define __align__(n) __attribute__((aligned(n)))

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
    // A GPU runs blocks in no set order; FRUGAL_EMU_REVERSE_BLOCKS=1 runs
    // them last to first, so a kernel that relies on the order fails.
    const char* order = getenv("FRUGAL_EMU_REVERSE_BLOCKS");
    const bool reverse = order && order[0] == '1';
    const unsigned blocks = grid.x * grid.y * grid.z;
    for (unsigned i = 0; i < blocks; ++i) {
        const unsigned b = reverse ? blocks - 1 - i : i;
        const unsigned bx = b % grid.x, by = b / grid.x % grid.y, bz = b / (grid.x * grid.y);
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
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }
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

// mma.h's nvcuda::wmma for the 16×16×16 bf16 → f32 shapes of
// attention_tc.cu. A real fragment spreads its tile over the warp's
// registers in a layout the API leaves unspecified; here every lane holds
// the whole tile (row-major) and computes each collective load and mma by
// itself, so kernels that only load, store and mma fragments (never index
// them) behave the same. A store is done by lane 0 alone, once every lane
// has arrived (the API's "sync"): the warp sees it after its next
// __syncwarp, which is what CUDA guarantees too. Built with
// -fsanitize=thread, the drivers show which shared-memory accesses lack a
// barrier (tests/cuda_emulated.rs: FRUGAL_EMU_TSAN=1).
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[rows * cols];
};

template <class T>
inline float widen(T v) {
    if constexpr (std::is_same_v<T, float>) return v;
    else return __bfloat162float(v);
}

// What the API requires of every load and store, and a GPU enforces (a
// misaligned address ends the kernel): the tile's first element 256-bit
// aligned, and the leading dimension a multiple of 16 bytes. The emulation
// would run either way, so it stops the process, as the GPU would.
template <class T>
inline void check_tile(const T* p, unsigned ldm, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || (ldm * sizeof(T)) % 16 != 0) {
        fprintf(stderr, "wmma::%s: tile at %p with ldm %u (%zu-byte elements): needs a 32-byte aligned pointer and ldm a multiple of 16 bytes\n",
                what, static_cast<const void*>(p), ldm, sizeof(T));
        abort();
    }
}

template <class F, class T>
inline void load(F& f, const T* p, unsigned ldm, bool col_major) {
    check_tile(p, ldm, "load_matrix_sync");
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = col_major ? p[c * ldm + r] : p[r * ldm + c];
}

template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
    load(f, p, ldm, std::is_same_v<Layout, col_major>);
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t l) {
    load(f, p, ldm, l == mem_col_major);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t l) {
    check_tile(p, ldm, "store_matrix_sync");
    // "Waits until all warp lanes have arrived" (the CUDA guide): on a GPU a
    // lane stores only the elements it loaded, but here lane 0 stores them
    // all, so it must wait for every lane's loads of this tile (a tile is
    // often loaded as the accumulator, updated and stored back in place).
    __syncwarp();
    if (threadIdx.x % 32 != 0) return;
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * N + c];
}

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
    for (auto& x : f.x) x = v;
}

// d = a·b + c, products exact and sums in f32, as the tensor cores do
// (up to the order of the additions); d may be c.
template <int M, int N, int K, class T, class La, class Lb>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, La>& a,
                     const fragment<matrix_b, M, N, K, T, Lb>& b, const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            float acc = c.x[m * N + n];
            for (int k = 0; k < K; ++k) acc += widen(a.x[m * K + k]) * widen(b.x[k * N + n]);
            out[m * N + n] = acc;
        }
    memcpy(d.x, out, sizeof out);
}
}  // namespace nvcuda::wmma
