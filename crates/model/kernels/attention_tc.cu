// Tensor-core version of kernels/attention.cu for bf16 activations: causal
// attention without the [T, S] probabilities in global memory, forward and
// backward, with every product on the tensor cores (WMMA, 16×16×16 bf16
// tiles, f32 accumulation). The softmax, the masking and the gradient of the
// softmax are f32 SIMT code on tiles staged in shared memory.
//
// Layout and launch as attention.cu: BH heads of T rows (q, y, dy) or S rows
// (k, v) of hd, in groups of nh heads (tc_head: nh = 1 is [B·H, T, hd], nh = H
// is [B, T, H, hd]); query i sees keys 0..=S−T+i; stats [BH, T, 2] f32 =
// (logsumexp, D_i); the backward's output is dq, then dk and dv, each in its
// input's layout.
// A warp owns TC_M = 16 rows (queries; keys in flash_tc_bwd_dkv), a block of
// TC_WARPS warps shares tiles of TC_TILE keys (queries), so each tile is read
// from global memory once per block. hd is a multiple of 16, at most TC_MAXD.
//
// The code relies only on what the WMMA API guarantees: fragments are
// loaded from and stored to memory, never indexed (their register layout is
// unspecified). Row-wise work (max, sum, rescaling) is done on the f32 tiles
// in shared memory, two lanes per row: lane l has row l/2, columns
// (l%2)·half .. (l%2 + 1)·half of it.
//
// As FlashAttention-2 does, probabilities and their gradients are rounded
// to bf16 as mma operands; row statistics and accumulators stay f32, and
// outputs are rounded once. Needs sm_80 or newer (bf16 WMMA).

#include <stdint.h>
#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <mma.h>
#endif

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

#define TC_WARPS 4
#define TC_M 16
#define TC_ROWS (TC_WARPS * TC_M)  // rows per block
#define TC_TILE 32                 // keys (queries) per shared tile
#define TC_MAXD 64
#define TC_ND (TC_MAXD / 16)  // fragments per row of hd; loops over them unroll
// Row strides padded against bank conflicts; each keeps every fragment's
// first element 32-byte aligned, as load/store_matrix_sync require.
#define TC_LD (TC_MAXD + 8)   // bf16 [rows][hd] tiles
#define TC_SLD (TC_TILE + 4)  // f32 score tiles [16][TC_TILE]
#define TC_PLD (TC_TILE + 8)  // bf16 probability tiles [16][TC_TILE]
#define TC_OLD (TC_MAXD + 4)  // f32 output accumulators [16][hd]
#define TC_FULL 0xffffffffu

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
// The transpose of a row-major [n][k] tile: Kᵀ from K as stored.
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// The first element of head h of BH heads of n rows in groups of nh (as
// attention.cu's fa_head); its rows are nh·hd apart.
__device__ __forceinline__ size_t tc_head(size_t h, int n, int nh, int hd) {
    return ((h / nh) * n * nh + h % nh) * hd;
}

__device__ __forceinline__ float tc_ld(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 tc_st(float v) { return __float2bfloat16(v); }

// Rows [r0, r0 + n) of `rows` bf16 rows of hd, ld apart, into tile (zeros past the end).
__device__ __forceinline__ void tc_load_tile(bf16 (*tile)[TC_LD], const bf16* src, int r0, int n, int rows, int hd,
                                             int ld) {
    for (int e = threadIdx.x; e < n * hd; e += blockDim.x) {
        const int r = e / hd, d = e % hd;
        tile[r][d] = r0 + r < rows ? src[(size_t)(r0 + r) * ld + d] : tc_st(0.f);
    }
}

// The hd/16 row-major fragments of rows [16·warp, 16·warp + 16) of a staged tile.
__device__ __forceinline__ void tc_fragments(FragA* f, bf16 (*tile)[TC_LD], int warp, int nd) {
#pragma unroll
    for (int kk = 0; kk < TC_ND; ++kk)
        if (kk < nd) wmma::load_matrix_sync(f[kk], &tile[warp * TC_M][kk * 16], TC_LD);
}

// out[16][TC_TILE] = a (16 × hd, as fragments) · tileᵀ (tile: TC_TILE rows of hd).
__device__ __forceinline__ void tc_scores(float (*out)[TC_SLD], const FragA* a, bf16 (*tile)[TC_LD], int nd) {
    for (int nb = 0; nb < TC_TILE / 16; ++nb) {
        FragC acc;
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < TC_ND; ++kk) {
            if (kk >= nd) break;
            FragBt b;
            wmma::load_matrix_sync(b, &tile[nb * 16][kk * 16], TC_LD);
            wmma::mma_sync(acc, a[kk], b, acc);
        }
        wmma::store_matrix_sync(&out[0][nb * 16], acc, TC_SLD, wmma::mem_row_major);
    }
}

