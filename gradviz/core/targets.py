"""Resolve a TARGET (built-in model name, model script, or callable) into something that runs it."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable

import torch

from .buildresult import BuildResult
from .errors import Cancelled, GradvizError, ScriptError
from .models import MODELS, Made

__all__ = ["resolve_target", "Runner", "ScriptRunner", "BuiltinRunner", "MadeOnceRunner", "CallableRunner",
           "parse_params"]


class Runner:
    """Runs a model's build function and checks what it returns.

    Attributes
    ----------
    name : str
        How the target is shown (``"repeated-layer"``, ``"model.py:build"``).
    params : dict
        The parameters it runs with.
    """

    name = "<model>"
    params: dict = {}

    def _build(self, dtype):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, dtype: torch.dtype | None = None) -> Any:
        """Run the build function once and return its result.

        The caller runs it in a `gradviz.core.sandbox.Sandbox` (which also sets `dtype` as the
        default dtype); a built-in model is also given `dtype` directly.
        """
        try:
            return self._build(dtype)
        except (GradvizError, Cancelled):
            raise
        except (SystemExit, KeyboardInterrupt) as exc:  # never a success: say what the model did, and where
            raise _exit_error(exc, self._where(exc), "the model") from None
        except Exception as exc:  # the user's code raised: report it in their terms
            raise self._user_error(exc) from None

    def _where(self, exc: BaseException) -> str:
        """``file:line`` of the innermost frame of the user's code in `exc`'s traceback ("" if none)."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_ours(f.filename)]
        return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""

    def _user_error(self, exc: BaseException) -> GradvizError:
        return ScriptError(f"{self.name} raised {type(exc).__name__}: {exc}")

    def manual(self, leaf_values: dict) -> dict | None:
        """The model's manual gradient calculation, or None when it has none."""
        return None

    def keeps(self, t: torch.Tensor) -> bool:
        """Whether `t` lies in the memory of a tensor this runner keeps from run to run, which the
        model reads before it writes (a built-in model's ``for_reruns()`` runner); False here."""
        return False

    def loss_needs_grad(self) -> bool:
        """Whether the loss's value may depend on grad mode: False where the model promises it does
        not (a built-in model's ``for_reruns()`` runner), so a run for the value alone may turn grad off."""
        return True

    def note_sources(self, sources: list) -> None:
        """Told by the recorder: the recorded run's source tensors, in order of first use. Unused here."""

    def sources(self, dtype) -> list | None:
        """The source tensors of the next run in `dtype`, in order of first use, if known before it
        starts (a built-in model's ``for_reruns()`` runner, from the recorded run); None here."""
        return None

    def for_reruns(self) -> "Runner":
        """A runner for many re-runs of the model: this one, unless the model can keep its tensors.

        A built-in model's (`BuiltinRunner`) makes its tensors and modules once per dtype and runs
        the model on them each time, as a script's top-level model and data are the same in every run.
        """
        return self

    def normalise(self, result: Any, graph: bool = True) -> BuildResult:
        """Check the build function's return value and turn it into a `BuildResult`.

        `graph`: whether the loss must have an autograd graph (False for a run with grad off).
        """
        what = f"{self.name} returned"
        if isinstance(result, BuildResult):
            built = result
        elif isinstance(result, torch.Tensor):
            built = BuildResult(result, {}, None)
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor):
            loss, extra = result
            if isinstance(extra, dict):
                bad = [k for k, v in extra.items() if not isinstance(v, torch.Tensor)]
                if bad:
                    raise ScriptError(f"{what} a leaves dict whose entries {bad} are not tensors",
                                      hint="the dict must map names to tensors: {'x': x, 'w': w}")
                built = BuildResult(loss, dict(extra), None)
            elif isinstance(extra, torch.nn.Module):
                built = BuildResult(loss, {}, extra)
            else:
                raise ScriptError(f"{what} (loss, {type(extra).__name__}); the second item must be a dict "
                                  "of named tensors or an nn.Module",
                                  hint="return loss, return (loss, {'w': w}), or return (loss, model)")
        else:
            raise ScriptError(f"{what} {_describe(result)}, not a loss tensor",
                              hint="return the scalar loss tensor, (loss, {'name': tensor}), or (loss, module)")
        loss = built.loss
        if loss.numel() != 1:
            raise ScriptError(f"the loss must be a scalar, but {self.name} returned a tensor of shape "
                              f"{tuple(loss.shape)}", hint="reduce it to one number, for example loss.sum() or loss.mean()")
        if graph and (not loss.requires_grad or loss.grad_fn is None):
            raise ScriptError(f"nothing in {self.name} requires grad, so the loss has no autograd graph",
                              hint="create the tensors to differentiate with requires_grad=True, or use nn.Parameters")
        return built


