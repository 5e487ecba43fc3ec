"""Open a ``.gradviz`` file's members safely and validate its document whole, within budgets.

`read_members` is the one way a saved recording's bytes come in. In order: the path must be a
regular file; the archive's member count and directory size are checked from its end records;
member names, flags and declared sizes are checked against the budgets (JSON at most
`MAX_JSON_BYTES`, arrays at most half the memory available, or the caller's ``max_bytes``);
``recording.json`` is streamed with a hard cap and parsed (no NaN or Infinity); the caller checks
its format and version; `validate_document` checks every field's type, every reference's range and
that the graph is acyclic, and says how many elements each array must hold; only then is each
array member read, its ``.npy`` header checked against that count before its data is read. Every
refusal is a `Refused` or `Invalid` with one line of text; the caller words it as ``cannot open``.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .safezip import Refused, SafeZip, available_memory, format_bytes
from .validate import Invalid, validate_document

__all__ = ["read_members", "MAX_MEMBERS", "MAX_JSON_BYTES", "DEFAULT_MAX_BYTES", "MAX_COMPRESSION_RATIO",
           "json_budget", "array_budget", "Refused", "Invalid"]

MAX_MEMBERS = 64
MAX_JSON_BYTES = 256 << 20     # a 200,000-node recording's JSON is about 60 MiB
DEFAULT_MAX_BYTES = 16 << 30
MAX_COMPRESSION_RATIO = 200    # JSON of real recordings compresses 5-20x; arrays are stored
ARRAY_SHARE = 2                # arrays may take at most 1/ARRAY_SHARE of the memory available
_ARRAY_MEMBER = re.compile(r"arrays/([a-z][a-z0-9]{0,15})\.npy")
_ARRAY_KINDS = "biufc"


def json_budget() -> int:
    """The most bytes of JSON a recording may hold here: `MAX_JSON_BYTES`, less on a small machine."""
    return min(MAX_JSON_BYTES, available_memory() // 8)


def array_budget(max_bytes: int | None = None) -> tuple[int, str]:
    """The most bytes of arrays a recording may hold here, and how to say where that limit comes from."""
    if max_bytes is not None:
        return int(max_bytes), f"the limit of {format_bytes(max_bytes)} asked for"
    half = available_memory() // ARRAY_SHARE
    if half < DEFAULT_MAX_BYTES:
        return half, f"half of the memory available here ({format_bytes(half)})"
    return DEFAULT_MAX_BYTES, f"the limit of {format_bytes(DEFAULT_MAX_BYTES)}"


def _no_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which JSON does not allow")


def _check_members(z: SafeZip, max_bytes: int | None) -> dict[str, zipfile.ZipInfo]:
    total = 0
    for name, info in z.members.items():
        if name != "recording.json" and not _ARRAY_MEMBER.fullmatch(name):
            raise Refused(f"unexpected member {name!r} (a recording holds only recording.json and "
                          "arrays/<dtype>.npy; nothing else is ever read, run or unpickled)")
        if info.flag_bits & 0x1:
            raise Refused(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Refused(f"member {name!r} uses an unsupported compression")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise Refused(f"member {name!r} declares {info.file_size} bytes but holds {info.compress_size}")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) + (1 << 20):
            raise Refused(f"member {name!r} would expand from {info.compress_size} to {info.file_size} "
                          "bytes (a zip bomb?)")
        if name != "recording.json":
            total += info.file_size
    if "recording.json" not in z.members:
        raise Refused("it has no recording.json")
    size = z.members["recording.json"].file_size
    limit = json_budget()
    if size > limit:
        raise Refused(f"recording.json declares {size} bytes ({format_bytes(size)}) of JSON, more than the "
                      f"{format_bytes(limit)} a recording may hold here")
    limit, why = array_budget(max_bytes)
    if total > limit:
        raise Refused(f"its arrays declare {total} bytes ({format_bytes(total)}), more than {why}")
    return z.members


def _read_array(z: SafeZip, info: zipfile.ZipInfo, dtype_name: str, count: int) -> np.ndarray:
    name = info.filename
    pieces = z.pieces(info)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= 4096:
            break
    fh = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise Refused(f"member {name!r} is not a valid array: {str(exc).splitlines()[0][:80]}") from None
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
        raise Refused(f"member {name!r} holds {dtype} objects (pickled data is never loaded)")
    if dtype.name != dtype_name or fortran or len(shape) != 1:
        raise Refused(f"member {name!r} is not a flat {dtype_name} array")
    start = fh.tell()
    need = shape[0] * dtype.itemsize
    if start + need != info.file_size:
        raise Refused(f"member {name!r} declares {shape[0]} elements that do not fit its {info.file_size} bytes")
    if shape[0] != count:
        raise Refused(f"member {name!r} holds {shape[0]} values but the recording uses {count} "
                      "(damaged or hostile)")
    data = bytearray(need)
    view = memoryview(data)
    done = len(head) - start
    view[:done] = head[start:]
    for piece in pieces:
        view[done:done + len(piece)] = piece
        done += len(piece)
    return np.frombuffer(data, dtype=dtype)


def read_members(path: Path, check_header: Callable[[dict], None],
                 max_bytes: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate a ``.gradviz`` file: its document and its arrays by dtype name.

    Parameters
    ----------
    path : pathlib.Path
    check_header : callable
        ``check_header(doc)`` checks the format name and version (raising `Refused` or a
        `GradvizError`) before the document is validated.
    max_bytes : int, optional
        Refuse files whose arrays declare more bytes than this (default: half the available memory,
        at most 16 GiB).

    Raises
    ------
    Refused, Invalid
        With one line saying what is wrong and where.
    """
    with SafeZip(path, MAX_MEMBERS) as z:
        members = _check_members(z, max_bytes)
        try:
            text = z.read(members["recording.json"])
            doc = json.loads(text.decode("utf-8"), parse_constant=_no_constant)
        except RecursionError:
            raise Refused("recording.json is not valid JSON (it is nested too deeply)") from None
        except ValueError as exc:
            raise Refused(f"recording.json is not valid JSON ({str(exc).split(';')[0][:100]})") from None
        del text
        if not isinstance(doc, dict):
            raise Refused("recording.json is not a gradviz recording (not a mapping)")
        check_header(doc)
        extents = validate_document(doc)
        arrays = {}
        for name, info in members.items():
            m = _ARRAY_MEMBER.fullmatch(name)
            if m and m.group(1) not in extents:
                raise Refused(f"member {name!r} is not used by the recording (damaged or hostile)")
        for dtype_name, count in extents.items():
            info = members.get(f"arrays/{dtype_name}.npy")
            if info is None:
                raise Refused(f"the recording uses arrays/{dtype_name}.npy, which the file does not hold")
            arrays[dtype_name] = _read_array(z, info, dtype_name, count)
    return doc, arrays


