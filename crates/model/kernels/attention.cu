// CUDA version of src/fused_attention.rs: causal attention without the
// [T, S] probability matrix in global memory, forward and backward, f32.
//
// Layout: q, y, dy hold BH heads of T rows of hd; k, v BH heads of S rows;
// query i sees keys 0..=S−T+i. Heads come in groups of nh (fa_head): nh = 1
// is [B·H, T, hd] (each head's rows contiguous), nh = H is [B, T, H, hd] (a
// row of every head per position, the order the projections write). One warp owns one row (a query, or in flash_bwd_dkv a key);
// a block of FA_ROWS warps shares tiles of FA_TILE keys (or queries) in
// shared memory, so each tile is read from global memory once per block.
// Lane l handles key (query) l of a tile for the scores, and feature
// dimensions l, l+32, ... for the accumulators. hd ≤ FA_MAXD.
//
// These are SIMT kernels (no tensor cores): they save the T×S bytes and the
// softmax launches, not matmul time. Compiled to PTX by build.rs.
//
// fa_grads: the backward's one output holds dq (BH·T rows), then dk and dv
// (BH·S rows each), each in its input's layout, so each is a contiguous
// slice of it (no copy to split them). The grid's y extent is BH.

#define FA_TILE 32
#define FA_ROWS 8
#define FA_MAXD 128
#define FA_PAD (FA_MAXD + 1)  // odd row stride: lane l reading row l hits bank (l + d) % 32
#define FA_C (FA_MAXD / 32)

// The first element of head h of BH heads of n rows in groups of nh; its
// rows are nh·hd apart.
__device__ __forceinline__ size_t fa_head(size_t h, int n, int nh, int hd) {
    return ((h / nh) * n * nh + h % nh) * hd;
}

__device__ __forceinline__ float fa_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float fa_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

__device__ __forceinline__ float fa_dot(const float* a, const float* b, int hd) {
    float acc = 0.f;
    for (int d = 0; d < hd; ++d) acc += a[d] * b[d];
    return acc;
}

// Rows [r0, r0 + FA_TILE) of `rows` rows of hd, ld apart, into tile (zeros past the end).
__device__ __forceinline__ void fa_load_tile(float (*tile)[FA_PAD], const float* src, int r0, int rows, int hd, int ld) {
    for (int e = threadIdx.x; e < FA_TILE * hd; e += blockDim.x) {
        const int r = e / hd, d = e % hd;
        tile[r][d] = r0 + r < rows ? src[(size_t)(r0 + r) * ld + d] : 0.f;
    }
}

// This warp's row r of `rows` rows, ld apart, into row (zeros when out of range).
__device__ __forceinline__ void fa_load_row(float* row, const float* src, int r, int rows, int hd, int ld) {
    for (int d = threadIdx.x & 31; d < hd; d += 32) row[d] = r < rows ? src[(size_t)r * ld + d] : 0.f;
}

// y_i = Σ_j softmax_j(scale·q_i·k_j)·v_j with an online softmax over key tiles.
// grid (ceil(T / FA_ROWS), BH), block 32·FA_ROWS.
extern "C" __global__ void flash_fwd(const float* q, const float* k, const float* v, float* y,
                                     int t, int s, int hd, int nh, float scale) {
    __shared__ float ks[FA_TILE][FA_PAD];
    __shared__ float vs[FA_TILE][FA_PAD];
    __shared__ float qs[FA_ROWS][FA_MAXD];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t h = blockIdx.y;
    const int i0 = blockIdx.x * FA_ROWS, i = i0 + warp;
    const int ld = nh * hd;
    const size_t qo = fa_head(h, t, nh, hd), ko = fa_head(h, s, nh, hd);
    const float *kh = k + ko, *vh = v + ko;
    fa_load_row(qs[warp], q + qo, i, t, hd, ld);
    const int keys = s - t + min(t - 1, i0 + FA_ROWS - 1) + 1;  // seen by the block's last row
    const int vis = s - t + i + 1;
    float m = -INFINITY, l = 0.f, acc[FA_C];
#pragma unroll
    for (int c = 0; c < FA_C; ++c) acc[c] = 0.f;
    for (int j0 = 0; j0 < keys; j0 += FA_TILE) {
        __syncthreads();  // the previous tile is consumed
        fa_load_tile(ks, kh, j0, s, hd, ld);
        fa_load_tile(vs, vh, j0, s, hd, ld);
        __syncthreads();
        if (i >= t || j0 >= vis) continue;  // warp-uniform
        const int j = j0 + lane;
        const float sc = j < vis ? scale * fa_dot(qs[warp], ks[lane], hd) : -INFINITY;
        const float mn = fmaxf(m, fa_warp_max(sc));  // finite: key j0 is visible
        const float p = j < vis ? __expf(sc - mn) : 0.f;
        const float corr = __expf(m - mn);  // 0 on the first tile
        l = l * corr + fa_warp_sum(p);
#pragma unroll
        for (int c = 0; c < FA_C; ++c) acc[c] *= corr;
        for (int jj = 0; jj < FA_TILE; ++jj) {
            const float pj = __shfl_sync(0xffffffff, p, jj);
#pragma unroll
            for (int c = 0; c < FA_C; ++c)
                if (lane + 32 * c < hd) acc[c] += pj * vs[jj][lane + 32 * c];
        }
        m = mn;
    }
    if (i >= t) return;
    const float inv = 1.f / l;
#pragma unroll
    for (int c = 0; c < FA_C; ++c)
        if (lane + 32 * c < hd) y[qo + (size_t)i * ld + lane + 32 * c] = acc[c] * inv;
}

