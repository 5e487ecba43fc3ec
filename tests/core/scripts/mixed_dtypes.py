"""A leaf the script makes float32 beside float64 ones: a float64 re-run keeps it float32."""
import torch


def build():
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, dtype=torch.float32, requires_grad=True)
    return (torch.tanh(w) * v.double() * 3).sum(), {"w": w, "v": v}
