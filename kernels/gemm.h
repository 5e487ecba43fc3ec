// Hand-written CPU GEMM of the linear op: interface shared by the ISA-specific kernels and the driver.
//
// C (M x N, row-major, leading dimension ldc) = A (M x K) . B (K x N) [+ bias broadcast over rows].
// A and B are read through arbitrary element strides, so transposed and non-contiguous operands
// need no copy: the packing routines gather them into contiguous panels.
//
// This header includes no torch header and defines no inline code, so the ISA translation units
// (compiled under `#pragma GCC target`) cannot leak wide instructions into shared inline functions.
#pragma once
#include <cstdint>

namespace gradviz {

// One register-blocked micro-kernel with its packing routines and preferred cache blocking.
template <typename T>
struct GemmKernel {
  const char* isa;  // "avx512", "avx2" or "portable"
  int mr;           // rows of C held in registers by the micro-kernel
  int nr;           // columns of C held in registers by the micro-kernel
  int64_t mc;       // rows of a packed A block (sized for L2)
  int64_t kc;       // depth of packed panels (one B micro-panel kc x nr sized for L1)
  int64_t nc;       // columns of a packed B block (sized for L3)
  // Gather A[0:mc, 0:kc] (element (i, k) at a[i*rs + k*cs]) into ceil(mc/mr) panels of kc x mr,
  // zero-padding the last panel's missing rows.
  void (*pack_a)(const T* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, T* dst);
  // Gather B[0:kc, 0:nc] (element (k, j) at b[k*rs + j*cs]) into ceil(nc/nr) panels of kc x nr.
  void (*pack_b)(const T* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, T* dst);
  // C[0:mc, 0:nc] (+)= packed A . packed B. With accumulate == false C is overwritten, plus bias[j]
  // when bias is not null; with accumulate == true the product is added to C.
  void (*macro)(int64_t mc, int64_t nc, int64_t kc, const T* pa, const T* pb, T* c, int64_t ldc,
                bool accumulate, const T* bias);
};

// Micro-kernels per instruction set; the avx ones return nullptr when not compiled for x86-64.
const GemmKernel<float>* gemm_kernel_f32_avx512();
const GemmKernel<double>* gemm_kernel_f64_avx512();
const GemmKernel<float>* gemm_kernel_f32_avx2();
const GemmKernel<double>* gemm_kernel_f64_avx2();
const GemmKernel<float>* gemm_kernel_f32_portable();
const GemmKernel<double>* gemm_kernel_f64_portable();

}  // namespace gradviz
