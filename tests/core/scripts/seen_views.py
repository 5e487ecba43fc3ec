"""Attribute views (.T, .mT, .H, .real, .imag), indexing, stack/cat/unbind, where: every node seen made."""
import torch


def build():
    w = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, dtype=torch.cdouble, requires_grad=True)
    s = torch.stack([w[0], w[1]]).sum(0)
    c = torch.cat([w, w.mT.mT], 0)
    i = w[[0, 2]][:, 1:3]
    real = z.real.sum() + (z.imag ** 2).sum()
    return (torch.sin(s).sum() + c.mean() + i.sum() + torch.where(w > 0, w, w * w).sum() + w.T.sum()
            + w.view(-1).unbind(0)[3] + real), {"w": w, "z": z}
