"""Hostile and damaged ``.gradviz`` files, generated into a folder (used by test_hostile.py).

Each maker takes the folder and the members of a valid recording (``{name: bytes}``) and returns
the path it made. `make_all` makes every kind; `KINDS` names them. Nothing here needs gradviz: the
files are built from raw zip bytes so that they can lie in ways `zipfile` would never write.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

KINDS: dict[str, Callable[[Path, dict], Path]] = {}


def kind(name: str):
    """Register a maker of one hostile file."""

    def deco(fn):
        KINDS[name] = fn
        return fn

    return deco


def members_of(path: str | os.PathLike) -> dict[str, bytes]:
    """The members of a valid recording, in file order."""
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A plain zip: recording.json deflated, arrays stored (as gradviz writes them)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name.endswith(".json") else
                        zipfile.ZIP_STORED)
    return path


def with_doc(folder: Path, members: dict, name: str, change: Callable[[dict], None] | None = None,
             text: bytes | None = None) -> Path:
    """A copy of the recording whose recording.json was edited by `change` (or replaced by `text`)."""
    if text is None:
        doc = json.loads(members["recording.json"])
        change(doc)
        text = json.dumps(doc).encode()
    return write_zip(folder / f"{name}.gradviz", {**members, "recording.json": text})


def patch_declared_size(data: bytearray, member: str, size: int) -> None:
    """Rewrite the uncompressed size of `member` in its local header and its central directory entry."""
    target = member.encode()
    i = data.find(b"PK\x03\x04")
    while i != -1:
        n = struct.unpack_from("<H", data, i + 26)[0]
        if data[i + 30:i + 30 + n] == target:
            struct.pack_into("<I", data, i + 22, size)
        i = data.find(b"PK\x03\x04", i + 4)
    i = data.find(b"PK\x01\x02")
    while i != -1:
        n = struct.unpack_from("<H", data, i + 28)[0]
        if data[i + 46:i + 46 + n] == target:
            struct.pack_into("<I", data, i + 24, size)
        i = data.find(b"PK\x01\x02", i + 4)


# ---------------------------------------------------------------------------------------------
# sizes that lie, and sizes that are honest but too big

@kind("understated-json")
def _understated_json(folder: Path, members: dict) -> Path:
    # 200 MB of JSON (mostly blanks: ~200 KB deflated) whose headers say 1,000 bytes
    body = members["recording.json"][:-1] + b"," + b'"pad":"' + b" " * (200 << 20) + b'"}'
    p = folder / "understated-json.gradviz"
    with zipfile.ZipFile(p, "w", compresslevel=1) as zf:
        for name, data in {**members, "recording.json": body}.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    patch_declared_size(data, "recording.json", 1000)
    p.write_bytes(bytes(data))
    return p


@kind("understated-array")
def _understated_array(folder: Path, members: dict) -> Path:
    # an array member deflated from 300 MB of zeros, its headers saying it holds what the real one held
    real = members["arrays/float32.npy"]
    p = folder / "understated-array.gradviz"
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            if name == "arrays/float32.npy":
                zf.writestr(name, real + bytes(300 << 20), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
            else:
                zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    patch_declared_size(data, "arrays/float32.npy", len(real))
    p.write_bytes(bytes(data))
    return p


@kind("huge-json-allowed-ratio")
def _huge_json(folder: Path, members: dict) -> Path:
    # 300 MB of valid JSON (a list of 0s with a 1 now and then) deflating about 100:1, honest headers
    p = folder / "huge-json-allowed-ratio.gradviz"
    rng = np.random.default_rng(0)
    chunk = 8 << 20
    c = np.full(chunk, ord("0"), np.uint8)
    c[0::2] = ord(",")
    c[rng.integers(0, chunk // 2, chunk // 400) * 2 + 1] = ord("1")
    c = c.tobytes()
    with zipfile.ZipFile(p, "w", compresslevel=1) as zf:
        for name, data in members.items():
            if name != "recording.json":
                zf.writestr(name, data)
        info = zipfile.ZipInfo("recording.json", (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(b'{"pad":[0')
            for _ in range((300 << 20) // chunk):
                fh.write(c)
            fh.write(b"]}")
    return p


def _local_header(name: bytes, crc: int, size: int, method: int = 0, csize: int | None = None) -> bytes:
    csize = size if csize is None else csize
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, csize, size, len(name), 0) + name


def _central(name: bytes, crc: int, size: int, offset: int, method: int = 0, csize: int | None = None) -> bytes:
    csize = size if csize is None else csize
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, csize, size,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def _eocd(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


@kind("sparse-2gb-member")
def _sparse(folder: Path, members: dict) -> Path:
    # a stored arrays/float64.npy of 2 GiB (a hole on disk: zeros) with valid sizes and CRC
    p = folder / "sparse-2gb-member.gradviz"
    head = io.BytesIO()
    n = (2 << 30) // 8
    np.lib.format.write_array_header_2_0(head, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
    head = head.getvalue()
    size = len(head) + n * 8
    crc = zlib.crc32(head)
    zeros = bytes(64 << 20)
    for _ in range(n * 8 // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    name = b"arrays/float64.npy"
    others = {k: v for k, v in members.items() if k != "arrays/float64.npy"}
    with open(p, "wb") as fh:
        central = []
        fh.write(_local_header(name, crc, size))
        fh.write(head)
        fh.seek(n * 8, os.SEEK_CUR)
        central.append(_central(name, crc, size, 0))
        for k, v in others.items():
            offset = fh.tell()
            fh.write(_local_header(k.encode(), zlib.crc32(v), len(v)))
            fh.write(v)
            central.append(_central(k.encode(), zlib.crc32(v), len(v), offset))
        cd_offset = fh.tell()
        cd = b"".join(central)
        fh.write(cd)
        fh.write(_eocd(len(central), len(cd), cd_offset))
    return p


@kind("300000-members")
def _many(folder: Path, members: dict) -> Path:
    p = folder / "300000-members.gradviz"
    n = 300_000
    local, central, offset = [], [], 0
    for i in range(n):
        name = f"arrays/a{i}.npy".encode()
        h = _local_header(name, 0, 0)
        local.append(h)
        central.append(_central(name, 0, 0, offset))
        offset += len(h)
    cd = b"".join(central)
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), offset)
    loc = struct.pack("<IIQI", 0x07064B50, 0, offset + len(cd), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    p.write_bytes(b"".join(local) + cd + z64 + loc + end)
    return p


# ---------------------------------------------------------------------------------------------
# not a regular file

@kind("symlink-dev-zero")
def _dev_zero(folder: Path, members: dict) -> Path:
    p = folder / "zero.gradviz"
    p.symlink_to("/dev/zero")
    return p


@kind("symlink-dev-urandom")
def _dev_urandom(folder: Path, members: dict) -> Path:
    p = folder / "urandom.gradviz"
    p.symlink_to("/dev/urandom")
    return p


@kind("fifo")
def _fifo(folder: Path, members: dict) -> Path:
    p = folder / "fifo.gradviz"
    os.mkfifo(p)
    return p


@kind("folder")
def _folder(folder: Path, members: dict) -> Path:
    p = folder / "folder.gradviz"
    p.mkdir()
    return p


@kind("empty")
def _empty(folder: Path, members: dict) -> Path:
    p = folder / "empty.gradviz"
    p.write_bytes(b"")
    return p


@kind("missing")
def _missing(folder: Path, members: dict) -> Path:
    return folder / "missing.gradviz"


@kind("dangling-symlink")
def _dangling(folder: Path, members: dict) -> Path:
    p = folder / "dangling.gradviz"
    p.symlink_to(folder / "nowhere.gradviz")
    return p


# ---------------------------------------------------------------------------------------------
# references out of range, graphs that are not DAGs

def _first_contribution(doc: dict) -> dict:
    return next(c for leaf in doc["leaves"] for c in leaf["contributions"])


def _set(path: tuple, value) -> Callable[[dict], None]:
    def change(doc):
        obj = doc
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value

    return change


REFERENCE_EDITS: dict[str, Callable[[dict], None]] = {
    "producer-999": lambda d: _first_contribution(d).update(producer=999),
    "contribution-event-999": lambda d: _first_contribution(d).update(backward_event=999),
    "contribution-slot-minus-5": lambda d: _first_contribution(d).update(slot=-5),
    "root-999": _set(("root",), 999),
    "forward-node-999": lambda d: d["forward"][0].update(node=999),
    "forward-input-node-999": lambda d: d["forward"][0].update(input_nodes=[999, 0, 0]),
    "node-forward-event-999": lambda d: d["nodes"][1].update(forward_event=999),
    "edge-slot-minus-5": lambda d: d["edges"][0].__setitem__(2, -5),
    "edge-node-999": lambda d: d["edges"][0].__setitem__(1, 999),
    "input-edge-node-999": lambda d: d["input_edges"][0].__setitem__(1, 999),
    "backward-node-999": lambda d: d["backward"][0].update(node=999),
    "leaf-node-999": lambda d: d["leaves"][0].update(node=999),
    "tensor-ref-999": lambda d: d["forward"][0].update(inputs=[999]),
    "tensor-ref-minus-1": _set(("loss",), -1),
    "array-offset-minus-1": lambda d: d["tensors"][0]["value"].update(offset=-1),
    "array-past-end": lambda d: d["tensors"][0]["value"].update(offset=10**9),
    "array-unknown-dtype": lambda d: d["tensors"][0]["value"].update(array="float1024"),
    "negative-shape": lambda d: d["tensors"][0].update(shape=[-1, 4]),
    "overflowing-shape": lambda d: d["tensors"][0]["value"].update(shape=[2**62, 2**62]),
    "node-id-mismatch": lambda d: d["nodes"][1].update(id=7),
    "check-node-999": lambda d: d["checks"]["checks"][0].update(node=999),
    "self-loop": lambda d: d["edges"].append([1, 1, 0]),
    "cycle": lambda d: d["edges"].append([d["edges"][-1][1], 0, 0]),
}

TYPE_EDITS: dict[str, Callable[[dict], None]] = {
    "string-root": _set(("root",), "0"),
    "float-index": lambda d: d["forward"][0].update(index=1.5),
    "bool-node": lambda d: d["forward"][0].update(node=True),
    "list-name": lambda d: d["nodes"][0].update(name=["x"]),
    "check-max-abs-zzz": lambda d: d["checks"]["checks"][0].update(max_abs="zzz"),
    "check-status-42": lambda d: d["checks"]["checks"][0].update(status=42),
    "check-unknown-field": lambda d: d["checks"]["checks"][0].update(evil=1),
    "checks-not-a-list": lambda d: d["checks"].update(checks=7),
    "nodes-not-a-list": _set(("nodes",), {"a": 1}),
    "leaves-missing": lambda d: d.pop("leaves"),
    "saved-not-a-mapping": lambda d: d["nodes"][1].update(saved=[1, 2]),
    "unknown-tag": lambda d: d["nodes"][1].update(saved={"$pickle": "x"}),
    "bad-float-tag": lambda d: d["nodes"][1].update(saved={"x": {"$float": "1e400000"}}),
    "budget-string": _set(("budget_bytes",), "lots"),
    "keep-values-string": _set(("keep_values",), "yes"),
    "top-level-list": None,  # replaced below
}
del TYPE_EDITS["top-level-list"]

TEXT_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "infinity-root": lambda t: t.replace(b'"root": 0', b'"root": Infinity'),
    "1e999-use": lambda t: t.replace(b'"use": 1', b'"use": 1e999', 1),
    "nan-slot": lambda t: t.replace(b'"slot": 0', b'"slot": NaN', 1),
    "huge-int-root": lambda t: t.replace(b'"root": 0', b'"root": ' + b"9" * 5000),
    "deep-nesting": lambda t: t.replace(b'"meta": {', b'"meta": {"deep": ' + b"[" * 200_000 + b"]" * 200_000 + b",", 1),
    "not-json": lambda t: b"{not json",
    "top-level-list": lambda t: b"[1, 2, 3]",
    "not-utf8": lambda t: t.replace(b'"target": "', b'"target": "\xff\xfe', 1),
    "wrong-format-name": lambda t: t.replace(b'"gradviz-recording"', b'"something-else"', 1),
}


def _make_edit(name, change):
    def make(folder: Path, members: dict) -> Path:
        return with_doc(folder, members, name, change)

    return make


def _make_text_edit(name, change):
    def make(folder: Path, members: dict) -> Path:
        text = json.dumps(json.loads(members["recording.json"])).encode()
        new = change(text)
        assert new != text, name
        return with_doc(folder, members, name, text=new)

    return make


for _name, _change in {**REFERENCE_EDITS, **TYPE_EDITS}.items():
    kind(_name)(_make_edit(_name, _change))
for _name, _change in TEXT_EDITS.items():
    kind(_name)(_make_text_edit(_name, _change))


# ---------------------------------------------------------------------------------------------
# damaged bytes and odd archives

@kind("flipped-byte-array")
def _flip_array(folder: Path, members: dict) -> Path:
    p = write_zip(folder / "flipped-byte-array.gradviz", members)
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("arrays/float32.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


@kind("flipped-byte-json")
def _flip_json(folder: Path, members: dict) -> Path:
    p = write_zip(folder / "flipped-byte-json.gradviz", members)
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("recording.json")
    data[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF
    p.write_bytes(bytes(data))
    return p


@kind("truncated")
def _truncated(folder: Path, members: dict) -> Path:
    p = write_zip(folder / "truncated.gradviz", members)
    p.write_bytes(p.read_bytes()[:-100])
    return p


@kind("not-a-zip")
def _not_zip(folder: Path, members: dict) -> Path:
    p = folder / "not-a-zip.gradviz"
    p.write_bytes(b"hello, this is not a zip archive\n" * 10)
    return p


@kind("duplicate-member")
def _duplicate(folder: Path, members: dict) -> Path:
    p = folder / "duplicate-member.gradviz"
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf.writestr("recording.json", b"{}")
    return p


@kind("extra-member")
def _extra(folder: Path, members: dict) -> Path:
    return write_zip(folder / "extra-member.gradviz", {**members, "../evil.py": b"import os"})


@kind("array-object-dtype")
def _object_array(folder: Path, members: dict) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return write_zip(folder / "array-object-dtype.gradviz", {**members, "arrays/float32.npy": buf.getvalue()})


@kind("array-header-lies")
def _array_header(folder: Path, members: dict) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    return write_zip(folder / "array-header-lies.gradviz",
                     {**members, "arrays/float32.npy": buf.getvalue() + b"\0" * 64})


@kind("array-unreferenced-tail")
def _array_tail(folder: Path, members: dict) -> Path:
    # 64 MiB of float32s that no tensor refers to, appended to a valid array (honest sizes)
    real = members["arrays/float32.npy"]
    buf = io.BytesIO()
    n = (len(real) - 128) // 4 + (16 << 20)
    np.lib.format.write_array_header_2_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    body = buf.getvalue() + real[128:] + bytes(64 << 20)
    return write_zip(folder / "array-unreferenced-tail.gradviz", {**members, "arrays/float32.npy": body})


@kind("zip-bomb-ratio")
def _bomb(folder: Path, members: dict) -> Path:
    p = folder / "zip-bomb-ratio.gradviz"
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("arrays/float16.npy", bytes(256 << 20), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return p


@kind("newer-version")
def _newer(folder: Path, members: dict) -> Path:
    return with_doc(folder, members, "newer-version", _set(("version",), 99))


def make_all(folder: Path, members: dict, only: list[str] | None = None) -> dict[str, Path]:
    """Make every hostile file (or those in `only`) in `folder`; return them by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: fn(folder, members) for name, fn in KINDS.items() if only is None or name in only}
