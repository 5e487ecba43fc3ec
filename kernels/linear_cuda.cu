// CUDA kernels of the linear op: one tiled shared-memory GEMM for the three products and a
// column-sum reduction for grad_bias. Plain CUDA, no torch headers; see linear_cuda.h.
//
// GEMM: C (M x N) = op(A) (M x K) . op(B) (K x N) [+ bias], float32 or float64, any shape.
//   Each 256-thread block computes a 128 x 128 tile of C, walking K in slices of 8 (or, when
//   there would be fewer such tiles than SMs, a 64 x 64 tile in slices of 16). A slice of op(A)
//   and of op(B) is staged in shared memory, double-buffered: the next slice is fetched from
//   global memory into registers while the current one is multiplied. Each thread accumulates
//   an 8 x 8 (4 x 4) sub-tile in registers (rows {4ty..4ty+3, 64+4ty..}, columns {4tx..4tx+3,
//   64+4tx..}, so a warp's shared-memory reads are conflict-free float4s).
//   Global loads and stores are float4 when the leading dimension allows it and scalar,
//   bounds-checked ones on the ragged edges. The bias is added in the epilogue.
//   float64 (for gradcheck and finite differences, not for speed) runs the same kernel with the
//   64 x 64 tile only: an 8 x 8 tile of doubles would not fit in 128 registers. Its "float4"
//   accesses are pairs of double2.
// Layouts (row-major storage): A_T = false: A is M x K; A_T = true: A is K x M.
//                              B_T = false: B is K x N; B_T = true: B is N x K.
//   forward      output      = input . weight^T        A = input (M x K),   B_T: weight (N x K)
//   grad_input   grad_input  = grad_output . weight    A = grad_output,     B = weight
//   grad_weight  grad_weight = grad_output^T . input   A_T: grad_output,    B = input
#include "linear_cuda.h"

// Kernel launch. The host emulation the tests compile this file with
// (tests/kernels/cuda_emulation/) defines its own, running each block's threads on CPU threads.
#ifndef GV_LAUNCH
#define GV_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

namespace {

constexpr int THREADS = 256;  // 16 x 16 threads per block

// Block tile: H = 2 gives a 128 x 128 tile of C walked in slices 8 deep, each thread owning an
// 8 x 8 register tile (large products); H = 1 gives 64 x 64 tiles, 16 deep, 4 x 4 per thread:
// four times as many blocks, for products too small to fill the GPU with 128 x 128 tiles.
// Either way a slice of op(A) and one of op(B) hold 1024 values: 4 per thread to stage.
template <int H>
struct Tile {
  static constexpr int BM = 64 * H;  // rows of C per block
  static constexpr int BN = 64 * H;  // columns of C per block
  static constexpr int BK = 16 / H;  // depth of one shared-memory slice
  static constexpr int TM = 4 * H;   // rows (and columns) of C per thread
  static_assert(BM * BK == 4 * THREADS && BN * BK == 4 * THREADS, "4 + 4 values per thread");
};

// Shared-memory rows are padded by 4 floats: an operand transposed on its way in is written
// one value per thread down a column, and with unpadded rows (a multiple of 32 banks long)
// the two threads that share a column would write the same bank; a 4-float pad puts them 16
// banks apart. Rows stay 16-byte aligned for the float4 reads.
constexpr int PAD = 4;

template <typename T>
struct Frag {
  T v[4];
};

// Four consecutive values at a 16-byte aligned address: one float4, or two double2.
__device__ __forceinline__ void load_vec4(const float* p, float (&v)[4]) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  v[0] = x.x; v[1] = x.y; v[2] = x.z; v[3] = x.w;
}

__device__ __forceinline__ void load_vec4(const double* p, double (&v)[4]) {
  const double2 x = reinterpret_cast<const double2*>(p)[0];
  const double2 y = reinterpret_cast<const double2*>(p)[1];
  v[0] = x.x; v[1] = x.y; v[2] = y.x; v[3] = y.y;
}

__device__ __forceinline__ void store_vec4(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}

__device__ __forceinline__ void store_vec4(double* p, double a, double b, double c, double d) {
  reinterpret_cast<double2*>(p)[0] = make_double2(a, b);
  reinterpret_cast<double2*>(p)[1] = make_double2(c, d);
}

