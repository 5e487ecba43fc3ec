"""Complex arithmetic, a complex matrix product, views between real and complex, a real leaf mixed in."""
import torch


def build():
    z = torch.randn(4, dtype=torch.cdouble, requires_grad=True)
    a = torch.randn(3, 4, dtype=torch.cdouble, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    u = (z * w).exp() / (1.5 + z.conj())        # holomorphic and anti-holomorphic parts
    v = a @ torch.tanh(u)                        # a complex matrix product
    r = torch.view_as_real(v).pow(2).sum()       # back to real numbers
    return r + v.abs().sum() + u.angle().sum() + (z * z).real.sum(), {"z": z, "a": a, "w": w}
