// AVX-512 micro-kernels of the CPU GEMM: 12 x 32 (float32) and 12 x 16 (float64) register tiles,
// and packing routines that transpose 16 x 16 (float32) or 8 x 8 (float64) blocks in registers.
//
// 24 zmm accumulators + 2 B vectors + 1 broadcast fit the 32 zmm registers. The whole unit is
// compiled for AVX-512 with `#pragma GCC target`, not with -mavx512f, so the rest of the
// extension stays portable; gemm_cpu.cpp only calls in here after checking the CPU at run time.
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
// GCC 12's AVX-512 unpack intrinsics pass _mm512_undefined_ps() as their merge source, which
// -Wmaybe-uninitialized reports as "'__Y' may be used uninitialized" inside the header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

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

// In-register transpose of a 16 x 16 float block: r[i] holds row i on entry, column i on exit.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // interleave pairs of rows: 2 x 2 blocks
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4 x 4 blocks
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lanes: 8 x 8 blocks
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {  // 256-bit halves: the whole block
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

// In-register transpose of an 8 x 8 double block: r[i] holds row i on entry, column i on exit.
inline void transpose8(__m512d r[8]) {
  __m512d t[8], u[8];
  for (int i = 0; i < 8; i += 2) {  // interleave pairs of rows: 2 x 2 blocks
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {  // 128-bit lanes: 4 x 4 blocks
    u[i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x88);
    u[i + 1] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0x88);
    u[i + 2] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xdd);
    u[i + 3] = _mm512_shuffle_f64x2(t[i + 1], t[i + 3], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {  // the whole block
    r[i] = _mm512_shuffle_f64x2(u[i], u[i + 4], 0x88);
    r[i + 4] = _mm512_shuffle_f64x2(u[i], u[i + 4], 0xdd);
  }
}

// pack_a for float64 with rows contiguous: 8 depths of the 12 rows at a time, as an 8 x 8 and
// an (8 x 4, zero-padded) transpose in registers.
void pack_a_f64(const double* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, double* dst) {
  constexpr int MR = 12;
  if (cs != 1) return KernelF64::pack_a(a, rs, cs, mc, kc, dst);
  const int64_t full = mc / MR * MR;
  for (int64_t i0 = 0; i0 < full; i0 += MR, dst += MR * kc) {
    const double* src = a + i0 * rs;
    if (i0 + 2 * MR <= mc)
      for (int i = 0; i < MR; ++i)
        for (int64_t k = 0; k < kc; k += 8) __builtin_prefetch(src + (MR + i) * rs + k);
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) {
      __m512d lo[8], hi[8];  // rows 0-7, and rows 8-11 padded with zeros
      for (int i = 0; i < 8; ++i) {
        lo[i] = _mm512_loadu_pd(src + i * rs + k0);
        hi[i] = i < MR - 8 ? _mm512_loadu_pd(src + (8 + i) * rs + k0) : _mm512_setzero_pd();
      }
      transpose8(lo);
      transpose8(hi);
      for (int kk = 0; kk < 8; ++kk) {
        _mm512_storeu_pd(dst + (k0 + kk) * MR, lo[kk]);
        _mm512_mask_storeu_pd(dst + (k0 + kk) * MR + 8, 0x0F, hi[kk]);
      }
    }
    for (; k0 < kc; ++k0)
      for (int i = 0; i < MR; ++i) dst[k0 * MR + i] = src[i * rs + k0];
  }
  if (full < mc) KernelF64::pack_a(a + full * rs, rs, cs, mc - full, kc, dst);
}

// pack_b for float64 with columns contiguous: 8 depths of 8 columns at a time.
void pack_b_f64(const double* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, double* dst) {
  constexpr int NR = 16;
  if (rs != 1) return KernelF64::pack_b(b, rs, cs, kc, nc, dst);
  const int64_t full = nc / NR * NR;
  for (int64_t j0 = 0; j0 < full; j0 += NR, dst += NR * kc) {
    const double* src = b + j0 * cs;
    if (j0 + 2 * NR <= nc)
      for (int j = 0; j < NR; ++j)
        for (int64_t k = 0; k < kc; k += 8) __builtin_prefetch(src + (NR + j) * cs + k);
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) {
      for (int half = 0; half < 2; ++half) {
        __m512d r[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm512_loadu_pd(src + (half * 8 + j) * cs + k0);
        transpose8(r);
        for (int kk = 0; kk < 8; ++kk) _mm512_storeu_pd(dst + (k0 + kk) * NR + half * 8, r[kk]);
      }
    }
    for (; k0 < kc; ++k0)
      for (int j = 0; j < NR; ++j) dst[k0 * NR + j] = src[j * cs + k0];
  }
  if (full < nc) KernelF64::pack_b(b + full * cs, rs, cs, kc, nc - full, dst);
}

// pack_a for float32 with rows contiguous (A = input or grad_output): 16 depths of the 12 rows
// at a time are transposed in registers and stored as 16 runs of 12, instead of 192 scalar
// stores. Other layouts and the ragged tail go to the generic routine.
void pack_a_f32(const float* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, float* dst) {
  constexpr int MR = 12;
  if (cs != 1) return KernelF32::pack_a(a, rs, cs, mc, kc, dst);
  const int64_t full = mc / MR * MR;
  for (int64_t i0 = 0; i0 < full; i0 += MR, dst += MR * kc) {
    const float* src = a + i0 * rs;
    if (i0 + 2 * MR <= mc)  // the next panel's rows, which the hardware prefetcher cannot guess
      for (int i = 0; i < MR; ++i)
        for (int64_t k = 0; k < kc; k += 16) __builtin_prefetch(src + (MR + i) * rs + k);
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16) {
      __m512 r[16];  // the 12 rows, and 4 rows of zeros to make the block square
      for (int i = 0; i < 16; ++i)
        r[i] = i < MR ? _mm512_loadu_ps(src + i * rs + k0) : _mm512_setzero_ps();
      transpose16(r);
      for (int kk = 0; kk < 16; ++kk) _mm512_mask_storeu_ps(dst + (k0 + kk) * MR, 0x0FFF, r[kk]);
    }
    for (; k0 < kc; ++k0)
      for (int i = 0; i < MR; ++i) dst[k0 * MR + i] = src[i * rs + k0];
  }
  if (full < mc) KernelF32::pack_a(a + full * rs, rs, cs, mc - full, kc, dst);
}

