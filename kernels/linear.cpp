// The gradviz linear ops: schemas (TORCH_LIBRARY) and their CPU implementations.
//
//   linear(input, weight, bias)            = input . weight^T + bias
//   linear_grad_input(grad_output, weight) = grad_output . weight
//   linear_grad_weight(grad_output, input) = grad_output^T . input
//   linear_grad_bias(grad_output)          = column sums of grad_output
//
// Autograd and the fake (meta) kernels are registered from Python (gradviz/core/extension.py);
// the CUDA implementations live in linear_cuda.cpp, built only against a CUDA torch.
// Every product is one call of the hand-written GEMM (gemm_cpu.cpp), which reads its operands
// through their strides: transposes and non-contiguous views cost no copy.
#include <torch/library.h>

#include "gemm_cpu.h"
#include "linear_checks.h"

namespace gradviz {

namespace {

// C (M x N) = A . B with A and B given as (tensor, is-it-transposed) views.
template <typename T>
void gemm_views(const at::Tensor& a, bool a_t, const at::Tensor& b, bool b_t, at::Tensor& c,
                const T* bias) {
  const int64_t M = c.size(0), N = c.size(1);
  const int64_t K = a_t ? a.size(0) : a.size(1);
  // element (i, k) of A: a[i, k], or a[k, i] when A is used transposed (likewise for B)
  const int64_t a_rs = a_t ? a.stride(1) : a.stride(0), a_cs = a_t ? a.stride(0) : a.stride(1);
  const int64_t b_rs = b_t ? b.stride(1) : b.stride(0), b_cs = b_t ? b.stride(0) : b.stride(1);
  gemm<T>(M, N, K, a.const_data_ptr<T>(), a_rs, a_cs, b.const_data_ptr<T>(), b_rs, b_cs,
          c.mutable_data_ptr<T>(), c.stride(0), bias);
}

at::Tensor linear_cpu(const at::Tensor& input, const at::Tensor& weight,
                      const std::optional<at::Tensor>& bias) {
  check_linear(input, weight, bias);
  at::Tensor out = at::empty({input.size(0), weight.size(0)}, input.options());
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "gradviz::linear", [&] {
    // output = input . weight^T (+ bias, added when the first depth slice is stored)
    gemm_views<scalar_t>(input, false, weight, true, out,
                         b.defined() ? b.const_data_ptr<scalar_t>() : nullptr);
  });
  return out;
}

at::Tensor linear_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight) {
  check_grad_input(grad_output, weight);
  at::Tensor out = at::empty({grad_output.size(0), weight.size(1)}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "gradviz::linear_grad_input", [&] {
    gemm_views<scalar_t>(grad_output, false, weight, false, out, nullptr);
  });
  return out;
}

at::Tensor linear_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input) {
  check_grad_weight(grad_output, input);
  at::Tensor out = at::empty({grad_output.size(1), input.size(1)}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "gradviz::linear_grad_weight", [&] {
    // sums over the batch: grad_weight[o, i] = sum_b grad_output[b, o] * input[b, i]
    gemm_views<scalar_t>(grad_output, true, input, false, out, nullptr);
  });
  return out;
}

at::Tensor linear_grad_bias_cpu(const at::Tensor& grad_output) {
  check_grad_bias(grad_output);
  at::Tensor out = at::empty({grad_output.size(1)}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "gradviz::linear_grad_bias", [&] {
    // the bias was added to every row, so its gradient is the sum over rows
    column_sums<scalar_t>(grad_output.size(0), grad_output.size(1),
                          grad_output.const_data_ptr<scalar_t>(), grad_output.stride(0),
                          grad_output.stride(1), out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(gradviz, m) {
  m.def("linear(Tensor input, Tensor weight, Tensor? bias) -> Tensor");
  m.def("linear_grad_input(Tensor grad_output, Tensor weight) -> Tensor");
  m.def("linear_grad_weight(Tensor grad_output, Tensor input) -> Tensor");
  m.def("linear_grad_bias(Tensor grad_output) -> Tensor");
  // which CPU micro-kernel runs: "avx512", "avx2" or "portable" (GRADVIZ_CPU_ISA can lower it)
  m.def("cpu_isa() -> str", &cpu_isa);
}

TORCH_LIBRARY_IMPL(gradviz, CPU, m) {
  m.impl("linear", &linear_cpu);
  m.impl("linear_grad_input", &linear_grad_input_cpu);
  m.impl("linear_grad_weight", &linear_grad_weight_cpu);
  m.impl("linear_grad_bias", &linear_grad_bias_cpu);
}

}  // namespace gradviz
