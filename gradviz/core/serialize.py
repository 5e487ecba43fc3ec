"""The recording as JSON-ready data (``gradviz inspect --json``, the ``.json`` export).

Every record is written field by field from the one schema (`gradviz.core.schema`), the one the
``.gradviz`` file is written from, under the same format name and version; here tensors are written
in place (``{"shape", "dtype", "device", "value"}``, values as nested lists) instead of once in a
table. A few fields are shown in a form easier to read than the file's, named in `_SHOWN_AS`, and
two values that are computed, not stored, are added (``backward_order``, each contribution's
``running_sum``). What only re-running checks needs (`_NOT_SHOWN`) is left out.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .recording import Contribution, GraphNode, LeafInfo, Recording
from .schema import FORMAT, VERSION, Field, fields_of
from .tensors import TensorData

__all__ = ["recording_to_json", "tensor_to_json", "FORMAT_VERSION"]

FORMAT_VERSION = VERSION

# what only a re-run of the checks needs, not a reader: the model's source values, manual gradients
_NOT_SHOWN = {(Recording, "source_values"), (Recording, "manual")}
# a tensor's id within one file, not part of its value
_TENSOR_NOT_SHOWN = {"uid"}


def tensor_to_json(t: TensorData | None, values: bool = True) -> dict | None:
    """A tensor in place: its schema fields, those at their default left out; values as nested lists.

    Non-finite values are the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such numbers).
    With `values` False the values are left out (``stats`` may stand in).
    """
    if t is None:
        return None
    out: dict[str, Any] = {}
    for f in fields_of(TensorData):
        v = getattr(t, f.name)
        if f.name in _TENSOR_NOT_SHOWN or (not f.required and (v is None or v is False)):
            continue  # at its default (None, False): left out
        if f.codec == "array":
            if values:
                out[f.name] = v.tolist() if v.dtype.kind != "f" else _finite_list(v)
        else:
            out[f.name] = list(v) if f.codec == "shape" else v
    return out


def _finite_list(v: np.ndarray) -> Any:
    # JSON has no NaN/Inf: write them as strings so the file stays valid JSON
    if np.isfinite(v).all():
        return v.tolist()
    obj = v.astype(object)
    obj[np.isnan(v)] = "nan"
    obj[np.isposinf(v)] = "inf"
    obj[np.isneginf(v)] = "-inf"
    return obj.tolist()


def _saved(v: Any, values: bool) -> Any:
    if isinstance(v, TensorData):
        return {"tensor": tensor_to_json(v, values)}
    return {"value": list(v) if isinstance(v, tuple) else v}


# fields shown in a form easier to read than the file's: name -> its JSON entries
_SHOWN_AS: dict[tuple[type, str], Callable[[Any, bool], dict]] = {
    # saved values as a list of {"name", "tensor" or "value"}
    (GraphNode, "saved"): lambda n, values: {
        "saved": [{"name": k, **_saved(v, values)} for k, v in n.saved.items()]},
    # a leaf's tensor as its shape and its value
    (LeafInfo, "tensor"): lambda info, values: {
        "shape": None if info.tensor is None else list(info.tensor.shape),
        "value": tensor_to_json(info.tensor, values)},
    # leaves keyed by name (each leaf's name is its key)
    (Recording, "leaves"): lambda rec, values: {
        "leaves": {name: _record(LeafInfo, info, values, skip={"name"}) for name, info in rec.leaves.items()}},
}

# computed, not stored: added after the record's fields
_ADDED: dict[type, Callable[[Any, bool], dict]] = {
    Contribution: lambda c, values: {"running_sum": tensor_to_json(c.running_sum, values)},
    Recording: lambda rec, values: {"backward_order": rec.backward_order},
}


def _field(f: Field, v: Any, values: bool) -> Any:
    if v is None:
        return None
    if f.codec == "tensor":
        return tensor_to_json(v, values)
    if f.codec == "tensors":
        return [tensor_to_json(t, values) for t in v]
    if f.codec == "records":
        return [_record(f.record, x, values) for x in (v.values() if isinstance(v, dict) else v)]
    if f.codec == "edges":
        return [list(e) for e in v]
    if f.codec == "plain" and f.is_tuple:
        return list(v) if v else None
    return v  # scalars and plain values are JSON already (tuples are written as lists)


def _record(cls: type, obj: Any, values: bool, skip: frozenset | set = frozenset()) -> dict:
    out: dict[str, Any] = {}
    for f in fields_of(cls):
        if f.name in skip or (cls, f.name) in _NOT_SHOWN:
            continue
        shown_as = _SHOWN_AS.get((cls, f.name))
        if shown_as is not None:
            out.update(shown_as(obj, values))
        else:
            out[f.name] = _field(f, getattr(obj, f.name), values)
    if cls in _ADDED:
        out.update(_ADDED[cls](obj, values))
    return out


def recording_to_json(rec: Recording, values: bool = True, checks: Any = None) -> dict:
    """Return the recording as plain dicts and lists; tensors as ``{"shape", "dtype", "value"}``.

    Parameters
    ----------
    rec : Recording
    values : bool
        Include tensor values as nested lists (False keeps shapes and dtypes only).
    checks : CheckTable, optional
        A check table to include under ``"checks"``.
    """
    out = {"format": FORMAT, "version": VERSION, **_record(Recording, rec, values)}
    if checks is not None:
        out["checks"] = checks.to_json()
    return out