// acc[cb] += p (16 × TC_TILE, bf16 in shared memory) · tile (TC_TILE × hd).
__device__ __forceinline__ void tc_accumulate(FragC* acc, bf16 (*p)[TC_PLD], bf16 (*tile)[TC_LD], int nd) {
    for (int kk = 0; kk < TC_TILE / 16; ++kk) {
        FragA a;
        wmma::load_matrix_sync(a, &p[0][kk * 16], TC_PLD);
#pragma unroll
        for (int cb = 0; cb < TC_ND; ++cb) {
            if (cb >= nd) break;
            FragB b;
            wmma::load_matrix_sync(b, &tile[kk * 16][cb * 16], TC_LD);
            wmma::mma_sync(acc[cb], a, b, acc[cb]);
        }
    }
}

// Rounds the warp's accumulators (16 rows × hd) into rows row0.. of dst
// (bf16 rows ld apart, rows ≥ `limit` skipped), through the f32 tile `stage`.
__device__ __forceinline__ void tc_store_rows(bf16* dst, int row0, int limit, const FragC* acc, float (*stage)[TC_SLD],
                                              int nd, int ld) {
    const int lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
#pragma unroll
    for (int cb = 0; cb < TC_ND; ++cb) {
        if (cb >= nd) break;
        __syncwarp();  // the previous block of columns has been read
        wmma::store_matrix_sync(&stage[0][0], acc[cb], TC_SLD, wmma::mem_row_major);
        __syncwarp();
        if (row0 + r < limit)
            for (int c = 0; c < 8; ++c)
                dst[(size_t)(row0 + r) * ld + cb * 16 + half * 8 + c] = tc_st(stage[r][half * 8 + c]);
    }
}