// pack_b for float32 with columns contiguous (B = weight^T in the forward): 16 depths of 16
// columns at a time are transposed in registers into two 16-wide halves of the 32-wide rows.
void pack_b_f32(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, float* dst) {
  constexpr int NR = 32;
  if (rs != 1) return KernelF32::pack_b(b, rs, cs, kc, nc, dst);
  const int64_t full = nc / NR * NR;
  for (int64_t j0 = 0; j0 < full; j0 += NR, dst += NR * kc) {
    const float* src = b + j0 * cs;
    if (j0 + 2 * NR <= nc)
      for (int j = 0; j < NR; ++j)
        for (int64_t k = 0; k < kc; k += 16) __builtin_prefetch(src + (NR + j) * cs + k);
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16) {
      for (int half = 0; half < 2; ++half) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(src + (half * 16 + j) * cs + k0);
        transpose16(r);
        for (int kk = 0; kk < 16; ++kk) _mm512_storeu_ps(dst + (k0 + kk) * NR + half * 16, r[kk]);
      }
    }
    for (; k0 < kc; ++k0)
      for (int j = 0; j < NR; ++j) dst[k0 * NR + j] = src[j * cs + k0];
  }
  if (full < nc) KernelF32::pack_b(b + full * cs, rs, cs, kc, nc - full, dst);
}

}  // namespace

#pragma GCC diagnostic pop
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
  static const GemmKernel<float> k = [] {
    GemmKernel<float> t = KernelF32::table("avx512", GV_F32_MC, GV_F32_KC, 4096);
    t.pack_a = &pack_a_f32;  // transposing packs in registers
    t.pack_b = &pack_b_f32;
    return t;
  }();
  return &k;
}

const GemmKernel<double>* gemm_kernel_f64_avx512() {
  static const GemmKernel<double> k = [] {
    GemmKernel<double> t = KernelF64::table("avx512", GV_F64_MC, GV_F64_KC, 2048);
    t.pack_a = &pack_a_f64;  // transposing packs in registers
    t.pack_b = &pack_b_f64;
    return t;
  }();
  return &k;
}

}  // namespace gradviz

#else

namespace gradviz {
const GemmKernel<float>* gemm_kernel_f32_avx512() { return nullptr; }
const GemmKernel<double>* gemm_kernel_f64_avx512() { return nullptr; }
}  // namespace gradviz

#endif
