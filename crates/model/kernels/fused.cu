// CUDA versions of the fused kernels in src/fused.rs. They compute in f32;
// the activations they read and write are f32, or bf16 under the
// mixed-precision recipe (kernels with a `_bf16` suffix): bf16 halves the
// bytes these memory-bound kernels move, and every value is widened to f32
// on load and rounded once on store, as the CPU kernels do. The residual
// stream, the RMSNorm weights and their gradients, the loss and AdamW stay
// f32. Each `*_rows` kernel runs one block of BLOCK threads per row; the
// elementwise ones use a grid-stride loop. Compiled to PTX by build.rs when
// the `cuda` feature is on.

#include <stdint.h>
#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

#define BLOCK 256

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(float v) { return v; }
__device__ __forceinline__ float ld(bf16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T st(float v);
template <> __device__ __forceinline__ float st<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 st<bf16>(float v) { return __float2bfloat16(v); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// Sum (or max) over the block; every thread gets the result. `sh` holds one
// float per warp. The trailing barrier lets the caller reuse `sh` at once.
__device__ float block_sum(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x + 31) / 32) ? sh[threadIdx.x] : 0.f;
    v = warp_sum(v);
    __syncthreads();
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ float block_max(float v, float* sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x + 31) / 32) ? sh[threadIdx.x] : -INFINITY;
    v = warp_max(v);
    __syncthreads();
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float inv_rms(const float* x, int d, float eps, float* sh) {
    float ss = 0.f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) ss += x[j] * x[j];
    return rsqrtf(block_sum(ss, sh) / d + eps);
}

// ---------------------------------------------------------------- RMSNorm
// x (the residual stream), w, dx and dw are f32; y and its gradient g are
// the activation type T.

template <typename T>
__device__ void rms_norm_fwd(const float* x, const float* w, T* y, int d, float eps) {
    __shared__ float sh[32];
    const float* xr = x + (size_t)blockIdx.x * d;
    T* yr = y + (size_t)blockIdx.x * d;
    const float inv = inv_rms(xr, d, eps, sh);
    for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = st<T>(xr[j] * inv * w[j]);
}
extern "C" __global__ void rms_norm_rows(const float* x, const float* w, float* y, int d, float eps) {
    rms_norm_fwd(x, w, y, d, eps);
}
extern "C" __global__ void rms_norm_rows_bf16(const float* x, const float* w, bf16* y, int d, float eps) {
    rms_norm_fwd(x, w, y, d, eps);
}

// dx = r·(g∘w) − x·r³·mean(g∘w∘x); the `_add` kernels write acc + dx, the
// sum the gradient of x would otherwise get from a separate add (the
// residual stream's, whose other consumer ran its backward first).
template <typename T, bool ADD>
__device__ void rms_norm_bwd_x(const float* x, const float* w, const T* g, const float* acc, float* dx, int d,
                               float eps) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * d;
    const float inv = inv_rms(x + off, d, eps, sh);
    float dot = 0.f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += ld(g[off + j]) * w[j] * x[off + j];
    const float c = inv * inv * inv * (block_sum(dot, sh) / d);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float v = inv * ld(g[off + j]) * w[j] - x[off + j] * c;
        dx[off + j] = ADD ? acc[off + j] + v : v;
    }
}
extern "C" __global__ void rms_norm_bwd_x_rows(const float* x, const float* w, const float* g,
                                               float* dx, int d, float eps) {
    rms_norm_bwd_x<float, false>(x, w, g, nullptr, dx, d, eps);
}
extern "C" __global__ void rms_norm_bwd_x_rows_bf16(const float* x, const float* w, const bf16* g,
                                                    float* dx, int d, float eps) {
    rms_norm_bwd_x<bf16, false>(x, w, g, nullptr, dx, d, eps);
}
extern "C" __global__ void rms_norm_bwd_x_add_rows(const float* x, const float* w, const float* g,
                                                   const float* acc, float* dx, int d, float eps) {
    rms_norm_bwd_x<float, true>(x, w, g, acc, dx, d, eps);
}
extern "C" __global__ void rms_norm_bwd_x_add_rows_bf16(const float* x, const float* w, const bf16* g,
                                                        const float* acc, float* dx, int d, float eps) {
    rms_norm_bwd_x<bf16, true>(x, w, g, acc, dx, d, eps);
}

// 1/rms of every row, for the weight gradient.
extern "C" __global__ void rms_inv_rows(const float* x, float* inv, int d, float eps) {
    __shared__ float sh[32];
    const float r = inv_rms(x + (size_t)blockIdx.x * d, d, eps, sh);
    if (threadIdx.x == 0) inv[blockIdx.x] = r;
}

