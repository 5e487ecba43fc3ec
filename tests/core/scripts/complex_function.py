"""A custom Function on complex tensors whose backward follows torch's convention (g * conj(C))."""
import torch

C = torch.tensor([0.5 + 2.0j, -1.0 + 0.5j, 2.0 - 1.0j], dtype=torch.cdouble)


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        return z * C

    @staticmethod
    def backward(ctx, g):
        return g * C.conj()


def build():
    z = torch.randn(3, dtype=torch.cdouble, requires_grad=True)
    return Scale.apply(z).abs().sum(), {"z": z}
