"""Names of what a recording shows: leaves and inputs, modules and their parents, gradient hooks.

The recorder (`gradviz.core.recorder`) calls these once the forward pass has run under its
`ForwardCapture`: the user's names come first, then module paths and parameter names, then
``inputN`` in order of first use (a view of a named tensor is named after it: ``xs[3]``).
"""
from __future__ import annotations

import torch

from . import fastpath
from .buildresult import BuildResult
from .capture import ForwardCapture

__all__ = ["grad_hooks", "module_parents", "module_names", "name_tensors"]


def grad_hooks(cap: ForwardCapture, names: dict) -> list[str]:
    """Where gradient hooks may change what reaches ``.grad``: tensor hooks the script registered
    while it ran (``file:line``), hooks already on the leaves it used, and backward hooks on the
    modules that ran."""
    found = list(dict.fromkeys(cap.grad_hooks))
    for t in cap.leaf_seen:
        if getattr(t, "_backward_hooks", None):
            found.append(f"a gradient hook on {names.get(t, 'a leaf')}")
    names = getattr(cap, "module_names", {})
    for module in cap.module_order:
        if getattr(module, "_backward_hooks", None) or getattr(module, "_backward_pre_hooks", None):
            found.append(f"a backward hook on module {names.get(module, type(module).__name__)}")
    from torch.nn.modules import module as _module
    if getattr(_module, "_global_backward_hooks", None) or getattr(_module, "_global_backward_pre_hooks", None):
        found.append("a global module backward hook")
    return found


def module_parents(cap: ForwardCapture) -> dict:
    """Each module that ran, by name: the name of the module whose forward called it (None at the top)."""
    names = getattr(cap, "module_names", {})
    out = {}
    for m in cap.module_order:
        parent = cap.module_parent.get(m)
        out[names.get(m, type(m).__name__)] = None if parent is None else names.get(parent, type(parent).__name__)
    return out


def module_names(built: BuildResult, cap: ForwardCapture, named_modules: list | None = None) -> dict:
    """Name every module that ran: its path in the returned module, else its class name (numbered when shared).

    `named_modules`, when given, is ``list(built.module.named_modules())``, already walked.
    """
    names: dict = {}
    if built.module is not None:
        for path, m in (built.module.named_modules() if named_modules is None else named_modules):
            names.setdefault(m, path or type(m).__name__)
    # modules outside the returned one: class name, numbered when several share a class
    by_class: dict[str, list] = {}
    for m in cap.module_order:
        if m not in names:
            by_class.setdefault(type(m).__name__, []).append(m)
    for cls_name, ms in by_class.items():
        for i, m in enumerate(ms):
            names[m] = cls_name if len(ms) == 1 else f"{cls_name}{i + 1}"
    return names


def name_tensors(built: BuildResult, cap: ForwardCapture) -> dict:
    """Name every leaf and input tensor: the user's names, then module parameters, then inputN."""
    names: dict = {}
    for name, t in built.leaves.items():
        if isinstance(t, torch.Tensor) and t not in names:
            names[t] = name
    walked = None if built.module is None else list(built.module.named_modules())
    mod_names = module_names(built, cap, walked)
    cap.module_names = mod_names
    if built.module is not None:
        # named_parameters(): each module's own parameters under its path, modules in
        # named_modules() order, the first name of a parameter kept (read from the modules
        # `module_names` walked, not by a generator per module)
        for path, m in walked:
            for pname, p in m._parameters.items():
                if p is not None:
                    names.setdefault(p, f"{path}.{pname}" if path else pname)
    # (the returned module's own modules: their parameters are all named above)
    inside = set() if walked is None else {id(m) for _, m in walked}
    for m in cap.module_order:
        if id(m) in inside:
            continue
        # the module's own parameters, as named_parameters(recurse=False) gives them
        for pname, p in m._parameters.items():
            if p is not None and p not in names:
                names[p] = f"{mod_names[m]}.{pname}"
    counter = 0
    views: dict[int, int] = {}  # id of a named base -> the views of it named so far
    # named tensors by id() (a tensor's hash is a Python call; `names` holds them, so no id is reused)
    name_of = {id(t): name for t, name in names.items()}
    named = set(name_of)
    for t in _unnamed_inputs(cap, named):
        base = t._base
        base_name = None if base is None else name_of.get(id(base))
        if base_name is not None:
            # a view of a named tensor (xs[t]): name it after its base, numbered by first use
            k = views.get(id(base), 0)
            views[id(base)] = k + 1
            name = f"{base_name}[{k}]"
        else:
            name = f"input{counter}"
            counter += 1
        names[t] = name_of[id(t)] = name  # (a later view of it is named after it)
    return names


def _unnamed_inputs(cap: ForwardCapture, named: set):
    """The events' inputs without a grad_fn whose id is not in `named`, in order of first use
    (each id added to `named`; the helper's scan where it is loaded)."""
    lib = fastpath.helper()
    if lib is not None:
        return lib.unnamed_inputs(cap.event_tensors, named)
    return _scan_inputs(cap, named)


def _scan_inputs(cap: ForwardCapture, named: set):
    for ins, _ in cap.event_tensors:
        for t in ins:
            if t.grad_fn is not None or id(t) in named:
                continue
            named.add(id(t))
            yield t
