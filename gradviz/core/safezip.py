"""Read a zip archive that may be hostile: a regular file only, members counted before anything is
parsed, every member streamed with a hard cap and its real size and CRC checked.

Nothing here trusts what the archive says about itself. The file must be a regular file (a device,
a FIFO or a folder is refused from its ``stat`` before it is opened, and it is opened non-blocking
so that nothing can make the open wait). The number of members and the size of the central
directory are read from the end records before `zipfile` parses anything. A member is inflated in
pieces of at most `PIECE` bytes and refused as soon as it yields more than its header declares, or
when it ends short of it, or when its CRC differs, so a member that lies costs at most one piece of
memory past what its header promised, and that promise is checked against the caller's budget first.
"""
from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["Refused", "SafeZip", "PIECE", "MAX_CENTRAL_DIRECTORY", "available_memory", "format_bytes"]

PIECE = 1 << 20
MAX_CENTRAL_DIRECTORY = 1 << 20  # 64 members take under 10 KiB


class Refused(Exception):
    """The archive cannot be read safely; the text says why, in the user's terms."""


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``300.0 MiB``, ``12 bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable, else physical memory, else 8 GiB)."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - platforms without sysconf
        return 8 << 30


def _open_regular(path: Path) -> BinaryIO:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Refused("no such file") from None
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise Refused("it is a folder, not a recording file")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
        raise Refused(f"it is not a regular file ({what})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    try:
        again = os.fstat(fd)  # what was opened is what was checked (no swap in between)
        if not stat.S_ISREG(again.st_mode):
            raise Refused("it is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _count_members(fh: BinaryIO, size: int) -> tuple[int, int]:
    """(members, central directory bytes) from the end records, before anything else is parsed."""
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise Refused("it is not a zip archive, or it is truncated")
    _, _, _, count, cd_size, _, _ = struct.unpack_from("<HHHHIIH", tail, at + 4)
    if count == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = at - 20
        if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
            raise Refused("it is not a zip archive, or it is truncated")
        (z64,) = struct.unpack_from("<Q", tail, loc + 8)
        if z64 + 56 > size:
            raise Refused("it is truncated (its zip64 end record is past the end of the file)")
        fh.seek(z64)
        rec = fh.read(56)
        if len(rec) < 56 or rec[:4] != b"PK\x06\x06":
            raise Refused("it is truncated or corrupted (no zip64 end record)")
        count, cd_size = struct.unpack_from("<QQ", rec, 32)
    return count, cd_size


class SafeZip:
    """A zip archive opened for safe reading.

    Parameters
    ----------
    path : pathlib.Path
    max_members : int
        Refuse archives with more members than this (counted before `zipfile` parses them).

    Attributes
    ----------
    members : dict of str to zipfile.ZipInfo
        The members by name, as the central directory lists them.
    size : int
        The file's size in bytes.
    """

    def __init__(self, path: Path, max_members: int):
        self.path = path
        self._fh = _open_regular(path)
        try:
            self.size = os.fstat(self._fh.fileno()).st_size
            if self.size == 0:
                raise Refused("it is empty (0 bytes)")
            count, cd_size = _count_members(self._fh, self.size)
            if count > max_members:
                raise Refused(f"it has {count} members; a recording has at most {max_members}")
            if cd_size > MAX_CENTRAL_DIRECTORY:
                raise Refused(f"its zip directory takes {format_bytes(cd_size)}; a recording's takes a few KiB")
            self._fh.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._fh, "r")
            except zipfile.BadZipFile:
                raise Refused("it is not a zip archive, or it is truncated") from None
            infos = self._zip.infolist()
            if len(infos) > max_members:
                raise Refused(f"it has {len(infos)} members; a recording has at most {max_members}")
            self.members: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                if info.filename in self.members:
                    raise Refused(f"member {info.filename!r} appears twice")
                self.members[info.filename] = info
        except BaseException:
            self._fh.close()
            raise

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "SafeZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pieces(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's bytes in pieces of at most `PIECE`, refused the moment they pass its declared size.

        The caller has checked ``info.file_size`` against its budget. When the iteration ends the
        member held exactly ``info.file_size`` bytes with the right CRC.
        """
        name = info.filename
        declared = info.file_size
        fh = self._fh
        fh.seek(info.header_offset)
        head = fh.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise Refused(f"member {name!r} has no local header where the zip directory says (truncated or corrupted)")
        n, m = struct.unpack_from("<HH", head, 26)
        local_name = fh.read(n)
        if local_name != info.orig_filename.encode("utf-8") and local_name != info.orig_filename.encode("cp437", "replace"):
            raise Refused(f"member {name!r} has another name in its local header")
        start = info.header_offset + 30 + n + m
        if start + info.compress_size > self.size:
            raise Refused(f"member {name!r} runs past the end of the file (truncated)")
        fh.seek(start)
        left = info.compress_size
        crc = 0
        total = 0
        inflate = None
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflate = zlib.decompressobj(-15)
        elif info.compress_type != zipfile.ZIP_STORED:
            raise Refused(f"member {name!r} uses an unsupported compression")
        while left > 0 or (inflate is not None and inflate.unconsumed_tail):
            if inflate is not None and inflate.unconsumed_tail:
                raw = inflate.unconsumed_tail
            else:
                raw = fh.read(min(left, PIECE))
                if not raw:
                    raise Refused(f"member {name!r} is truncated")
                left -= len(raw)
            if inflate is None:
                piece = raw
            else:
                try:
                    piece = inflate.decompress(raw, PIECE)
                except zlib.error:
                    raise Refused(f"member {name!r} is corrupted (its compressed data does not inflate)") from None
            total += len(piece)
            if total > declared:
                raise Refused(f"member {name!r} inflates past the {declared} bytes its zip header declares "
                              "(a damaged or hostile file)")
            crc = zlib.crc32(piece, crc)
            if piece:
                yield piece
            if inflate is not None and inflate.eof:
                break
        if inflate is not None and not inflate.eof:
            raise Refused(f"member {name!r} is truncated (its compressed data ends early)")
        if total != declared:
            raise Refused(f"member {name!r} holds {total} bytes but its zip header declares {declared} "
                          "(truncated or corrupted)")
        if crc != info.CRC:
            raise Refused(f"member {name!r} is corrupted (its CRC-32 does not match)")

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """The whole member (its declared size already checked by the caller)."""
        out = bytearray()
        for piece in self.pieces(info):
            out += piece
        return bytes(out)
