"""The one owner of every process-wide patch that recording a model applies.

Running a user's model under observation changes state that the whole process shares:
``Module._call_impl`` or global module hooks, ``torch.autograd.Function.apply``, ``torch.Tensor.register_hook``,
``torch.compile`` and the compiler stance, the default dtype, grad mode, a warnings filter,
``sys.stdin`` and ``builtins.input``, the parameters' ``.data`` (finite differences run on
copies) and Python's cycle collector. `Sandbox` applies what it is asked for and, however the
block ends (a return, an error, a `Cancelled`, ``KeyboardInterrupt`` or ``SystemExit`` from the
model), puts every one of them back as it found it, last applied first restored.

Sandboxes nest (a recording re-runs its model inside the checks' sandbox) and are serialised
across threads by one re-entrant lock: two threads patching ``Function.apply`` at once would
each restore the other's patch.
"""
from __future__ import annotations

import builtins
import contextlib
import gc
import os
import re
import sys
import threading
import warnings
from typing import Any, Iterator

import torch
from torch.nn.modules import module as _module

from .errors import GradvizError

__all__ = ["Sandbox", "gc_paused", "pause_gc", "resume_gc", "promote_to_oldest", "NoStdin"]

LOCK = threading.RLock()

# torch warns that a compiled module fires global module hooks twice; those hooks are the
# recorder's own, and they count each module once anyway
_HOOK_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks"
_HOOK_FILTER = ("ignore", re.compile(_HOOK_WARNING, re.I), Warning, None, 0)


# ---------------------------------------------------------------------------------------------
# the cycle collector: one counted switch for every user (a recording, a layout, the app's window)

_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled = True


def pause_gc() -> None:
    """Turn the automatic cycle collector off; call `resume_gc` once for each call.

    Counted, so that users in different threads compose: the collector runs again only when the
    last one resumes, and then only if it was on when the first one paused it.
    """
    global _gc_users, _gc_was_enabled
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_users += 1


def resume_gc() -> None:
    """Undo one `pause_gc`; the last one turns the collector back on if it was on before."""
    global _gc_users
    with _gc_lock:
        if _gc_users == 0:
            return
        _gc_users -= 1
        if _gc_users == 0 and _gc_was_enabled:
            gc.enable()


def promote_to_oldest() -> None:
    """Move every object the cycle collector tracks into its oldest generation, without a collection.

    For a block that made many objects that will live on (a recording: ~10 objects per node) with
    the collector paused: they all sit in the youngest generation, and the first collection after
    the pause would walk every one of them (40-75 ms at 11.9k nodes, on this project's VM), then
    the middle generation's again. Moved at once (``gc.freeze`` then ``gc.unfreeze``: two list
    splices), only full collections look at them. Garbage among them is freed by the next full
    collection instead of the next young one. Does nothing while objects are frozen by someone else.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cycle collector off, then restore it as it was.

    Recording, laying out and exporting a graph of ten thousand nodes make hundreds of thousands of
    small objects that live as long as the graph; each collection the allocations trigger would
    traverse all of them (half of a layout's time on an 11,907-node graph) and free nothing.
    """
    pause_gc()
    try:
        yield
    finally:
        resume_gc()


# ---------------------------------------------------------------------------------------------
# standard input

class NoStdin:
    """Stands in for standard input while a model runs: a model must not wait for a person."""

    def _refuse(self, *a, **k):
        raise GradvizError("the model script reads standard input, which gradviz does not provide",
                           hint="give the values in the script, or read them from a file or environment variable")

    read = readline = readlines = __iter__ = __next__ = _refuse

    def fileno(self):
        self._refuse()

    def isatty(self):
        return False


def _refuse_input(*a, **k):
    return sys.stdin.readline()


# ---------------------------------------------------------------------------------------------

