"""Every backend of the linear op, the compiled ones included: the module the rest of gradviz asks.

The registry and the ``torch`` backend (`LinearFunction`) live in `gradviz.core.linearop`; the
compiled backends (``cpp``, ``cuda``) plug into it from `gradviz.core.extension`, imported here so
that they are always registered (importing it is cheap and builds nothing: a compiled backend is
built on the first `get_backend` of it). Neither of those modules imports this one, so the three
form no loop. Every backend computes::

    output = input @ weight.T + bias
    grad_input  = grad_output @ weight
    grad_weight = grad_output.T @ input
    grad_bias   = grad_output.sum(0)
"""
from __future__ import annotations

import torch

from . import extension as _extension  # noqa: F401  (registers the cpp and cuda backends)
from .errors import BackendUnavailable
from .linearop import (
    BackendInfo,
    LinearFunction,
    lookup_backend,
    lookup_node_alias,
    register_backend,
    register_node_alias,
    registered_names,
)

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

DEFAULT_BACKEND = "torch"


def backend_names() -> list[str]:
    """Names of every known backend, available or not, in registration order."""
    return registered_names()


def get_backend(name: str) -> BackendInfo:
    """Return the `BackendInfo` of backend `name` (building it if needed)."""
    return lookup_backend(name)


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


def describe_node(node_name: str, device: str = "cpu") -> tuple[str, str] | None:
    """Return ``(display name, backend)`` for a node class known to a backend, else None."""
    return lookup_node_alias(node_name, device)