def _describe(obj: Any) -> str:
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)} ({', '.join(type(o).__name__ for o in obj)})"
    return "None" if obj is None else f"a {type(obj).__name__}"


class CallableRunner(Runner):
    """Runs a Python callable that takes no arguments."""

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "<callable>")
        self.params = {}

    def _build(self, dtype):
        torch.manual_seed(0)
        return self.fn()

    def _user_error(self, exc):
        return ScriptError(f"{self.name} raised {type(exc).__name__}: {exc}",
                           details=_user_frames(exc, None))


class ScriptRunner(Runner):
    """Runs ``build()`` (or a named function) of a model script."""

    def __init__(self, path: str, function: str = "build"):
        self.path = os.path.abspath(path)
        self.function = function
        self.name = f"{path}:{function}" if function != "build" else path
        self.params = {}
        self._namespace = None
        self._load()

    def _load(self) -> None:
        path = self.path
        if not os.path.exists(path):
            raise ScriptError(f"no such file: {path}", hint="check the path; gradviz list shows the built-in models")
        if os.path.isdir(path):
            raise ScriptError(f"{path} is a folder, not a Python file", hint="name the model script itself")
        if path.lower().endswith(".gradviz"):
            raise ScriptError(f"{path} is a saved recording, not a model script",
                              hint="open it with gradviz.core.storage.load_recording(path); the gradviz "
                                   "commands and the app take it as a TARGET directly")
        if not path.endswith(".py"):
            raise ScriptError(f"{path} is not a Python file (.py)",
                              hint="give a model script ending in .py that defines build()")
        try:
            with open(path, "rb") as f:
                source = f.read()
            code = compile(source, path, "exec")
        except SyntaxError as exc:
            raise ScriptError(f"syntax error in {exc.filename}:{exc.lineno}: {exc.msg}",
                              details=(exc.text or "").rstrip() and f"    {exc.text.strip()}",
                              hint="fix the line above and run again") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ScriptError(f"cannot read {path}: {exc}") from None
        namespace = {"__name__": "__gradviz_model__", "__file__": path, "__builtins__": __builtins__}
        try:
            exec(code, namespace)
        except (GradvizError, Cancelled):
            raise
        except (SystemExit, KeyboardInterrupt) as exc:
            raise _exit_error(exc, self._where(exc), "the model script") from None
        except Exception as exc:
            raise ScriptError(f"{path} raised {type(exc).__name__} while loading: {exc}",
                              details=_user_frames(exc, path)) from None
        fn = namespace.get(self.function)
        if fn is None or not callable(fn):
            defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_")
                             and getattr(v, "__module__", None) == "__gradviz_model__")
            raise ScriptError(f"{path} defines no function {self.function}()",
                              hint=f"add def {self.function}(): ... that returns the loss"
                                   + (f", or name one of: {', '.join(defined)} (file.py:name)" if defined else ""))
        self._namespace = namespace
        self._fn = fn

    def _build(self, dtype):
        torch.manual_seed(0)
        return self._fn()

    def _user_error(self, exc):
        frames = traceback.extract_tb(exc.__traceback__)
        mine = [f for f in frames if os.path.abspath(f.filename) == self.path]
        where = f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""
        return ScriptError(f"{self.function}() raised {type(exc).__name__}{where}: {exc}",
                           details=_user_frames(exc, self.path),
                           hint="the frames above are your script's; fix the error there and run again")


