// AVX2 micro-kernels of the CPU GEMM: 6 x 16 (float32) and 6 x 8 (float64) register tiles.
//
// 12 ymm accumulators + 2 B vectors + 1 broadcast fit the 16 ymm registers. The whole unit is
// compiled for AVX2 + FMA with `#pragma GCC target`, not with -mavx2, so the rest of the
// extension stays portable; gemm_cpu.cpp only calls in here after checking the CPU at run time.
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

struct VecF32 {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V load(const T* p) { return _mm256_loadu_ps(p); }
  static inline void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static inline V bcast(T x) { return _mm256_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
};

struct VecF64 {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static inline V zero() { return _mm256_setzero_pd(); }
  static inline V load(const T* p) { return _mm256_loadu_pd(p); }
  static inline void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static inline V bcast(T x) { return _mm256_set1_pd(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_pd(a, b); }
};

#include "gemm_microkernel.inl"

using KernelF32 = Blocked<VecF32, 6, 2>;
using KernelF64 = Blocked<VecF64, 6, 2>;

}  // namespace

#pragma GCC pop_options

namespace gradviz {

const GemmKernel<float>* gemm_kernel_f32_avx2() {
  // B panel 256 x 16 floats = 16 KiB (L1), A block 192 x 256 floats = 192 KiB (L2)
  static const GemmKernel<float> k = KernelF32::table("avx2", 192, 256, 4096);
  return &k;
}

const GemmKernel<double>* gemm_kernel_f64_avx2() {
  static const GemmKernel<double> k = KernelF64::table("avx2", 96, 256, 2048);
  return &k;
}

}  // namespace gradviz

#else

namespace gradviz {
const GemmKernel<float>* gemm_kernel_f32_avx2() { return nullptr; }
const GemmKernel<double>* gemm_kernel_f64_avx2() { return nullptr; }
}  // namespace gradviz

#endif