// a * b + c, rounded once
__device__ __forceinline__ float fused(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fused(double a, double b, double c) { return fma(a, b, c); }

template <typename T>
__device__ __forceinline__ void load4(const T* p, bool vector, bool in0, bool in1, bool in2,
                                      bool in3, Frag<T>& f) {
  if (vector) {
    load_vec4(p, f.v);
  } else {
    f.v[0] = in0 ? p[0] : T(0);
    f.v[1] = in1 ? p[1] : T(0);
    f.v[2] = in2 ? p[2] : T(0);
    f.v[3] = in3 ? p[3] : T(0);
  }
}

// Fetch this thread's 4 values of the op(A) slice [m0, m0+BM) x [k0, k0+BK) into registers:
// 4 consecutive values along whichever dimension is contiguous in memory.
template <typename T, int H, bool A_T>
__device__ __forceinline__ void fetch_a(const T* __restrict__ A, int64_t M, int64_t K,
                                        int64_t m0, int64_t k0, bool vec, Frag<T>& f) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!A_T) {
    // A is M x K, rows contiguous: thread t takes row t/(BK/4), depths 4*(t%(BK/4)) .. +3
    const int64_t m = m0 + t / (S::BK / 4), k = k0 + (t % (S::BK / 4)) * 4;
    const bool row = m < M;
    load4(A + m * K + k, vec && row && k + 3 < K, row && k < K, row && k + 1 < K,
          row && k + 2 < K, row && k + 3 < K, f);
  } else {
    // A is K x M, columns of op(A) contiguous: thread t takes depth t/(BM/4), rows 4*(...) .. +3
    const int64_t k = k0 + t / (S::BM / 4), m = m0 + (t % (S::BM / 4)) * 4;
    const bool row = k < K;
    load4(A + k * M + m, vec && row && m + 3 < M, row && m < M, row && m + 1 < M,
          row && m + 2 < M, row && m + 3 < M, f);
  }
}

// Fetch this thread's 4 values of the op(B) slice [k0, k0+BK) x [n0, n0+BN) into registers.
template <typename T, int H, bool B_T>
__device__ __forceinline__ void fetch_b(const T* __restrict__ B, int64_t N, int64_t K,
                                        int64_t n0, int64_t k0, bool vec, Frag<T>& f) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!B_T) {
    // B is K x N, rows contiguous: thread t takes depth t/(BN/4), columns 4*(t%(BN/4)) .. +3
    const int64_t k = k0 + t / (S::BN / 4), n = n0 + (t % (S::BN / 4)) * 4;
    const bool row = k < K;
    load4(B + k * N + n, vec && row && n + 3 < N, row && n < N, row && n + 1 < N,
          row && n + 2 < N, row && n + 3 < N, f);
  } else {
    // B is N x K: thread t takes column t/(BK/4), depths 4*(t%(BK/4)) .. +3
    const int64_t n = n0 + t / (S::BK / 4), k = k0 + (t % (S::BK / 4)) * 4;
    const bool row = n < N;
    load4(B + n * K + k, vec && row && k + 3 < K, row && k < K, row && k + 1 < K,
          row && k + 2 < K, row && k + 3 < K, f);
  }
}

// Write the fetched values into shared memory, laid out depth-major: As[k][m], Bs[k][n].
template <typename T, int H, bool A_T>
__device__ __forceinline__ void stage_a(T (*As)[Tile<H>::BM + PAD], const Frag<T>& f) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!A_T) {
#pragma unroll
    for (int i = 0; i < 4; ++i)  // transpose on the way in
      As[(t % (S::BK / 4)) * 4 + i][t / (S::BK / 4)] = f.v[i];
  } else {
    store_vec4(&As[t / (S::BM / 4)][(t % (S::BM / 4)) * 4], f.v[0], f.v[1], f.v[2], f.v[3]);
  }
}

template <typename T, int H, bool B_T>
__device__ __forceinline__ void stage_b(T (*Bs)[Tile<H>::BN + PAD], const Frag<T>& f) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!B_T) {
    store_vec4(&Bs[t / (S::BN / 4)][(t % (S::BN / 4)) * 4], f.v[0], f.v[1], f.v[2], f.v[3]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)  // transpose on the way in
      Bs[(t % (S::BK / 4)) * 4 + i][t / (S::BK / 4)] = f.v[i];
  }
}

// This thread's first value of the op(A) slice at depth 0, for a tile that lies inside A, and
// how far it moves from one slice to the next (same mapping as fetch_a).
template <typename T, int H, bool A_T>
__device__ __forceinline__ const T* slice_ptr_a(const T* A, int64_t M, int64_t K,
                                                    int64_t m0, int64_t& step) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!A_T) {
    step = S::BK;
    return A + (m0 + t / (S::BK / 4)) * K + (t % (S::BK / 4)) * 4;
  }
  step = S::BK * M;
  return A + static_cast<int64_t>(t / (S::BM / 4)) * M + m0 + (t % (S::BM / 4)) * 4;
}