// stats[bh, i] = (logsumexp_j scale·q_i·k_j, D_i = dy_i·y_i), for the backward.
extern "C" __global__ void flash_stats(const float* q, const float* k, const float* y, const float* dy,
                                       float* stats, int t, int s, int hd, int nh, float scale) {
    __shared__ float ks[FA_TILE][FA_PAD];
    __shared__ float qs[FA_ROWS][FA_MAXD];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t h = blockIdx.y;
    const int i0 = blockIdx.x * FA_ROWS, i = i0 + warp;
    const int ld = nh * hd;
    const size_t qo = fa_head(h, t, nh, hd);
    const float* kh = k + fa_head(h, s, nh, hd);
    fa_load_row(qs[warp], q + qo, i, t, hd, ld);
    const int keys = s - t + min(t - 1, i0 + FA_ROWS - 1) + 1;
    const int vis = s - t + i + 1;
    float m = -INFINITY, l = 0.f;
    for (int j0 = 0; j0 < keys; j0 += FA_TILE) {
        __syncthreads();
        fa_load_tile(ks, kh, j0, s, hd, ld);
        __syncthreads();
        if (i >= t || j0 >= vis) continue;
        const int j = j0 + lane;
        const float sc = j < vis ? scale * fa_dot(qs[warp], ks[lane], hd) : -INFINITY;
        const float mn = fmaxf(m, fa_warp_max(sc));
        l = l * __expf(m - mn) + fa_warp_sum(j < vis ? __expf(sc - mn) : 0.f);
        m = mn;
    }
    if (i >= t) return;
    const size_t row = qo + (size_t)i * ld;
    float dd = 0.f;
    for (int d = lane; d < hd; d += 32) dd += dy[row + d] * y[row + d];
    dd = fa_warp_sum(dd);
    if (lane == 0) {
        stats[2 * (h * t + i)] = m + __logf(l);
        stats[2 * (h * t + i) + 1] = dd;
    }
}

// dq_i = scale·Σ_j p_ij·(dy_i·v_j − D_i)·k_j, into out's first [BH, T, hd]
// (see fa_grads). grid (ceil(T / FA_ROWS), BH).
extern "C" __global__ void flash_bwd_dq(const float* q, const float* k, const float* v, const float* dy,
                                        const float* stats, float* out, int t, int s, int hd, int nh, float scale) {
    __shared__ float ks[FA_TILE][FA_PAD];
    __shared__ float vs[FA_TILE][FA_PAD];
    __shared__ float qs[FA_ROWS][FA_MAXD];
    __shared__ float gs[FA_ROWS][FA_MAXD];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t h = blockIdx.y;
    const int i0 = blockIdx.x * FA_ROWS, i = i0 + warp;
    const int ld = nh * hd;
    const size_t qo = fa_head(h, t, nh, hd), ko = fa_head(h, s, nh, hd);
    const float *kh = k + ko, *vh = v + ko;
    fa_load_row(qs[warp], q + qo, i, t, hd, ld);
    fa_load_row(gs[warp], dy + qo, i, t, hd, ld);
    const int keys = s - t + min(t - 1, i0 + FA_ROWS - 1) + 1;
    const int vis = s - t + i + 1;
    const float lse = i < t ? stats[2 * (h * t + i)] : 0.f;
    const float di = i < t ? stats[2 * (h * t + i) + 1] : 0.f;
    float acc[FA_C];
#pragma unroll
    for (int c = 0; c < FA_C; ++c) acc[c] = 0.f;
    for (int j0 = 0; j0 < keys; j0 += FA_TILE) {
        __syncthreads();
        fa_load_tile(ks, kh, j0, s, hd, ld);
        fa_load_tile(vs, vh, j0, s, hd, ld);
        __syncthreads();
        if (i >= t || j0 >= vis) continue;
        float ds = 0.f;
        if (j0 + lane < vis) {
            const float p = __expf(scale * fa_dot(qs[warp], ks[lane], hd) - lse);
            ds = scale * p * (fa_dot(gs[warp], vs[lane], hd) - di);
        }
        for (int jj = 0; jj < FA_TILE; ++jj) {
            const float dsj = __shfl_sync(0xffffffff, ds, jj);
#pragma unroll
            for (int c = 0; c < FA_C; ++c)
                if (lane + 32 * c < hd) acc[c] += dsj * ks[jj][lane + 32 * c];
        }
    }
    if (i >= t) return;
    const size_t row = qo + (size_t)i * ld;
#pragma unroll
    for (int c = 0; c < FA_C; ++c)
        if (lane + 32 * c < hd) out[row + lane + 32 * c] = acc[c];
}

