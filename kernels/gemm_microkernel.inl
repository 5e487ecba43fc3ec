// Packing routines, register-blocked micro-kernel and macro-kernel, generic over a vector type.
//
// Included by each ISA translation unit inside an anonymous namespace and under that unit's
// `#pragma GCC target`, so every instantiation is private to the unit and compiled for its ISA.
// `Vec` provides: T, V, W (lanes), zero(), load(p), store(p, v), bcast(x), fma(a, b, c), add(a, b).
// No standard-library inline functions are used here (see gemm.h for why).

template <class Vec, int MR, int NV>
struct Blocked {
  using T = typename Vec::T;
  using V = typename Vec::V;
  static constexpr int W = Vec::W;
  static constexpr int NR = NV * W;

  static constexpr int64_t kLine = 64 / sizeof(T);  // elements per cache line
  static constexpr int64_t kAhead = 8;               // prefetch distance, in rows of a panel

  static inline int64_t lesser(int64_t a, int64_t b) { return a < b ? a : b; }

  static void pack_a(const T* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, T* dst) {
    // panel p holds rows p*MR .. p*MR+MR-1; within it, the MR values of column k sit together
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int64_t m = lesser(MR, mc - i0);
      const T* src = a + i0 * rs;
      if (cs == 1 && m == MR) {
        // rows are contiguous: walk each row once, scattering into the panel's stride-MR slots;
        // meanwhile ask for the next panel's rows, which the hardware prefetcher cannot guess
        if (i0 + 2 * MR <= mc)
          for (int i = 0; i < MR; ++i)
            for (int64_t k = 0; k < kc; k += kLine) __builtin_prefetch(src + (MR + i) * rs + k);
        for (int i = 0; i < MR; ++i) {
          const T* row = src + i * rs;
          for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = row[k];
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          // with rs == 1 each k reads a new row of the stored matrix: fetch a few ahead
          if (k + kAhead < kc) __builtin_prefetch(src + (k + kAhead) * cs);
          for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < m ? src[i * rs + k * cs] : T(0);
        }
      }
      dst += MR * kc;
    }
  }

  static void pack_b(const T* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, T* dst) {
    // panel q holds columns q*NR .. q*NR+NR-1; within it, the NR values of row k sit together
    for (int64_t j0 = 0; j0 < nc; j0 += NR) {
      const int64_t n = lesser(NR, nc - j0);
      const T* src = b + j0 * cs;
      if (cs == 1 && n == NR) {
        // rows of B are contiguous: each panel row is one straight copy; rows lie a page or
        // more apart, beyond the hardware prefetcher, so fetch a few rows ahead
        for (int64_t k = 0; k < kc; ++k) {
          const T* row = src + k * rs;
          if (k + kAhead < kc)
            for (int j = 0; j < NR; j += kLine) __builtin_prefetch(row + kAhead * rs + j);
          for (int j = 0; j < NR; ++j) dst[k * NR + j] = row[j];
        }
      } else if (rs == 1 && n == NR) {
        // columns of B are contiguous (B is a transposed row-major matrix): walk each column
        // once, and ask for the next panel's columns meanwhile
        if (j0 + 2 * NR <= nc)
          for (int j = 0; j < NR; ++j)
            for (int64_t k = 0; k < kc; k += kLine) __builtin_prefetch(src + (NR + j) * cs + k);
        for (int j = 0; j < NR; ++j) {
          const T* col = src + j * cs;
          for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = col[k];
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < n ? src[k * rs + j * cs] : T(0);
        }
      }
      dst += NR * kc;
    }
  }

  // C tile (m x n, m <= MR, n <= NR) (+)= A panel (kc x MR) . B panel (kc x NR).
  // The MR x NR accumulators live in registers: each step of k loads one row of the B panel
  // (NV vectors), broadcasts each of the MR values of the A panel's column k, and does MR*NV
  // fused multiply-adds -- a rank-1 update of the tile.
  static inline void micro(int64_t kc, const T* __restrict a, const T* __restrict b, T* c,
                           int64_t ldc, int64_t m, int64_t n, bool accumulate, const T* bias) {
    // fetch the C tile towards L1 now; it is read (accumulate) or written only after the k loop
    for (int r = 0; r < MR; ++r)
      for (int64_t j = 0; j < NR; j += 64 / static_cast<int64_t>(sizeof(T)))
        __builtin_prefetch(c + r * ldc + j, 1, 3);

    V acc[MR][NV];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = Vec::zero();

#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = Vec::load(b + v * W);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        const V av = Vec::bcast(a[r]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = Vec::fma(av, bv[v], acc[r][v]);
      }
      a += MR;
      b += NR;
    }

    if (m == MR && n == NR) {
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          T* p = c + r * ldc + v * W;
          V x = acc[r][v];
          if (accumulate) x = Vec::add(x, Vec::load(p));
          else if (bias) x = Vec::add(x, Vec::load(bias + v * W));
          Vec::store(p, x);
        }
      }
    } else {
      // ragged edge tile: spill the whole tile, then write back only the rows/columns that exist
      alignas(64) T tile[MR * NR];
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) Vec::store(tile + r * NR + v * W, acc[r][v]);
      for (int64_t r = 0; r < m; ++r) {
        T* row = c + r * ldc;
        for (int64_t j = 0; j < n; ++j) {
          const T base = accumulate ? row[j] : (bias ? bias[j] : T(0));
          row[j] = base + tile[r * NR + j];
        }
      }
    }
  }

  // C block (mc x nc) (+)= packed A block . packed B block, one micro-tile at a time. The outer
  // loop walks B panels so that each (kc x NR) B panel stays in L1 while all A panels stream by.
  static void macro(int64_t mc, int64_t nc, int64_t kc, const T* pa, const T* pb, T* c,
                    int64_t ldc, bool accumulate, const T* bias) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR) {
      const int64_t n = lesser(NR, nc - j0);
      const T* bpanel = pb + j0 * kc;
      for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        const int64_t m = lesser(MR, mc - i0);
        micro(kc, pa + i0 * kc, bpanel, c + i0 * ldc + j0, ldc, m, n, accumulate,
              bias ? bias + j0 : nullptr);
      }
    }
  }

  static gradviz::GemmKernel<T> table(const char* isa, int64_t mc, int64_t kc, int64_t nc) {
    return gradviz::GemmKernel<T>{isa, MR, NR, mc, kc, nc, &pack_a, &pack_b, &macro};
  }
};
