// CUDA implementations of the gradviz linear ops: argument checks, allocation, and calls of
// the extern "C" launchers of linear_cuda.cu on the current stream. Built only against a CUDA
// torch. The kernels take contiguous row-major float32 or float64 matrices, so strided views are
// copied to contiguous ones first.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "linear_checks.h"
#include "linear_cuda.h"

namespace gradviz {

namespace {

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, "gradviz::", op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

// The launchers of one dtype (linear_cuda.h): float32 or float64.
template <typename T>
struct Launchers;

template <>
struct Launchers<float> {
  static constexpr auto forward = gradviz_linear_forward_f32;
  static constexpr auto grad_input = gradviz_linear_grad_input_f32;
  static constexpr auto grad_weight = gradviz_linear_grad_weight_f32;
  static constexpr auto grad_bias = gradviz_linear_grad_bias_f32;
};

template <>
struct Launchers<double> {
  static constexpr auto forward = gradviz_linear_forward_f64;
  static constexpr auto grad_input = gradviz_linear_grad_input_f64;
  static constexpr auto grad_weight = gradviz_linear_grad_weight_f64;
  static constexpr auto grad_bias = gradviz_linear_grad_bias_f64;
};

// Call body with a zero of the tensor's scalar type, float64 or float32 (the checks allow no other).
template <typename Body>
at::Tensor by_dtype(const at::Tensor& t, Body body) {
  if (t.scalar_type() == at::kDouble) return body(double{});
  return body(float{});
}

at::Tensor linear_cuda(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias) {
  check_linear(input, weight, bias);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({x.size(0), w.size(0)}, x.options());
  return by_dtype(x, [&](auto zero) {
    using T = decltype(zero);
    check_launch("linear", Launchers<T>::forward(
        x.const_data_ptr<T>(), w.const_data_ptr<T>(), b.defined() ? b.const_data_ptr<T>() : nullptr,
        out.mutable_data_ptr<T>(), x.size(0), w.size(0), x.size(1),
        c10::cuda::getCurrentCUDAStream()));
    return out;
  });
}

at::Tensor linear_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight) {
  check_grad_input(grad_output, weight);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor g = grad_output.contiguous(), w = weight.contiguous();
  at::Tensor out = at::empty({g.size(0), w.size(1)}, g.options());
  return by_dtype(g, [&](auto zero) {
    using T = decltype(zero);
    check_launch("linear_grad_input", Launchers<T>::grad_input(
        g.const_data_ptr<T>(), w.const_data_ptr<T>(), out.mutable_data_ptr<T>(), g.size(0),
        g.size(1), w.size(1), c10::cuda::getCurrentCUDAStream()));
    return out;
  });
}

at::Tensor linear_grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input) {
  check_grad_weight(grad_output, input);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor g = grad_output.contiguous(), x = input.contiguous();
  at::Tensor out = at::empty({g.size(1), x.size(1)}, g.options());
  return by_dtype(g, [&](auto zero) {
    using T = decltype(zero);
    check_launch("linear_grad_weight", Launchers<T>::grad_weight(
        g.const_data_ptr<T>(), x.const_data_ptr<T>(), out.mutable_data_ptr<T>(), g.size(0),
        g.size(1), x.size(1), c10::cuda::getCurrentCUDAStream()));
    return out;
  });
}

at::Tensor linear_grad_bias_cuda(const at::Tensor& grad_output) {
  check_grad_bias(grad_output);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor g = grad_output.contiguous();
  at::Tensor out = at::empty({g.size(1)}, g.options());
  return by_dtype(g, [&](auto zero) {
    using T = decltype(zero);
    check_launch("linear_grad_bias", Launchers<T>::grad_bias(
        g.const_data_ptr<T>(), out.mutable_data_ptr<T>(), g.size(0), g.size(1),
        c10::cuda::getCurrentCUDAStream()));
    return out;
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(gradviz, CUDA, m) {
  m.impl("linear", &linear_cuda);
  m.impl("linear_grad_input", &linear_grad_input_cuda);
  m.impl("linear_grad_weight", &linear_grad_weight_cuda);
  m.impl("linear_grad_bias", &linear_grad_bias_cuda);
}

}  // namespace gradviz
