"""retain_graph=True inside build() and a custom Function whose backward is wrong (missing 2)."""
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
    w = torch.randn(3, requires_grad=True)
    loss = Square.apply(w).sum()
    loss.backward(retain_graph=True)
    return loss, {"w": w}
