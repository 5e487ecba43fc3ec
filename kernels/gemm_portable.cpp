// Portable micro-kernels of the CPU GEMM: plain C++ scalar code, 4 x 8 register tiles.
//
// Used where the CPU has no AVX2 (or on other architectures); the compiler's baseline
// auto-vectorisation is all it gets. Also a reference for the tests of the vector kernels.
#include "gemm.h"

namespace {

template <typename Scalar>
struct VecScalar {
  using T = Scalar;
  using V = Scalar;
  static constexpr int W = 1;
  static inline V zero() { return V(0); }
  static inline V load(const T* p) { return *p; }
  static inline void store(T* p, V v) { *p = v; }
  static inline V bcast(T x) { return x; }
  static inline V fma(V a, V b, V c) { return a * b + c; }
  static inline V add(V a, V b) { return a + b; }
};

#include "gemm_microkernel.inl"

using KernelF32 = Blocked<VecScalar<float>, 4, 8>;
using KernelF64 = Blocked<VecScalar<double>, 4, 8>;

}  // namespace

namespace gradviz {

const GemmKernel<float>* gemm_kernel_f32_portable() {
  static const GemmKernel<float> k = KernelF32::table("portable", 128, 256, 2048);
  return &k;
}

const GemmKernel<double>* gemm_kernel_f64_portable() {
  static const GemmKernel<double> k = KernelF64::table("portable", 128, 256, 2048);
  return &k;
}

}  // namespace gradviz
