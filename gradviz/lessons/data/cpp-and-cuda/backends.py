"""Lesson 4's model: the same LinearFunction on every backend this machine can run, side by side.

A model script (see docs/model-scripts.md). Each backend gets its own copy of one weight and bias, so
its gradients can be compared with the torch backend's; a backend that cannot run here is left out
(the lesson says which, and why).
"""
import torch

from gradviz.core.backends import get_backend


def build():
    g = torch.Generator().manual_seed(0)
    input = torch.randn(2, 3, generator=g)
    weight = torch.randn(4, 3, generator=g)
    bias = torch.randn(4, generator=g)
    target = torch.randn(2, 4, generator=g)
    loss = torch.zeros(())
    leaves = {"input": input, "target": target}
    for name in ("torch", "cpp", "cuda"):
        info = get_backend(name)
        if not info.available:
            continue
        device = "cuda" if name == "cuda" else "cpu"
        w = weight.clone().to(device).requires_grad_()
        b = bias.clone().to(device).requires_grad_()
        output = info.fn(input.to(device), w, b)
        loss = loss + ((output.cpu() - target) ** 2).sum()
        leaves[f"weight_{name}"] = w
        leaves[f"bias_{name}"] = b
    return loss, leaves
