// Raw little-endian array files for the emulation drivers (attention_driver.cpp,
// fused_driver.cpp); any failure exits with status 2 and a message. Include
// after emu.h (for __nv_bfloat16).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

template <class T = float>
std::vector<T> read_array(const std::string& path, size_t n) {
    std::vector<T> v(n);
    FILE* f = fopen(path.c_str(), "rb");
    if (!f || fread(v.data(), sizeof(T), n, f) != n) {
        fprintf(stderr, "cannot read %zu values from %s\n", n, path.c_str());
        exit(2);
    }
    fclose(f);
    return v;
}

inline void write_array(const std::string& path, const std::vector<float>& v) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f || fwrite(v.data(), sizeof(float), v.size(), f) != v.size()) {
        fprintf(stderr, "cannot write %s\n", path.c_str());
        exit(2);
    }
    fclose(f);
}

// f32 file contents as kernel arguments of type T (float, or bf16: the files
// hold bf16 values then, so narrowing loses nothing), and back.
template <class T>
std::vector<T> as(const std::vector<float>& v) {
    if constexpr (std::is_same_v<T, float>) return v;
    else {
        std::vector<T> r(v.size());
        for (size_t i = 0; i < v.size(); ++i) r[i] = __float2bfloat16(v[i]);
        return r;
    }
}
inline std::vector<float> widen(const std::vector<float>& v) { return v; }
inline std::vector<float> widen(const std::vector<__nv_bfloat16>& v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = __bfloat162float(v[i]);
    return r;
}
