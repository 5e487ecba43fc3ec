// CUDA kernels of the linear op: one tiled shared-memory GEMM for the three products and a
// column-sum reduction for grad_bias. Plain CUDA, no torch headers; see linear_cuda.h.
//
// GEMM: C (M x N) = op(A) (M x K) . op(B) (K x N) [+ bias], float32, any shape.
//   Each 256-thread block computes a 128 x 128 tile of C, walking K in slices of 8. A slice of
//   op(A) (128 x 8) and of op(B) (8 x 128) is staged in shared memory, double-buffered: the next
//   slice is fetched from global memory into registers while the current one is multiplied.
//   Each thread accumulates an 8 x 8 sub-tile in registers (rows {4ty..4ty+3, 64+4ty..}, columns
//   {4tx..4tx+3, 64+4tx..}, so a warp's shared-memory reads are conflict-free float4s).
//   Global loads and stores are float4 when the leading dimension allows it and scalar,
//   bounds-checked ones on the ragged edges. The bias is added in the epilogue.
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

constexpr int BM = 128;  // rows of C per block
constexpr int BN = 128;  // columns of C per block
constexpr int BK = 8;    // depth of one shared-memory slice
constexpr int THREADS = 256;
static_assert(BM * BK == 4 * THREADS && BN * BK == 4 * THREADS, "each thread stages 4 + 4 values");

struct Frag {
  float v[4];
};

// Fetch this thread's 4 values of the op(A) slice [m0, m0+BM) x [k0, k0+BK) into registers.
template <bool A_T>
__device__ __forceinline__ void fetch_a(const float* __restrict__ A, int64_t M, int64_t K,
                                        int64_t m0, int64_t k0, bool vec, Frag& f) {
  const int t = threadIdx.x;
  if (!A_T) {
    // A is M x K: thread t takes row t/2, depths 4*(t%2) .. +3 (contiguous in memory)
    const int64_t m = m0 + t / 2, k = k0 + (t % 2) * 4;
    const float* p = A + m * K + k;
    if (vec && m < M && k + 3 < K) {
      const float4 x = *reinterpret_cast<const float4*>(p);
      f.v[0] = x.x; f.v[1] = x.y; f.v[2] = x.z; f.v[3] = x.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) f.v[i] = (m < M && k + i < K) ? p[i] : 0.f;
    }
  } else {
    // A is K x M: thread t takes depth t/32, rows 4*(t%32) .. +3 (contiguous in memory)
    const int64_t k = k0 + t / 32, m = m0 + (t % 32) * 4;
    const float* p = A + k * M + m;
    if (vec && k < K && m + 3 < M) {
      const float4 x = *reinterpret_cast<const float4*>(p);
      f.v[0] = x.x; f.v[1] = x.y; f.v[2] = x.z; f.v[3] = x.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) f.v[i] = (k < K && m + i < M) ? p[i] : 0.f;
    }
  }
}

// Fetch this thread's 4 values of the op(B) slice [k0, k0+BK) x [n0, n0+BN) into registers.
template <bool B_T>
__device__ __forceinline__ void fetch_b(const float* __restrict__ B, int64_t N, int64_t K,
                                        int64_t n0, int64_t k0, bool vec, Frag& f) {
  const int t = threadIdx.x;
  if (!B_T) {
    // B is K x N: thread t takes depth t/32, columns 4*(t%32) .. +3
    const int64_t k = k0 + t / 32, n = n0 + (t % 32) * 4;
    const float* p = B + k * N + n;
    if (vec && k < K && n + 3 < N) {
      const float4 x = *reinterpret_cast<const float4*>(p);
      f.v[0] = x.x; f.v[1] = x.y; f.v[2] = x.z; f.v[3] = x.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) f.v[i] = (k < K && n + i < N) ? p[i] : 0.f;
    }
  } else {
    // B is N x K: thread t takes column t/2, depths 4*(t%2) .. +3
    const int64_t n = n0 + t / 2, k = k0 + (t % 2) * 4;
    const float* p = B + n * K + k;
    if (vec && n < N && k + 3 < K) {
      const float4 x = *reinterpret_cast<const float4*>(p);
      f.v[0] = x.x; f.v[1] = x.y; f.v[2] = x.z; f.v[3] = x.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) f.v[i] = (n < N && k + i < K) ? p[i] : 0.f;
    }
  }
}

// Write the fetched values into shared memory, laid out depth-major: As[k][m], Bs[k][n].
template <bool A_T>
__device__ __forceinline__ void stage_a(float (*As)[BM], const Frag& f) {
  const int t = threadIdx.x;
  if (!A_T) {
#pragma unroll
    for (int i = 0; i < 4; ++i) As[(t % 2) * 4 + i][t / 2] = f.v[i];  // transpose on the way in
  } else {
    *reinterpret_cast<float4*>(&As[t / 32][(t % 32) * 4]) =
        make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
  }
}

