// Argument checks shared by the CPU and CUDA implementations of the gradviz linear ops.
//
// Every message names the op and the shapes involved, e.g.
//   gradviz::linear: input (2, 3) and weight (4, 5) disagree on in_features (3 vs 5)
// The fake (meta) kernels in gradviz/core/extension.py raise the same messages.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>
#include <sstream>
#include <string>

namespace gradviz {

// "(2, 3)" for a matrix, "(7,)" for a vector -- the way Python prints a shape.
inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << "(";
  for (int64_t d = 0; d < t.dim(); ++d) s << (d ? ", " : "") << t.size(d);
  s << (t.dim() == 1 ? ",)" : ")");
  return s.str();
}

// "float32" rather than c10's "Float", to match torch's Python names.
inline std::string dtype_str(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

inline void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim,
                      const char* meaning) {
  TORCH_CHECK(t.dim() == dim, "gradviz::", op, ": ", name, " must be ", dim, "-D ", meaning,
              ", got shape ", shape_str(t));
}

// Same device and dtype as `ref`, and a dtype the device's kernels implement.
inline void check_like(const char* op, const char* ref_name, const at::Tensor& ref,
                       const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.device() == ref.device(), "gradviz::", op, ": ", ref_name, " is on ",
              ref.device().str(), " but ", name, " is on ", t.device().str(),
              "; all tensors must be on one device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "gradviz::", op, ": ", ref_name, " is ",
              dtype_str(ref.scalar_type()), " but ", name, " is ", dtype_str(t.scalar_type()),
              "; all tensors must share one dtype");
}

inline void check_dtype_supported(const char* op, const at::Tensor& t) {
  const bool ok = t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
  TORCH_CHECK(ok, "gradviz::", op, ": dtype ", dtype_str(t.scalar_type()), " is not supported on ",
              t.is_cuda() ? "CUDA" : "CPU", " (float32 or float64)");
}

// input (batch, in_features), weight (out_features, in_features), bias (out_features,) or None.
inline void check_linear(const at::Tensor& input, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias) {
  const char* op = "linear";
  check_dim(op, "input", input, 2, "(batch, in_features)");
  check_dim(op, "weight", weight, 2, "(out_features, in_features)");
  check_like(op, "input", input, "weight", weight);
  TORCH_CHECK(input.size(1) == weight.size(1), "gradviz::linear: input ", shape_str(input),
              " and weight ", shape_str(weight), " disagree on in_features (", input.size(1),
              " vs ", weight.size(1), ")");
  if (bias.has_value()) {
    check_dim(op, "bias", *bias, 1, "(out_features,)");
    check_like(op, "input", input, "bias", *bias);
    TORCH_CHECK(bias->size(0) == weight.size(0), "gradviz::linear: bias ", shape_str(*bias),
                " and weight ", shape_str(weight), " disagree on out_features (", bias->size(0),
                " vs ", weight.size(0), ")");
  }
  check_dtype_supported(op, input);
}

// grad_output (batch, out_features), weight (out_features, in_features).
inline void check_grad_input(const at::Tensor& grad_output, const at::Tensor& weight) {
  const char* op = "linear_grad_input";
  check_dim(op, "grad_output", grad_output, 2, "(batch, out_features)");
  check_dim(op, "weight", weight, 2, "(out_features, in_features)");
  check_like(op, "grad_output", grad_output, "weight", weight);
  TORCH_CHECK(grad_output.size(1) == weight.size(0), "gradviz::linear_grad_input: grad_output ",
              shape_str(grad_output), " and weight ", shape_str(weight),
              " disagree on out_features (", grad_output.size(1), " vs ", weight.size(0), ")");
  check_dtype_supported(op, grad_output);
}

// grad_output (batch, out_features), input (batch, in_features).
inline void check_grad_weight(const at::Tensor& grad_output, const at::Tensor& input) {
  const char* op = "linear_grad_weight";
  check_dim(op, "grad_output", grad_output, 2, "(batch, out_features)");
  check_dim(op, "input", input, 2, "(batch, in_features)");
  check_like(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK(grad_output.size(0) == input.size(0), "gradviz::linear_grad_weight: grad_output ",
              shape_str(grad_output), " and input ", shape_str(input), " disagree on batch (",
              grad_output.size(0), " vs ", input.size(0), ")");
  check_dtype_supported(op, grad_output);
}

inline void check_grad_bias(const at::Tensor& grad_output) {
  check_dim("linear_grad_bias", "grad_output", grad_output, 2, "(batch, out_features)");
  check_dtype_supported("linear_grad_bias", grad_output);
}

}  // namespace gradviz