// dv_j = Σ_i p_ij·dy_i and dk_j = scale·Σ_i p_ij·(dy_i·v_j − D_i)·q_i over the
// queries that see key j, into out's dk and dv parts (see fa_grads). A warp
// owns a key; tiles are of queries. grid (ceil(S / FA_ROWS), BH).
extern "C" __global__ void flash_bwd_dkv(const float* q, const float* k, const float* v, const float* dy,
                                         const float* stats, float* out, int t, int s, int hd, int nh, float scale) {
    __shared__ float qs[FA_TILE][FA_PAD];
    __shared__ float gs[FA_TILE][FA_PAD];
    __shared__ float lse_s[FA_TILE], d_s[FA_TILE];
    __shared__ float kr[FA_ROWS][FA_MAXD];
    __shared__ float vr[FA_ROWS][FA_MAXD];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const size_t h = blockIdx.y;
    const int j_first = blockIdx.x * FA_ROWS, j = j_first + warp;
    const int ld = nh * hd;
    const size_t qo = fa_head(h, t, nh, hd), ko = fa_head(h, s, nh, hd);
    const float *qh = q + qo, *gh = dy + qo;
    const float* st = stats + 2 * h * t;
    fa_load_row(kr[warp], k + ko, j, s, hd, ld);
    fa_load_row(vr[warp], v + ko, j, s, hd, ld);
    // Query i sees key j when j ≤ S − T + i; the block's first key bounds the start.
    const int first = max(0, j_first - (s - t));
    float dk[FA_C], dv[FA_C];
#pragma unroll
    for (int c = 0; c < FA_C; ++c) dk[c] = dv[c] = 0.f;
    for (int q0 = first; q0 < t; q0 += FA_TILE) {
        __syncthreads();
        fa_load_tile(qs, qh, q0, t, hd, ld);
        fa_load_tile(gs, gh, q0, t, hd, ld);
        if (threadIdx.x < FA_TILE) {
            const int qi = q0 + threadIdx.x;
            lse_s[threadIdx.x] = qi < t ? st[2 * qi] : 0.f;
            d_s[threadIdx.x] = qi < t ? st[2 * qi + 1] : 0.f;
        }
        __syncthreads();
        if (j >= s) continue;  // warp-uniform
        const int qi = q0 + lane;
        float p = 0.f, ds = 0.f;
        if (qi < t && j <= s - t + qi) {
            p = __expf(scale * fa_dot(qs[lane], kr[warp], hd) - lse_s[lane]);
            ds = scale * p * (fa_dot(gs[lane], vr[warp], hd) - d_s[lane]);
        }
        for (int ii = 0; ii < FA_TILE; ++ii) {
            const float pi = __shfl_sync(0xffffffff, p, ii);
            const float dsi = __shfl_sync(0xffffffff, ds, ii);
#pragma unroll
            for (int c = 0; c < FA_C; ++c)
                if (lane + 32 * c < hd) {
                    dv[c] += pi * gs[ii][lane + 32 * c];
                    dk[c] += dsi * qs[ii][lane + 32 * c];
                }
        }
    }
    if (j >= s) return;
    const size_t bh = gridDim.y;
    float* dk_row = out + bh * t * hd + ko + (size_t)j * ld;
    float* dv_row = out + bh * (t + s) * hd + ko + (size_t)j * ld;
#pragma unroll
    for (int c = 0; c < FA_C; ++c)
        if (lane + 32 * c < hd) {
            dk_row[lane + 32 * c] = dk[c];
            dv_row[lane + 32 * c] = dv[c];
        }
}