template <bool B_T>
__device__ __forceinline__ void stage_b(float (*Bs)[BN], const Frag& f) {
  const int t = threadIdx.x;
  if (!B_T) {
    *reinterpret_cast<float4*>(&Bs[t / 32][(t % 32) * 4]) =
        make_float4(f.v[0], f.v[1], f.v[2], f.v[3]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) Bs[(t % 2) * 4 + i][t / 2] = f.v[i];  // transpose on the way in
  }
}

template <bool A_T, bool B_T>
__global__ void __launch_bounds__(THREADS, 2)  // <= 128 registers: two blocks per SM
gemm_kernel(const float* __restrict__ A, const float* __restrict__ B,
            const float* __restrict__ bias, float* __restrict__ C, int64_t M, int64_t N, int64_t K,
            bool vec_a, bool vec_b, bool vec_c) {
  __shared__ __align__(16) float As[2][BK][BM];
  __shared__ __align__(16) float Bs[2][BK][BN];

  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  Frag fa, fb;
  fetch_a<A_T>(A, M, K, m0, 0, vec_a, fa);
  fetch_b<B_T>(B, N, K, n0, 0, vec_b, fb);
  stage_a<A_T>(As[0], fa);
  stage_b<B_T>(Bs[0], fb);
  __syncthreads();

  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) {
      // issue the next slice's global loads now; they land while this slice is multiplied
      fetch_a<A_T>(A, M, K, m0, k0 + BK, vec_a, fa);
      fetch_b<B_T>(B, N, K, n0, k0 + BK, vec_b, fb);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      // rank-1 update of the 8 x 8 register tile with a column of A and a row of B
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][64 + tx * 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      // the other buffer was last read before the previous barrier, so it is free to overwrite
      stage_a<A_T>(As[buf ^ 1], fa);
      stage_b<B_T>(Bs[buf ^ 1], fb);
    }
    __syncthreads();
    buf ^= 1;
  }

  // epilogue: add the bias and store, float4 where the row allows it
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (m >= M) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + h * 64 + tx * 4;
      float out[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float add = (bias != nullptr && n + j < N) ? bias[n + j] : 0.f;
        out[j] = acc[i][h * 4 + j] + add;
      }
      float* p = C + m * N + n;
      if (vec_c && n + 3 < N) {
        *reinterpret_cast<float4*>(p) = make_float4(out[0], out[1], out[2], out[3]);
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
__global__ void column_sum_kernel(const float* __restrict__ G, float* __restrict__ out, int64_t M,
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
    out[col] = static_cast<float>(t);
  }
}

// float4 access is safe when the base is 16-byte aligned and every row starts 16-byte aligned
bool vec_ok(const void* p, int64_t ld) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0 && ld % 4 == 0;
}

template <bool A_T, bool B_T>
cudaError_t launch_gemm(const float* A, const float* B, const float* bias, float* C, int64_t M,
                        int64_t N, int64_t K, bool vec_a, bool vec_b, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((N + BN - 1) / BN), static_cast<unsigned>((M + BM - 1) / BM));
  void (*kernel)(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, bool,
                 bool, bool) = gemm_kernel<A_T, B_T>;
  GV_LAUNCH(kernel, grid, THREADS, stream, A, B, bias, C, M, N, K, vec_a, vec_b, vec_ok(C, N));
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t gradviz_linear_forward_f32(const float* input, const float* weight,
                                                  const float* bias, float* output, int64_t M,
                                                  int64_t N, int64_t K, cudaStream_t stream) {
  // A = input (M x K, rows of length K), B^T = weight (N x K, rows of length K)
  return launch_gemm<false, true>(input, weight, bias, output, M, N, K, vec_ok(input, K),
                                  vec_ok(weight, K), stream);
}

extern "C" cudaError_t gradviz_linear_grad_input_f32(const float* grad_output, const float* weight,
                                                     float* grad_input, int64_t M, int64_t N,
                                                     int64_t K, cudaStream_t stream) {
  // C (M x K) = grad_output (M x N) . weight (N x K): the GEMM's depth is N, its width K
  return launch_gemm<false, false>(grad_output, weight, nullptr, grad_input, M, K, N,
                                   vec_ok(grad_output, N), vec_ok(weight, K), stream);
}

extern "C" cudaError_t gradviz_linear_grad_weight_f32(const float* grad_output, const float* input,
                                                      float* grad_weight, int64_t M, int64_t N,
                                                      int64_t K, cudaStream_t stream) {
  // C (N x K) = grad_output^T (N x M) . input (M x K): the GEMM's depth is the batch M;
  // grad_output is stored M x N, i.e. as the transpose of the GEMM's left operand
  return launch_gemm<true, false>(grad_output, input, nullptr, grad_weight, N, K, M,
                                  vec_ok(grad_output, N), vec_ok(input, K), stream);
}

extern "C" cudaError_t gradviz_linear_grad_bias_f32(const float* grad_output, float* grad_bias,
                                                    int64_t M, int64_t N, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((N + 31) / 32));
  GV_LAUNCH(column_sum_kernel, grid, block, stream, grad_output, grad_bias, M, N);
  return cudaGetLastError();
}
