// Raw little-endian array files for the emulation drivers (attention_driver.cpp,
// fused_driver.cpp); any failure exits with status 2 and a message.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
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