def _is_ours(filename: str) -> bool:
    """Whether a frame's file is gradviz's, torch's or Python's own (not the user's model code)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fname = os.path.abspath(filename)
    return (fname.startswith(here + os.sep) or fname.startswith(os.path.dirname(torch.__file__) + os.sep)
            or filename.startswith("<frozen") or fname.startswith(os.path.dirname(os.__file__) + os.sep))


def _exit_error(exc: BaseException, where: str, who: str) -> ScriptError:
    """The one line for model code that exited or was interrupted: never reported as success."""
    at = f" at {where}" if where else ""
    if isinstance(exc, SystemExit):
        code = exc.code
        shown = "" if code is None else repr(code)
        return ScriptError(f"{who} called sys.exit({shown}){at}: gradviz needs build() to return the loss",
                           hint="remove the sys.exit() (or SystemExit) from the model code")
    return ScriptError(f"{who} was interrupted (KeyboardInterrupt){at}",
                       hint="run it again; the model code raised KeyboardInterrupt or Ctrl+C was pressed")


def _user_frames(exc: BaseException, path: str | None) -> str:
    """The traceback lines that belong to the user's code: never gradviz's or torch's own frames."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    torch_dir = os.path.dirname(torch.__file__)
    lines = []
    for f in traceback.extract_tb(exc.__traceback__):
        fname = os.path.abspath(f.filename)
        if fname.startswith(here) or fname.startswith(torch_dir) or f.filename.startswith("<frozen"):
            continue
        lines.append(f"  {f.filename}:{f.lineno} in {f.name}")
        if f.line:
            lines.append(f"    {f.line.strip()}")
    return "\n".join(lines)


class BuiltinRunner(Runner):
    """Runs a built-in model with its parameters."""

    def __init__(self, spec, params: dict | None):
        self.spec = spec
        self.name = spec.name
        self.params = spec.resolve_params(params or {})
        self._last_made = None  # the tensors of the last run (a Made), until `note_sources`
        # where each source of the recorded run lies in what it made: (which tensor of Made.tensors(),
        # that tensor's shape, strides and offset, the source's); None where one lies elsewhere
        self.source_places: list | None = None

    def _build(self, dtype):
        made = self.spec.make(dtype=dtype or torch.float32, **self.params)
        if not isinstance(made, Made):
            return made
        self._last_made = made
        return made.run()

    def note_sources(self, sources: list) -> None:
        made, self._last_made, self.source_places = self._last_made, None, None
        if made is None:
            return
        kept = made.tensors()
        where = {_memory(t): k for k, t in enumerate(kept)}
        places = []
        for t in sources:
            k = where.get(_memory(t)) if t.layout == torch.strided else None
            # (elements of a kept tensor, read as they are: not another dtype's view of them, not conjugated)
            if k is None or t.dtype != kept[k].dtype or t.is_conj() or t.is_neg():
                return
            places.append((k, _geometry(kept[k]), _geometry(t)))
        self.source_places = places

    def manual(self, leaf_values):
        if self.spec.manual is None:
            return None
        return self.spec.manual(leaf_values, **self.params)

    def for_reruns(self) -> Runner:
        return MadeOnceRunner(self)


