"""What a model's build function gave back, normalised (`gradviz.core.targets` makes one)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BuildResult"]


@dataclass
class BuildResult:
    """What a model's build function gave back, normalised.

    Attributes
    ----------
    loss : torch.Tensor
    leaves : dict of str to torch.Tensor
        Named tensors (leaves that need grad, and inputs that do not).
    module : torch.nn.Module or None
        A module whose ``named_parameters()`` and ``named_modules()`` name leaves and module paths.
    """

    loss: Any
    leaves: dict
    module: Any = None
