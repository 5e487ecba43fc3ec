// CPU GEMM driver: GotoBLAS-style cache blocking around the ISA-specific micro-kernels.
//
// Loop nest (C = A . B, sizes M x N x K):
//   for each column block of C (nc wide)          -- B block lives in L3
//     for each depth slice (kc deep)              -- packed panels are kc deep
//       pack B[slice, block] into nr-wide panels  (parallel over panels)
//       for each row block of C (mc tall)         (parallel over row blocks x column slices)
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
  const int64_t mr = kern.mr, nr = kern.nr;
  const int64_t threads = lesser(at::get_num_threads(), 1 << 16);

  // Row blocks: at most kern.mc tall, and a multiple of the thread count in number (when there
  // are enough row panels) so that every thread gets the same amount of work.
  int64_t n_ic = ceil_div(M, kern.mc);
  n_ic = lesser(round_up(n_ic, threads), ceil_div(M, mr));
  const int64_t mc = round_up(ceil_div(M, n_ic), mr);
  n_ic = ceil_div(M, mc);
  // Too few row blocks to busy every thread (a short batch): also split the columns.
  const int64_t n_jt = n_ic >= threads ? 1 : ceil_div(threads, n_ic);

  const int64_t kc_max = lesser(kern.kc, K);
  const int64_t nc_max = lesser(kern.nc, N);
  auto bbuf = aligned_buffer<T>(round_up(nc_max, nr) * kc_max);
  T* pb = bbuf.get();

  for (int64_t jc = 0; jc < N; jc += nc_max) {
    const int64_t nc = lesser(nc_max, N - jc);
    const int64_t n_panels = ceil_div(nc, nr);
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = lesser(kc_max, K - pc);
      at::parallel_for(0, n_panels, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t j0 = p * nr;
          kern.pack_b(b + pc * b_rs + (jc + j0) * b_cs, b_rs, b_cs, kc, lesser(nr, nc - j0),
                      pb + j0 * kc);
        }
      });
      const bool accumulate = pc > 0;
      const T* block_bias = (!accumulate && bias) ? bias + jc : nullptr;
      const int64_t panels_per_slice = ceil_div(n_panels, n_jt);
      at::parallel_for(0, n_ic * n_jt, 1, [&](int64_t t0, int64_t t1) {
        auto abuf = aligned_buffer<T>(mc * kc);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t i0 = (t / n_jt) * mc;
          const int64_t m = lesser(mc, M - i0);
          const int64_t q0 = (t % n_jt) * panels_per_slice;
          const int64_t q1 = lesser(n_panels, q0 + panels_per_slice);
          if (q0 >= q1) continue;
          const int64_t j0 = q0 * nr;
          const int64_t n = lesser(nc, q1 * nr) - j0;
          kern.pack_a(a + i0 * a_rs + pc * a_cs, a_rs, a_cs, m, kc, abuf.get());
          kern.macro(m, n, kc, abuf.get(), pb + j0 * kc, c + i0 * ldc + jc + j0, ldc, accumulate,
                     block_bias ? block_bias + j0 : nullptr);
        }
      });
    }
  }
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
