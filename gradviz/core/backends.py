"""Backends of the linear op: the hand-written ``LinearFunction`` and its compiled twins.

The ``torch`` backend is a ``torch.autograd.Function`` whose forward and backward are written by hand.
Compiled backends (``cpp``, ``cuda``) register themselves here through `register_backend`; the
loader that builds them lives in `gradviz.core.extension`. Every backend computes::

    output = input @ weight.T + bias
    grad_input  = grad_output @ weight
    grad_weight = grad_output.T @ input
    grad_bias   = grad_output.sum(0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import BackendUnavailable

__all__ = [
    "DEFAULT_BACKEND",
    "LinearFunction",
    "BackendInfo",
    "register_backend",
    "backend_names",
    "get_backend",
    "linear",
    "register_node_alias",
    "describe_node",
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


@register_backend("torch")
def _torch_backend() -> BackendInfo:
    return BackendInfo("torch", True, "", LinearFunction.apply)


def backend_names() -> list[str]:
    """Names of every known backend, available or not, in registration order."""
    _load_compiled()
    return list(_BACKENDS)


def get_backend(name: str) -> BackendInfo:
    """Return the `BackendInfo` of backend `name` (building it if needed)."""
    _load_compiled()
    if name not in _BACKENDS:
        return BackendInfo(name, False, f"unknown backend {name!r}; known: {', '.join(_BACKENDS)}")
    return _BACKENDS[name]()


_LOADED = False


def _load_compiled() -> None:
    # the compiled backends register themselves when their loader module is imported (once)
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    try:
        import gradviz.core.extension  # noqa: F401
    except ImportError:
        pass


DEFAULT_BACKEND = "torch"


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           backend: str | None = None) -> tuple[torch.Tensor, str]:
    """Apply the linear op with `backend` (``None``: the default, ``torch``, which always runs).

    A backend asked for by name that cannot run here is an error with its reason, never a silent
    fallback to ``torch``: a check "of cuda" must not pass without cuda having run.

    Returns
    -------
    output : torch.Tensor
    ran : str
        The backend that ran.

    Raises
    ------
    BackendUnavailable
        `backend` is unknown or cannot run on this machine.
    """
    name = backend or DEFAULT_BACKEND
    known = backend_names()
    if name not in known:
        raise BackendUnavailable(f"unknown backend {name!r}", hint=f"choose one of: {', '.join(known)}")
    info = get_backend(name)
    if not info.available:
        raise BackendUnavailable(f"the {name} backend cannot run here: {info.reason}",
                                 hint="choose another backend (torch always runs); `gradviz backends` "
                                      "says which backends run here and why")
    return info.fn(input, weight, bias), info.name


def register_node_alias(node_name: str, display: str, backend: str | Callable[[str], str]) -> None:
    """Show autograd nodes of class `node_name` as `display`, run by `backend`.

    `backend` is a name or a function of the node's device string (``"cpu"``, ``"cuda:0"``).
    Used for ops registered with ``torch.library.register_autograd``, whose nodes torch names
    ``GeneratedBackwardFor_<ns>_<op>_defaultBackward``.
    """
    _NODE_ALIASES[node_name] = (display, backend)


register_node_alias("LinearFunctionBackward", "LinearFunction", "torch")


def describe_node(node_name: str, device: str = "cpu") -> tuple[str, str] | None:
    """Return ``(display name, backend)`` for a node class known to a backend, else None."""
    _load_compiled()
    hit = _NODE_ALIASES.get(node_name)
    if hit is None:
        return None
    display, backend = hit
    return display, backend(device) if callable(backend) else backend
