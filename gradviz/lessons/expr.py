"""Lesson expressions: a safe evaluator (simpleeval) over a small set of functions of one recording.

A lesson's answers and its text's live numbers are expressions such as ``grad("layer.weight")[0, 0]``,
``contribution("layer.weight", 1)`` or ``shape(node("MmBackward0", use=2).grad_input[0])``. They are
never given to Python's ``eval``: `check_expression` reads the syntax tree first (only the functions
below, only the node attributes below, no names starting with ``_``, no lambdas or comprehensions),
and `Scope.evaluate` runs them with simpleeval, which allows exactly the same.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from ..core.flow import gradient_flow
from ..core.recording import GraphNode, Recording
from ..core.tensors import TensorData

__all__ = ["ExpressionError", "NodeView", "NODE_ATTRS", "FUNCTIONS", "check_expression", "Scope",
           "find_nodes", "format_value"]

# what an expression may read of a node (see `NodeView`)
NODE_ATTRS = ("id", "name", "kind", "module", "use", "uses", "backend", "leaf", "grad_input", "grad_output",
              "saved", "output", "inputs")
CONSTANTS = {"True": True, "False": False, "None": None, "pi": math.pi}
_FORBIDDEN = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.NamedExpr, ast.Await,
              ast.Yield, ast.YieldFrom, ast.Starred)


class ExpressionError(Exception):
    """An expression that is not allowed or cannot be evaluated on this recording (one sentence)."""


@dataclass
class NodeView:
    """What a lesson expression sees of one graph node.

    Attributes
    ----------
    id, name, kind, module, use, uses, backend, leaf
        As in `gradviz.core.recording.GraphNode`.
    grad_input : list of numpy.ndarray or None
        The gradients the node sent on in backward, one per slot of its next_functions (torch's
        ``grad_inputs`` of a node hook); empty when it did not run.
    grad_output : list of numpy.ndarray or None
        The gradients that arrived at the node.
    saved : dict of str to numpy.ndarray
        What the node saved for backward (``self``, ``mat2``, ``saved_tensors[0]``, ...).
    output : numpy.ndarray or None
        The first output of the forward op that made the node.
    inputs : list of numpy.ndarray or None
        That op's tensor inputs.
    """

    id: int
    name: str
    kind: str
    module: str | None
    use: int | None
    uses: int | None
    backend: str | None
    leaf: str | None
    grad_input: list
    grad_output: list
    saved: dict
    output: Any
    inputs: list


def _val(t: TensorData | None):
    return None if t is None else t.value


def find_nodes(rec: Recording, name: str, *, module: str | None = None, use: int | None = None,
               backend: str | None = None) -> list[GraphNode]:
    """Nodes called `name` (node name, torch name or leaf name), in the order backward ran them.

    Nodes that did not run in backward follow, by id.
    """
    order = {e.node: e.index for e in rec.backward}
    hits = [n for n in rec.nodes
            if name in (n.name, n.torch_name, n.leaf)
            and (module is None or n.module == module)
            and (use is None or n.use == use)
            and (backend is None or n.backend == backend)]
    return sorted(hits, key=lambda n: (order.get(n.id, len(rec.backward) + n.id), n.id))


def check_expression(expr: str, functions) -> str | None:
    """Return the problem with `expr` (one sentence), or None when it may be evaluated.

    Parameters
    ----------
    expr : str
    functions : collection of str
        The function names an expression may call.
    """
    if not isinstance(expr, str) or not expr.strip():
        return "an expression must be a non-empty string"
    text = expr.strip()
    if text.split()[0] in ("import", "from"):
        return f"imports are not allowed in a lesson expression ({text!r})"
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return f"{text!r} is not an expression ({exc.msg})"
    for sub in ast.walk(tree):
        if isinstance(sub, _FORBIDDEN):
            return f"{type(sub).__name__} is not allowed in a lesson expression ({text!r})"
        if isinstance(sub, ast.Attribute):
            if sub.attr.startswith("_"):
                return f"access to .{sub.attr} is not allowed in a lesson expression ({text!r})"
            if sub.attr not in NODE_ATTRS:
                return (f"attribute .{sub.attr} is not allowed in a lesson expression ({text!r}); "
                        f"of a node() one may read {', '.join('.' + a for a in NODE_ATTRS)}")
        elif isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name):
                return f"only the lesson functions may be called, not methods ({text!r})"
            if sub.func.id.startswith("_"):
                return f"the name {sub.func.id!r} is not allowed in a lesson expression ({text!r})"
            if sub.func.id not in functions:
                return f"unknown function {sub.func.id!r} in {text!r}; known: {', '.join(sorted(functions))}"
        elif isinstance(sub, ast.Name):
            if sub.id.startswith("_"):
                return f"the name {sub.id!r} is not allowed in a lesson expression ({text!r})"
            if sub.id not in functions and sub.id not in CONSTANTS:
                return f"unknown name {sub.id!r} in {text!r}"
    return None


def _as_array(x) -> np.ndarray:
    if x is None:
        raise ExpressionError("the value is None (no gradient, or its values were not kept)")
    if isinstance(x, TensorData):
        x = x.value
    return np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x


def _shape(x) -> tuple | None:
    if x is None:
        return None
    if isinstance(x, TensorData):
        return tuple(int(s) for s in x.shape)
    return tuple(int(s) for s in np.shape(x))


class Scope:
    """The functions lesson expressions call, over one recording (and its check table, once run).

    Parameters
    ----------
    rec : Recording
    checks : CheckTable or None
    """

    def __init__(self, rec: Recording, checks=None):
        self.rec = rec
        self.checks = checks
        self._flow = None
        self.functions: dict[str, Callable] = {
            # the recording
            "grad": self.grad, "value": self.value, "loss": self.loss, "contribution": self.contribution,
            "contributions": self.contributions, "producer": self.producer, "node": self.node,
            "count": self.count, "param": self.param, "flow": self.flow,
            # tensors
            "shape": _shape, "total": lambda x: float(np.sum(_as_array(x))),
            "mean": lambda x: float(np.mean(_as_array(x))), "norm": lambda x: float(np.linalg.norm(_as_array(x))),
            "transpose": lambda x: _as_array(x).T, "matmul": lambda a, b: _as_array(a) @ _as_array(b),
            "rowsum": lambda x: _as_array(x).sum(axis=0), "ones_like": lambda x: np.ones_like(_as_array(x)),
            "allclose": lambda a, b, tol=1e-5: bool(np.allclose(_as_array(a), _as_array(b), atol=tol, rtol=tol)),
            "maxdiff": lambda a, b: float(np.max(np.abs(_as_array(a) - _as_array(b)))),
            "is_none": lambda x: x is None,
            # numbers
            "abs": lambda x: np.abs(x), "float": lambda x: float(np.asarray(x).reshape(-1)[0]), "int": int,
            "round": round, "len": len, "min": min, "max": max, "sqrt": math.sqrt, "exp": math.exp,
            "tanh": math.tanh, "str": str,
            # the machine and the checks
            "backend_available": self.backend_available, "backend_reason": self.backend_reason,
            "failing": self.failing, "checks_ok": self.checks_ok,
        }
        self._eval = _Evaluator(self.functions)

    # -- evaluation -----------------------------------------------------------------------------
    def problem(self, expr: str) -> str | None:
        """The static problem with `expr`, or None (see `check_expression`)."""
        return check_expression(expr, self.functions)

    def evaluate(self, expr: str) -> Any:
        """Evaluate `expr`; raise `ExpressionError` with one sentence when it cannot be."""
        bad = self.problem(expr)
        if bad:
            raise ExpressionError(bad)
        try:
            return self._eval.eval(expr.strip())
        except ExpressionError as exc:
            raise ExpressionError(f"{expr.strip()!r}: {exc}") from None
        except InvalidExpression as exc:
            raise ExpressionError(f"{expr.strip()!r} cannot be evaluated: {exc}") from None
        except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError,
                ArithmeticError) as exc:
            raise ExpressionError(f"{expr.strip()!r} cannot be evaluated here: {type(exc).__name__}: {exc}") from None

    # -- functions of the recording -------------------------------------------------------------
    def _leaf(self, name: str):
        info = self.rec.leaves.get(name)
        if info is None:
            raise ExpressionError(f"no leaf named {name!r}; leaves: {', '.join(self.rec.leaves)}")
        return info

    def grad(self, leaf: str):
        """The final ``.grad`` of leaf `leaf` (None when it got none)."""
        info = self._leaf(leaf)
        return None if info.grad is None else info.grad.value

    def value(self, leaf: str):
        """The value of leaf or input `leaf` as recorded."""
        return _val(self._leaf(leaf).tensor)

    def loss(self) -> float:
        """The loss."""
        return float(np.asarray(_as_array(self.rec.loss)).reshape(-1)[0])

    def contribution(self, leaf: str, i: int):
        """The `i`-th gradient (1-based, in the order the engine ran its producers) that reached `leaf`."""
        info = self._leaf(leaf)
        if not 1 <= int(i) <= len(info.contributions):
            raise ExpressionError(f"leaf {leaf!r} received {len(info.contributions)} gradient(s), not {i}")
        return _val(info.contributions[int(i) - 1].value)

    def contributions(self, leaf: str) -> int:
        """How many gradients reached `leaf`."""
        return len(self._leaf(leaf).contributions)

    def producer(self, leaf: str, i: int) -> NodeView:
        """The node that sent `leaf` its `i`-th gradient."""
        info = self._leaf(leaf)
        if not 1 <= int(i) <= len(info.contributions):
            raise ExpressionError(f"leaf {leaf!r} received {len(info.contributions)} gradient(s), not {i}")
        return self._view(self.rec.nodes[info.contributions[int(i) - 1].producer])

    def node(self, name: str, use: int | None = None, module: str | None = None, backend: str | None = None,
             nth: int = 1) -> NodeView:
        """The `nth` node called `name` (in backward order), optionally of one module use or backend."""
        hits = find_nodes(self.rec, name, module=module, use=use, backend=backend)
        if not 1 <= int(nth) <= len(hits):
            where = "".join(f", {k}={v!r}" for k, v in (("use", use), ("module", module), ("backend", backend))
                            if v is not None)
            names = sorted({n.name for n in self.rec.nodes})
            raise ExpressionError(f"no node {name!r}{where} (nth={nth}, {len(hits)} found); nodes: "
                                  f"{', '.join(names)}")
        return self._view(hits[int(nth) - 1])

    def count(self, name: str, module: str | None = None) -> int:
        """How many nodes are called `name`."""
        return len(find_nodes(self.rec, name, module=module))

    def flow(self, module: str, use: int) -> float:
        """The norm of the gradient reaching use `use` of module `module` (the gradient-flow view's number)."""
        if self._flow is None:
            self._flow = gradient_flow(self.rec)
        for u in self._flow.uses:
            if u.module == module and u.use == int(use):
                return u.norm
        raise ExpressionError(f"module {module!r} has no use {use} in the gradient flow "
                              f"(only modules used more than once are listed)")

    def param(self, key: str):
        """A parameter the target ran with."""
        if key not in self.rec.params:
            raise ExpressionError(f"the target has no parameter {key!r}; it has {', '.join(self.rec.params) or 'none'}")
        return self.rec.params[key]

    def _view(self, n: GraphNode) -> NodeView:
        ev = next((e for e in self.rec.backward if e.node == n.id), None)
        fwd = self.rec.forward[n.forward_event] if n.forward_event is not None else None
        return NodeView(
            n.id, n.name, n.kind, n.module, n.use, n.uses, n.backend, n.leaf,
            [] if ev is None else [_val(g) for g in ev.grad_inputs or []],
            [] if ev is None else [_val(g) for g in ev.grad_outputs or []],
            {k: _val(v) if isinstance(v, TensorData) else v for k, v in n.saved.items()},
            _val(fwd.outputs[0]) if fwd is not None and fwd.outputs else _val(n.tensor),
            [] if fwd is None else [_val(t) for t in fwd.inputs])

    # -- the machine and the checks -------------------------------------------------------------
    @staticmethod
    def backend_available(name: str) -> bool:
        """Whether backend `name` of the linear op runs on this machine."""
        from ..core.backends import get_backend

        return bool(get_backend(name).available)

    @staticmethod
    def backend_reason(name: str) -> str:
        """Why backend `name` does not run here (empty when it does)."""
        from ..core.backends import get_backend

        info = get_backend(name)
        return "" if info.available else info.reason

    def failing(self) -> str:
        """The failing rows of the check table as a Markdown list of ``kind: what`` (checks must have run)."""
        if self.checks is None:
            raise ExpressionError("the checks have not run yet (failing() works on a step with checks = true)")
        return "\n".join(f"- {r.kind}: {r.what}" for r in self.checks.failed) or "- (none)"

    def checks_ok(self) -> bool:
        """Whether every check passes."""
        if self.checks is None:
            raise ExpressionError("the checks have not run yet")
        return bool(self.checks.ok)


class _Evaluator(EvalWithCompoundTypes):
    """simpleeval with tuples and lists but no comprehensions, and attributes of `NodeView` only."""

    def __init__(self, functions: dict):
        super().__init__(functions=dict(functions), names=dict(CONSTANTS),
                         allowed_attrs={NodeView: set(NODE_ATTRS)})
        for kind in (ast.ListComp, ast.GeneratorExp, ast.DictComp):
            self.nodes.pop(kind, None)


def _default_number(x) -> str:
    x = float(x)
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.4g}"


def format_value(v: Any, spec: str = "") -> str:
    """`v` as text: numbers with `spec` (``".4f"``), arrays element by element, shapes as ``(2, 3)``."""
    if v is None:
        return "None"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, TensorData):
        v = v.value
    if isinstance(v, np.ndarray):
        if v.size == 1 and spec:
            return format(float(v.reshape(-1)[0]), spec)
        fmt = (lambda x: format(float(x), spec)) if spec else _default_number
        return np.array2string(v, formatter={"float_kind": fmt, "int": lambda x: str(x)}, separator=", ")
    if isinstance(v, tuple):
        return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, (float, np.floating, int, np.integer)) and spec:
        return format(v.item() if hasattr(v, "item") else v, spec)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x, spec) for x in v) + "]"
    return str(v)
