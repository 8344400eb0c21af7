// Runs kernels/fused.cu under emu.h with the launch configurations of
// src/fused_cuda.rs, on raw little-endian files in DIR; driven by
// tests/cuda_emulated.rs. Each mode runs an op's forward and backward
// kernels the way its launcher does:
//
//   fused_driver rms DIR ROWS D EPS            x w g        -> y dx dw
//   fused_driver softmax DIR ROWS T N SCALE    x g          -> p dx
//   fused_driver swiglu DIR N                  a b g        -> y dadb
//   fused_driver rope DIR ROWS T HALF SIGN     x cos sin    -> y
//   fused_driver ce DIR N V                    x y(u32) g   -> loss dx
//   fused_driver adamw DIR N DECAY B1 B2 BC2 STEP EPS  p g mv -> out
#include "emu.h"
#include "../fused.cu"

#include "driver_io.h"

// Files are named relative to the DIR argument.
static std::string dir;

template <class T = float>
static std::vector<T> read(const char* name, size_t n) { return read_array<T>(dir + "/" + name, n); }
static void write(const char* name, const std::vector<float>& v) { write_array(dir + "/" + name, v); }

// NaN-filled, as uninitialised device memory is garbage: what a kernel
// fails to write shows up in the comparison.
static std::vector<float> out(size_t n) { return std::vector<float>(n, NAN); }

// fused_cuda.rs: per_row (a block per row) and elementwise (capped grid-stride).
static dim3 per_row(size_t rows) { return {(unsigned)rows, 1, 1}; }
static dim3 elementwise(size_t n) {
    size_t g = (n + BLOCK - 1) / BLOCK;
    return {(unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g), 1, 1};
}
static const dim3 block{BLOCK, 1, 1};

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODE DIR PARAMS... (see the source)\n", argv[0]);
        return 2;
    }
    const std::string mode = argv[1];
    dir = argv[2];
    auto arg = [&](int i) { return i < argc ? argv[i] : (fprintf(stderr, "missing argument %d\n", i), exit(2), ""); };
    auto num = [&](int i) { return (size_t)strtoull(arg(i), nullptr, 10); };
    auto flt = [&](int i) { return strtof(arg(i), nullptr); };
    if (mode == "rms") {
        const size_t rows = num(3), d = num(4);
        const float eps = flt(5);
        auto x = read("x", rows * d), w = read("w", d), g = read("g", rows * d);
        auto y = out(rows * d), dx = out(rows * d), inv = out(rows), dw = out(d);
        emu::launch(per_row(rows), block, [&] { rms_norm_rows(x.data(), w.data(), y.data(), (int)d, eps); });
        emu::launch(per_row(rows), block,
                    [&] { rms_norm_bwd_x_rows(x.data(), w.data(), g.data(), dx.data(), (int)d, eps); });
        emu::launch(per_row(rows), block, [&] { rms_inv_rows(x.data(), inv.data(), (int)d, eps); });
        const size_t chunk = 64, chunks = (rows + chunk - 1) / chunk, cols = (d + BLOCK - 1) / BLOCK;
        auto partial = out(chunks * d);
        emu::launch({(unsigned)cols, (unsigned)chunks, 1}, block, [&] {
            rms_norm_bwd_w_partial(x.data(), g.data(), inv.data(), partial.data(), (int)rows, (int)d, (int)chunk);
        });
        emu::launch({(unsigned)cols, 1, 1}, block, [&] { sum_columns(partial.data(), dw.data(), (int)chunks, (int)d); });
        write("y", y), write("dx", dx), write("dw", dw);
    } else if (mode == "softmax") {
        const size_t rows = num(3), t = num(4), n = num(5);
        const float scale = flt(6);
        auto x = read("x", rows * n), g = read("g", rows * n);
        auto p = out(rows * n), dx = out(rows * n);
        emu::launch(per_row(rows), block, [&] { causal_softmax_rows(x.data(), p.data(), (int)t, (int)n, scale); });
        emu::launch(per_row(rows), block, [&] { softmax_bwd_rows(p.data(), g.data(), dx.data(), (int)n, scale); });
        write("p", p), write("dx", dx);
    } else if (mode == "swiglu") {
        const size_t n = num(3);
        auto a = read("a", n), b = read("b", n), g = read("g", n);
        auto y = out(n), dadb = out(2 * n);
        emu::launch(elementwise(n), block, [&] { swiglu(a.data(), b.data(), y.data(), n); });
        emu::launch(elementwise(n), block, [&] { swiglu_bwd(a.data(), b.data(), g.data(), dadb.data(), n); });
        write("y", y), write("dadb", dadb);
    } else if (mode == "rope") {
        const size_t rows = num(3), t = num(4), half = num(5);
        const float sign = flt(6);
        auto x = read("x", rows * 2 * half), c = read("cos", t * half), s = read("sin", t * half);
        auto y = out(rows * 2 * half);
        emu::launch(elementwise(rows * half), block,
                    [&] { rope(x.data(), c.data(), s.data(), y.data(), rows, (int)t, (int)half, sign); });
        write("y", y);
    } else if (mode == "ce") {
        const size_t n = num(3), v = num(4);
        auto x = read("x", n * v), g = read("g", n);
        auto y = read<uint32_t>("y", n);
        auto loss = out(n), dx = out(n * v);
        emu::launch(per_row(n), block, [&] { cross_entropy_rows_u32(x.data(), y.data(), loss.data(), (int)v); });
        emu::launch(per_row(n), block,
                    [&] { cross_entropy_bwd_rows_u32(x.data(), y.data(), g.data(), dx.data(), (int)v); });
        write("loss", loss), write("dx", dx);
    } else if (mode == "adamw") {
        const size_t n = num(3);
        const float decay = flt(4), b1 = flt(5), b2 = flt(6), bc2 = flt(7), step = flt(8), eps = flt(9);
        auto p = read("p", n), g = read("g", n), mv = read("mv", 2 * n);
        auto o = out(3 * n);
        emu::launch(elementwise(n), block, [&] {
            adamw_step(p.data(), g.data(), mv.data(), o.data(), n, decay, b1, b2, bc2, step, eps);
        });
        write("out", o);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    return 0;
}
