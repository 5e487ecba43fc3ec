// CPU GEMM driver: GotoBLAS-style cache blocking around the ISA-specific micro-kernels.
//
// C is split between the threads along its longer side (at::parallel_for, one region per
// product); each thread then runs this loop nest (C = A . B, sizes M x N x K) on its slice:
//   for each column block of C (nc wide)          -- B block lives in L2/L3
//     for each depth slice (kc deep)              -- packed panels are kc deep
//       pack B[slice, block] into nr-wide panels
//       for each row block of C (mc tall)
//         pack A[rows, slice] into mr-tall panels -- A block lives in L2
//         macro-kernel: every mr x nr tile of C += A panel . B panel, in registers
// The first depth slice overwrites C (adding the bias), later slices accumulate into it.
#include "gemm_cpu.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "gemm.h"

namespace gradviz {

namespace {

enum class Isa { portable = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "portable";
  }
}

// The best micro-kernel this CPU (and its operating system) can run, probed once.
Isa detected_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
    return Isa::portable;
  }();
  return isa;
}

// The detected ISA, lowered by GRADVIZ_CPU_ISA (read on every call so tests can switch paths).
Isa selected_isa() {
  const Isa best = detected_isa();
  const char* want = std::getenv("GRADVIZ_CPU_ISA");
  if (want == nullptr || *want == '\0') return best;
  Isa asked;
  if (std::strcmp(want, "avx512") == 0) asked = Isa::avx512;
  else if (std::strcmp(want, "avx2") == 0) asked = Isa::avx2;
  else if (std::strcmp(want, "portable") == 0) asked = Isa::portable;
  else TORCH_CHECK(false, "GRADVIZ_CPU_ISA must be avx512, avx2 or portable, got '", want, "'");
  TORCH_CHECK(static_cast<int>(asked) <= static_cast<int>(best), "GRADVIZ_CPU_ISA=", want,
              " but this CPU supports at most ", isa_name(best));
  return asked;
}

template <typename T>
const GemmKernel<T>* kernel_for(Isa isa);

template <>
const GemmKernel<float>* kernel_for<float>(Isa isa) {
  if (isa == Isa::avx512) return gemm_kernel_f32_avx512();
  if (isa == Isa::avx2) return gemm_kernel_f32_avx2();
  return gemm_kernel_f32_portable();
}

template <>
const GemmKernel<double>* kernel_for<double>(Isa isa) {
  if (isa == Isa::avx512) return gemm_kernel_f64_avx512();
  if (isa == Isa::avx2) return gemm_kernel_f64_avx2();
  return gemm_kernel_f64_portable();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline int64_t lesser(int64_t a, int64_t b) { return a < b ? a : b; }

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Cache-line aligned scratch, so that no vector load of a packed panel straddles two lines.
template <typename T>
std::unique_ptr<T, FreeDeleter> aligned_buffer(int64_t count) {
  const size_t bytes = static_cast<size_t>(round_up(count * static_cast<int64_t>(sizeof(T)), 64));
  void* p = std::aligned_alloc(64, bytes);
  TORCH_CHECK(p != nullptr, "gradviz: cannot allocate ", bytes, " bytes of GEMM scratch");
  return std::unique_ptr<T, FreeDeleter>(static_cast<T*>(p));
}

}  // namespace

std::string cpu_isa() { return isa_name(selected_isa()); }

