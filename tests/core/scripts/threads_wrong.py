"""A worker thread runs a custom Function whose backward is wrong (missing the factor 2)."""
import threading

import torch


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # wrong: d(x^2)/dx = 2x


def build():
    w = torch.randn(4, 3, requires_grad=True)
    out = {}

    def part():
        x = torch.randn(5, 4)
        out["a"] = Square.apply(x @ w)

    worker = threading.Thread(target=part)
    worker.start()
    worker.join()
    return (out["a"] * w.sum()).sum(), {"w": w}
