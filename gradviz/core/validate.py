"""Validate a saved recording's document whole, before anything is built from it.

`validate_document` walks the parsed ``recording.json`` once and refuses, with `Invalid` naming
the place (``"forward[0].node"``), anything the rest of gradviz would trip over: a missing or
unknown field, a field of the wrong type (the fields and their kinds are `gradviz.core.schema`'s,
built from the dataclasses: the one schema of the record types), an integer that is not a finite
64-bit integer, a reference out of range (nodes, edges, slots, forward and backward events,
producers, the root, tensors, array slices), a graph with a cycle or a self-loop, values nested too deeply. It also returns how many
elements of each array the tensors use, so that the arrays can be checked against it before they
are read. Everything here is iterative: no hostile nesting can exhaust the stack.
"""
from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

from .checktable import Check
from .recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording
from .schema import fields_of
from .tensors import TensorData

__all__ = ["Invalid", "validate_document", "NODE_KINDS", "MAX_DEPTH", "MAX_ELEMENTS"]

NODE_KINDS = ("op", "custom", "leaf", "input")
CHECK_STATUSES = ("pass", "fail", "skip", "no rule", "no-rule", "no_rule", "note", "info", "error")
MAX_DEPTH = 64                 # nesting of params, meta and saved values (real ones: under 5)
MAX_ELEMENTS = 1 << 40         # elements of one tensor (a shape whose product is past this is not real)
_INT64 = 1 << 63
_ARRAY_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")
_FLOAT_TAGS = ("nan", "inf", "-inf")

