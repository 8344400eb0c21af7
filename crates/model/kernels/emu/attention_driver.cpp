// Runs kernels/attention.cu (f32) and kernels/attention_tc.cu (bf16, tensor
// cores) under emu.h with the launch sequences of src/fused_cuda.rs
// (flash_attention, flash_attention_bwd), on raw little-endian f32 files;
// driven by tests/cuda_emulated.rs.
//
//   attention_driver fwd|bwd[:bf16] BH NH T S HD SCALE DIR
// fwd reads DIR/{q,k,v}.f32 and writes DIR/y.f32; bwd also reads
// DIR/{y,dy}.f32 and writes DIR/grads.f32 (dq, then dk, then dv). Heads come
// in groups of NH: 1 for [BH, T, HD] files, H for [B, T, H, HD] ones.
// With :bf16 the inputs are narrowed to bf16 (the files hold bf16 values, so
// nothing is lost), the tensor-core kernels run, and outputs are widened.
#include "emu.h"
#include "../attention.cu"
#include "../attention_tc.cu"

#include "driver_io.h"

// The tensor-core launches: TC_WARPS warps per block of TC_ROWS rows.
static int run_bf16(bool fwd, int bh, int nh, int t, int s, int hd, float scale, const std::string& dir) {
    auto q = as<bf16>(read_array(dir + "/q.f32", (size_t)bh * t * hd));
    auto k = as<bf16>(read_array(dir + "/k.f32", (size_t)bh * s * hd));
    auto v = as<bf16>(read_array(dir + "/v.f32", (size_t)bh * s * hd));
    auto grid = [&](int rows) { return dim3{(unsigned)((rows + TC_ROWS - 1) / TC_ROWS), (unsigned)bh, 1}; };
    const dim3 block{32 * TC_WARPS, 1, 1};
    const bf16 nan = __float2bfloat16(NAN);
    if (fwd) {
        std::vector<bf16> y((size_t)bh * t * hd, nan);
        emu::launch(grid(t), block, [&] { flash_tc_fwd(q.data(), k.data(), v.data(), y.data(), t, s, hd, nh, scale); });
        write_array(dir + "/y.f32", widen(y));
        return 0;
    }
    auto y = as<bf16>(read_array(dir + "/y.f32", (size_t)bh * t * hd));
    auto dy = as<bf16>(read_array(dir + "/dy.f32", (size_t)bh * t * hd));
    std::vector<float> stats(2 * (size_t)bh * t, NAN);
    std::vector<bf16> out((size_t)bh * (t + 2 * s) * hd, nan);
    emu::launch(grid(t), block,
                [&] { flash_tc_stats(q.data(), k.data(), y.data(), dy.data(), stats.data(), t, s, hd, nh, scale); });
    emu::launch(grid(t), block, [&] {
        flash_tc_bwd_dq(q.data(), k.data(), v.data(), dy.data(), stats.data(), out.data(), t, s, hd, nh, scale);
    });
    emu::launch(grid(s), block, [&] {
        flash_tc_bwd_dkv(q.data(), k.data(), v.data(), dy.data(), stats.data(), out.data(), t, s, hd, nh, scale);
    });
    write_array(dir + "/grads.f32", widen(out));
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: %s fwd|bwd[:bf16] BH NH T S HD SCALE DIR\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    const std::string dir = argv[8];
    const int bh = atoi(argv[2]), nh = atoi(argv[3]), t = atoi(argv[4]), s = atoi(argv[5]), hd = atoi(argv[6]);
    const float scale = strtof(argv[7], nullptr);
    if (nh < 1 || bh % nh != 0) {
        fprintf(stderr, "NH %d must divide BH %d\n", nh, bh);
        return 2;
    }
    if (mode.size() > 5 && mode.substr(mode.size() - 5) == ":bf16")
        return run_bf16(mode.substr(0, mode.size() - 5) == "fwd", bh, nh, t, s, hd, scale, dir);
    auto q = read_array(dir + "/q.f32", (size_t)bh * t * hd);
    auto k = read_array(dir + "/k.f32", (size_t)bh * s * hd);
    auto v = read_array(dir + "/v.f32", (size_t)bh * s * hd);
    // fused_cuda.rs's per_rows: FA_ROWS warps per block, a block row per head.
    auto grid = [&](int rows) { return dim3{(unsigned)((rows + FA_ROWS - 1) / FA_ROWS), (unsigned)bh, 1}; };
    const dim3 block{32 * FA_ROWS, 1, 1};
    if (mode == "fwd") {
        std::vector<float> y((size_t)bh * t * hd, NAN);
        emu::launch(grid(t), block, [&] { flash_fwd(q.data(), k.data(), v.data(), y.data(), t, s, hd, nh, scale); });
        write_array(dir + "/y.f32", y);
        return 0;
    }
    auto y = read_array(dir + "/y.f32", (size_t)bh * t * hd);
    auto dy = read_array(dir + "/dy.f32", (size_t)bh * t * hd);
    // NaN-filled, as uninitialised device memory would be garbage: a row the
    // kernels fail to write shows up in the comparison.
    std::vector<float> stats(2 * (size_t)bh * t, NAN), out((size_t)bh * (t + 2 * s) * hd, NAN);
    emu::launch(grid(t), block,
                [&] { flash_stats(q.data(), k.data(), y.data(), dy.data(), stats.data(), t, s, hd, nh, scale); });
    emu::launch(grid(t), block, [&] {
        flash_bwd_dq(q.data(), k.data(), v.data(), dy.data(), stats.data(), out.data(), t, s, hd, nh, scale);
    });
    emu::launch(grid(s), block, [&] {
        flash_bwd_dkv(q.data(), k.data(), v.data(), dy.data(), stats.data(), out.data(), t, s, hd, nh, scale);
    });
    write_array(dir + "/grads.f32", out);
    return 0;
}