template <typename T, int H, bool B_T>
__device__ __forceinline__ const T* slice_ptr_b(const T* B, int64_t N, int64_t K,
                                                    int64_t n0, int64_t& step) {
  using S = Tile<H>;
  const int t = threadIdx.x;
  if (!B_T) {
    step = S::BK * N;
    return B + static_cast<int64_t>(t / (S::BN / 4)) * N + n0 + (t % (S::BN / 4)) * 4;
  }
  step = S::BK;
  return B + (n0 + t / (S::BK / 4)) * K + (t % (S::BK / 4)) * 4;
}

template <typename T>
__device__ __forceinline__ void load4_fast(const T* p, Frag<T>& f) {
  load_vec4(p, f.v);
}

// acc += (slice of op(A)) . (slice of op(B)): BK rank-1 updates of the register tile, each with
// a column of op(A) and a row of op(B) read from shared memory as float4s.
template <typename T, int H>
__device__ __forceinline__ void multiply_slice(const T (*As)[Tile<H>::BM + PAD],
                                               const T (*Bs)[Tile<H>::BN + PAD],
                                               T (&acc)[Tile<H>::TM][Tile<H>::TM], int tx,
                                               int ty) {
  using S = Tile<H>;
  constexpr int TM = S::TM;
#pragma unroll
  for (int k = 0; k < S::BK; ++k) {
    T a[TM], b[TM];
#pragma unroll
    for (int h = 0; h < H; ++h) {
      T av[4], bv[4];
      load_vec4(&As[k][h * 64 + ty * 4], av);
      load_vec4(&Bs[k][h * 64 + tx * 4], bv);
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        a[4 * h + r] = av[r];
        b[4 * h + r] = bv[r];
      }
    }
    // a rank-1 update: acc += (column of op(A)) (row of op(B))
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TM; ++j) acc[i][j] = fused(a[i], b[j], acc[i][j]);
  }
}

