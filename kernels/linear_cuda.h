// C entry points of the CUDA kernels of the linear op (linear_cuda.cu). No torch types here:
// the launchers take raw float32 (_f32) or float64 (_f64) pointers to contiguous row-major
// matrices and the stream to launch on, and return the launch status.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// output (M x N) = input (M x K) . weight (N x K)^T + bias (N; may be NULL)
cudaError_t gradviz_linear_forward_f32(const float* input, const float* weight, const float* bias,
                                       float* output, int64_t M, int64_t N, int64_t K,
                                       cudaStream_t stream);

// grad_input (M x K) = grad_output (M x N) . weight (N x K)
cudaError_t gradviz_linear_grad_input_f32(const float* grad_output, const float* weight,
                                          float* grad_input, int64_t M, int64_t N, int64_t K,
                                          cudaStream_t stream);

// grad_weight (N x K) = grad_output (M x N)^T . input (M x K)
cudaError_t gradviz_linear_grad_weight_f32(const float* grad_output, const float* input,
                                           float* grad_weight, int64_t M, int64_t N, int64_t K,
                                           cudaStream_t stream);

// grad_bias (N) = column sums of grad_output (M x N)
cudaError_t gradviz_linear_grad_bias_f32(const float* grad_output, float* grad_bias, int64_t M,
                                         int64_t N, cudaStream_t stream);

// The same four in float64 (for gradcheck and finite differences; not tuned for speed).
cudaError_t gradviz_linear_forward_f64(const double* input, const double* weight,
                                       const double* bias, double* output, int64_t M, int64_t N,
                                       int64_t K, cudaStream_t stream);
cudaError_t gradviz_linear_grad_input_f64(const double* grad_output, const double* weight,
                                          double* grad_input, int64_t M, int64_t N, int64_t K,
                                          cudaStream_t stream);
cudaError_t gradviz_linear_grad_weight_f64(const double* grad_output, const double* input,
                                           double* grad_weight, int64_t M, int64_t N, int64_t K,
                                           cudaStream_t stream);
cudaError_t gradviz_linear_grad_bias_f64(const double* grad_output, double* grad_bias, int64_t M,
                                         int64_t N, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
