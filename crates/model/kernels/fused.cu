// CUDA versions of the fused kernels in src/fused.rs (f32 throughout, the
// precision the CPU kernels and the mixed-precision recipe use for norms,
// softmax, activations and the loss). Each `*_rows` kernel runs one block of
// BLOCK threads per row; the elementwise ones use a grid-stride loop.
// Compiled to PTX by build.rs when the `cuda` feature is on.

#include <stdint.h>

#define BLOCK 256

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

extern "C" __global__ void rms_norm_rows(const float* x, const float* w, float* y, int d, float eps) {
    __shared__ float sh[32];
    const float* xr = x + (size_t)blockIdx.x * d;
    float* yr = y + (size_t)blockIdx.x * d;
    const float inv = inv_rms(xr, d, eps, sh);
    for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = xr[j] * inv * w[j];
}

// dx = r·(g∘w) − x·r³·mean(g∘w∘x)
extern "C" __global__ void rms_norm_bwd_x_rows(const float* x, const float* w, const float* g,
                                               float* dx, int d, float eps) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * d;
    const float inv = inv_rms(x + off, d, eps, sh);
    float dot = 0.f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += g[off + j] * w[j] * x[off + j];
    const float c = inv * inv * inv * (block_sum(dot, sh) / d);
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        dx[off + j] = inv * g[off + j] * w[j] - x[off + j] * c;
}

// 1/rms of every row, for the weight gradient.
extern "C" __global__ void rms_inv_rows(const float* x, float* inv, int d, float eps) {
    __shared__ float sh[32];
    const float r = inv_rms(x + (size_t)blockIdx.x * d, d, eps, sh);
    if (threadIdx.x == 0) inv[blockIdx.x] = r;
}

// partial[c, j] = Σ_{rows r of chunk c} g[r, j]·x[r, j]·inv[r]; one thread per
// (chunk, column), columns contiguous across threads (coalesced).
extern "C" __global__ void rms_norm_bwd_w_partial(const float* x, const float* g, const float* inv,
                                                  float* partial, int rows, int d, int chunk) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int c = blockIdx.y;
    if (j >= d) return;
    const int end = min(rows, (c + 1) * chunk);
    float acc = 0.f;
    for (int r = c * chunk; r < end; ++r) acc += g[(size_t)r * d + j] * x[(size_t)r * d + j] * inv[r];
    partial[(size_t)c * d + j] = acc;
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
extern "C" __global__ void causal_softmax_rows(const float* x, float* y, int t, int n, float scale) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * n;
    const int visible = (n - t) + (int)(blockIdx.x % t) + 1;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, x[off + j] * scale);
    m = block_max(m, sh);
    float s = 0.f;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) s += __expf(x[off + j] * scale - m);
    const float inv = 1.f / block_sum(s, sh);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        y[off + j] = j < visible ? __expf(x[off + j] * scale - m) * inv : 0.f;
}

// dx = scale·p∘(g − Σ p∘g)
extern "C" __global__ void softmax_bwd_rows(const float* p, const float* g, float* dx, int n, float scale) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * n;
    float dot = 0.f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) dot += p[off + j] * g[off + j];
    dot = block_sum(dot, sh);
    for (int j = threadIdx.x; j < n; j += blockDim.x) dx[off + j] = scale * p[off + j] * (g[off + j] - dot);
}

// ------------------------------------------------------------------ SwiGLU

__device__ __forceinline__ float sigmoid(float a) { return 1.f / (1.f + __expf(-a)); }

extern "C" __global__ void swiglu(const float* a, const float* b, float* y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] * sigmoid(a[i]) * b[i];
}

// out[0..n) = da = g·b·silu'(a), out[n..2n) = db = g·silu(a)
extern "C" __global__ void swiglu_bwd(const float* a, const float* b, const float* g, float* out, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float x = a[i], s = sigmoid(x);
        out[i] = g[i] * b[i] * s * (1.f + x * (1.f - s));
        out[n + i] = g[i] * x * s;
    }
}

// -------------------------------------------------------------------- RoPE

// rotate_half RoPE on rows of hd = 2·half values; row r is position r mod t
// of the tables `cos`/`sin` [t, half] (already offset to the first position).
extern "C" __global__ void rope(const float* x, const float* cos_t, const float* sin_t, float* y,
                                size_t rows, int t, int half, float sign) {
    const size_t n = rows * half;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
        const size_t r = k / half;
        const int i = (int)(k % half);
        const int p = (int)(r % t);
        const float c = cos_t[p * half + i], s = sign * sin_t[p * half + i];
        const size_t base = r * 2 * half;
        const float x1 = x[base + i], x2 = x[base + half + i];
        y[base + i] = x1 * c - x2 * s;
        y[base + half + i] = x2 * c + x1 * s;
    }
}

// ----------------------------------------------------------- cross-entropy

__device__ float row_lse(const float* row, int v, float* sh) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < v; j += blockDim.x) m = fmaxf(m, row[j]);
    m = block_max(m, sh);
    float s = 0.f;
    for (int j = threadIdx.x; j < v; j += blockDim.x) s += __expf(row[j] - m);
    return m + __logf(block_sum(s, sh));
}

// loss[r] = logsumexp(x[r]) − x[r, y[r]]
template <typename T>
__device__ void ce_fwd(const float* x, const T* y, float* loss, int v) {
    __shared__ float sh[32];
    const float* row = x + (size_t)blockIdx.x * v;
    const float lse = row_lse(row, v, sh);
    if (threadIdx.x == 0) loss[blockIdx.x] = lse - row[(size_t)y[blockIdx.x]];
}

// dx[r, j] = g[r]·(softmax(x[r])_j − [j = y[r]])
template <typename T>
__device__ void ce_bwd(const float* x, const T* y, const float* g, float* dx, int v) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * v;
    const float lse = row_lse(x + off, v, sh);
    const size_t target = (size_t)y[blockIdx.x];
    const float gr = g[blockIdx.x];
    for (int j = threadIdx.x; j < v; j += blockDim.x)
        dx[off + j] = gr * (__expf(x[off + j] - lse) - ((size_t)j == target ? 1.f : 0.f));
}

extern "C" __global__ void cross_entropy_rows_u32(const float* x, const uint32_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_rows_i64(const float* x, const int64_t* y, float* loss, int v) { ce_fwd(x, y, loss, v); }
extern "C" __global__ void cross_entropy_bwd_rows_u32(const float* x, const uint32_t* y, const float* g, float* dx, int v) { ce_bwd(x, y, g, dx, v); }
extern "C" __global__ void cross_entropy_bwd_rows_i64(const float* x, const int64_t* y, const float* g, float* dx, int v) { ce_bwd(x, y, g, dx, v); }

// ------------------------------------------------------------------- AdamW

// One AdamW step of one parameter (src/fused_adamw.rs, PyTorch's order of
// operations). mv = [m; v] (2n), out = [p'; m'; v'] (3n).
extern "C" __global__ void adamw_step(const float* p, const float* g, const float* mv, float* out,
                                      size_t n, float decay, float b1, float b2, float bc2_sqrt,
                                      float step_size, float eps) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i];
        const float m = b1 * mv[i] + (1.f - b1) * gi;
        const float v = b2 * mv[n + i] + (1.f - b2) * gi * gi;
        const float denom = sqrtf(v) / bc2_sqrt + eps;
        out[i] = p[i] * decay - step_size * m / denom;
        out[n + i] = m;
        out[2 * n + i] = v;
    }
}
