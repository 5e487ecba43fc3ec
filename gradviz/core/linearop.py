"""The linear op's registry of backends, and its ``torch`` backend: the hand-written `LinearFunction`.

Compiled backends (``cpp``, ``cuda``, built by `gradviz.core.extension`) plug in here with
`register_backend` and `register_node_alias`; this module imports neither them nor their loader.
`gradviz.core.backends`, above both, imports the loader so that every backend is registered, and is
the module the rest of gradviz asks. Every backend computes::

    output = input @ weight.T + bias
    grad_input  = grad_output @ weight
    grad_weight = grad_output.T @ input
    grad_bias   = grad_output.sum(0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "LinearFunction",
    "BackendInfo",
    "register_backend",
    "registered_names",
    "lookup_backend",
    "register_node_alias",
    "lookup_node_alias",
]


class LinearFunction(torch.autograd.Function):
    """``output = input @ weight.T + bias`` with a hand-written backward (the ``torch`` backend)."""

    @staticmethod
    def forward(ctx, input, weight, bias=None):
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            # broadcast the bias over the batch rows
            output = output + bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        # each gradient only where autograd asks for it
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            # the bias was added to every row: its gradient sums over the rows
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


@dataclass
class BackendInfo:
    """One backend of the linear op and whether it can run here.

    Attributes
    ----------
    name : str
        ``"torch"``, ``"cpp"`` or ``"cuda"``.
    available : bool
        Whether `fn` can be called on this machine now.
    reason : str
        Why it is not available ("no CUDA device", "compiler missing", the compiler's first error).
    fn : callable or None
        ``fn(input, weight, bias) -> output``, differentiable.
    """

    name: str
    available: bool
    reason: str = ""
    fn: Callable | None = None


_BACKENDS: dict[str, Callable[[], BackendInfo]] = {}
# node class name -> (display name, backend name or callable(device) -> backend name)
_NODE_ALIASES: dict[str, tuple[str, str | Callable[[str], str]]] = {}


def register_backend(name: str) -> Callable:
    """Register a backend factory: a function that returns a `BackendInfo` (it may build code lazily)."""

    def deco(factory: Callable[[], BackendInfo]) -> Callable[[], BackendInfo]:
        _BACKENDS[name] = factory
        return factory

    return deco


def registered_names() -> list[str]:
    """Names of the backends registered so far, in registration order."""
    return list(_BACKENDS)


def lookup_backend(name: str) -> BackendInfo:
    """The `BackendInfo` of registered backend `name` (its factory may build), or an unavailable one."""
    if name not in _BACKENDS:
        return BackendInfo(name, False, f"unknown backend {name!r}; known: {', '.join(_BACKENDS)}")
    return _BACKENDS[name]()


def register_node_alias(node_name: str, display: str, backend: str | Callable[[str], str]) -> None:
    """Show autograd nodes of class `node_name` as `display`, run by `backend`.

    `backend` is a name or a function of the node's device string (``"cpu"``, ``"cuda:0"``).
    Used for ops registered with ``torch.library.register_autograd``, whose nodes torch names
    ``GeneratedBackwardFor_<ns>_<op>_defaultBackward``.
    """
    _NODE_ALIASES[node_name] = (display, backend)


def lookup_node_alias(node_name: str, device: str = "cpu") -> tuple[str, str] | None:
    """``(display name, backend)`` for a node class registered with `register_node_alias`, else None."""
    hit = _NODE_ALIASES.get(node_name)
    if hit is None:
        return None
    display, backend = hit
    return display, backend(device) if callable(backend) else backend


@register_backend("torch")
def _torch_backend() -> BackendInfo:
    return BackendInfo("torch", True, "", LinearFunction.apply)


register_node_alias("LinearFunctionBackward", "LinearFunction", "torch")
