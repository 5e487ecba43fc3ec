// CPU GEMM driver of the linear op (cache blocking + parallel loops around the micro-kernels).
#pragma once
#include <cstdint>
#include <string>

namespace gradviz {

// C (M x N, row-major, leading dimension ldc) = A . B [+ bias over rows], where element (i, k)
// of A is a[i*a_rs + k*a_cs] and element (k, j) of B is b[k*b_rs + j*b_cs]; bias may be null.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
          int64_t b_rs, int64_t b_cs, T* c, int64_t ldc, const T* bias);

// Name of the micro-kernel gemm() uses now: "avx512", "avx2" or "portable".
std::string cpu_isa();

// Column sums of G (M x N, element (i, j) at g[i*rs + j*cs]) into out[0:N].
template <typename T>
void column_sums(int64_t M, int64_t N, const T* g, int64_t rs, int64_t cs, T* out);

}  // namespace gradviz