// partial[c, j] = Σ_{rows r of chunk c} g[r, j]·x[r, j]·inv[r]; one thread per
// (chunk, column), columns contiguous across threads (coalesced).
template <typename T>
__device__ void rms_norm_bwd_w(const float* x, const T* g, const float* inv, float* partial, int rows,
                               int d, int chunk) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int c = blockIdx.y;
    if (j >= d) return;
    const int end = min(rows, (c + 1) * chunk);
    float acc = 0.f;
    for (int r = c * chunk; r < end; ++r) acc += ld(g[(size_t)r * d + j]) * x[(size_t)r * d + j] * inv[r];
    partial[(size_t)c * d + j] = acc;
}
extern "C" __global__ void rms_norm_bwd_w_partial(const float* x, const float* g, const float* inv,
                                                  float* partial, int rows, int d, int chunk) {
    rms_norm_bwd_w(x, g, inv, partial, rows, d, chunk);
}
extern "C" __global__ void rms_norm_bwd_w_partial_bf16(const float* x, const bf16* g, const float* inv,
                                                       float* partial, int rows, int d, int chunk) {
    rms_norm_bwd_w(x, g, inv, partial, rows, d, chunk);
}

// dw[j] = Σ_c partial[c, j], in chunk order (deterministic).
extern "C" __global__ void sum_columns(const float* partial, float* out, int chunks, int d) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float acc = 0.f;
    for (int c = 0; c < chunks; ++c) acc += partial[(size_t)c * d + j];
    out[j] = acc;
}

// ------------------------------------------------- causal softmax (attention)

// softmax(scale·s + causal mask) over rows of n scores; row r is query
// r mod t, which sees keys 0..=(n − t) + (r mod t). Masked entries are 0.
template <typename T>
__device__ void causal_softmax(const T* x, T* y, int t, int n, float scale) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * n;
    const int visible = (n - t) + (int)(blockIdx.x % t) + 1;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, ld(x[off + j]) * scale);
    m = block_max(m, sh);
    float s = 0.f;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) s += __expf(ld(x[off + j]) * scale - m);
    const float inv = 1.f / block_sum(s, sh);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        y[off + j] = st<T>(j < visible ? __expf(ld(x[off + j]) * scale - m) * inv : 0.f);
}
extern "C" __global__ void causal_softmax_rows(const float* x, float* y, int t, int n, float scale) {
    causal_softmax(x, y, t, n, scale);
}
extern "C" __global__ void causal_softmax_rows_bf16(const bf16* x, bf16* y, int t, int n, float scale) {
    causal_softmax(x, y, t, n, scale);
}

// dx = scale·p∘(g − Σ p∘g)
template <typename T>
__device__ void softmax_bwd(const T* p, const T* g, T* dx, int n, float scale) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * n;
    float dot = 0.f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) dot += ld(p[off + j]) * ld(g[off + j]);
    dot = block_sum(dot, sh);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        dx[off + j] = st<T>(scale * ld(p[off + j]) * (ld(g[off + j]) - dot));
}
extern "C" __global__ void softmax_bwd_rows(const float* p, const float* g, float* dx, int n, float scale) {
    softmax_bwd(p, g, dx, n, scale);
}
extern "C" __global__ void softmax_bwd_rows_bf16(const bf16* p, const bf16* g, bf16* dx, int n, float scale) {
    softmax_bwd(p, g, dx, n, scale);
}

// ------------------------------------------------------------------ SwiGLU

__device__ __forceinline__ float sigmoid(float a) { return 1.f / (1.f + __expf(-a)); }

template <typename T>
__device__ void swiglu_fwd(const T* a, const T* b, T* y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float x = ld(a[i]);
        y[i] = st<T>(x * sigmoid(x) * ld(b[i]));
    }
}
extern "C" __global__ void swiglu(const float* a, const float* b, float* y, size_t n) { swiglu_fwd(a, b, y, n); }
extern "C" __global__ void swiglu_bf16(const bf16* a, const bf16* b, bf16* y, size_t n) { swiglu_fwd(a, b, y, n); }

// out[0..n) = da = g·b·silu'(a), out[n..2n) = db = g·silu(a)
template <typename T>
__device__ void swiglu_back(const T* a, const T* b, const T* g, T* out, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float x = ld(a[i]), s = sigmoid(x), gi = ld(g[i]);
        out[i] = st<T>(gi * ld(b[i]) * s * (1.f + x * (1.f - s)));
        out[n + i] = st<T>(gi * x * s);
    }
}
extern "C" __global__ void swiglu_bwd(const float* a, const float* b, const float* g, float* out, size_t n) {
    swiglu_back(a, b, g, out, n);
}
extern "C" __global__ void swiglu_bwd_bf16(const bf16* a, const bf16* b, const bf16* g, bf16* out, size_t n) {
    swiglu_back(a, b, g, out, n);
}

// -------------------------------------------------------------------- RoPE

