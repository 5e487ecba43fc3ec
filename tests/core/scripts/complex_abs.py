"""A complex leaf and a real loss: torch's gradient of sum |z| is z / |z| (issue 12)."""
import torch


def build():
    z = torch.randn(3, dtype=torch.cfloat, requires_grad=True)
    return z.abs().sum(), {"z": z}