// The forward pass, or (STATS) the backward's per-row statistics. A warp's
// rows i = w0 + r; each pair of lanes keeps its row's running max m and sum l.
// grid (ceil(T / TC_ROWS), BH), block 32·TC_WARPS.
template <bool STATS>
__device__ void tc_attend(const bf16* q, const bf16* k, const bf16* v, const bf16* y_in, const bf16* dy, bf16* y,
                          float* stats, int t, int s, int hd, int nh, float scale) {
    __shared__ __align__(32) bf16 kv[2 * TC_TILE][TC_LD];  // Q while staging; then K and V tiles
    __shared__ __align__(32) float sc[TC_WARPS][TC_M][TC_SLD];
    __shared__ __align__(32) bf16 ps[TC_WARPS][TC_M][TC_PLD];
    __shared__ __align__(32) float os[TC_WARPS][TC_M][TC_OLD];
    bf16(*ks)[TC_LD] = kv;
    bf16(*vs)[TC_LD] = kv + TC_TILE;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 1, half = lane & 1;
    const int nd = hd / 16, cols = TC_TILE / 2, dhalf = hd / 2;
    const size_t h = blockIdx.y;
    const int i0 = blockIdx.x * TC_ROWS, w0 = i0 + warp * TC_M, i = w0 + r;
    const int ld = nh * hd;
    const size_t qo = tc_head(h, t, nh, hd), ko = tc_head(h, s, nh, hd);
    const bf16 *kh = k + ko, *vh = v + ko;

    FragA qf[TC_ND];
    tc_load_tile(kv, q + qo, i0, TC_ROWS, t, hd, ld);
    __syncthreads();
    tc_fragments(qf, kv, warp, nd);
    for (int c = 0; c < dhalf; ++c) os[warp][r][half * dhalf + c] = 0.f;

    const int keys = s - t + min(t - 1, i0 + TC_ROWS - 1) + 1;      // seen by the block's last row
    const int warp_keys = s - t + min(t - 1, w0 + TC_M - 1) + 1;   // seen by the warp's last row
    const int vis = i < t ? s - t + i + 1 : 0;
    float m = -INFINITY, l = 0.f;
    for (int j0 = 0; j0 < keys; j0 += TC_TILE) {
        __syncthreads();  // the previous tile (or Q) is consumed
        tc_load_tile(ks, kh, j0, TC_TILE, s, hd, ld);
        if constexpr (!STATS) tc_load_tile(vs, vh, j0, TC_TILE, s, hd, ld);
        __syncthreads();
        if (w0 >= t || j0 >= warp_keys) continue;  // warp-uniform
        tc_scores(sc[warp], qf, ks, nd);
        __syncwarp();
        float x[TC_TILE / 2], mx = -INFINITY;
        for (int c = 0; c < cols; ++c) {
            const int col = half * cols + c;
            x[c] = j0 + col < vis ? scale * sc[warp][r][col] : -INFINITY;
            mx = fmaxf(mx, x[c]);
        }
        const float mn = fmaxf(m, fmaxf(mx, __shfl_xor_sync(TC_FULL, mx, 1)));
        const float corr = mn == -INFINITY ? 1.f : __expf(m - mn);  // 0 on the row's first keys
        float sum = 0.f;
        for (int c = 0; c < cols; ++c) {
            const float p = x[c] == -INFINITY ? 0.f : __expf(x[c] - mn);
            sum += p;
            if constexpr (!STATS) ps[warp][r][half * cols + c] = tc_st(p);
        }
        l = l * corr + sum + __shfl_xor_sync(TC_FULL, sum, 1);
        m = mn;
        if constexpr (!STATS) {
            for (int c = 0; c < dhalf; ++c) os[warp][r][half * dhalf + c] *= corr;
            __syncwarp();  // probabilities and rescaled rows are in place
            for (int cb = 0; cb < nd; ++cb) {
                FragC acc;
                wmma::load_matrix_sync(acc, &os[warp][0][cb * 16], TC_OLD, wmma::mem_row_major);
                for (int kk = 0; kk < TC_TILE / 16; ++kk) {
                    FragA a;
                    FragB b;
                    wmma::load_matrix_sync(a, &ps[warp][0][kk * 16], TC_PLD);
                    wmma::load_matrix_sync(b, &vs[kk * 16][cb * 16], TC_LD);
                    wmma::mma_sync(acc, a, b, acc);
                }
                wmma::store_matrix_sync(&os[warp][0][cb * 16], acc, TC_OLD, wmma::mem_row_major);
            }
            __syncwarp();  // before the next tile's lanes touch sc, ps and os
        }
    }
    if (i >= t) return;
    const size_t row = qo + (size_t)i * ld;
    if constexpr (STATS) {
        float dd = 0.f;
        for (int c = 0; c < dhalf; ++c) dd += tc_ld(dy[row + half * dhalf + c]) * tc_ld(y_in[row + half * dhalf + c]);
        dd += __shfl_xor_sync(TC_FULL, dd, 1);
        if (half == 0) {
            stats[2 * (h * t + i)] = m + __logf(l);
            stats[2 * (h * t + i) + 1] = dd;
        }
    } else {
        const float inv = 1.f / l;
        for (int c = 0; c < dhalf; ++c) y[row + half * dhalf + c] = tc_st(os[warp][r][half * dhalf + c] * inv);
    }
}

extern "C" __global__ void flash_tc_fwd(const bf16* q, const bf16* k, const bf16* v, bf16* y, int t, int s, int hd,
                                        int nh, float scale) {
    tc_attend<false>(q, k, v, nullptr, nullptr, y, nullptr, t, s, hd, nh, scale);
}

extern "C" __global__ void flash_tc_stats(const bf16* q, const bf16* k, const bf16* y, const bf16* dy, float* stats,
                                          int t, int s, int hd, int nh, float scale) {
    tc_attend<true>(q, k, nullptr, y, dy, nullptr, stats, t, s, hd, nh, scale);
}

