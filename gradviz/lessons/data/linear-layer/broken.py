"""Lesson 3's model: the correct LinearFunction and a copy whose backward has two classic mistakes.

A model script (see docs/model-scripts.md): gradviz runs build() and records the loss it returns.
"""
import torch

from gradviz.core.backends import LinearFunction


class BrokenLinearFunction(torch.autograd.Function):
    """``output = input @ weight.T + bias`` with a wrong backward."""

    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight, bias)
        return input.mm(weight.t()) + bias

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_output.mm(weight)
        # mistake 1: the transpose is missing (input.T @ grad_output is grad_weight transposed)
        grad_weight = input.t().mm(grad_output)
        # mistake 2: the bias gradient keeps the first row instead of summing over the batch
        grad_bias = grad_output[0]
        return grad_input, grad_weight, grad_bias


def build():
    g = torch.Generator().manual_seed(0)
    # the correct layer: a batch of 4 rows, 3 features in, 2 out
    input = torch.randn(4, 3, generator=g).requires_grad_()
    weight = torch.randn(2, 3, generator=g).requires_grad_()
    bias = torch.randn(2, generator=g).requires_grad_()
    target = torch.randn(4, 2, generator=g)
    good = LinearFunction.apply(input, weight, bias)
    # the broken layer: a square weight, so that the wrong gradient still has the right shape
    broken_input = torch.randn(4, 3, generator=g)
    broken_weight = torch.randn(3, 3, generator=g).requires_grad_()
    broken_bias = torch.randn(3, generator=g).requires_grad_()
    broken_target = torch.randn(4, 3, generator=g)
    bad = BrokenLinearFunction.apply(broken_input, broken_weight, broken_bias)
    loss = ((good - target) ** 2).sum() + ((bad - broken_target) ** 2).sum()
    return loss, {"input": input, "weight": weight, "bias": bias, "target": target,
                  "broken_input": broken_input, "broken_weight": broken_weight, "broken_bias": broken_bias,
                  "broken_target": broken_target}