class Invalid(ValueError):
    """A document that does not hold together: `problem` says what, `where` says where."""

    def __init__(self, problem: str, where: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.where = where


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _hashable(key: Any) -> bool:
    """Whether a JSON value can be a dict key once its lists are made tuples (no mapping inside)."""
    stack = [key]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            tag = next(iter(v), None) if len(v) == 1 else None
            if tag == "$tuple":
                stack.append(v[tag])
            elif tag not in ("$float", "$complex", "$repr", "$tensor"):
                return False
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _schema(cls: type) -> dict[str, tuple[str, bool]]:
    """Stored field -> (kind, required) of one record type (`gradviz.core.schema`)."""
    return {f.name: (f.kind, f.required) for f in fields_of(cls)}


class _Validator:
    def __init__(self, doc: dict):
        self.doc = doc
        self.n_nodes = 0
        self.n_forward = 0
        self.n_backward = 0
        self.n_tensors = 0
        self.extent: dict[str, int] = {}

    # -- scalars ------------------------------------------------------------------------------
    def integer(self, v: Any, where: str, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
        if type(v) is not int:
            if isinstance(v, float):
                raise Invalid(f"{where} is {_short(v)}, not an integer", where)
            raise Invalid(f"{where} should be an integer, not {type(v).__name__} {_short(v)}", where)
        if not -_INT64 <= v < _INT64:
            raise Invalid(f"{where} is an integer past 64 bits", where)
        if lo is not None and v < lo or hi is not None and v >= hi:
            span = f"{lo}..{hi - 1}" if hi is not None and hi > lo else ("none exist" if hi is not None else f">= {lo}")
            raise Invalid(f"{where} refers to {what or 'index'} {v}, out of range ({span})", where)
        return v

    def value(self, kind: str, v: Any, where: str) -> None:
        optional = kind.endswith("?")
        base = kind.rstrip("?")
        if v is None and (optional or base in ("plain", "backward-or-none")):
            return
        if base == "int":
            self.integer(v, where)
        elif base == "count":
            self.integer(v, where, lo=0, what="count")
        elif base == "str" or base == "kind":
            if not isinstance(v, str):
                raise Invalid(f"{where} should be text, not {type(v).__name__} {_short(v)}", where)
            if base == "kind" and v not in NODE_KINDS:
                raise Invalid(f"{where} is {_short(v)}, not one of {', '.join(NODE_KINDS)}", where)
        elif base == "bool":
            if type(v) is not bool:
                raise Invalid(f"{where} should be true or false, not {_short(v)}", where)
        elif base == "float":
            if type(v) is bool or not isinstance(v, (int, float)):
                raise Invalid(f"{where} should be a number, not {type(v).__name__} {_short(v)}", where)
        elif base == "position":
            self.integer(v, where)
        elif base == "node":
            self.integer(v, where, 0, self.n_nodes, "node")
        elif base == "nodes":
            self.listing(v, where)
            for i, x in enumerate(v):
                if x is not None:
                    self.integer(x, f"{where}[{i}]", 0, self.n_nodes, "node")
        elif base == "forward":
            self.integer(v, where, 0, self.n_forward, "forward event")
        elif base == "backward-or-none":
            self.integer(v, where, -1, self.n_backward, "backward event")
        elif base == "slot":
            self.integer(v, where, 0, None, "slot")
        elif base == "tensor":
            self.integer(v, where, 0, self.n_tensors, "tensor")
        elif base == "tensors":
            self.listing(v, where)
            for i, x in enumerate(v):
                if x is not None:
                    self.integer(x, f"{where}[{i}]", 0, self.n_tensors, "tensor")
        elif base == "names":
            self.listing(v, where)
            for i, x in enumerate(v):
                if not isinstance(x, str):
                    raise Invalid(f"{where}[{i}] should be text, not {_short(x)}", f"{where}[{i}]")
        elif base == "mapping":
            if not isinstance(v, dict):
                raise Invalid(f"{where} should be a mapping, not {type(v).__name__}", where)
            self.plain(v, where)
        elif base == "pairs":
            self.listing(v, where)
            for i, x in enumerate(v):
                if not (isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)):
                    raise Invalid(f"{where}[{i}] should be a [name, value] pair", f"{where}[{i}]")
                self.plain(x[1], f"{where}[{i}]")
        elif base == "plain":
            self.plain(v, where)
        elif base == "records":
            self.listing(v, where)  # each one is checked by its owner (leaves() for contributions)
        else:  # pragma: no cover - a kind added to the schema's REFS without a rule here
            raise AssertionError(kind)

    def listing(self, v: Any, where: str) -> list:
        if not isinstance(v, list):
            raise Invalid(f"{where} should be a list, not {type(v).__name__}", where)
        return v

    def record(self, cls_fields: dict, v: Any, where: str) -> None:
        if not isinstance(v, dict):
            raise Invalid(f"{where} should be a mapping, not {type(v).__name__}", where)
        for name, (kind, required) in cls_fields.items():
            if name not in v:
                if required:
                    raise Invalid(f"{where} has no field {name!r}", where)
                continue
            self.value(kind, v[name], f"{where}.{name}")
        unknown = [k for k in v if k not in cls_fields]
        if unknown:
            raise Invalid(f"{where} has an unknown field {_short(unknown[0])}", where)

    # -- tagged plain values (params, meta, saved, ...), iteratively ---------------------------
    def plain(self, root: Any, where: str) -> None:
        stack = [(root, where, 0)]
        while stack:
            v, at, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise Invalid(f"{where} is nested more than {MAX_DEPTH} levels deep", at)
            if v is None or isinstance(v, (bool, str)):
                continue
            if isinstance(v, int):
                self.integer(v, at)
                continue
            if isinstance(v, float):
                continue  # json.loads refuses NaN and Infinity; finite floats are fine
            if isinstance(v, list):
                stack.extend((x, f"{at}[{i}]", depth + 1) for i, x in enumerate(v))
                continue
            if not isinstance(v, dict):  # pragma: no cover - json.loads makes nothing else
                raise Invalid(f"{at} holds a {type(v).__name__}", at)
            tags = [k for k in v if k.startswith("$")]
            if not tags:
                stack.extend((x, f"{at}.{k}", depth + 1) for k, x in v.items())
                continue
            if len(v) != 1:
                raise Invalid(f"{at} mixes a tag with other keys", at)
            tag, x = next(iter(v.items()))
            here = f"{at}.{tag}"
            if tag == "$float":
                if x not in _FLOAT_TAGS:
                    raise Invalid(f"{here} is {_short(x)}, not nan, inf or -inf", here)
            elif tag == "$complex":
                if not (isinstance(x, list) and len(x) == 2):
                    raise Invalid(f"{here} should be [real, imag]", here)
                stack.extend((p, f"{here}[{i}]", depth + 1) for i, p in enumerate(x))
            elif tag in ("$tuple",):
                stack.append((self.listing(x, here), here, depth + 1))
            elif tag == "$dict":
                self.listing(x, here)
                for i, pair in enumerate(x):
                    if not (isinstance(pair, list) and len(pair) == 2):
                        raise Invalid(f"{here}[{i}] should be a [key, value] pair", f"{here}[{i}]")
                    if not _hashable(pair[0]):
                        raise Invalid(f"{here}[{i}] has a key that cannot be a key", f"{here}[{i}]")
                    stack.append((pair[0], f"{here}[{i}][0]", depth + 1))
                    stack.append((pair[1], f"{here}[{i}][1]", depth + 1))
            elif tag == "$tensor":
                self.integer(x, here, 0, self.n_tensors, "tensor")
            elif tag == "$array":
                self.array_ref(x, here)
            elif tag == "$repr":
                if not isinstance(x, str):
                    raise Invalid(f"{here} should be text", here)
            else:
                raise Invalid(f"{at} has an unknown tag {_short(tag)}", at)

    def shape(self, v: Any, where: str) -> int:
        self.listing(v, where)
        if len(v) > 64:
            raise Invalid(f"{where} has {len(v)} dimensions", where)
        count = 1
        for i, s in enumerate(v):
            self.integer(s, f"{where}[{i}]", 0, None, "size")
            count *= s
            if count > MAX_ELEMENTS:
                raise Invalid(f"{where} is {_short(v)}: more elements than any tensor has", where)
        return count

    def array_ref(self, ref: Any, where: str) -> None:
        if not isinstance(ref, dict) or set(ref) != {"array", "offset", "shape"}:
            raise Invalid(f"{where} should be an array slice {{array, offset, shape}}", where)
        name = ref["array"]
        if not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name):
            raise Invalid(f"{where}.array is {_short(name)}, not an array name", f"{where}.array")
        offset = self.integer(ref["offset"], f"{where}.offset", 0, None, "offset")
        count = self.shape(ref["shape"], f"{where}.shape")
        self.extent[name] = max(self.extent.get(name, 0), offset + count)

    # -- the document -------------------------------------------------------------------------
    def tensors(self, raw: Any) -> None:
        self.listing(raw, "tensors")
        self.n_tensors = len(raw)
        fields = fields_of(TensorData)
        keys = {f.name for f in fields}
        for i, t in enumerate(raw):
            at = f"tensors[{i}]"
            if not isinstance(t, dict) or set(t) != keys:
                raise Invalid(f"{at} should have exactly the fields {', '.join(sorted(keys))}", at)
            for f in fields:
                v, where = t[f.name], f"{at}.{f.name}"
                if f.codec == "shape":
                    self.shape(v, where)
                elif f.codec == "array":
                    if v is not None:
                        self.array_ref(v, where)
                else:
                    self.value(f.kind, v, where)
            if t["value"] is not None and t["value"]["shape"] != t["shape"]:
                raise Invalid(f"{at}.value has shape {_short(t['value']['shape'])}, the tensor "
                              f"{_short(t['shape'])}", f"{at}.value.shape")

    def run(self) -> dict[str, int]:
        doc = self.doc
        top = _schema(Recording)
        for name in ("tensors", "forward", "nodes", "backward"):
            if name not in doc:
                raise Invalid(f"recording.json has no field {name!r}", name)
        self.n_tensors = len(self.listing(doc["tensors"], "tensors"))
        self.n_forward = len(self.listing(doc["forward"], "forward"))
        self.n_nodes = len(self.listing(doc["nodes"], "nodes"))
        self.n_backward = len(self.listing(doc["backward"], "backward"))
        self.tensors(doc["tensors"])
        for name, (kind, required) in top.items():
            if name not in doc:
                if required:
                    raise Invalid(f"recording.json has no field {name!r}", name)
                continue
            if kind in ("records", "edges"):
                continue
            if name == "root" and self.n_nodes == 0:
                self.integer(doc[name], name)
                continue
            self.value(kind, doc[name], name)
        known = set(top) | {"format", "version", "checks", "tensors"}
        unknown = [k for k in doc if k not in known]
        if unknown:
            raise Invalid(f"recording.json has an unknown field {_short(unknown[0])}", unknown[0])
        for name, cls in (("forward", ForwardEvent), ("nodes", GraphNode), ("backward", BackwardEvent)):
            fields = _schema(cls)
            position = [k for k, (kind, _) in fields.items() if kind == "position"]
            for i, entry in enumerate(doc[name]):
                self.record(fields, entry, f"{name}[{i}]")
                for k in position:
                    if entry.get(k) != i:
                        raise Invalid(f"{name}[{i}].{k} is {_short(entry.get(k))}, not its position {i}",
                                      f"{name}[{i}].{k}")
        self.leaves(doc["leaves"])
        self.graph(doc)
        if doc.get("checks") is not None:
            self.checks(doc["checks"])
        return dict(self.extent)

    def leaves(self, raw: Any) -> None:
        self.listing(raw, "leaves")
        leaf = _schema(LeafInfo)
        contribution = _schema(Contribution)
        names = set()
        for i, entry in enumerate(raw):
            at = f"leaves[{i}]"
            self.record(leaf, entry, at)
            if entry["name"] in names:
                raise Invalid(f"{at}.name {_short(entry['name'])} appears twice", f"{at}.name")
            names.add(entry["name"])
            self.listing(entry.get("contributions", []), f"{at}.contributions")
            shapes = set()
            if entry.get("initial_grad") is not None:
                shapes.add(self._value_shape(entry["initial_grad"]))
            for j, c in enumerate(entry.get("contributions", [])):
                self.record(contribution, c, f"{at}.contributions[{j}]")
                if c.get("value") is not None:
                    shapes.add(self._value_shape(c["value"]))
            shapes.discard(None)
            if len(shapes) > 1:
                raise Invalid(f"{at}: the gradients that add up to its .grad have different shapes "
                              f"{_short(sorted(shapes))}", f"{at}.contributions")

    def _value_shape(self, index: int) -> tuple | None:
        value = self.doc["tensors"][index]["value"]
        return None if value is None else tuple(value["shape"])

    def graph(self, doc: dict) -> None:
        """Edges refer to nodes, slots are not negative, and edges plus input edges form no cycle."""
        n = self.n_nodes
        succ: list[list[int]] = [[] for _ in range(n)]
        indeg = [0] * n
        for name in ("edges", "input_edges"):
            for i, e in enumerate(doc[name]):
                at = f"{name}[{i}]"
                if not (isinstance(e, list) and len(e) == 3):
                    raise Invalid(f"{at} should be [sender, receiver, slot]", at)
                s = self.integer(e[0], f"{at}[0]", 0, n, "node")
                d = self.integer(e[1], f"{at}[1]", 0, n, "node")
                self.integer(e[2], f"{at}[2]", 0, None, "slot")
                if s == d:
                    raise Invalid(f"{at} joins node {s} to itself: the graph has a cycle", at)
                succ[s].append(d)
                indeg[d] += 1
        # Kahn's algorithm: every node is removed once all its senders are; what remains is a cycle
        queue = deque(i for i in range(n) if indeg[i] == 0)
        seen = 0
        while queue:
            s = queue.popleft()
            seen += 1
            for d in succ[s]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    queue.append(d)
        if seen != n:
            on_cycle = next(i for i in range(n) if indeg[i] > 0)
            raise Invalid(f"the graph has a cycle through node {on_cycle}: an autograd graph never does", "edges")

    def checks(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise Invalid("checks should be a mapping", "checks")
        rows = self.listing(raw.get("checks"), "checks.checks")
        if "strict" in raw:
            self.value("bool", raw["strict"], "checks.strict")
        fields = _schema(Check)
        fields = {k: (("node?" if k == "node" else kind), required) for k, (kind, required) in fields.items()}
        for i, row in enumerate(rows):
            self.record(fields, row, f"checks[{i}]")
            for k in ("max_abs", "max_rel"):
                v = row.get(k)
                if isinstance(v, float) and not math.isfinite(v):  # pragma: no cover - json refuses these
                    raise Invalid(f"checks[{i}].{k} is not finite", f"checks[{i}].{k}")


def validate_document(doc: Any) -> dict[str, int]:
    """Check a parsed ``recording.json`` whole; return the elements each array must hold.

    Parameters
    ----------
    doc : object
        What ``json.loads`` made of ``recording.json`` (format and version already checked).

    Returns
    -------
    dict of str to int
        For each array name (``"float32"``), how many elements the tensors use: the array member
        must hold exactly that many.

    Raises
    ------
    Invalid
        The first problem found, with where it is.
    """
    if not isinstance(doc, dict):
        raise Invalid("recording.json is not a mapping")
    return _Validator(doc).run()