// dq_i = scale·Σ_j p_ij·(dy_i·v_j − D_i)·k_j into this head's rows of out's
// dq part. grid (ceil(T / TC_ROWS), BH).
extern "C" __global__ void flash_tc_bwd_dq(const bf16* q, const bf16* k, const bf16* v, const bf16* dy,
                                           const float* stats, bf16* out, int t, int s, int hd, int nh,
                                           float scale) {
    __shared__ __align__(32) bf16 kv[2 * TC_TILE][TC_LD];  // Q, then dY while staging; then K and V tiles
    __shared__ __align__(32) float sc[TC_WARPS][TC_M][TC_SLD];
    __shared__ __align__(32) float dp[TC_WARPS][TC_M][TC_SLD];
    __shared__ __align__(32) bf16 ds[TC_WARPS][TC_M][TC_PLD];
    bf16(*ks)[TC_LD] = kv;
    bf16(*vs)[TC_LD] = kv + TC_TILE;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 1, half = lane & 1;
    const int nd = hd / 16, cols = TC_TILE / 2;
    const size_t h = blockIdx.y;
    const int i0 = blockIdx.x * TC_ROWS, w0 = i0 + warp * TC_M, i = w0 + r;

    const int ld = nh * hd;
    const size_t qo = tc_head(h, t, nh, hd), ko = tc_head(h, s, nh, hd);
    FragA qf[TC_ND], gf[TC_ND];
    tc_load_tile(kv, q + qo, i0, TC_ROWS, t, hd, ld);
    __syncthreads();
    tc_fragments(qf, kv, warp, nd);
    __syncthreads();
    tc_load_tile(kv, dy + qo, i0, TC_ROWS, t, hd, ld);
    __syncthreads();
    tc_fragments(gf, kv, warp, nd);
    FragC acc[TC_ND];
#pragma unroll
    for (int cb = 0; cb < TC_ND; ++cb) wmma::fill_fragment(acc[cb], 0.f);

    const int keys = s - t + min(t - 1, i0 + TC_ROWS - 1) + 1;
    const int warp_keys = s - t + min(t - 1, w0 + TC_M - 1) + 1;
    const int vis = i < t ? s - t + i + 1 : 0;
    const float lse = i < t ? stats[2 * (h * t + i)] : 0.f;
    const float di = i < t ? stats[2 * (h * t + i) + 1] : 0.f;
    for (int j0 = 0; j0 < keys; j0 += TC_TILE) {
        __syncthreads();
        tc_load_tile(ks, k + ko, j0, TC_TILE, s, hd, ld);
        tc_load_tile(vs, v + ko, j0, TC_TILE, s, hd, ld);
        __syncthreads();
        if (w0 >= t || j0 >= warp_keys) continue;
        tc_scores(sc[warp], qf, ks, nd);
        tc_scores(dp[warp], gf, vs, nd);
        __syncwarp();
        for (int c = 0; c < cols; ++c) {
            const int col = half * cols + c;
            float g = 0.f;
            if (j0 + col < vis) {
                const float p = __expf(scale * sc[warp][r][col] - lse);
                g = scale * p * (dp[warp][r][col] - di);
            }
            ds[warp][r][col] = tc_st(g);
        }
        __syncwarp();
        tc_accumulate(acc, ds[warp], ks, nd);
        __syncwarp();
    }
    if (w0 >= t) return;  // warp-uniform
    tc_store_rows(out + qo, w0, t, acc, sc[warp], nd, ld);
}

