"""A model that warns in a loop, resets the warning filters on every run, and makes torch warn."""
import warnings

import torch


def build():
    warnings.simplefilter("always")  # every call would show, on every one of the checks' re-runs
    w = torch.randn(3, requires_grad=True)
    for _ in range(4):
        warnings.warn("the learning rate is very small")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
    copy = torch.tensor(w)  # torch warns: copy-construct with .detach().clone()
    return (w * w).sum() + copy.sum(), {"w": w}
