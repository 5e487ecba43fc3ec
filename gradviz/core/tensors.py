"""Snapshots of tensors: values kept up to a memory budget, summary statistics past it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = ["TensorData", "TensorStore", "DEFAULT_BUDGET_BYTES"]

DEFAULT_BUDGET_BYTES = 256 * 2**20


@dataclass(eq=False)
class TensorData:
    """What gradviz keeps of one tensor at one moment.

    Attributes
    ----------
    shape : tuple of int
    dtype : str
        Torch's dtype name without the ``torch.`` prefix (``"float32"``).
    device : str
    value : numpy.ndarray or None
        A copy of the values, or None when the memory budget was spent or values were not kept.
    stats : dict or None
        ``min``, ``max``, ``mean``, ``norm`` when the value was dropped for the budget.
    requires_grad : bool
    """

    shape: tuple
    dtype: str
    device: str
    value: np.ndarray | None = None
    stats: dict | None = None
    requires_grad: bool = False
    uid: int = field(default=-1, compare=False)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def kept(self) -> bool:
        """Whether the values were kept."""
        return self.value is not None

    def summary(self) -> str:
        """Return a short text: the value when it is tiny, else shape and dtype."""
        if self.value is not None and self.numel == 1:
            return f"{float(self.value.reshape(-1)[0]):.6g}"
        return f"{tuple(self.shape)} {self.dtype}"


def _stats(t: torch.Tensor) -> dict | None:
    """Min, max, mean and 2-norm of a tensor's values (of their moduli when complex), in float64; None when empty."""
    if t.numel() == 0:
        return None
    return _stats_rows(t.detach().reshape(1, -1))[0]


def _stats_rows(rows: torch.Tensor) -> list[dict]:
    """`_stats` of each row of a 2-D tensor of at least one column.

    A tensor alone goes through here as a row of one (`_stats`), so that statistics taken one at a
    time and per group are the same numbers. On the CPU the row's values, converted to float64
    exactly, are added in four lanes (value i in lane i % 4, each lane left to right: `_lane_sums`),
    then the four lanes left to right; so are their squares, each rounded to float64.
    The mean is that sum over the count, the norm the square root of the sum of squares: the very
    numbers the recorder's compiled helper computes from each gradient's memory
    (``kernels/record_stats.cpp``, `capture_many`'s ``stats``), whose four lanes of additions run
    side by side. Min and max are NaN where a value is NaN; a zero among min, max and mean is +0.0
    (which of -0.0 and +0.0 a comparison keeps, or a sum of zeros gives, is no statistic). Tensors
    on other devices are reduced there by torch in float64 (no copy to the CPU), numbers that may
    differ from the CPU's in the last bits.
    """
    x = rows.detach()
    if x.is_complex():
        x = x.abs()
    if not x.is_cpu:
        x = x.to(torch.float64)
        columns = (x.amin(1).tolist(), x.amax(1).tolist(), x.mean(1).tolist(),
                   torch.linalg.vector_norm(x, dim=1).tolist())
        return [{"min": lo, "max": hi, "mean": mean, "norm": norm} for lo, hi, mean, norm in zip(*columns)]
    if x.dtype not in (torch.float16, torch.float32, torch.float64):
        x = x.to(torch.float64)  # (bfloat16, integers, bool: exactly, as the helper converts them)
    a = x.resolve_conj().resolve_neg().numpy()
    n = a.shape[1]
    with np.errstate(all="ignore"):  # (inf - inf, squares past float64: NaN and inf, as torch gives them)
        lo = a.min(axis=1).astype(np.float64) + 0.0  # (min and max propagate NaN)
        hi = a.max(axis=1).astype(np.float64) + 0.0
        sums, squares = _lane_sums(a)
        total = ((sums[:, 0] + sums[:, 1]) + sums[:, 2]) + sums[:, 3]
        mean = total / n + 0.0
        norm = np.sqrt(((squares[:, 0] + squares[:, 1]) + squares[:, 2]) + squares[:, 3])
    return [{"min": v[0], "max": v[1], "mean": v[2], "norm": v[3]}
            for v in np.stack([lo, hi, mean, norm], axis=1).tolist()]


