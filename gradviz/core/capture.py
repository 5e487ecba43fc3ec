"""The forward capture: a torch function mode that logs every op of a model's forward pass.

`ForwardCapture` sees each op with its inputs and outputs, the module and use it ran in and the
model's source line, numbers the leaves and sources, notes in-place changes, and wraps
``Function.apply`` and ``Tensor.register_hook`` so custom Functions and gradient hooks are known.
The recorder (`gradviz.core.recorder`) runs a model under it.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from . import fastpath
from .errors import Cancelled, GraphTooLarge
from .recording import ForwardEvent
from .tensors import TensorData, TensorStore

__all__ = ["ForwardCapture", "LIMIT_HINT", "tensors_in"]

LIMIT_HINT = "raise the limit with --max-nodes N (record(..., max_nodes=N)), or record a smaller model"
_TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.abspath(__file__))
_INTERNAL_FILES = {os.path.join(_HERE, f) for f in ("recorder.py", "capture.py", "backends.py", "extension.py",
                                                    "linear_autograd.py", "checks.py", "sandbox.py")}
_INPLACE_DUNDERS = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ipow__", "__iand__", "__ior__",
                    "__ixor__", "__imatmul__", "__ifloordiv__", "__imod__"}
_SKIP_FUNCS = {"__get__", "__set__", "__repr__", "__format__", "__bool__", "__len__", "__hash__"}
_OVERLOADS = (torch._ops.OpOverload, torch._ops.OpOverloadPacket)
_OP_NAMES: dict[str, tuple[str, bool]] = {}  # function name -> (op name, in place)
# function -> (name, in place, the event's (op name, in place) where the compiled helper may log
# the event itself, else None): what __torch_function__ needs of it
_FACTS: dict = {}
_grad_enabled = torch.is_grad_enabled


class ForwardCapture(TorchFunctionMode):
    """A torch function mode that logs every op that takes part in autograd.

    Also follows modules (``on_module_pre`` and ``on_module_post`` around each module call: which
    module, which call of it) and custom ``torch.autograd.Function.apply`` calls, which torch
    function modes do not see; `Sandbox` installs those hooks and patches, enters the mode and
    restores everything afterwards. Where the recorder's helper is loaded, an instance is of a
    subclass whose ``__torch_function__`` is compiled (`_compiled_class`), with the same recording.
    """

    def __new__(cls, *args, **kwargs):
        # with the recorder's helper loaded: the class whose __torch_function__ is compiled
        if cls is ForwardCapture:
            lib = fastpath.helper()
            if lib is not None and getattr(lib, "CAPTURE", False):
                cls = _compiled_class(lib)
        return super().__new__(cls)

    def __init__(self, store: TensorStore | None, on_leaf: Callable | None = None,
                 cancel: Callable | None = None, max_nodes: int | None = None):
        super().__init__()
        self.store = store
        self.max_nodes = max_nodes
        self.on_leaf = on_leaf
        self.cancel = cancel
        self.events: list[ForwardEvent] = []
        self.event_tensors: list[tuple[list, list]] = []  # (input tensors, output tensors) per event
        self.grad_fn_event: dict[Any, int] = {}
        self.replays: dict[Any, tuple] = {}
        self.module_stack: list[tuple[Any, int]] = []
        self.module_uses: dict[Any, int] = {}
        self.module_order: list[Any] = []
        self.module_parent: dict[Any, Any] = {}  # each module: the module whose forward first called it
        self.event_module: list[tuple[Any, int] | None] = []
        self.leaf_seen: dict[Any, int] = {}
        self._leaf_ids: set[int] = set()  # ids of leaf_seen's tensors (hashing a tensor is a Python call)
        self.source_data: list[TensorData] = []
        self._depth = 0
        self._src_cache: dict[str, bool] = {}
        lib = fastpath.helper()
        if lib is not None and getattr(lib, "FRAME_WALK", False):
            # the same walk over the interpreter's frames in C++, making no frame objects
            # (given the cache, not a bound method: the capture must not be in a reference cycle,
            # or the graph it holds would outlive the recording until a collection)
            self._source = lib.SourceWalk(functools.partial(_internal, self._src_cache))
        self.grad_hooks: list[str] = []  # where the script registered gradient hooks on tensors
        # per op seen in this thread: (nodes it made, nodes it consumed), to tell the graph's
        # nodes that no seen op made (ops in another thread) from the rest; see unseen_nodes
        self.seen_ops: list[tuple[list, list]] = []

    # --- what the sandbox installs (gradviz.core.sandbox.Sandbox applies and restores them) ------
    def wrap_apply(self, orig: Callable) -> Callable:
        """``Function.apply`` that logs each custom Function call as one op (`orig`: the unpatched one)."""
        cap = self

        def apply(cls, *args, **kwargs):
            if cap._depth:
                return orig(cls, *args, **kwargs)
            ins = tensors_in(args) + tensors_in(kwargs)
            if torch.is_grad_enabled():
                cap._scan_leaves(ins)
            out = cap._inside(orig, cls, *args, **kwargs)
            if cap.store is not None:
                # the replay calls the unpatched apply: a check that replays this node later must
                # not log into this recording
                cap._log(cls.__name__, ins, tensors_in(out), replay=(functools.partial(orig, cls), args, kwargs),
                         custom=cls)
            return out

        return apply

    def wrap_register_hook(self, orig: Callable) -> Callable:
        """``Tensor.register_hook`` that notes where the script registers a gradient hook."""
        # a gradient hook can change what reaches .grad (torch's own hooks, from checkpointing or
        # module hooks, are registered from torch's files)
        hooks = self.grad_hooks

        def register_hook(tensor, hook):
            caller = sys._getframe(1)
            fname = caller.f_code.co_filename
            # (torch's function-mode dispatch calls this again from the recorder: counted once)
            if not fname.startswith(_TORCH_DIR) and fname not in _INTERNAL_FILES:
                hooks.append(f"{fname}:{caller.f_lineno}")
            return orig(tensor, hook)

        return register_hook

    # --- modules ---------------------------------------------------------------------------
    def on_module_pre(self, module, args):
        use = self.module_uses.get(module, 0) + 1
        if use == 1:
            self.module_order.append(module)
            self.module_parent[module] = self.module_stack[-1][0] if self.module_stack else None
        self.module_uses[module] = use
        self.module_stack.append((module, use))

    def on_module_post(self, module, args, output):
        # pop back to this module (a module that raised may have left frames behind)
        while self.module_stack:
            m, _ = self.module_stack.pop()
            if m is module:
                break

    def compiled_call_impl(self, original, pre, post, hooked_call, hooked, g):
        """The sandbox's wrapped ``Module._call_impl`` in C (``kernels/record_modules.cpp``), or None.

        See `gradviz.core.sandbox._wrap_call_impl`, which asks for it; None where the recorder's
        helper is not loaded (the sandbox then wraps it in Python). Where `pre` and `post` are this
        capture's own `on_module_pre` and `on_module_post` (not overridden), the helper does their
        bookkeeping itself, with the same module_uses, module_order, module_parent and module_stack.
        """
        lib = fastpath.helper()
        if lib is None or not getattr(lib, "CALL_IMPL", False):
            return None
        cls = type(self)
        own = (pre == self.on_module_pre and post == self.on_module_post
               and cls.on_module_pre is ForwardCapture.on_module_pre
               and cls.on_module_post is ForwardCapture.on_module_post
               and "on_module_pre" not in vars(self) and "on_module_post" not in vars(self))
        return lib.call_impl(original, pre, post, hooked_call, hooked, g, self if own else None)

    # --- ops -------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if self._depth:
            return func(*args, **kwargs)
        try:
            name, inplace, _ = _FACTS[func]
        except (KeyError, TypeError):
            name, inplace, _ = self._tf_facts(func)
        # an in-place op gives its input (and the input's base, for a view) a new node
        before = _nodes_before(args, kwargs) if inplace and _grad_enabled() else None
        # what the op runs inside is part of this one event: the autograd Function that
        # torch.library.register_autograd runs inside a custom op is not a second user op
        self._depth += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self._depth -= 1
        # only ops under grad mode whose result joins the graph are events (most calls are not:
        # dim(), size(), no-grad ops)
        if not _grad_enabled():
            return out
        if before is not None:
            self._note_inplace(before)
        return self._tf_after(func, name, args, kwargs, out)

    _tf_python = __torch_function__  # (the compiled __torch_function__ calls it for in-place ops)
    _FACTS = _FACTS
    # what the compiled helper makes events and snapshots of (kernels/record_events.cpp)
    _EVENT_CLASS = ForwardEvent
    _SNAPSHOT_CLASS = TensorData

    @staticmethod
    def _tf_facts(func) -> tuple[str, bool, tuple | None]:
        """A function's (name, whether it is in place, its event's facts), remembered in ``_FACTS``.

        The event's facts, ``(op name, in place)`` as `_event_op` gives them, are None for the
        functions whose events only `_tf_after` logs (torch.ops overloads, attribute views).
        """
        name = getattr(func, "__name__", None) or str(func)
        plain = not isinstance(func, _OVERLOADS) and name not in _SKIP_FUNCS
        facts = (name, name in _INPLACE_NAMES or (name.endswith("_") and not name.endswith("__")),
                 _event_op(name) if plain else None)
        if len(_FACTS) > 4096:  # (functions made on the fly: a bound on what is kept)
            _FACTS.clear()
        try:
            _FACTS[func] = facts
        except TypeError:  # (an unhashable function: asked again each time)
            pass
        return facts

    def _tf_after(self, func, name, args, kwargs, out):
        """The rest of ``__torch_function__`` once the op ran under grad mode: log it if its result joins the graph."""
        # (is_leaf, not grad_fn: reading grad_fn gives the node a Python wrapper, which makes
        # freeing the graph recursive; see teardown.py)
        if isinstance(out, Tensor):
            if out.is_leaf:
                return out
            outs = [out]
        elif isinstance(out, (tuple, list, dict)):
            outs = tensors_in(out)
            if all(t.is_leaf for t in outs):
                return out
        else:
            return out
        overload = isinstance(func, _OVERLOADS)
        if overload:
            # a custom op says whose it is: gradviz::linear, not a bare "linear" like F.linear
            qualified = str(func).split(".")  # "gradviz.linear" or "gradviz.linear.default"
            if len(qualified) >= 2 and qualified[0] != "aten":
                name = f"{qualified[0]}::{qualified[1]}"
        ins = tensors_in(args)
        if kwargs:
            ins += tensors_in(kwargs)
        if name in _SKIP_FUNCS:
            # an attribute view (.T, .mT, .real): no event of its own, but its node was seen made,
            # and it is a use of its source (x @ w.T is w's first use)
            if self._scan_leaves(ins) and self.on_leaf is not None:
                out = self._inside(func, *args, **kwargs)
                outs = tensors_in(out)
            self._note_op(ins, outs)
            return out
        # a real use in the graph: number the source tensors it is the first to use
        if self._scan_leaves(ins) and self.on_leaf is not None:
            # finite differences changed a source in place: run the op again on the new values
            out = self._inside(func, *args, **kwargs)
            outs = tensors_in(out)
        if self.store is not None:
            self._log(name, ins, outs, replay=(func, args, kwargs) if overload else None)
        return out

    def _inside(self, fn, *args, **kwargs):
        """Call `fn` with logging off: what runs inside an op (or inside the recorder) is not a
        user op of its own."""
        self._depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self._depth -= 1

    def _log(self, name, ins, outs, replay=None, custom=None):
        # our own tensor calls below must not be logged as the user's ops
        self._depth += 1
        try:
            self._log_op(name, ins, outs, replay, custom)
        finally:
            self._depth -= 1

    def _log_op(self, name, ins, outs, replay, custom):
        if not outs:
            return
        if self.cancel is not None and self.cancel():
            self._raise_cancelled()
        op_inplace = _OP_NAMES.get(name) or _event_op(name)
        index = len(self.events)
        capture = self.store.capture
        self.events.append(ForwardEvent(index, op_inplace[0], [capture(t, True) for t in ins],
                                        [capture(t, True) for t in outs], self._source(), inplace=op_inplace[1]))
        self.event_tensors.append((ins, outs))
        self._note_op(ins, outs)
        self.event_module.append(self.module_stack[-1] if self.module_stack else None)
        grad_fn_event = self.grad_fn_event
        for t in outs:
            fn = t.grad_fn
            if fn is not None and fn not in grad_fn_event:
                grad_fn_event[fn] = index
                if replay is not None or custom is not None:
                    # detached: a replay must not keep the graph alive after recording
                    if replay is not None:
                        replay = (replay[0], _detached(replay[1]), _detached(replay[2]))
                    self.replays[fn] = (replay, custom)
        if self.max_nodes is not None and len(grad_fn_event) > self.max_nodes:
            self._raise_too_large()

    @staticmethod
    def _raise_cancelled() -> None:
        """Raise `Cancelled` (the cancel callback said yes)."""
        raise Cancelled()

    def _raise_too_large(self) -> None:
        """Raise `GraphTooLarge`: the ops so far made more nodes than ``max_nodes``."""
        # stop while the model runs: a graph far past the limit would take minutes and
        # gigabytes before the walk could refuse it
        raise GraphTooLarge(f"the model made more than {self.max_nodes:,} autograd nodes while it ran "
                            f"(the limit)", hint=LIMIT_HINT)

    def _note_op(self, ins, outs) -> None:
        """Note the nodes an op seen here made (its outputs') and consumed (its inputs')."""
        made = [t.grad_fn for t in outs if not t.is_leaf]
        self.seen_ops.append((made, [t.grad_fn for t in ins if not t.is_leaf]))

    def _note_inplace(self, before) -> None:
        """Note the nodes an in-place op gave its inputs and their bases (``CopySlices``)."""
        made = []
        for t, fn in before:
            now = t.grad_fn
            if now is not None and now is not fn:
                made.append(now)
        if made:
            self.seen_ops.append((made, [fn for _, fn in before if fn is not None]))

    def unseen_nodes(self, fns: list, leaf_ids: set, fn_ids: dict | None = None,
                     inputs_of: list[list[int]] | None = None) -> list[int]:
        """Indices into `fns` (the graph walked from the loss) of the nodes no op seen here made.

        Each op seen in this thread made the nodes between its outputs' nodes and its inputs' nodes
        (one node, or several inside a composite op). A node of the graph reached from none of them
        was made where the capture could not see: by an op in another thread (torch function modes
        are per thread), or in TorchScript. A leaf's node counts as seen when a seen op used the
        leaf (`leaf_ids`: the ids of those leaf tensors). `fn_ids` (each node's index) and
        `inputs_of` (each index's producers, one per ``next_functions`` slot), when the walk has
        them, save asking torch again.
        """
        index = fn_ids if fn_ids is not None else {fn: i for i, fn in enumerate(fns)}
        if inputs_of is None:
            inputs_of = [[index[nxt] for nxt, _ in fn.next_functions if nxt is not None] for fn in fns]
        lib = fastpath.helper()
        if lib is not None:
            # (the same flags from the helper, in one call)
            explained = lib.explained(inputs_of, index, self.seen_ops)
        else:
            explained = self._explained(len(fns), index, inputs_of)
        unseen = []
        i = explained.find(0)
        while i >= 0:
            fn = fns[i]
            if not (hasattr(fn, "variable") and id(fn.variable) in leaf_ids):
                unseen.append(i)
            i = explained.find(0, i + 1)
        return unseen

    def _explained(self, count: int, index: dict, inputs_of: list[list[int]]) -> bytearray:
        """One flag per node: whether an op seen here made it (see `unseen_nodes`)."""
        explained = bytearray(count)
        for made, consumed in self.seen_ops:
            # the nodes reached from the op's outputs' nodes, stopping at its inputs' nodes
            stop = {index[fn] for fn in consumed if fn in index}
            stack = [index[fn] for fn in made if fn in index]
            while stack:
                i = stack.pop()
                if explained[i] or i in stop:
                    continue
                explained[i] = 1
                for j in inputs_of[i]:
                    if not explained[j]:
                        stack.append(j)
        return explained

    def graph_roots(self) -> list:
        """Every autograd node this capture's tensors reference (for `GraphKeeper`)."""
        roots = list(self.grad_fn_event)
        for made, consumed in self.seen_ops:
            roots.extend(made)
            roots.extend(consumed)
        lib = fastpath.helper()
        if lib is not None:
            roots += lib.grad_fns(self.event_tensors)  # (the loop below in one call)
            return roots
        for ins, outs in self.event_tensors:
            for t in ins:
                if not t.is_leaf:
                    roots.append(t.grad_fn)
            for t in outs:
                if not t.is_leaf:
                    roots.append(t.grad_fn)
        return roots

    def _scan_leaves(self, ins) -> bool:
        """Number each source tensor (made by no op of this run) that this op is the first to use.

        Sources are leaves and inputs that need no grad; the numbering (order of first use in an op
        that joins the graph) is the same in every run of a model, so finite differences find each
        source again through ``on_leaf(tensor, index)``. Returns whether any was new.
        """
        new = False
        ids = self._leaf_ids
        for t in ins:  # (the common case: every input already numbered or made by an op)
            if t.is_leaf and id(t) not in ids:
                break
        else:
            return False
        self._depth += 1
        try:
            for t in ins:
                if t.is_leaf and id(t) not in ids:
                    ids.add(id(t))  # (the tensor is held in leaf_seen: its id stays its own)
                    self.leaf_seen[t] = len(self.leaf_seen)
                    new = True
                    if self.store is not None:
                        self.source_data.append(self.store.capture(t, True))
                    if self.on_leaf is not None:
                        self.on_leaf(t, len(self.leaf_seen) - 1)
        finally:
            self._depth -= 1
        return new

    def _source(self) -> str | None:
        """Return ``"file:line"`` of the innermost frame that is the model's (None if none; `SourceWalk` in C++)."""
        f = sys._getframe(2)  # (the frames below are the recorder's own)
        cache = self._src_cache
        while f is not None:
            fname = f.f_code.co_filename
            internal = cache.get(fname)
            if internal is None:
                internal = _internal(cache, fname)
            if not internal:
                return f"{fname}:{f.f_lineno}"
            f = f.f_back
        return None


_COMPILED: dict = {}  # the helper module -> its ForwardCapture class


def _compiled_class(lib) -> type:
    """`ForwardCapture` with the helper's ``__torch_function__`` (``kernels/record_capture.cpp``).

    It does what the Python method does and calls back into it (``_tf_python``, ``_tf_after``,
    ``_tf_facts``) for in-place ops and for results that may join the graph, but for the common
    event (a plain op whose Tensor result joins the graph), which ``kernels/record_events.cpp``
    logs as `_tf_after` would.
    """
    cls = _COMPILED.get(lib)
    if cls is None:
        cls = _COMPILED[lib] = type("ForwardCapture", (ForwardCapture,), {
            "__torch_function__": lib.capture_method(), "__module__": __name__,
            "__doc__": ForwardCapture.__doc__, "__qualname__": "ForwardCapture"})
    return cls


def _internal(cache: dict, fname: str) -> bool:
    """Whether frames of file `fname` are not the model's (torch's, the recorder's, plumbing); `cache` remembers."""
    internal = cache.get(fname)
    if internal is None:
        internal = (fname.startswith(_TORCH_DIR) or fname in _INTERNAL_FILES
                    or fname.startswith("<frozen") or fname.endswith(("contextlib.py", "functools.py")))
        cache[fname] = internal
    return internal


_INPLACE_NAMES = _INPLACE_DUNDERS | {"__setitem__"}


def _event_op(name: str) -> tuple[str, bool]:
    """The event's (op name, whether it is in place) of a function named `name`, remembered in ``_OP_NAMES``."""
    inplace = name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__"))
    op = name[2:-2] if name.startswith("__") and name.endswith("__") else name
    if op.startswith("i") and name in _INPLACE_DUNDERS:
        op = op[1:] + "_"
    op_inplace = _OP_NAMES[name] = (op, inplace)
    return op_inplace


def _nodes_before(args, kwargs) -> list:
    """Each tensor an in-place op may change (its inputs and their bases) with its node now."""
    out = []
    for t in tensors_in(args) + (tensors_in(kwargs) if kwargs else []):
        out.append((t, t.grad_fn))
        base = t._base
        if base is not None:
            out.append((base, base.grad_fn))
    return out


def _detached(obj):
    """`obj` with every tensor in it (in lists, tuples and dicts) detached, ``requires_grad`` kept."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().requires_grad_(obj.requires_grad) if obj.is_floating_point() or \
            obj.is_complex() else obj.detach()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_detached(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    return obj


def tensors_in(obj) -> list:
    """Every tensor in `obj`, looking inside lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        out = []
        for o in obj:
            if isinstance(o, torch.Tensor):
                out.append(o)
            elif isinstance(o, (tuple, list, dict)):
                out.extend(tensors_in(o))
        return out
    if isinstance(obj, dict):
        return tensors_in(list(obj.values()))
    return []
