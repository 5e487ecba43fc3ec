"""The Python halves of the compiled linear ops: fake kernels with their argument checks, autograd formulas.

The compiled library (`gradviz.core.extension` builds it) defines ``torch.ops.gradviz.linear``,
``linear_grad_input``, ``linear_grad_weight`` and ``linear_grad_bias`` in C++; `register_python_parts`
adds their fake kernels (`torch.library.register_fake`: shapes and the same errors as the C++ checks,
so they run under ``torch.compile``) and autograd formulas (`torch.library.register_autograd`).
"""
from __future__ import annotations

import torch

__all__ = ["register_python_parts"]

_python_parts_registered = False



def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_like(op: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    if t.device != ref.device:
        raise RuntimeError(f"gradviz::{op}: {ref_name} is on {ref.device} but {name} is on "
                           f"{t.device}; all tensors must be on one device")
    if t.dtype != ref.dtype:
        raise RuntimeError(f"gradviz::{op}: {ref_name} is {_dtype(ref)} but {name} is {_dtype(t)}; "
                           "all tensors must share one dtype")


def _check_dim(op: str, name: str, t: torch.Tensor, want: int, meaning: str) -> None:
    if t.dim() != want:
        raise RuntimeError(f"gradviz::{op}: {name} must be {want}-D {meaning}, got shape {_shape(t)}")


def _check_dtype_supported(op: str, t: torch.Tensor) -> None:
    # mirrors check_dtype_supported in kernels/linear_checks.h; meta tensors follow the CPU rule
    if t.dtype in (torch.float32, torch.float64):
        return
    where = "CUDA" if t.device.type == "cuda" else "CPU"
    raise RuntimeError(f"gradviz::{op}: dtype {_dtype(t)} is not supported on {where} (float32 or float64)")


def _check_linear(input, weight, bias) -> None:
    op = "linear"
    _check_dim(op, "input", input, 2, "(batch, in_features)")
    _check_dim(op, "weight", weight, 2, "(out_features, in_features)")
    _check_like(op, "input", input, "weight", weight)
    if input.shape[1] != weight.shape[1]:
        raise RuntimeError(f"gradviz::linear: input {_shape(input)} and weight {_shape(weight)} "
                           f"disagree on in_features ({input.shape[1]} vs {weight.shape[1]})")
    if bias is not None:
        _check_dim(op, "bias", bias, 1, "(out_features,)")
        _check_like(op, "input", input, "bias", bias)
        if bias.shape[0] != weight.shape[0]:
            raise RuntimeError(f"gradviz::linear: bias {_shape(bias)} and weight {_shape(weight)} "
                               f"disagree on out_features ({bias.shape[0]} vs {weight.shape[0]})")
    _check_dtype_supported(op, input)


def _linear_fake(input, weight, bias):
    _check_linear(input, weight, bias)
    return input.new_empty((input.shape[0], weight.shape[0]))


def _grad_input_fake(grad_output, weight):
    op = "linear_grad_input"
    _check_dim(op, "grad_output", grad_output, 2, "(batch, out_features)")
    _check_dim(op, "weight", weight, 2, "(out_features, in_features)")
    _check_like(op, "grad_output", grad_output, "weight", weight)
    if grad_output.shape[1] != weight.shape[0]:
        raise RuntimeError(f"gradviz::linear_grad_input: grad_output {_shape(grad_output)} and "
                           f"weight {_shape(weight)} disagree on out_features "
                           f"({grad_output.shape[1]} vs {weight.shape[0]})")
    _check_dtype_supported(op, grad_output)
    return grad_output.new_empty((grad_output.shape[0], weight.shape[1]))


def _grad_weight_fake(grad_output, input):
    op = "linear_grad_weight"
    _check_dim(op, "grad_output", grad_output, 2, "(batch, out_features)")
    _check_dim(op, "input", input, 2, "(batch, in_features)")
    _check_like(op, "grad_output", grad_output, "input", input)
    if grad_output.shape[0] != input.shape[0]:
        raise RuntimeError(f"gradviz::linear_grad_weight: grad_output {_shape(grad_output)} and "
                           f"input {_shape(input)} disagree on batch "
                           f"({grad_output.shape[0]} vs {input.shape[0]})")
    _check_dtype_supported(op, grad_output)
    return grad_output.new_empty((grad_output.shape[1], input.shape[1]))


def _grad_bias_fake(grad_output):
    _check_dim("linear_grad_bias", "grad_output", grad_output, 2, "(batch, out_features)")
    _check_dtype_supported("linear_grad_bias", grad_output)
    return grad_output.new_empty((grad_output.shape[1],))


def _linear_setup(ctx, inputs, output):
    input, weight, bias = inputs
    # keep only what the requested gradients read: grad_input needs weight, grad_weight needs input
    need_input, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ctx.save_for_backward(input if need_weight else None, weight if need_input else None)


def _linear_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    ops = torch.ops.gradviz
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.linear_grad_input(grad_output, weight)  # grad_output @ weight
    if ctx.needs_input_grad[1]:
        grad_weight = ops.linear_grad_weight(grad_output, input)  # grad_output.T @ input
    if ctx.needs_input_grad[2]:
        grad_bias = ops.linear_grad_bias(grad_output)  # grad_output.sum(0)
    return grad_input, grad_weight, grad_bias


# The gradient ops are products too, so their own gradients are more of the same ops; this makes
# double backward (gradgradcheck, Hessian-vector products) work through the compiled backends.

def _pair_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _grad_input_backward(ctx, grad):
    # grad_input = grad_output @ weight
    grad_output, weight = ctx.saved_tensors
    ops = torch.ops.gradviz
    d_grad_output = ops.linear(grad, weight, None) if ctx.needs_input_grad[0] else None  # grad @ W.T
    d_weight = ops.linear_grad_weight(grad_output, grad) if ctx.needs_input_grad[1] else None
    return d_grad_output, d_weight


def _grad_weight_backward(ctx, grad):
    # grad_weight = grad_output.T @ input
    grad_output, input = ctx.saved_tensors
    ops = torch.ops.gradviz
    d_grad_output = ops.linear(input, grad, None) if ctx.needs_input_grad[0] else None  # in @ g.T
    d_input = ops.linear_grad_input(grad_output, grad) if ctx.needs_input_grad[1] else None
    return d_grad_output, d_input


def _grad_bias_setup(ctx, inputs, output):
    ctx.rows = inputs[0].shape[0]


def _grad_bias_backward(ctx, grad):
    # grad_bias = grad_output.sum(0): every row receives the whole incoming gradient
    return grad.unsqueeze(0).expand(ctx.rows, grad.shape[0])


def register_python_parts() -> None:
    """Register the fake kernels and autograd formulas of the ``gradviz::linear*`` ops (once; the library defines them)."""
    global _python_parts_registered
    if _python_parts_registered:
        return
    lib = torch.library
    lib.register_fake("gradviz::linear")(_linear_fake)
    lib.register_fake("gradviz::linear_grad_input")(_grad_input_fake)
    lib.register_fake("gradviz::linear_grad_weight")(_grad_weight_fake)
    lib.register_fake("gradviz::linear_grad_bias")(_grad_bias_fake)
    lib.register_autograd("gradviz::linear", _linear_backward, setup_context=_linear_setup)
    lib.register_autograd("gradviz::linear_grad_input", _grad_input_backward,
                          setup_context=_pair_setup)
    lib.register_autograd("gradviz::linear_grad_weight", _grad_weight_backward,
                          setup_context=_pair_setup)
    lib.register_autograd("gradviz::linear_grad_bias", _grad_bias_backward,
                          setup_context=_grad_bias_setup)
    _python_parts_registered = True
