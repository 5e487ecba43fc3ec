"""A gradient penalty: backward passes with create_graph=True inside build(), their results in the loss."""
import torch


def build():
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3)
    f = torch.sin(w * x).sum()
    (g,) = torch.autograd.grad(f, w, create_graph=True)
    v = torch.randn(3, requires_grad=True)
    q = (v * v * v).sum()
    q.backward(create_graph=True)
    return f + g.pow(2).sum() + v.grad.sum(), {"w": w, "v": v}
