"""Leaves used only through attribute views: x @ w.T, z.real, z.imag (complex64)."""
import torch


def build():
    w = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, dtype=torch.cfloat, requires_grad=True)
    x = torch.randn(2, 4)
    return torch.tanh(x @ w.T).sum() + z.real.sum() + (z.imag ** 2).sum(), {"w": w, "z": z}