class MadeOnceRunner(Runner):
    """Runs a built-in model again and again on the tensors and modules it made first, per dtype.

    The model is deterministic: the tensors it would make again hold the same values, and the
    generator state it runs from is restored before each run. A model whose build function does
    not return `gradviz.core.models.Made` is built anew in each run.
    """

    def __init__(self, builtin: BuiltinRunner):
        self.builtin = builtin
        self.name = builtin.name
        self.params = builtin.params
        self._made: dict = {}  # dtype -> (Made, torch's generator state after making it)
        self._held: set = set()  # (device, address) of the memory of every tensor a Made keeps

    def _make(self, dtype) -> Made | BuildResult:
        """The tensors and modules made for `dtype` (made the first time), or a model built in one step."""
        if dtype not in self._made:
            made = self.builtin.spec.make(dtype=dtype, **self.params)
            if not isinstance(made, Made):
                return made
            self._made[dtype] = (made, torch.get_rng_state())
            self._held |= {_memory(t) for t in made.tensors()}
        return self._made[dtype][0]

    def _build(self, dtype):
        dtype = dtype or torch.float32
        made = self._make(dtype)
        if not isinstance(made, Made):
            return made
        torch.set_rng_state(self._made[dtype][1])  # (as right after making it: a model that draws random
        return made.run()                          # numbers draws the same)

    def keeps(self, t: torch.Tensor) -> bool:
        # a built-in model's loss reads its tensors and writes none before reading it (Made's contract)
        return t.layout == torch.strided and _memory(t) in self._held

    def sources(self, dtype) -> list | None:
        # the recorded run's sources, found again in the tensors made for `dtype`: the same places
        places = self.builtin.source_places
        if places is None:
            return None
        try:
            made = self._make(dtype or torch.float32)
        except Exception:  # noqa: BLE001 - a run through the function mode then says what went wrong
            return None
        if not isinstance(made, Made):
            return None
        kept = made.tensors()
        found = []
        for k, base, place in places:
            t = kept[k] if k < len(kept) else None
            if t is None or _geometry(t) != base:
                return None
            # the tensor itself, or a view of its elements as the source was of the recorded one's
            found.append(t if place == base else t.detach().as_strided(place[0], place[1], place[2]))
        return found

    def loss_needs_grad(self) -> bool:
        return not self._made  # (Made's contract: the same value with grad off)

    def manual(self, leaf_values):
        return self.builtin.manual(leaf_values)


def _geometry(t: torch.Tensor) -> tuple:
    """A dense tensor's place in its memory: shape, strides and offset (in elements)."""
    return tuple(t.shape), t.stride(), t.storage_offset()


def _memory(t: torch.Tensor) -> tuple:
    """Where a dense tensor's memory (its whole storage, shared by its views) lies: (device, address)."""
    return t.device, t.untyped_storage().data_ptr()


def parse_params(items: list[str] | None) -> dict:
    """Parse ``["k=3", "tanh=true"]`` into ``{"k": "3", "tanh": "true"}`` (typed later by the model)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise GradvizError(f"bad --param {item!r}: expected NAME=VALUE", hint="for example --param k=3")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def resolve_target(target: Any, params: dict | None = None) -> Runner:
    """Return a `Runner` for a built-in model name, a script ``path.py[:function]`` or a callable."""
    if isinstance(target, Runner):
        return target
    if callable(target):
        if params:
            raise GradvizError("parameters apply to built-in models only",
                               hint="give the callable its values directly (functools.partial)")
        return CallableRunner(target)
    if isinstance(target, os.PathLike):
        target = os.fspath(target)  # a script given as a path object, named as the user wrote it
    if not isinstance(target, str) or not target:
        raise GradvizError(f"cannot record {target!r}", hint="give a built-in model name, a script path, or a callable")
    if target in MODELS:
        return BuiltinRunner(MODELS[target], params)
    path, function = target, "build"
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and head:
        path, function = head, tail
    if params:
        raise GradvizError("--param applies to built-in models only",
                           hint="a model script sets its own values")
    if not os.path.exists(path) and not path.endswith(".py") and os.sep not in path:
        known = ", ".join(MODELS)
        raise GradvizError(f"unknown model {target!r}: not a built-in model and no such file",
                           hint=f"built-in models: {known}; or give a path to a .py model script")
    return ScriptRunner(path, function)
