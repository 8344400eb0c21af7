// Runs kernels/fused.cu under emu.h with the launch configurations of
// src/fused_cuda.rs, on raw little-endian files in DIR; driven by
// tests/cuda_emulated.rs. Each mode runs an op's forward and backward
// kernels the way its launcher does:
//
//   fused_driver rms DIR ROWS D EPS CHUNK      x w g acc    -> y dx dw dxacc
//     (CHUNK: rows per partial dw sum; the launcher's is 64, longer past
//     65 535 · 64 rows)
//   fused_driver softmax DIR ROWS T N SCALE    x g          -> p dx
//   fused_driver swiglu DIR N                  a b g        -> y dadb
//   fused_driver rope DIR ROWS T PER HALF SIGN x cos sin    -> y (PER rows per position)
//   fused_driver ce DIR N V                    x y(u32) g   -> loss dx
//   fused_driver adamw DIR B1 B2 BC2 STEP EPS (N DECAY)... p g mv -> p mv
//     (one adamw_multi launch over the parameters, whose p, g and mv are
//     concatenated in the files)
//
// MODE:bf16 (rms, softmax, swiglu, rope, ce) runs the `_bf16` kernels: the
// activations are narrowed to bf16 on the way in (the files hold values that
// are already bf16, so nothing is lost) and widened on the way out; the
// files are f32 either way.
#include <type_traits>

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
template <class T = float>
static std::vector<T> out(size_t n) {
    if constexpr (std::is_same_v<T, float>) return std::vector<float>(n, NAN);
    else return std::vector<T>(n, __float2bfloat16(NAN));
}

// fused_cuda.rs: per_row (a block per row) and elementwise (capped grid-stride).
static dim3 per_row(size_t rows) { return {(unsigned)rows, 1, 1}; }
static dim3 elementwise(size_t n) {
    size_t g = (n + BLOCK - 1) / BLOCK;
    return {(unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g), 1, 1};
}
static const dim3 block{BLOCK, 1, 1};

// `F` for f32 activations, `B` for bf16 ones: the kernel the launcher picks.
#define PICK(T, F, B) if constexpr (std::is_same_v<T, float>) F; else B

template <class T>
static void run_rms(size_t rows, size_t d, float eps, size_t chunk) {
    auto x = read("x", rows * d), w = read("w", d);
    auto g = as<T>(read("g", rows * d));
    auto y = out<T>(rows * d);
    auto dx = out(rows * d), inv = out(rows), dw = out(d);
    emu::launch(per_row(rows), block, [&] {
        PICK(T, rms_norm_rows(x.data(), w.data(), y.data(), (int)d, eps),
             rms_norm_rows_bf16(x.data(), w.data(), y.data(), (int)d, eps));
    });
    emu::launch(per_row(rows), block, [&] {
        PICK(T, rms_norm_bwd_x_rows(x.data(), w.data(), g.data(), dx.data(), (int)d, eps),
             rms_norm_bwd_x_rows_bf16(x.data(), w.data(), g.data(), dx.data(), (int)d, eps));
    });
    // The _add kernels: acc + dx, the residual stream's folded sum.
    auto acc = read("acc", rows * d), dxacc = out(rows * d);
    emu::launch(per_row(rows), block, [&] {
        PICK(T, rms_norm_bwd_x_add_rows(x.data(), w.data(), g.data(), acc.data(), dxacc.data(), (int)d, eps),
             rms_norm_bwd_x_add_rows_bf16(x.data(), w.data(), g.data(), acc.data(), dxacc.data(), (int)d, eps));
    });
    emu::launch(per_row(rows), block, [&] { rms_inv_rows(x.data(), inv.data(), (int)d, eps); });
    const size_t chunks = (rows + chunk - 1) / chunk, cols = (d + BLOCK - 1) / BLOCK;
    auto partial = out(chunks * d);
    emu::launch({(unsigned)cols, (unsigned)chunks, 1}, block, [&] {
        PICK(T,
             rms_norm_bwd_w_partial(x.data(), g.data(), inv.data(), partial.data(), (int)rows, (int)d, (int)chunk),
             rms_norm_bwd_w_partial_bf16(x.data(), g.data(), inv.data(), partial.data(), (int)rows, (int)d,
                                         (int)chunk));
    });
    emu::launch({(unsigned)cols, 1, 1}, block, [&] { sum_columns(partial.data(), dw.data(), (int)chunks, (int)d); });
    write("y", widen(y)), write("dx", dx), write("dw", dw), write("dxacc", dxacc);
}

template <class T>
static void run_softmax(size_t rows, size_t t, size_t n, float scale) {
    auto x = as<T>(read("x", rows * n)), g = as<T>(read("g", rows * n));
    auto p = out<T>(rows * n), dx = out<T>(rows * n);
    emu::launch(per_row(rows), block, [&] {
        PICK(T, causal_softmax_rows(x.data(), p.data(), (int)t, (int)n, scale),
             causal_softmax_rows_bf16(x.data(), p.data(), (int)t, (int)n, scale));
    });
    emu::launch(per_row(rows), block, [&] {
        PICK(T, softmax_bwd_rows(p.data(), g.data(), dx.data(), (int)n, scale),
             softmax_bwd_rows_bf16(p.data(), g.data(), dx.data(), (int)n, scale));
    });
    write("p", widen(p)), write("dx", widen(dx));
}