_GRADVIZ_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def _once(show, warned: set):
    """``warnings.showwarning`` that passes each warning (category and text) to `show` once.

    A warning torch gives inside an op of the model comes from C++, so Python places it at the
    innermost Python frame: gradviz's capture, which runs the op. It is put at the model's line.
    """

    def showwarning(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key in warned:
            return
        warned.add(key)
        if str(filename).startswith(_GRADVIZ_DIR):
            frame = sys._getframe(1)
            while frame is not None:
                name = frame.f_code.co_filename
                if not (name.startswith((_GRADVIZ_DIR, _TORCH_DIR, "<")) or name == warnings.__file__):
                    filename, lineno, line = name, frame.f_lineno, None
                    break
                frame = frame.f_back
        show(message, category, filename, lineno, file, line)

    return showwarning


class Sandbox:
    """Apply the process-wide patches a model run needs; restore all of them on exit.

    Always: refuse standard input, run ``torch.compile``d code eagerly, silence torch's warning
    about the recorder's global hooks, and put back the default dtype, grad mode, warnings filters,
    the global module hook tables, ``Module._call_impl``, ``Function.apply`` and ``Tensor.register_hook`` as they were on
    entry (whatever the model did to them), and the cycle collector's thresholds.

    Parameters
    ----------
    capture : object, optional
        A forward capture (a ``TorchFunctionMode`` with ``on_module_pre``, ``on_module_post`` (None
        for either: no such hook),
        ``wrap_apply`` and ``wrap_register_hook``, and optionally ``compiled_call_impl``: see
        `_wrap_call_impl`): its module hooks (around a wrapped
        ``Module._call_impl``, or as global hooks: `_wrap_call_impl`), patched
        ``Function.apply`` and ``Tensor.register_hook`` are installed, then the mode entered.
    dtype : torch.dtype, optional
        The default dtype inside the block.
    modules : iterable of torch.nn.Module, optional
        Inside the block their parameters and buffers hold working copies (float64 with `cast64`),
        so whatever re-runs do to them in place is undone; the Parameter objects stay the same.
    cast64 : bool
        Make the `modules`' floating-point copies float64.
    pause_gc : bool
        Turn the cycle collector off inside the block (see `gc_paused`).
    warned : set, optional
        Show each warning (by category and text) once: a warning whose key is in `warned` is not
        shown again, and each one shown is added. Share one set between a recording and its
        re-runs, and a model that warns in a loop, or on every run, warns once.
    """

    def __init__(self, capture: Any = None, *, dtype: torch.dtype | None = None, modules=(),
                 cast64: bool = False, pause_gc: bool = False, warned: set | None = None):
        self.warned = warned
        self.capture = capture
        self.dtype = dtype
        self.modules = list(modules or ())
        self.cast64 = cast64
        self.pause_gc = pause_gc
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "Sandbox":
        if self._stack is not None:
            raise RuntimeError("a Sandbox is entered once at a time")
        stack = contextlib.ExitStack()
        stack.enter_context(LOCK)
        try:
            if self.pause_gc:
                stack.enter_context(gc_paused())
            self._keep_torch_state(stack)
            self._no_stdin(stack)
            self._eager(stack)
            self._quiet_hook_warning(stack)
            if self.modules:
                self._swap_data(stack)
            if self.capture is not None:
                self._install(stack, self.capture)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc) -> bool:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.__exit__(*exc)  # every callback runs, even when one of them raises
        return False

    # --- what is applied ---------------------------------------------------------------------
    def _keep_torch_state(self, stack: contextlib.ExitStack) -> None:
        fn_cls, tensor_cls = torch.autograd.Function, torch.Tensor
        apply, register_hook = fn_cls.__dict__["apply"], tensor_cls.__dict__["register_hook"]
        call_impl = _module.Module.__dict__.get("_call_impl")
        tables = {name: (table, dict(table)) for name, table in vars(_module).items()
                  if name.startswith("_global_") and isinstance(table, dict)}
        dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
        threshold = gc.get_threshold()

        def restore():
            if fn_cls.__dict__.get("apply") is not apply:
                fn_cls.apply = apply
            if tensor_cls.__dict__.get("register_hook") is not register_hook:
                tensor_cls.register_hook = register_hook
            if _module.Module.__dict__.get("_call_impl") is not call_impl:
                _module.Module._call_impl = call_impl
            # hooks the model registered (and left) on every module go; any it removed come back
            for name, (table, items) in tables.items():
                if getattr(_module, name) is not table:
                    setattr(_module, name, table)
                if list(table.items()) != list(items.items()):
                    table.clear()
                    table.update(items)
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)
            if gc.get_threshold() != threshold:
                gc.set_threshold(*threshold)

        stack.callback(restore)
        if self.dtype is not None:
            torch.set_default_dtype(self.dtype)

    def _no_stdin(self, stack: contextlib.ExitStack) -> None:
        # reading standard input (input(), sys.stdin) fails with a clear message
        old_stdin, old_input = sys.stdin, builtins.input

        def restore():
            sys.stdin, builtins.input = old_stdin, old_input

        stack.callback(restore)
        sys.stdin = NoStdin()
        builtins.input = _refuse_input

    def _eager(self, stack: contextlib.ExitStack) -> None:
        """Run ``torch.compile``d code eagerly: a compiled region would hide its ops in one opaque node.

        Code compiled before the run (``torch.compile`` at a script's top level, which imports
        ``torch._dynamo``) runs under ``torch.compiler.set_stance("force_eager")`` (torch 2.6+);
        ``torch.compile`` called during the run returns its model or function unchanged. Neither
        imports ``torch._dynamo`` for a model that never compiles (that import takes 1.5 s).
        """
        original = torch.compile

        def restore():
            torch.compile = original

        stack.callback(restore)

        def compile_eagerly(model=None, **kwargs):
            return model if model is not None else (lambda fn: fn)

        torch.compile = compile_eagerly
        set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
        if "torch._dynamo" in sys.modules and set_stance is not None:
            stack.enter_context(set_stance("force_eager"))

    def _quiet_hook_warning(self, stack: contextlib.ExitStack) -> None:
        # The filter goes straight into the list, without warnings' "filters changed" signal:
        # that signal (which filterwarnings and catch_warnings send) would make every "show once"
        # warning of the process show again after each run. An "ignore" filter records nothing
        # in the once-registries, so taking it out again needs no signal either.
        filters = warnings.filters
        kept = list(filters)
        showwarning = warnings.showwarning

        def restore():
            if warnings.filters is not filters:
                warnings.filters = filters
            current = list(filters)
            if _HOOK_FILTER in current:
                current.remove(_HOOK_FILTER)
                filters.remove(_HOOK_FILTER)
            if current != kept:  # the model changed the filters: put them back, and say so
                filters[:] = kept
                warnings._filters_mutated()
            warnings.showwarning = showwarning

        stack.callback(restore)
        filters.insert(0, _HOOK_FILTER)
        if self.warned is not None:
            warnings.showwarning = _once(showwarning, self.warned)

    def _swap_data(self, stack: contextlib.ExitStack) -> None:
        """Give the modules' parameters and buffers working copies (float64 with `cast64`).

        Finite differences re-run the model dozens of times. A model made before ``build()``
        (``model = Net()`` at a script's top level) keeps float32 weights when the default dtype is
        float64; cast here, it runs in float64 like a model built inside ``build()``, so the check
        is exact to 1e-6 instead of 5e-2. Whatever the re-runs change in place (running
        statistics, ``num_batches_tracked``) changes the copies only.
        """
        tensors = []
        seen = set()
        for m in self.modules:
            for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]:
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    tensors.append(t)
        saved = [t.data for t in tensors]

        def restore():
            for t, original in zip(tensors, saved):
                t.data = original

        stack.callback(restore)
        with torch.no_grad():
            for t in tensors:
                cast = self.cast64 and t.is_floating_point() and t.dtype != torch.float64
                t.data = t.data.to(torch.float64) if cast else t.data.clone()

    def _install(self, stack: contextlib.ExitStack, capture: Any) -> None:
        # modules (which one, which call of it) through global forward hooks; custom
        # Function.apply calls, which torch function modes do not see; where the script registers
        # gradient hooks on tensors; then the function mode that logs every op
        # (a capture that does not follow modules has None for both: no hooks, torch's fast module call)
        if capture.on_module_pre is not None and capture.on_module_post is not None and _can_wrap_call():
            _wrap_call_impl(stack, capture.on_module_pre, capture.on_module_post,
                            getattr(capture, "compiled_call_impl", None))
        else:
            if capture.on_module_pre is not None:
                stack.callback(_module.register_module_forward_pre_hook(capture.on_module_pre).remove)
            if capture.on_module_post is not None:
                stack.callback(_module.register_module_forward_hook(capture.on_module_post).remove)
        fn_cls, tensor_cls = torch.autograd.Function, torch.Tensor
        apply, register_hook = fn_cls.__dict__["apply"], tensor_cls.__dict__["register_hook"]
        stack.callback(setattr, fn_cls, "apply", apply)
        fn_cls.apply = classmethod(capture.wrap_apply(apply.__func__))
        stack.callback(setattr, tensor_cls, "register_hook", register_hook)
        tensor_cls.register_hook = capture.wrap_register_hook(register_hook)
        stack.enter_context(capture)