namespace {

// The serial blocked GEMM on one thread's share of C, with that thread's packing buffers.
template <typename T>
void gemm_serial(const GemmKernel<T>& kern, int64_t M, int64_t N, int64_t K, const T* a,
                 int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs, int64_t b_cs, T* c,
                 int64_t ldc, const T* bias, T* pa, T* pb) {
  for (int64_t jc = 0; jc < N; jc += kern.nc) {
    const int64_t nc = lesser(kern.nc, N - jc);
    for (int64_t pc = 0; pc < K; pc += kern.kc) {
      const int64_t kc = lesser(kern.kc, K - pc);
      kern.pack_b(b + pc * b_rs + jc * b_cs, b_rs, b_cs, kc, nc, pb);
      // the first depth slice stores (plus the bias), later slices accumulate
      const bool accumulate = pc > 0;
      const T* block_bias = (!accumulate && bias) ? bias + jc : nullptr;
      for (int64_t ic = 0; ic < M; ic += kern.mc) {
        const int64_t mc = lesser(kern.mc, M - ic);
        kern.pack_a(a + ic * a_rs + pc * a_cs, a_rs, a_cs, mc, kc, pa);
        kern.macro(mc, nc, kc, pa, pb, c + ic * ldc + jc, ldc, accumulate, block_bias);
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
          int64_t b_rs, int64_t b_cs, T* c, int64_t ldc, const T* bias) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // an empty sum: every row of C is the bias (or zero)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = bias ? bias[j] : T(0);
    return;
  }
  const GemmKernel<T>& kern = *kernel_for<T>(selected_isa());

  // Split C between the threads along its longer side, in whole register tiles: each thread
  // packs its own panels and runs the blocked GEMM on its slice, so one parallel region with
  // no barrier inside does the whole product. (The other operand is packed by every thread;
  // that costs as much wall time as sharing its packing would, without the barriers.)
  const bool split_cols = N >= M;
  const int64_t unit = split_cols ? kern.nr : kern.mr;
  const int64_t units = ceil_div(split_cols ? N : M, unit);
  const bool tiny = M * N * K < (int64_t(1) << 18);  // below ~64^3 threads cost more than they give
  const int64_t parts = tiny ? 1 : lesser(lesser(at::get_num_threads(), units), 1 << 12);
  const int64_t per = ceil_div(units, parts) * unit;

  const int64_t kc_max = lesser(kern.kc, K);
  const int64_t mc_max = lesser(kern.mc, split_cols ? M : per);
  const int64_t nc_max = lesser(kern.nc, split_cols ? per : N);
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    auto abuf = aligned_buffer<T>(round_up(mc_max, kern.mr) * kc_max);
    auto bbuf = aligned_buffer<T>(round_up(nc_max, kern.nr) * kc_max);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = t * per;
      const int64_t hi = lesser(split_cols ? N : M, lo + per);
      if (lo >= hi) continue;
      if (split_cols) {
        gemm_serial<T>(kern, M, hi - lo, K, a, a_rs, a_cs, b + lo * b_cs, b_rs, b_cs, c + lo, ldc,
                       bias ? bias + lo : nullptr, abuf.get(), bbuf.get());
      } else {
        gemm_serial<T>(kern, hi - lo, N, K, a + lo * a_rs, a_rs, a_cs, b, b_rs, b_cs,
                       c + lo * ldc, ldc, bias, abuf.get(), bbuf.get());
      }
    }
  });
}

template <typename T>
void column_sums(int64_t M, int64_t N, const T* g, int64_t rs, int64_t cs, T* out) {
  // each thread sums a slice of columns down all rows, in double to keep float32 sums accurate
  at::parallel_for(0, N, 256, [&](int64_t j0, int64_t j1) {
    const int64_t width = j1 - j0;
    std::unique_ptr<double[]> acc(new double[width]());
    for (int64_t i = 0; i < M; ++i) {
      const T* row = g + i * rs + j0 * cs;
      if (cs == 1) {
        for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
      } else {
        for (int64_t j = 0; j < width; ++j) acc[j] += row[j * cs];
      }
    }
    for (int64_t j = 0; j < width; ++j) out[j0 + j] = static_cast<T>(acc[j]);
  });
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                          int64_t, int64_t, float*, int64_t, const float*);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double*, int64_t, const double*);
template void column_sums<float>(int64_t, int64_t, const float*, int64_t, int64_t, float*);
template void column_sums<double>(int64_t, int64_t, const double*, int64_t, int64_t, double*);

}  // namespace gradviz