template <class T>
static void run_swiglu(size_t n) {
    auto a = as<T>(read("a", n)), b = as<T>(read("b", n)), g = as<T>(read("g", n));
    auto y = out<T>(n), dadb = out<T>(2 * n);
    emu::launch(elementwise(n), block, [&] {
        PICK(T, swiglu(a.data(), b.data(), y.data(), n), swiglu_bf16(a.data(), b.data(), y.data(), n));
    });
    emu::launch(elementwise(n), block, [&] {
        PICK(T, swiglu_bwd(a.data(), b.data(), g.data(), dadb.data(), n),
             swiglu_bwd_bf16(a.data(), b.data(), g.data(), dadb.data(), n));
    });
    write("y", widen(y)), write("dadb", widen(dadb));
}

template <class T>
static void run_rope(size_t rows, size_t t, size_t per_pos, size_t half, float sign) {
    auto x = as<T>(read("x", rows * 2 * half));
    auto c = read("cos", t * half), s = read("sin", t * half);
    auto y = out<T>(rows * 2 * half);
    emu::launch(elementwise(rows * half), block, [&] {
        PICK(T, rope(x.data(), c.data(), s.data(), y.data(), rows, (int)t, (int)per_pos, (int)half, sign),
             rope_bf16(x.data(), c.data(), s.data(), y.data(), rows, (int)t, (int)per_pos, (int)half, sign));
    });
    write("y", widen(y));
}

template <class T>
static void run_ce(size_t n, size_t v) {
    auto x = as<T>(read("x", n * v));
    auto g = read("g", n);
    auto y = read<uint32_t>("y", n);
    auto loss = out(n);
    auto dx = out<T>(n * v);
    emu::launch(per_row(n), block, [&] {
        PICK(T, cross_entropy_rows_u32(x.data(), y.data(), loss.data(), (int)v),
             cross_entropy_rows_u32_bf16(x.data(), y.data(), loss.data(), (int)v));
    });
    emu::launch(per_row(n), block, [&] {
        PICK(T, cross_entropy_bwd_rows_u32(x.data(), y.data(), g.data(), dx.data(), (int)v),
             cross_entropy_bwd_rows_u32_bf16(x.data(), y.data(), g.data(), dx.data(), (int)v));
    });
    write("loss", loss), write("dx", widen(dx));
}

// The table fused_cuda.rs::adamw_multi builds, over host buffers: ARGS holds
// N DECAY pairs; the grid is the sum of the parameters' blocks.
static void run_adamw(float b1, float b2, float bc2, float step, float eps, int nargs, char** args) {
    std::vector<size_t> ns;
    std::vector<float> decays;
    for (int i = 0; i + 1 < nargs; i += 2) {
        ns.push_back((size_t)strtoull(args[i], nullptr, 10));
        decays.push_back(strtof(args[i + 1], nullptr));
    }
    size_t total = 0;
    for (size_t n : ns) total += n;
    auto p = read("p", total), g = read("g", total), mv = read("mv", 2 * total);
    std::vector<AdamWChunk> table;
    size_t at = 0, blocks = 0;
    for (size_t k = 0; k < ns.size(); k++) {
        table.push_back({p.data() + at, g.data() + at, mv.data() + 2 * at, ns[k], blocks, decays[k], 0.f});
        at += ns[k];
        blocks += (ns[k] + ADAMW_ELEMS - 1) / ADAMW_ELEMS;
    }
    emu::launch({(unsigned)blocks, 1, 1}, block, [&] {
        adamw_multi(table.data(), (int)table.size(), b1, b2, bc2, step, eps);
    });
    write("p", p);
    write("mv", mv);
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODE[:bf16] DIR PARAMS... (see the source)\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    bool bf = false;
    if (const size_t colon = mode.find(':'); colon != std::string::npos) {
        if (mode.substr(colon + 1) != "bf16") {
            fprintf(stderr, "unknown dtype in %s (expected MODE:bf16)\n", mode.c_str());
            return 2;
        }
        bf = true;
        mode.resize(colon);
    }
    dir = argv[2];
    auto arg = [&](int i) { return i < argc ? argv[i] : (fprintf(stderr, "missing argument %d\n", i), exit(2), ""); };
    auto num = [&](int i) { return (size_t)strtoull(arg(i), nullptr, 10); };
    auto flt = [&](int i) { return strtof(arg(i), nullptr); };
    // Runs the f32 or the bf16 instance of a mode.
#define BOTH(RUN, ...) (bf ? RUN<bf16>(__VA_ARGS__) : RUN<float>(__VA_ARGS__))
    if (mode == "rms") {
        BOTH(run_rms, num(3), num(4), flt(5), num(6));
    } else if (mode == "softmax") {
        BOTH(run_softmax, num(3), num(4), num(5), flt(6));
    } else if (mode == "swiglu") {
        BOTH(run_swiglu, num(3));
    } else if (mode == "rope") {
        BOTH(run_rope, num(3), num(4), num(5), num(6), flt(7));
    } else if (mode == "ce") {
        BOTH(run_ce, num(3), num(4));
    } else if (mode == "adamw" && !bf) {
        run_adamw(flt(3), flt(4), flt(5), flt(6), flt(7), argc - 8, argv + 8);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    return 0;
}