# ---------------------------------------------------------------------------------------------
# following modules without global hooks

_CALL_IMPL = _module.Module._call_impl
_GLOBAL_TABLES = ("_global_backward_pre_hooks", "_global_backward_hooks", "_global_forward_hooks",
                  "_global_forward_pre_hooks")


def _can_wrap_call() -> bool:
    """Whether `_wrap_call_impl` follows modules exactly as global forward hooks would here.

    Not when a global module hook is already registered (a sandbox around this one follows
    modules, or the process registered one), when ``Module._call_impl`` is not torch's own, when
    ``torch._dynamo`` is loaded (a compiled module runs the ``_call_impl`` it was compiled from), or
    when a class of module holds a ``_call_impl`` of its own (it may be torch's, taken before the
    patch).
    """
    if any(getattr(_module, name) for name in _GLOBAL_TABLES) or "torch._dynamo" in sys.modules:
        return False
    if _module.Module.__dict__.get("_call_impl") is not _CALL_IMPL:
        return False
    classes, seen = list(_module.Module.__subclasses__()), set()
    while classes:  # every subclass, however deep
        cls = classes.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if "_call_impl" in cls.__dict__:
            return False
        classes.extend(cls.__subclasses__())
    return True


def _wrap_call_impl(stack: contextlib.ExitStack, pre, post, compiled=None) -> None:
    """Call ``pre(module, args)`` and ``post(module, args, result)`` around every module's call.

    What a global forward pre hook and forward hook registered now would do, without making every
    module call take torch's slow path (a module without hooks runs its forward straight away;
    global hooks cost 16 ms on a 1,700-step RNN cell's forward, this 5 ms). ``Module._call_impl``
    (which ``Module.__call__`` calls) is wrapped: a module with no hooks of its own, while no global
    hook is registered, gets `pre`, its call, then `post` (nothing when it raises), as the hooks'
    slow path would. Anything else (the module's own hooks, which run between the global ones and
    the forward, or global hooks the model registered) registers `pre` and `post` as global hooks
    for the length of the call, first in their tables as if registered now, and the modules it
    calls leave them to those hooks. (Threads: a module called in another thread while they are
    registered may be followed twice or not at all.)

    `compiled`, when given, is asked for the same wrapper in C: ``compiled(original, pre, post,
    hooked_call, hooked, g)`` (`hooked_call`: the slow path above, as a function of the module and
    its arguments; `hooked`: the one-item list that counts the calls running it; `g`: torch's
    module's globals, where the tables are read at each call) returns it, or None (this Python one).
    """
    original = _CALL_IMPL
    g = vars(_module)  # (read at each call, as torch's _call_impl reads them)
    hooked = [0]  # the global hooks are registered (by a call running now)

    def hooked_call(self, *args, **kwargs):
        handles = [_first(_module._global_forward_pre_hooks, _module.register_module_forward_pre_hook(pre)),
                   _first(_module._global_forward_hooks, _module.register_module_forward_hook(post))]
        hooked[0] += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            hooked[0] -= 1
            for handle in handles:
                handle.remove()

    def _call_impl(self, *args, **kwargs):
        if hooked[0]:
            return original(self, *args, **kwargs)
        if not (self._backward_hooks or self._backward_pre_hooks or self._forward_hooks or self._forward_pre_hooks
                or g["_global_backward_pre_hooks"] or g["_global_backward_hooks"]
                or g["_global_forward_hooks"] or g["_global_forward_pre_hooks"]):
            pre(self, args)
            result = original(self, *args, **kwargs)
            post(self, args, result)
            return result
        return hooked_call(self, *args, **kwargs)

    wrapper = compiled(original, pre, post, hooked_call, hooked, g) if compiled is not None else None

    def restore():
        _module.Module._call_impl = original  # (whatever the model put there)

    stack.callback(restore)
    _module.Module._call_impl = wrapper if wrapper is not None else _call_impl


def _first(table: dict, handle):
    """Move `handle`'s hook to the front of `table` (hooks run in the table's order); return `handle`."""
    if len(table) > 1:
        items = list(table.items())
        table.clear()
        table[handle.id] = items[-1][1]
        table.update(items[:-1])
    return handle
