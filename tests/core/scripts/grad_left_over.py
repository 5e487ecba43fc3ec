"""A .grad left large from before (1e5): the recorded contribution is small beside it."""
import torch


def build():
    w = torch.randn(4, requires_grad=True)
    w.grad = torch.full_like(w, 1e5)
    return (w * w).sum(), {"w": w}
