"""Part of the forward runs in a ThreadPoolExecutor worker: a random input drawn there, the leaf used
in both threads (issue 12: finite differences failed with an error of about 3)."""
from concurrent.futures import ThreadPoolExecutor

import torch


def build():
    w = torch.randn(4, 3, requires_grad=True)

    def part():
        x = torch.randn(5, 4)
        return torch.tanh(x @ w)

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(part).result()
    return (a * w.sum()).sum(), {"w": w}
