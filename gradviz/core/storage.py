"""Saved recordings: a ``.gradviz`` file holds one `Recording` as data only.

File format (version 1)
-----------------------
A zip archive with these members and nothing else:

``recording.json`` (deflated)
    ``{"format": "gradviz-saved-recording", "version": 1, ...}``: the structure (forward events,
    nodes, edges, backward events, leaves and their contributions, manual gradients, metadata and
    the check table stored at record time). Every tensor snapshot is listed once in ``"tensors"``
    and referred to elsewhere by its index, so snapshots shared in memory stay shared.
``arrays/<dtype>.npy`` (stored)
    One flat 1-D numpy array per value dtype (``float32.npy``, ``int64.npy``...), written in the
    ``.npy`` format with no pickled objects. A tensor's value is ``{"array": dtype, "offset": k,
    "shape": [...]}``: the elements ``k .. k + prod(shape)`` of that array, in C order.

Opening a file never runs code and never unpickles: member names, counts and declared sizes are
checked before anything is read, arrays are read with their header checked first and with
``allow_pickle`` off, and every bad file is refused with one `GradvizError`.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .atomic import atomic_path
from .checktable import CheckTable
from .document import Document
from .errors import Cancelled, GradvizError
from .opening import DEFAULT_MAX_BYTES, MAX_COMPRESSION_RATIO, MAX_JSON_BYTES, MAX_MEMBERS, Invalid, Refused, read_members
from .recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording, io_function
from .tensors import TensorData

__all__ = ["read_document", "write_document", "save_recording", "load_recording", "write_recording",
           "open_patterns", "STORAGE_FORMAT", "STORAGE_VERSION", "SUFFIX", "OPEN_SUFFIXES", "MAX_MEMBERS", "MAX_JSON_BYTES", "DEFAULT_MAX_BYTES",
           "MAX_COMPRESSION_RATIO"]

STORAGE_FORMAT = "gradviz-saved-recording"
STORAGE_VERSION = 1
SUFFIX = ".gradviz"
OPEN_SUFFIXES = (SUFFIX,)  # every suffix read_document opens
_ARRAY_KINDS = "biufc"


# ---------------------------------------------------------------------------------------------
# writing

class _Encoder:
    """Turn a recording into JSON-ready data plus flat arrays, one per dtype."""

    def __init__(self, cancel: Callable[[], bool] | None = None):
        self.tensors: list[dict] = []
        self._tensor_index: dict[int, int] = {}
        self._array_ref: dict[int, dict] = {}
        self.arrays: dict[str, list[np.ndarray]] = {}
        self._sizes: dict[str, int] = {}
        self._alive: list[Any] = []  # ids stay unique while the objects are held
        self._cancel = cancel

    def array(self, a: np.ndarray) -> dict:
        hit = self._array_ref.get(id(a))
        if hit is not None:
            return hit
        a = np.asarray(a)
        if a.dtype.kind not in _ARRAY_KINDS:
            raise GradvizError(f"cannot save an array of dtype {a.dtype}: only bool, integer, float and "
                               "complex values can be stored")
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        name = dtype.name
        flat = np.ascontiguousarray(a, dtype=dtype).reshape(-1)
        offset = self._sizes.get(name, 0)
        self.arrays.setdefault(name, []).append(flat)
        self._sizes[name] = offset + flat.size
        ref = {"array": name, "offset": offset, "shape": list(a.shape)}
        self._array_ref[id(a)] = ref
        self._alive.append(a)
        return ref

    def tensor(self, t: TensorData | None) -> int | None:
        if t is None:
            return None
        hit = self._tensor_index.get(id(t))
        if hit is not None:
            return hit
        if self._cancel is not None and (len(self.tensors) & 1023) == 1023 and self._cancel():
            raise Cancelled()
        entry = {"shape": [int(s) for s in t.shape], "dtype": t.dtype, "device": t.device,
                 "requires_grad": bool(t.requires_grad), "uid": int(t.uid),
                 "stats": self.plain(t.stats), "value": None if t.value is None else self.array(t.value)}
        index = len(self.tensors)
        self.tensors.append(entry)
        self._tensor_index[id(t)] = index
        self._alive.append(t)
        return index

    def tensors_of(self, items: list | None) -> list | None:
        return None if items is None else [self.tensor(t) for t in items]

    def plain(self, v: Any) -> Any:
        """Plain Python as JSON, with tags for what JSON cannot hold (tuples, NaN, complex, tensors)."""
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, (complex, np.complexfloating)):
            return {"$complex": [self.plain(v.real), self.plain(v.imag)]}
        if isinstance(v, tuple):
            return {"$tuple": [self.plain(x) for x in v]}
        if isinstance(v, list):
            return [self.plain(x) for x in v]
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self.plain(x) for k, x in v.items()}
            return {"$dict": [[self.plain(k), self.plain(x)] for k, x in v.items()]}
        if isinstance(v, TensorData):
            return {"$tensor": self.tensor(v)}
        if isinstance(v, np.ndarray):
            return {"$array": self.array(v)}
        return {"$repr": repr(v)}


def _encode(rec: Recording, checks: Any, cancel: Callable[[], bool] | None) -> tuple[dict, _Encoder]:
    enc = _Encoder(cancel)
    forward = [{"index": e.index, "op": e.op, "inputs": enc.tensors_of(e.inputs), "outputs": enc.tensors_of(e.outputs),
                "source": e.source, "module": e.module, "use": e.use, "node": e.node, "inplace": bool(e.inplace),
                "input_nodes": enc.plain(e.input_nodes)} for e in rec.forward]
    nodes = [{"id": n.id, "name": n.name, "kind": n.kind, "torch_name": n.torch_name, "module": n.module,
              "use": n.use, "uses": n.uses, "backend": n.backend, "source": n.source,
              "forward_event": n.forward_event, "leaf": n.leaf, "function": n.function,
              "saved": enc.plain(dict(n.saved)), "tensor": enc.tensor(n.tensor), "device": n.device}
             for n in rec.nodes]
    backward = [{"index": e.index, "node": e.node, "grad_outputs": enc.tensors_of(e.grad_outputs),
                 "grad_inputs": enc.tensors_of(e.grad_inputs)} for e in rec.backward]
    leaves = [{"name": name, "node": info.node, "tensor": enc.tensor(info.tensor),
               "requires_grad": bool(info.requires_grad), "grad": enc.tensor(info.grad),
               "initial_grad": enc.tensor(info.initial_grad),
               "contributions": [{"producer": c.producer, "slot": c.slot, "value": enc.tensor(c.value),
                                  "backward_event": c.backward_event, "reduced_from": enc.plain(c.reduced_from)}
                                 for c in info.contributions]}
              for name, info in rec.leaves.items()]
    manual = None if rec.manual is None else enc.plain([[k, v] for k, v in rec.manual.items()])
    doc = {
        "format": STORAGE_FORMAT, "version": STORAGE_VERSION,
        "target": rec.target, "params": enc.plain(rec.params), "meta": enc.plain(rec.meta),
        "loss": enc.tensor(rec.loss), "root": rec.root, "keep_values": bool(rec.keep_values),
        "budget_bytes": int(rec.budget_bytes), "dropped": enc.plain(rec.dropped),
        "forward": forward, "nodes": nodes,
        "edges": [[int(x) for x in e] for e in rec.edges],
        "input_edges": [[int(x) for x in e] for e in rec.input_edges],
        "backward": backward, "leaves": leaves, "manual": manual,
        "leaf_order": enc.plain(list(rec.leaf_order)),
        "source_values": enc.tensors_of(list(rec.source_values)),
        "checks": None if checks is None else checks.to_json(),
    }
    doc["tensors"] = enc.tensors
    return doc, enc


def _write(path: str | os.PathLike, doc: Document, cancel: Callable[[], bool] | None) -> None:
    data, enc = _encode(doc.recording, doc.checks, cancel)
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        zf.writestr(zipfile.ZipInfo("recording.json", (1980, 1, 1, 0, 0, 0)),
                    json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8"),
                    compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
        for name, parts in enc.arrays.items():
            dtype = parts[0].dtype
            total = sum(p.size for p in parts)
            info = zipfile.ZipInfo(f"arrays/{name}.npy", (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(
                    fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total,)})
                for k, p in enumerate(parts):
                    if cancel is not None and (k & 1023) == 1023 and cancel():
                        raise Cancelled()
                    fh.write(p.tobytes())


def write_document(path: str | os.PathLike, doc: Document, cancel: Callable[[], bool] | None = None) -> Path:
    """Save a document (a recording and its stored checks) to a ``.gradviz`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; an existing file is replaced only once the new one is complete.
    doc : Document
    cancel : callable, optional
        Polled while writing; returning True stops with `Cancelled` and leaves the old file as it was.

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Raises
    ------
    GradvizError
        The path cannot be written.
    """
    with atomic_path(path) as tmp:
        _write(tmp, doc, cancel)
    return Path(os.fspath(path)).absolute()


def write_recording(rec: Recording, path: str | os.PathLike, checks: CheckTable | None = None,
                    cancel: Callable[[], bool] | None = None) -> None:
    """Write `rec` (and `checks`) to `path` directly, not atomically (exporters make it atomic)."""
    _write(path, Document(rec, checks), cancel)


@io_function("save")
def save_recording(rec: Recording, path: str | os.PathLike, checks: CheckTable | None = None,
                   cancel: Callable[[], bool] | None = None) -> Path:
    """Save `rec` to a ``.gradviz`` file, atomically: ``write_document(path, Document(rec, checks))``.

    Parameters
    ----------
    rec : Recording
    path : str or os.PathLike
    checks : CheckTable, optional
        A check table to store with it.
    cancel : callable, optional
        Polled while writing; returning True stops with `Cancelled`.

    Returns
    -------
    pathlib.Path
        The absolute path written.
    """
    return write_document(path, Document(rec, checks), cancel)


# ---------------------------------------------------------------------------------------------
# reading

def _refuse(path: Path, problem: str) -> GradvizError:
    """The one line for a file that cannot be opened (no hint line: the problem says what to do)."""
    return GradvizError(f"cannot open {str(path)!r}: {problem}")


class _Decoder:
    def __init__(self, path: Path, doc: dict, arrays: dict[str, np.ndarray]):
        self.path = path
        self.arrays = arrays
        raw = doc["tensors"]
        if not isinstance(raw, list):
            raise TypeError("tensors is not a list")
        self.tensors: list[TensorData] = []
        for entry in raw:
            value = None if entry["value"] is None else self.array(entry["value"])
            self.tensors.append(TensorData(
                tuple(int(s) for s in entry["shape"]), _str(entry["dtype"]), _str(entry["device"]), value,
                self.plain(entry["stats"]), bool(entry["requires_grad"]), int(entry["uid"])))

    def array(self, ref: dict) -> np.ndarray:
        flat = self.arrays.get(ref["array"])
        if flat is None:
            raise ValueError(f"array {ref['array']!r} is missing")
        shape = tuple(int(s) for s in ref["shape"])
        if any(s < 0 for s in shape):
            raise ValueError(f"negative shape {shape}")
        offset = int(ref["offset"])
        count = math.prod(shape)
        if offset < 0 or offset + count > flat.size:
            raise ValueError(f"value at {offset}+{count} lies outside array {ref['array']!r} of {flat.size}")
        # a copy: a loaded recording owns writable arrays like a recorded one
        return flat[offset:offset + count].reshape(shape).copy()

    def tensor(self, index: Any) -> TensorData | None:
        if index is None:
            return None
        if type(index) is not int or not 0 <= index < len(self.tensors):
            raise ValueError(f"tensor reference {index!r} is out of range")
        return self.tensors[index]

    def tensors_of(self, items: Any) -> list | None:
        return None if items is None else [self.tensor(i) for i in items]

    def plain(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.plain(x) for x in v]
        if isinstance(v, dict):
            if len(v) == 1:
                (tag, x), = v.items()
                if tag == "$float":
                    if x not in ("nan", "inf", "-inf"):
                        raise ValueError(f"bad float {x!r}")
                    return float(x)
                if tag == "$complex":
                    return complex(self.plain(x[0]), self.plain(x[1]))
                if tag == "$tuple":
                    return tuple(self.plain(i) for i in x)
                if tag == "$dict":
                    return {_hashable(self.plain(k)): self.plain(i) for k, i in x}
                if tag == "$tensor":
                    return self.tensor(x)
                if tag == "$array":
                    return self.array(x)
                if tag == "$repr":
                    return _str(x)
            if any(k.startswith("$") for k in v):
                raise ValueError(f"unknown tag in {list(v)[:3]}")
            return {k: self.plain(x) for k, x in v.items()}
        raise ValueError(f"unexpected value of type {type(v).__name__}")


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected text, got {type(v).__name__}")
    return v


def _opt_int(v: Any) -> int | None:
    if v is None:
        return None
    if type(v) is not int:
        raise TypeError(f"expected an integer, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _decode(path: Path, doc: dict, arrays: dict[str, np.ndarray]) -> Document:
    d = _Decoder(path, doc, arrays)
    forward = [ForwardEvent(index=int(e["index"]), op=_str(e["op"]), inputs=d.tensors_of(e["inputs"]),
                            outputs=d.tensors_of(e["outputs"]), source=_opt_str(e["source"]),
                            module=_opt_str(e["module"]), use=_opt_int(e["use"]), node=_opt_int(e["node"]),
                            inplace=bool(e["inplace"]), input_nodes=d.plain(e["input_nodes"]))
               for e in doc["forward"]]
    nodes = []
    for i, n in enumerate(doc["nodes"]):
        if n["id"] != i:
            raise ValueError(f"node {i} has id {n['id']!r}")
        saved = d.plain(n["saved"])
        if not isinstance(saved, dict):
            raise TypeError("saved is not a mapping")
        nodes.append(GraphNode(id=i, name=_str(n["name"]), kind=_str(n["kind"]), torch_name=_str(n["torch_name"]),
                               module=_opt_str(n["module"]), use=_opt_int(n["use"]), uses=_opt_int(n["uses"]),
                               backend=_opt_str(n["backend"]), source=_opt_str(n["source"]),
                               forward_event=_opt_int(n["forward_event"]), leaf=_opt_str(n["leaf"]),
                               function=_opt_str(n["function"]), saved=saved, tensor=d.tensor(n["tensor"]),
                               device=_opt_str(n["device"])))
    count = len(nodes)

    def triples(items: Any) -> list[tuple[int, int, int]]:
        out = []
        for e in items:
            a, b, c = (_opt_int(x) for x in e)
            if a is None or b is None or c is None or not (0 <= a < count and 0 <= b < count):
                raise ValueError(f"edge {e!r} refers to a node outside 0..{count - 1}")
            out.append((a, b, c))
        return out

    edges, input_edges = triples(doc["edges"]), triples(doc["input_edges"])
    backward = []
    for e in doc["backward"]:
        node = _opt_int(e["node"])
        if node is None or not 0 <= node < count:
            raise ValueError(f"backward event refers to node {node!r}")
        backward.append(BackwardEvent(index=int(e["index"]), node=node, grad_outputs=d.tensors_of(e["grad_outputs"]),
                                      grad_inputs=d.tensors_of(e["grad_inputs"])))
    leaves: dict[str, LeafInfo] = {}
    for entry in doc["leaves"]:
        info = LeafInfo(name=_str(entry["name"]), node=_opt_int(entry["node"]), tensor=d.tensor(entry["tensor"]),
                        requires_grad=bool(entry["requires_grad"]), grad=d.tensor(entry["grad"]),
                        initial_grad=d.tensor(entry["initial_grad"]))
        for c in entry["contributions"]:
            reduced = d.plain(c["reduced_from"])
            info.contributions.append(Contribution(
                producer=int(c["producer"]), slot=int(c["slot"]), value=d.tensor(c["value"]),
                backward_event=int(c["backward_event"]), leaf=info,
                reduced_from=None if reduced is None else tuple(reduced)))
        leaves[info.name] = info
    manual = None
    if doc["manual"] is not None:
        manual = {_str(k): v for k, v in d.plain(doc["manual"])}
    checks = None
    if doc.get("checks") is not None:
        checks = CheckTable.from_json(doc["checks"])
    rec = Recording(
        target=_str(doc["target"]), params=d.plain(doc["params"]), forward=forward, nodes=nodes, edges=edges,
        input_edges=input_edges, backward=backward, leaves=leaves, loss=d.tensor(doc["loss"]),
        root=int(doc["root"]), keep_values=bool(doc["keep_values"]), budget_bytes=int(doc["budget_bytes"]),
        dropped=d.plain(doc["dropped"]), meta=d.plain(doc["meta"]), manual=manual,
        leaf_order=d.plain(doc["leaf_order"]), source_values=d.tensors_of(doc["source_values"]) or [])
    return Document(rec, checks)


def open_patterns() -> list[str]:
    """File-name patterns of what `read_document` opens (``["*.gradviz"]``), for file dialogs."""
    return [f"*{suffix}" for suffix in OPEN_SUFFIXES]


def load_recording(path: str | os.PathLike, max_bytes: int | None = None) -> Recording:
    """Open a ``.gradviz`` file and return its recording (`read_document` gives its stored checks too)."""
    return read_document(path, max_bytes=max_bytes).recording


def read_document(path: str | os.PathLike, progress: Callable[[float, str], None] | None = None,
                  cancel: Callable[[], bool] | None = None, max_bytes: int | None = None) -> Document:
    """Open a ``.gradviz`` file: the recording as it was saved, and the checks stored with it.

    The recording has no `Rerun`: the model is not here to run again. The whole file is checked
    before anything is built from it (see `gradviz.core.opening`): a regular file, members streamed
    with a hard cap, budgets for JSON and arrays, every field's type, every reference's range, an
    acyclic graph.

    Parameters
    ----------
    path : str or os.PathLike
    progress : callable, optional
        ``progress(fraction, message)``, called as reading advances.
    cancel : callable, optional
        Polled between the stages of reading; returning True stops with `Cancelled`.
    max_bytes : int, optional
        Refuse files whose arrays declare more than this many bytes in all (default: half of the
        memory available, at most 16 GiB).

    Returns
    -------
    Document
        ``checks`` is the table saved with the recording, or None if none was.

    Raises
    ------
    GradvizError
        One line, ``cannot open FILE: what is wrong (where)``: the file is missing, not a regular
        file, not a recording, truncated, corrupted, hostile (unexpected members, pickled data,
        sizes past the limits, references out of range, a cycle) or made by a newer gradviz.
    """
    report = progress or (lambda f, m: None)

    def stage(fraction: float, message: str) -> None:
        if cancel is not None and cancel():
            raise Cancelled()
        report(fraction, message)

    p = Path(os.fspath(path)).expanduser()

    def check_header(doc: dict) -> None:
        if doc.get("format") != STORAGE_FORMAT:
            raise Refused("recording.json is not a gradviz recording")
        version = doc.get("version")
        if type(version) is not int or version < 1:
            raise Refused(f"its format version {str(version)[:20]!r} is not valid")
        if version > STORAGE_VERSION:
            raise Refused(f"it was saved by a newer gradviz (file format version {version}; this gradviz "
                          f"reads up to version {STORAGE_VERSION}): upgrade gradviz (pip install -U gradviz)")
        stage(0.2, "checking the recording and reading the arrays")

    try:
        stage(0.0, "opening the file")
        doc, arrays = read_members(p, check_header, max_bytes)
        stage(0.6, "rebuilding the recording")
        out = _decode(p, doc, arrays)
        report(1.0, "done")
        return out
    except (Refused, Invalid) as exc:
        raise _refuse(p, str(exc)) from None
    except GradvizError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise _refuse(p, f"it cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    except MemoryError:
        raise _refuse(p, "there is not enough memory to hold it") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _refuse(p, f"recording.json is corrupted ({what[:120]})") from None