// dv_j = Σ_i p_ij·dy_i and dk_j = scale·Σ_i p_ij·(dy_i·v_j − D_i)·q_i over the
// queries that see key j, into this head's rows of out's dk and dv parts. A warp owns 16 keys; tiles are of queries, and the
// products are computed transposed (keys as rows). grid (ceil(S / TC_ROWS), BH).
extern "C" __global__ void flash_tc_bwd_dkv(const bf16* q, const bf16* k, const bf16* v, const bf16* dy,
                                            const float* stats, bf16* out, int t, int s, int hd, int nh,
                                            float scale) {
    __shared__ __align__(32) bf16 qg[2 * TC_TILE][TC_LD];  // K, then V while staging; then Q and dY tiles
    __shared__ float lse_s[TC_TILE], d_s[TC_TILE];
    __shared__ __align__(32) float sc[TC_WARPS][TC_M][TC_SLD];
    __shared__ __align__(32) float dp[TC_WARPS][TC_M][TC_SLD];
    __shared__ __align__(32) bf16 pt[TC_WARPS][TC_M][TC_PLD];
    __shared__ __align__(32) bf16 dst[TC_WARPS][TC_M][TC_PLD];
    bf16(*qs)[TC_LD] = qg;
    bf16(*gs)[TC_LD] = qg + TC_TILE;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 1, half = lane & 1;
    const int nd = hd / 16, cols = TC_TILE / 2;
    const size_t h = blockIdx.y;
    const int j_first = blockIdx.x * TC_ROWS, w0 = j_first + warp * TC_M, j = w0 + r;
    const int ld = nh * hd;
    const size_t qo = tc_head(h, t, nh, hd), ko = tc_head(h, s, nh, hd);
    const bf16 *qh = q + qo, *gh = dy + qo;
    const float* st = stats + 2 * h * t;

    FragA kf[TC_ND], vf[TC_ND];
    tc_load_tile(qg, k + ko, j_first, TC_ROWS, s, hd, ld);
    __syncthreads();
    tc_fragments(kf, qg, warp, nd);
    __syncthreads();
    tc_load_tile(qg, v + ko, j_first, TC_ROWS, s, hd, ld);
    __syncthreads();
    tc_fragments(vf, qg, warp, nd);
    FragC dk[TC_ND], dv[TC_ND];
#pragma unroll
    for (int cb = 0; cb < TC_ND; ++cb) {
        wmma::fill_fragment(dk[cb], 0.f);
        wmma::fill_fragment(dv[cb], 0.f);
    }
    // Query i sees key j when j ≤ S − T + i: the block's (warp's) first key
    // bounds the first query tile (the first query that matters to the warp).
    const int first = max(0, j_first - (s - t));
    const int warp_first = max(0, w0 - (s - t));
    for (int q0 = first; q0 < t; q0 += TC_TILE) {
        __syncthreads();
        tc_load_tile(qs, qh, q0, TC_TILE, t, hd, ld);
        tc_load_tile(gs, gh, q0, TC_TILE, t, hd, ld);
        if (threadIdx.x < TC_TILE) {
            const int qi = q0 + threadIdx.x;
            lse_s[threadIdx.x] = qi < t ? st[2 * qi] : 0.f;
            d_s[threadIdx.x] = qi < t ? st[2 * qi + 1] : 0.f;
        }
        __syncthreads();
        if (w0 >= s || q0 + TC_TILE <= warp_first) continue;  // warp-uniform
        tc_scores(sc[warp], kf, qs, nd);  // Sᵀ: keys × queries
        tc_scores(dp[warp], vf, gs, nd);  // dPᵀ
        __syncwarp();
        for (int c = 0; c < cols; ++c) {
            const int col = half * cols + c, qi = q0 + col;
            float p = 0.f, g = 0.f;
            if (j < s && qi < t && j <= s - t + qi) {
                p = __expf(scale * sc[warp][r][col] - lse_s[col]);
                g = scale * p * (dp[warp][r][col] - d_s[col]);
            }
            pt[warp][r][col] = tc_st(p);
            dst[warp][r][col] = tc_st(g);
        }
        __syncwarp();
        tc_accumulate(dv, pt[warp], gs, nd);
        tc_accumulate(dk, dst[warp], qs, nd);
        __syncwarp();
    }
    if (w0 >= s) return;  // warp-uniform
    const size_t bh = gridDim.y;
    tc_store_rows(out + bh * t * hd + ko, w0, s, dk, sc[warp], nd, ld);
    tc_store_rows(out + bh * (t + s) * hd + ko, w0, s, dv, sc[warp], nd, ld);
}

#endif  // sm_80
