// AVX-512 micro-kernels of the CPU GEMM: 12 x 32 (float32) and 12 x 16 (float64) register tiles.
//
// 24 zmm accumulators + 2 B vectors + 1 broadcast fit the 32 zmm registers. The whole unit is
// compiled for AVX-512 with `#pragma GCC target`, not with -mavx512f, so the rest of the
// extension stays portable; gemm_cpu.cpp only calls in here after checking the CPU at run time.
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")

namespace {

struct VecF32 {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V load(const T* p) { return _mm512_loadu_ps(p); }
  static inline void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static inline V bcast(T x) { return _mm512_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
};

struct VecF64 {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  static inline V zero() { return _mm512_setzero_pd(); }
  static inline V load(const T* p) { return _mm512_loadu_pd(p); }
  static inline void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static inline V bcast(T x) { return _mm512_set1_pd(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_pd(a, b); }
};

#include "gemm_microkernel.inl"

using KernelF32 = Blocked<VecF32, 12, 2>;
using KernelF64 = Blocked<VecF64, 12, 2>;

}  // namespace

#pragma GCC pop_options

// Cache blocking; overridable with -D at build time for tuning experiments.
#ifndef GV_F32_MC
#define GV_F32_MC 240
#endif
#ifndef GV_F32_KC
#define GV_F32_KC 256
#endif
#ifndef GV_F64_MC
#define GV_F64_MC 120
#endif
#ifndef GV_F64_KC
#define GV_F64_KC 256
#endif

namespace gradviz {

const GemmKernel<float>* gemm_kernel_f32_avx512() {
  // B panel 256 x 32 floats = 32 KiB (L1), A block 240 x 256 floats = 240 KiB (L2)
  static const GemmKernel<float> k = KernelF32::table("avx512", GV_F32_MC, GV_F32_KC, 4096);
  return &k;
}

const GemmKernel<double>* gemm_kernel_f64_avx512() {
  static const GemmKernel<double> k = KernelF64::table("avx512", GV_F64_MC, GV_F64_KC, 2048);
  return &k;
}

}  // namespace gradviz

#else

namespace gradviz {
const GemmKernel<float>* gemm_kernel_f32_avx512() { return nullptr; }
const GemmKernel<double>* gemm_kernel_f64_avx512() { return nullptr; }
}  // namespace gradviz

#endif
