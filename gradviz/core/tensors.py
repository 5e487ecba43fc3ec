"""Snapshots of tensors: values kept up to a memory budget, summary statistics past it."""
from __future__ import annotations

from dataclasses import dataclass, field

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
    if t.numel() == 0:
        return None
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    x = x.to(torch.float64)
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "norm": float(x.norm())}


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

    def capture(self, t: torch.Tensor | None, by_storage: bool = False) -> TensorData | None:
        """Return the snapshot of `t` (None stays None).

        With `by_storage`, tensor objects that view the same memory with the same shape, strides and
        version share one snapshot too (a node's saved output and the forward op's output).
        """
        if t is None:
            return None
        if not self.keep_values:
            self._count += 1
            return TensorData(tuple(t.shape), _dtype_name(t.dtype), _device_name(t), None, None,
                              t.requires_grad, self._count)
        # one snapshot per unchanged tensor object; the object is held, so its id is not reused
        key = (id(t), t._version)
        hit = self._seen.get(key)
        if hit is not None:
            return hit[0]
        skey = None
        if by_storage and t.layout == torch.strided and not t.is_meta:
            skey = (t.data_ptr(), t.shape, t.stride(), t.dtype, t._version, t.device)
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
        data = TensorData(tuple(t.shape), _dtype_name(t.dtype), _device_name(t), value, stats,
                          t.requires_grad, self._count)
        self._seen[key] = (data, t)
        if skey is not None:
            self._seen[skey] = (data, t)
        return data

    def release(self) -> None:
        """Drop the references that kept captured tensors alive."""
        self._seen.clear()


_DTYPE_NAMES: dict = {}


def _device_name(t: torch.Tensor) -> str:
    return "cpu" if t.is_cpu else str(t.device)


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).replace("torch.", "")
    return name