// rotate_half RoPE on rows of hd = 2·half values; row r is position
// (r / per_pos) mod t of the f32 tables `cos`/`sin` [t, half] (already offset
// to the first position): per_pos = 1 for [B, H, T, hd], H for [B, T, H, hd].
template <typename T>
__device__ void rope_rows(const T* x, const float* cos_t, const float* sin_t, T* y, size_t rows, int t,
                          int per_pos, int half, float sign) {
    const size_t n = rows * half;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
        const size_t r = k / half;
        const int i = (int)(k % half);
        const int p = (int)((r / per_pos) % t);
        const float c = cos_t[p * half + i], s = sign * sin_t[p * half + i];
        const size_t base = r * 2 * half;
        const float x1 = ld(x[base + i]), x2 = ld(x[base + half + i]);
        y[base + i] = st<T>(x1 * c - x2 * s);
        y[base + half + i] = st<T>(x2 * c + x1 * s);
    }
}
extern "C" __global__ void rope(const float* x, const float* cos_t, const float* sin_t, float* y, size_t rows,
                                int t, int per_pos, int half, float sign) {
    rope_rows(x, cos_t, sin_t, y, rows, t, per_pos, half, sign);
}
extern "C" __global__ void rope_bf16(const bf16* x, const float* cos_t, const float* sin_t, bf16* y,
                                     size_t rows, int t, int per_pos, int half, float sign) {
    rope_rows(x, cos_t, sin_t, y, rows, t, per_pos, half, sign);
}

// ----------------------------------------------------------- cross-entropy
// Logits and their gradient are the activation type X (bf16 logits are
// never widened to an f32 [N, V] copy); the loss and its gradient are f32.

template <typename X>
__device__ float row_lse(const X* row, int v, float* sh) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, ld(row[j]));
    m = block_max(m, sh);
    float s = 0.f;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += __expf(ld(row[j]) - m);
    return m + __logf(block_sum(s, sh));
}

// loss[r] = logsumexp(x[r]) − x[r, y[r]]
template <typename X, typename T>
__device__ void ce_fwd(const X* x, const T* y, float* loss, int v) {
    __shared__ float sh[32];
    const X* row = x + (size_t)blockIdx.x * v;
    const float lse = row_lse(row, v, sh);
    if (threadIdx.x == 0) loss[blockIdx.x] = lse - ld(row[(size_t)y[blockIdx.x]]);
}

// dx[r, j] = g[r]·(softmax(x[r])_j − [j = y[r]])
template <typename X, typename T>
__device__ void ce_bwd(const X* x, const T* y, const float* g, X* dx, int v) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * v;
    const float lse = row_lse(x + off, v, sh);
    const size_t target = (size_t)y[blockIdx.x];
    const float gr = g[blockIdx.x];
    for (int j = threadIdx.x; j < v; j += blockDim.x)
        dx[off + j] = st<X>(gr * (__expf(ld(x[off + j]) - lse) - ((size_t)j == target ? 1.f : 0.f)));
}

extern "C" __global__ void cross_entropy_rows_u32(const float* x, const uint32_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_rows_i64(const float* x, const int64_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_bwd_rows_u32(const float* x, const uint32_t* y, const float* g, float* dx, int v) { ce_bwd(x, y, g, dx, v); }
extern "C" __global__ void cross_entropy_bwd_rows_i64(const float* x, const int64_t* y, const float* g, float* dx, int v) { ce_bwd(x, y, g, dx, v); }
extern "C" __global__ void cross_entropy_rows_u32_bf16(const bf16* x, const uint32_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_rows_i64_bf16(const bf16* x, const int64_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_bwd_rows_u32_bf16(const bf16* x, const uint32_t* y, const float* g, bf16* dx, int v) { ce_bwd(x, y, g, dx, v); }
extern "C" __global__ void cross_entropy_bwd_rows_i64_bf16(const bf16* x, const int64_t* y, const float* g, bf16* dx, int v) { ce_bwd(x, y, g, dx, v); }

// ------------------------------------------------------------------- AdamW

// One AdamW step of many parameters in one launch (src/fused_adamw.rs,
// PyTorch's order of operations). Each parameter is a row of the table
// (fused_cuda.rs builds it: six 8-byte words per row) and is split into
// blocks of ADAMW_ELEMS elements, numbered from its `first_block`; mv is its
// [m; v] (2n), updated in place like p.
#define ADAMW_ELEMS 2048
struct AdamWChunk {
    float* p;
    const float* g;
    float* mv;
    unsigned long long n;
    unsigned long long first_block;
    float decay;
    float pad_;
};

extern "C" __global__ void adamw_multi(const AdamWChunk* chunks, int n_chunks, float b1, float b2,
                                       float bc2_sqrt, float step_size, float eps) {
    // This block's parameter: the last row whose first block is <= blockIdx.x.
    int lo = 0, hi = n_chunks - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (chunks[mid].first_block <= blockIdx.x) lo = mid;
        else hi = mid - 1;
    }
    const AdamWChunk c = chunks[lo];
    const size_t start = (blockIdx.x - c.first_block) * (size_t)ADAMW_ELEMS;
    const size_t end = start + ADAMW_ELEMS < c.n ? start + ADAMW_ELEMS : c.n;
    for (size_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        const float gi = c.g[i];
        const float m = b1 * c.mv[i] + (1.f - b1) * gi;
        const float v = b2 * c.mv[c.n + i] + (1.f - b2) * gi * gi;
        const float denom = sqrtf(v) / bc2_sqrt + eps;
        c.mv[i] = m;
        c.mv[c.n + i] = v;
        c.p[i] = c.p[i] * c.decay - step_size * m / denom;
    }
}
