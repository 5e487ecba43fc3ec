"""Saved recordings: a ``.gradviz`` file holds one `Recording` as data only.

File format (version 1)
-----------------------
A zip archive with these members and nothing else:

``recording.json`` (deflated)
    ``{"format": "gradviz-recording", "version": 1, ...}``: the structure (forward events, nodes,
    edges, backward events, leaves and their contributions, manual gradients, metadata and the
    check table stored at record time), every record written field by field from the one schema
    (`gradviz.core.schema`, built from the dataclasses). Every tensor snapshot is listed once in
    ``"tensors"`` and referred to elsewhere by its index, so snapshots shared in memory stay shared.
    Files that gradviz 0.1 wrote under the name ``"gradviz-saved-recording"`` are the same format
    and open as before.
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
from .recording import Recording, io_function
from .schema import EARLIER_FORMATS, FORMAT, VERSION, Field, fields_of
from .tensors import TensorData

__all__ = ["read_document", "write_document", "save_recording", "load_recording", "write_recording",
           "open_patterns", "STORAGE_FORMAT", "STORAGE_VERSION", "SUFFIX", "OPEN_SUFFIXES", "MAX_MEMBERS", "MAX_JSON_BYTES", "DEFAULT_MAX_BYTES",
           "MAX_COMPRESSION_RATIO"]

STORAGE_FORMAT = FORMAT  # the one format name and version of a recording (gradviz.core.schema)
STORAGE_VERSION = VERSION
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
        entry = self.record(TensorData, t)
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


    def record(self, cls: type, obj: Any) -> dict:
        """One record as the file holds it: each field of the schema, written by its codec."""
        return {f.name: self.field(f, getattr(obj, f.name)) for f in fields_of(cls)}

    def field(self, f: Field, v: Any) -> Any:
        if v is None:
            return None
        codec = f.codec
        if codec == "scalar":
            base = f.kind.rstrip("?")
            return bool(v) if base == "bool" else v if base in ("str", "kind") else float(v) if base == "float" else int(v)
        if codec == "tensor":
            return self.tensor(v)
        if codec == "tensors":
            return self.tensors_of(list(v))
        if codec == "plain":
            if isinstance(v, tuple) and not f.is_tuple:
                v = list(v)  # a list field that holds a tuple is still a list
            elif f.kind.rstrip("?") == "mapping" and type(v) is not dict:
                v = dict(v)
            return self.plain(v)
        if codec == "records":
            return [self.record(f.record, x) for x in (v.values() if isinstance(v, dict) else v)]
        if codec == "edges":
            return [[int(x) for x in e] for e in v]
        if codec == "pairs":
            return self.plain([[k, x] for k, x in v.items()])
        if codec == "shape":
            return [int(x) for x in v]
        if codec == "array":
            return self.array(v)
        raise AssertionError(f"no codec {codec!r}")  # pragma: no cover - a codec added to the schema only


def _encode(rec: Recording, checks: Any, cancel: Callable[[], bool] | None) -> tuple[dict, _Encoder]:
    enc = _Encoder(cancel)
    doc = {"format": FORMAT, "version": VERSION, **enc.record(Recording, rec),
           "checks": None if checks is None else checks.to_json()}
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
        self.tensors: list[TensorData] = [self.record(TensorData, entry) for entry in raw]

    def record(self, cls: type, entry: dict) -> Any:
        """One record back from the file: each field of the schema the entry holds, read by its codec."""
        return cls(**{f.name: self.field(f, entry[f.name]) for f in fields_of(cls) if f.name in entry})

    def field(self, f: Field, v: Any) -> Any:
        codec = f.codec
        if codec == "tensors":
            return self.tensors_of(v) if v is not None or f.optional else []
        if v is None:
            return None
        if codec == "scalar":
            return bool(v) if f.kind.rstrip("?") == "bool" else _str(v) if f.kind.rstrip("?") in ("str", "kind") else v
        if codec == "tensor":
            return self.tensor(v)
        if codec == "plain":
            x = self.plain(v)
            return tuple(x) if f.is_tuple and isinstance(x, list) else x
        if codec == "records":
            items = [self.record(f.record, e) for e in v]
            return {x.name: x for x in items} if f.is_dict else items
        if codec == "edges":
            return [tuple(int(x) for x in e) for e in v]
        if codec == "pairs":
            return {_str(k): x for k, x in self.plain(v)}
        if codec == "shape":
            return tuple(int(x) for x in v)
        if codec == "array":
            return self.array(v)
        raise AssertionError(f"no codec {codec!r}")  # pragma: no cover - a codec added to the schema only

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


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _decode(path: Path, doc: dict, arrays: dict[str, np.ndarray]) -> Document:
    d = _Decoder(path, doc, arrays)
    rec = d.record(Recording, doc)
    for info in rec.leaves.values():
        for c in info.contributions:
            c.leaf = info  # the back-link the running sums are computed through
    checks = None if doc.get("checks") is None else CheckTable.from_json(doc["checks"])
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
        if doc.get("format") != STORAGE_FORMAT and doc.get("format") not in EARLIER_FORMATS:
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