// C = op(A) . op(B) [+ bias] for one block tile. Thread (tx, ty) owns rows
// {h*64 + 4*ty + r} and columns {h*64 + 4*tx + c} (h < H, r, c < 4) of the tile.
//
// The K loop runs in two phases. A block whose tile lies inside C, with float4-readable
// operands, first walks every whole slice with unchecked float4 loads through two pointers
// that advance by a constant step (no index arithmetic, no bounds tests: almost every
// instruction of that loop is an FFMA or a shared-memory load). The last slices, and every
// slice of an edge block, take the bounds-checked loads of fetch_a/fetch_b.
template <typename T, int H, bool A_T, bool B_T>
__global__ void __launch_bounds__(THREADS, 2)  // <= 128 registers: two blocks per SM
gemm_kernel(const T* __restrict__ A, const T* __restrict__ B, const T* __restrict__ bias,
            T* __restrict__ C, int64_t M, int64_t N, int64_t K, bool vec_a, bool vec_b,
            bool vec_c) {
  using S = Tile<H>;
  constexpr int TM = S::TM;
  __shared__ __align__(16) T As[2][S::BK][S::BM + PAD];
  __shared__ __align__(16) T Bs[2][S::BK][S::BN + PAD];

  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * S::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * S::BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  T acc[TM][TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) acc[i][j] = T(0);

  // depths [0, k_fast) are whole slices of a tile that lies inside op(A) and op(B)
  const bool inside = vec_a && vec_b && m0 + S::BM <= M && n0 + S::BN <= N;
  const int64_t k_fast = inside ? K - K % S::BK : 0;
  int64_t step_a, step_b;
  const T* pa = slice_ptr_a<T, H, A_T>(A, M, K, m0, step_a);
  const T* pb = slice_ptr_b<T, H, B_T>(B, N, K, n0, step_b);

  Frag<T> fa, fb;
  if (k_fast > 0) {
    load4_fast(pa, fa);
    load4_fast(pb, fb);
  } else {
    fetch_a<T, H, A_T>(A, M, K, m0, 0, vec_a, fa);
    fetch_b<T, H, B_T>(B, N, K, n0, 0, vec_b, fb);
  }
  stage_a<T, H, A_T>(As[0], fa);
  stage_b<T, H, B_T>(Bs[0], fb);
  __syncthreads();

  int buf = 0;
  int64_t k0 = 0;
  // phase 1: the next slice is whole and inside, so it is read without checks. Two slices
  // per trip, buffer 0 then buffer 1, so that every shared-memory address is a constant.
  for (; k0 + 2 * S::BK < k_fast; k0 += 2 * S::BK) {
#pragma unroll
    for (int b = 0; b < 2; ++b) {
      pa += step_a;
      pb += step_b;
      // issue the next slice's global loads now; they land while this slice is multiplied
      load4_fast(pa, fa);
      load4_fast(pb, fb);
      multiply_slice<T, H>(As[b], Bs[b], acc, tx, ty);
      // the other buffer was last read before the previous barrier, so it is free to overwrite
      stage_a<T, H, A_T>(As[b ^ 1], fa);
      stage_b<T, H, B_T>(Bs[b ^ 1], fb);
      __syncthreads();
    }
  }
  // phase 2: the remaining slices, with bounds-checked loads
  for (; k0 < K; k0 += S::BK) {
    const bool more = k0 + S::BK < K;
    if (more) {
      fetch_a<T, H, A_T>(A, M, K, m0, k0 + S::BK, vec_a, fa);
      fetch_b<T, H, B_T>(B, N, K, n0, k0 + S::BK, vec_b, fb);
    }
    multiply_slice<T, H>(As[buf], Bs[buf], acc, tx, ty);
    if (more) {
      stage_a<T, H, A_T>(As[buf ^ 1], fa);
      stage_b<T, H, B_T>(Bs[buf ^ 1], fb);
    }
    __syncthreads();
    buf ^= 1;
  }

  // epilogue: add the bias and store, float4 where the row allows it
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + (i / 4) * 64 + ty * 4 + (i % 4);
    if (m >= M) continue;
#pragma unroll
    for (int h = 0; h < H; ++h) {
      const int64_t n = n0 + h * 64 + tx * 4;
      T out[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const T add = (bias != nullptr && n + j < N) ? bias[n + j] : T(0);
        out[j] = acc[i][h * 4 + j] + add;
      }
      T* p = C + m * N + n;
      if (vec_c && n + 3 < N) {
        store_vec4(p, out[0], out[1], out[2], out[3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (n + j < N) p[j] = out[j];
      }
    }
  }
}

// out[j] = sum_i G[i, j]: 32 columns per block, 8 row-strided partial sums per column,
// accumulated in double and combined in shared memory.
template <typename T>
__global__ void column_sum_kernel(const T* __restrict__ G, T* __restrict__ out, int64_t M,
                                  int64_t N) {
  __shared__ double part[8][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  double s = 0.0;
  if (col < N)
    for (int64_t i = threadIdx.y; i < M; i += 8) s += G[i * N + col];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < N) {
    double t = 0.0;
#pragma unroll
    for (int y = 0; y < 8; ++y) t += part[y][threadIdx.x];
    out[col] = static_cast<T>(t);
  }
}

// float4 (double2) access is safe when the base is 16-byte aligned and every row starts 16-byte
// aligned (a row length that is a multiple of 4 values keeps every 4th value so)
bool vec_ok(const void* p, int64_t ld) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0 && ld % 4 == 0;
}

// Streaming multiprocessors of the current device (0 if it cannot be asked).
int sm_count() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();  // clear the error so that it is not blamed on the next launch
    return 0;
  }
  return count;
}

template <typename T, int H, bool A_T, bool B_T>
void launch_tiles(const T* A, const T* B, const T* bias, T* C, int64_t M, int64_t N, int64_t K,
                  bool vec_a, bool vec_b, cudaStream_t stream) {
  using S = Tile<H>;
  const dim3 grid(static_cast<unsigned>((N + S::BN - 1) / S::BN),
                  static_cast<unsigned>((M + S::BM - 1) / S::BM));
  void (*kernel)(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t, bool, bool, bool) =
      gemm_kernel<T, H, A_T, B_T>;
  GV_LAUNCH(kernel, grid, THREADS, stream, A, B, bias, C, M, N, K, vec_a, vec_b, vec_ok(C, N));
}

