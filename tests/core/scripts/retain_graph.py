"""build() runs a backward of its own (retain_graph=True), so .grad holds a gradient before gradviz's."""
import torch


def build():
    w = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    loss = (w * w * b).sum() + torch.tanh(b).sum()
    loss.backward(retain_graph=True)
    return loss, {"w": w, "b": b}