def _lane_sums(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The four lane sums of each row of `a` and of its squares, in float64, ``(rows, 4)`` each.

    Value i of a row goes to lane i % 4; each lane adds its values left to right (`_stats_rows`).
    Many rows: one vector add per group of four columns across all rows; few rows (a large tensor
    alone): ``cumsum`` along each lane. (A lane starting at 0.0 or at its first value differs in
    the sign of a zero sum only.)
    """
    count, n = a.shape
    full = n // 4
    body = a[:, :full * 4].reshape(count, full, 4)
    if count >= 64 or full == 0:
        sums, squares = np.zeros((count, 4)), np.zeros((count, 4))
        for j in range(full):
            v = body[:, j, :].astype(np.float64)
            sums += v
            squares += v * v
    else:
        wide = body.astype(np.float64)
        sums = np.cumsum(wide, axis=1)[:, -1, :]
        squares = np.cumsum(wide * wide, axis=1)[:, -1, :]
    for k in range(n - full * 4):  # (the last values, fewer than four: lanes 0, 1, 2)
        v = a[:, full * 4 + k].astype(np.float64)
        sums[:, k] += v
        squares[:, k] += v * v
    return sums, squares


_STATS_CHUNK = 4096  # rows stacked at once for statistics (bounds the stacked copy and its float64 sums)


class TensorStore:
    """Take snapshots of tensors, sharing one snapshot per unchanged tensor, within a byte budget.

    Parameters
    ----------
    keep_values : bool
        Copy values (True) or keep shapes and dtypes only (False).
    budget_bytes : int
        Values are copied until this many bytes are held; later tensors keep statistics only.
    """

    def __init__(self, keep_values: bool = True, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.keep_values = keep_values
        self.budget_bytes = int(budget_bytes)
        self.bytes_kept = 0
        self.dropped_count = 0
        self.dropped_bytes = 0
        self._count = 0
        # the same unchanged tensor is snapshotted once; the tensor is held so its memory is not reused
        self._seen: dict[tuple, tuple[TensorData, torch.Tensor]] = {}
        # where kept values live, for `nonfinite`: one array per group copied at once, with its
        # snapshots (one per row), and the snapshots copied one at a time
        self._groups: list[tuple[np.ndarray, list[TensorData]]] = []
        self._singles: list[TensorData] = []
        self._bad: list[TensorData] = []  # snapshots known to hold NaN or Inf (told by capture_many)

    @property
    def last_uid(self) -> int:
        """The ``uid`` of the latest snapshot (0 before the first).

        Set by code that numbers snapshots itself, in this store's order: the recorder's compiled
        helper, reading saved tensors without values (`gradviz.core.saved.read_saved_nodes`).
        """
        return self._count

    @last_uid.setter
    def last_uid(self, uid: int) -> None:
        self._count = int(uid)

    def snapshot_table(self) -> dict:
        """The table `capture` finds earlier snapshots in, by tensor key; values ``(snapshot, tensor)``.

        With values, a tensor's storage key is ``(t.data_ptr(), t.shape, t.stride(), t.dtype,
        t._version, t.get_device())`` (strided tensors with memory, `by_storage`). The recorder's
        compiled helper looks saved tensors up in it as `capture` would
        (`gradviz.core.saved.read_saved_nodes`); nothing but `capture` writes it.
        """
        return self._seen

    def capture(self, t: torch.Tensor | None, by_storage: bool = False) -> TensorData | None:
        """Return the snapshot of `t` (None stays None).

        With `by_storage`, tensor objects that view the same memory with the same shape, strides and
        version share one snapshot too (a node's saved output and the forward op's output); without
        values, only the same tensor object does, and only with `by_storage`.
        """
        if t is None:
            return None
        if not self.keep_values:
            # shapes only: still one snapshot per unchanged tensor object with `by_storage` (the
            # recorder's forward ops and saved tensors, which it holds anyway); a gradient is not
            # held, so each of its snapshots is its own
            self._count += 1
            if not by_storage:
                return TensorData(tuple(t.shape), _DTYPE_NAMES.get(t.dtype) or _dtype_name(t.dtype),
                                  device_name(t), None, None, t.requires_grad, self._count)
            key = (id(t), t._version)
            hit = self._seen.get(key)
            if hit is not None:
                self._count -= 1
                return hit[0]
            data = TensorData(tuple(t.shape), _DTYPE_NAMES.get(t.dtype) or _dtype_name(t.dtype),
                              device_name(t), None, None, t.requires_grad, self._count)
            self._seen[key] = (data, t)
            return data
        # one snapshot per unchanged tensor object; the object is held, so its id is not reused
        key = (id(t), t._version)
        hit = self._seen.get(key)
        if hit is not None:
            return hit[0]
        skey = None
        if by_storage and t.layout == torch.strided and not t.is_meta:
            # (get_device: -1 on the CPU, the device index elsewhere; cheaper than t.device)
            skey = (t.data_ptr(), t.shape, t.stride(), t.dtype, t._version, t.get_device())
            hit = self._seen.get(skey)
            if hit is not None:
                # hold this object too, or its id could be reused by a later tensor
                self._seen[key] = (hit[0], t)
                return hit[0]
        self._count += 1
        nbytes = t.numel() * t.element_size()
        value = stats = None
        if self.bytes_kept + nbytes <= self.budget_bytes:
            try:
                value = t.numpy(force=True).copy()
            except (TypeError, RuntimeError):
                # numpy has no bfloat16; sparse and meta tensors have no values to copy
                if t.layout == torch.strided and not t.is_meta and t.is_floating_point():
                    value = t.detach().to("cpu", torch.float32).numpy()
        if value is not None:
            self.bytes_kept += nbytes
        else:
            self.dropped_count += 1
            self.dropped_bytes += nbytes
            stats = _stats(t) if t.layout == torch.strided and not t.is_meta else None
        data = TensorData(tuple(t.shape), _dtype_name(t.dtype), device_name(t), value, stats,
                          t.requires_grad, self._count)
        if value is not None:
            self._singles.append(data)
        self._seen[key] = (data, t)
        if skey is not None:
            self._seen[skey] = (data, t)
        return data

    def capture_many(self, tensors: list, stack: Callable | None = None, owned: list | None = None,
                     finite: list | None = None, stats: Callable | None = None) -> list:
        """Return the snapshots of `tensors`, exactly as `capture` one by one would, copied in groups.

        Tensors of one shape and dtype (plain CPU tensors) are copied together, by one
        ``torch.stack``; each snapshot's value is its row of that one array. The snapshots, their
        ``uid`` numbers and what the memory budget keeps are those of capturing them one at a time,
        in order. Only for tensors nobody changes until `release` (the recorder's gradients).

        ``stack(tensors)``, when given, copies a group instead of ``torch.stack``: it must return
        what ``torch.stack`` would, bit for bit (the recorder's compiled helper does).
        ``owned[i]`` True says that nothing but `tensors` can reach the memory of ``tensors[i]``
        (the helper checks the reference counts): its snapshot's value then shares that memory
        instead of copying it, the same values without a copy (nobody can change them).
        ``finite[i]``, where not None, says whether the values of an owned ``tensors[i]`` are all
        finite (`nonfinite` then need not look at them again). An owned tensor may come as a numpy
        array over its memory instead (the helper makes those without a Python tensor): its
        snapshot is the one the tensor would get. Past the budget, the statistics of tensors of one
        shape and dtype are computed together (`_stats_rows`), the numbers `capture` gives.
        ``stats(tensors)``, when given, computes those of the float16, float32 and float64 ones
        instead, all in one call, without stacking them: an ``(n, 4)`` float64 array of each one's
        min, max, mean and norm, the numbers of `_stats_rows` bit for bit (the helper's
        ``stats_rows`` does).
        """
        if not self.keep_values:
            return [self.capture(t) for t in tensors]
        out: list = [None] * len(tensors)
        groups: dict[tuple, list] = {}
        dropped: dict[tuple, list] = {}  # past the budget: (shape, dtype) -> [(snapshot, tensor)]
        direct: list = []  # past the budget, statistics by `stats`: [(snapshot, tensor)]
        seen = self._seen
        for i, t in enumerate(tensors):
            if t is None:
                continue
            if type(t) is np.ndarray:
                if self.bytes_kept + t.nbytes <= self.budget_bytes:
                    out[i] = self._owned_array(t, None if finite is None else finite[i])
                    continue
                if stats is not None and t.dtype in _DIRECT_NUMPY:
                    # past the budget: the snapshot the tensor below would get, its statistics by
                    # `stats` from the array (nothing else holds its memory: no table entry)
                    self._count += 1
                    self.dropped_count += 1
                    self.dropped_bytes += t.nbytes
                    out[i] = data = TensorData(t.shape, _NUMPY_NAMES[t.dtype], "cpu", None, None, False, self._count)
                    if t.size:
                        direct.append((data, t))
                    continue
                t = torch.from_numpy(t)  # (past the budget: statistics, with the tensors below)
            key = (id(t), t._version)
            hit = seen.get(key)
            if hit is not None:
                out[i] = hit[0]
                continue
            name = _STACKABLE.get(t.dtype)
            if (name is None or type(t) is not torch.Tensor or not t.is_cpu or t.layout != torch.strided
                    or t.is_conj() or t.is_neg()):
                out[i] = self.capture(t)  # (one at a time, as numpy(force=True) copies it)
                continue
            nbytes = t.numel() * t.element_size()
            if self.bytes_kept + nbytes > self.budget_bytes:
                # past the budget: statistics, as capture gives them, computed below per group of one shape
                self._count += 1
                self.dropped_count += 1
                self.dropped_bytes += nbytes
                shape = tuple(t.shape)
                data = TensorData(shape, name, "cpu", None, None, t.requires_grad, self._count)
                if nbytes and stats is not None and t.dtype in _DIRECT_STATS:
                    direct.append((data, t))
                elif nbytes:
                    dropped.setdefault((shape, t.dtype), []).append((data, t))
                seen[key] = (data, t)
                out[i] = data
                continue
            self.bytes_kept += nbytes
            self._count += 1
            shape = tuple(t.shape)
            data = TensorData(shape, name, "cpu", None, None, t.requires_grad, self._count)
            if owned is not None and owned[i]:
                data.value = t.numpy()  # (the tensor's own memory, which only this snapshot keeps)
                ok = None if finite is None else finite[i]
                if ok is None:
                    self._singles.append(data)
                elif not ok:
                    self._bad.append(data)
            else:
                groups.setdefault((shape, t.dtype), []).append((data, t))
            seen[key] = (data, t)
            out[i] = data
        with torch.no_grad():
            for items in groups.values():
                # one copy for the group: row j is the j-th tensor's values, bit for bit
                rows = [t for _, t in items]
                buf = (torch.stack(rows) if stack is None else stack(rows)).numpy()
                datas = [d for d, _ in items]
                for j, d in enumerate(datas):
                    d.value = buf[j, ...]
                self._groups.append((buf, datas))
            if direct:
                # the real floating ones, each read where it is, in one call
                for (d, _), (lo, hi, mean, norm) in zip(direct, stats([t for _, t in direct]).tolist()):
                    d.stats = {"min": lo, "max": hi, "mean": mean, "norm": norm}
            for items in dropped.values():
                for at in range(0, len(items), _STATS_CHUNK):
                    chunk = items[at:at + _STATS_CHUNK]
                    rows = torch.stack([t for _, t in chunk]).reshape(len(chunk), -1)
                    for (d, _), stats in zip(chunk, _stats_rows(rows)):
                        d.stats = stats
        return out

    def _owned_array(self, value: np.ndarray, ok: bool | None) -> TensorData:
        """The snapshot of an owned gradient handed over as `value`, its memory, within the budget (`capture_many`)."""
        self.bytes_kept += value.nbytes
        self._count += 1
        data = TensorData(value.shape, _NUMPY_NAMES[value.dtype], "cpu", value, None, False, self._count)
        if ok is None:
            self._singles.append(data)
        elif not ok:
            self._bad.append(data)
        return data

    def shape_only(self, shape: tuple, dtype: torch.dtype, device: str, requires_grad: bool) -> TensorData:
        """Return a new snapshot without values, numbered as `capture` of such a tensor would be.

        For tensors already gone, described by their shape, dtype, device name and requires_grad
        (the recorder's gradients without values, read in C++ while backward ran).
        """
        self._count += 1
        return TensorData(shape, _DTYPE_NAMES.get(dtype) or _dtype_name(dtype), device, None, None,
                          requires_grad, self._count)

    def shapes_only(self, described: list) -> list:
        """`shape_only` of each ``(shape, dtype, device, requires_grad)`` in `described` (None stays None).

        The same snapshots, numbered alike, as calling `shape_only` on each in turn, in one loop.
        """
        count = self._count
        names: dict = {}  # dtype -> its name (a handful of dtypes among many gradients)
        out: list = []
        append = out.append
        for m in described:
            if m is None:
                append(None)
                continue
            shape, dtype, device, requires_grad = m
            name = names.get(dtype)
            if name is None:
                name = names[dtype] = _DTYPE_NAMES.get(dtype) or _dtype_name(dtype)
            count += 1
            append(TensorData(shape, name, device, None, None, requires_grad, count))
        self._count = count
        return out

    def nonfinite(self) -> set[int]:
        """Return the ids of the snapshots whose kept values hold NaN or Inf (floating and complex).

        One vectorised test per group, and per dtype and chunk of `_FINITE_CHUNK` single snapshots
        (the values of a chunk copied together: one copy of them all at once, tens of megabytes
        of fresh memory, cost more); snapshots are looked at one by one only where their group or
        chunk holds a NaN or Inf.
        """
        bad: set[int] = {id(d) for d in self._bad}
        for buf, datas in self._groups:
            if buf.dtype.kind in "fc" and not np.isfinite(buf).all():
                rows = ~np.isfinite(buf.reshape(len(datas), -1)).all(axis=1)
                bad.update(id(datas[j]) for j in np.flatnonzero(rows))
        by_dtype: dict = {}
        for d in self._singles:
            v = d.value
            if v is not None and v.dtype.kind in "fc":
                by_dtype.setdefault(v.dtype, []).append(d)
        for datas in by_dtype.values():
            for at in range(0, len(datas), _FINITE_CHUNK):
                chunk = datas[at:at + _FINITE_CHUNK]
                if not np.isfinite(np.concatenate([d.value for d in chunk], axis=None)).all():
                    bad.update(id(d) for d in chunk if not np.isfinite(d.value).all())
        return bad

    def release(self) -> None:
        """Drop the references that kept captured tensors alive."""
        self._seen.clear()
        self._groups.clear()
        self._singles.clear()
        self._bad.clear()


_DTYPE_NAMES: dict = {}
# single snapshots whose values `nonfinite` tests together
_FINITE_CHUNK = 128
# the dtypes numpy holds as they are: `capture_many` copies these in groups
_STACKABLE = {d: str(d).replace("torch.", "") for d in (
    torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128, torch.bool, torch.uint8,
    torch.int8, torch.int16, torch.int32, torch.int64)}

# the dtypes whose statistics `capture_many`'s ``stats`` computes, of tensors and of numpy arrays
_DIRECT_STATS = (torch.float16, torch.float32, torch.float64)
_DIRECT_NUMPY = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

_NUMPY_NAMES = {np.dtype(torch.empty(0, dtype=d).numpy().dtype): n for d, n in _STACKABLE.items()}


def device_name(t: torch.Tensor) -> str:
    """The name of `t`'s device as a snapshot holds it (``"cpu"``, ``"cuda:0"``; no device object made on the CPU)."""
    return "cpu" if t.is_cpu else str(t.device)


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).replace("torch.", "")
    return name