template <typename T, bool A_T, bool B_T>
cudaError_t launch_gemm(const T* A, const T* B, const T* bias, T* C, int64_t M, int64_t N,
                        int64_t K, bool vec_a, bool vec_b, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  if constexpr (sizeof(T) == sizeof(float)) {
    // 128 x 128 tiles when there are at least as many of them as SMs, else 64 x 64 tiles
    const int64_t big_tiles = ((M + 127) / 128) * ((N + 127) / 128);
    if (big_tiles >= sm_count()) {
      launch_tiles<T, 2, A_T, B_T>(A, B, bias, C, M, N, K, vec_a, vec_b, stream);
      return cudaGetLastError();
    }
  }
  launch_tiles<T, 1, A_T, B_T>(A, B, bias, C, M, N, K, vec_a, vec_b, stream);
  return cudaGetLastError();
}

// The three products of the linear op in terms of the GEMM (see the layouts at the top).
template <typename T>
cudaError_t forward(const T* input, const T* weight, const T* bias, T* output, int64_t M,
                    int64_t N, int64_t K, cudaStream_t stream) {
  // A = input (M x K, rows of length K), B^T = weight (N x K, rows of length K)
  return launch_gemm<T, false, true>(input, weight, bias, output, M, N, K, vec_ok(input, K),
                                     vec_ok(weight, K), stream);
}

template <typename T>
cudaError_t grad_input(const T* grad_output, const T* weight, T* grad_input, int64_t M, int64_t N,
                       int64_t K, cudaStream_t stream) {
  // C (M x K) = grad_output (M x N) . weight (N x K): the GEMM's depth is N, its width K
  return launch_gemm<T, false, false>(grad_output, weight, nullptr, grad_input, M, K, N,
                                      vec_ok(grad_output, N), vec_ok(weight, K), stream);
}

template <typename T>
cudaError_t grad_weight(const T* grad_output, const T* input, T* grad_weight, int64_t M,
                        int64_t N, int64_t K, cudaStream_t stream) {
  // C (N x K) = grad_output^T (N x M) . input (M x K): the GEMM's depth is the batch M;
  // grad_output is stored M x N, i.e. as the transpose of the GEMM's left operand
  return launch_gemm<T, true, false>(grad_output, input, nullptr, grad_weight, N, K, M,
                                     vec_ok(grad_output, N), vec_ok(input, K), stream);
}

template <typename T>
cudaError_t grad_bias(const T* grad_output, T* grad_bias, int64_t M, int64_t N,
                      cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((N + 31) / 32));
  void (*kernel)(const T*, T*, int64_t, int64_t) = column_sum_kernel<T>;
  GV_LAUNCH(kernel, grid, block, stream, grad_output, grad_bias, M, N);
  return cudaGetLastError();
}

}  // namespace

// The entry points (linear_cuda.h), one per product and dtype.
extern "C" cudaError_t gradviz_linear_forward_f32(const float* input, const float* weight,
                                                  const float* bias, float* output, int64_t M,
                                                  int64_t N, int64_t K, cudaStream_t stream) {
  return forward(input, weight, bias, output, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_input_f32(const float* grad_output, const float* weight,
                                                     float* grad_input_, int64_t M, int64_t N,
                                                     int64_t K, cudaStream_t stream) {
  return grad_input(grad_output, weight, grad_input_, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_weight_f32(const float* grad_output, const float* input,
                                                      float* grad_weight_, int64_t M, int64_t N,
                                                      int64_t K, cudaStream_t stream) {
  return grad_weight(grad_output, input, grad_weight_, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_bias_f32(const float* grad_output, float* grad_bias_,
                                                    int64_t M, int64_t N, cudaStream_t stream) {
  return grad_bias(grad_output, grad_bias_, M, N, stream);
}

extern "C" cudaError_t gradviz_linear_forward_f64(const double* input, const double* weight,
                                                  const double* bias, double* output, int64_t M,
                                                  int64_t N, int64_t K, cudaStream_t stream) {
  return forward(input, weight, bias, output, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_input_f64(const double* grad_output, const double* weight,
                                                     double* grad_input_, int64_t M, int64_t N,
                                                     int64_t K, cudaStream_t stream) {
  return grad_input(grad_output, weight, grad_input_, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_weight_f64(const double* grad_output, const double* input,
                                                      double* grad_weight_, int64_t M, int64_t N,
                                                      int64_t K, cudaStream_t stream) {
  return grad_weight(grad_output, input, grad_weight_, M, N, K, stream);
}

extern "C" cudaError_t gradviz_linear_grad_bias_f64(const double* grad_output, double* grad_bias_,
                                                    int64_t M, int64_t N, cudaStream_t stream) {
  return grad_bias(grad_output, grad_bias_, M, N, stream);
}
