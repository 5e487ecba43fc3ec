"""How a leaf's ``.grad`` builds up, at one element of a tensor of any shape.

For a leaf that received several gradients (a layer used three times), `accumulation_at` gives, at
one element, each contribution's value (the bars) and the running sum after each (the line), where
the line is exactly the cumulative sum of the bars; and per contribution the whole tensor as a 2-D
array for a small heat map. The Accumulation panel draws it; a student reads bar 1 + bar 2 = the line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import GradvizError
from .i18n import tr
from .labels import node_title, where
from .recording import Recording

__all__ = ["ElementAccumulation", "accumulation_at", "as_grid", "parse_index", "default_index", "index_text",
           "grid_cell_to_index", "index_to_grid_cell"]


@dataclass
class ElementAccumulation:
    """One element of a leaf's gradient, contribution by contribution.

    Attributes
    ----------
    leaf : str
    index : tuple of int
        The element (``()`` for a scalar).
    shape : tuple of int
        The leaf's shape.
    sources : list of str
        Per bar: where it came from (the place of the op that sent it, ``"layer · use 2/3"``, else the
        node's name; the first is ``".grad before backward"`` when the leaf had a gradient before).
    producers : list of int
        Per bar: the node that sent it (-1 for the gradient the leaf had before).
    values : numpy.ndarray of float64
        Per bar: its value at the element (NaN where the value was not kept).
    running : numpy.ndarray of float64
        ``np.cumsum(values)``: the running sum after each bar, the line drawn over the bars.
    grad : float or None
        The leaf's final ``.grad`` at the element, as recorded.
    grids : list of numpy.ndarray
        Per bar: the whole tensor as 2-D (`as_grid`), or None where the value was not kept.
    """

    leaf: str
    index: tuple
    shape: tuple
    sources: list = field(default_factory=list)
    producers: list = field(default_factory=list)
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    running: np.ndarray = field(default_factory=lambda: np.zeros(0))
    grad: float | None = None
    grids: list = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """The table as shown: (number, from, value, running sum), numbers as text."""
        out = []
        for k, (src, v, r) in enumerate(zip(self.sources, self.values, self.running)):
            out.append((str(k + 1), src, _num(v), _num(r)))
        return out


def _num(x: float) -> str:
    return tr("not kept") if not np.isfinite(x) else f"{x:.6g}"


def as_grid(value: np.ndarray) -> np.ndarray:
    """A tensor as the 2-D array its heat map shows: a scalar 1×1, a vector one row, an N-d tensor
    its last axis across and every other axis stacked down (row-major, like ``reshape``)."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    return a.reshape(-1, a.shape[-1])


def grid_cell_to_index(shape: tuple, row: int, col: int) -> tuple:
    """The element of a tensor of `shape` drawn at (`row`, `col`) of its `as_grid` heat map."""
    shape = tuple(shape)
    if not shape:
        return ()
    if len(shape) == 1:
        return (int(col),)
    flat = int(row) * shape[-1] + int(col)
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def index_to_grid_cell(shape: tuple, index: tuple) -> tuple[int, int]:
    """Where element `index` of a tensor of `shape` sits in its `as_grid` heat map (row, column)."""
    shape = tuple(shape)
    if not shape:
        return 0, 0
    if len(shape) == 1:
        return 0, int(index[0])
    flat = int(np.ravel_multi_index(tuple(index), shape))
    return flat // shape[-1], flat % shape[-1]


def index_text(index: tuple) -> str:
    """An element as Python writes it: ``[1, 2]``, ``[]`` for a scalar."""
    return "[" + ", ".join(str(i) for i in index) + "]"


def parse_index(text: str, shape: tuple) -> tuple:
    """The element typed as ``1, 2`` (or ``[1, 2]``, ``1 2``) of a tensor of `shape`; negative counts from the end."""
    shape = tuple(shape)
    parts = [p for p in str(text).replace("[", " ").replace("]", " ").replace(",", " ").split() if p]
    if len(parts) != len(shape):
        raise GradvizError(f"the index {text!r} needs {len(shape)} number(s) for a tensor of shape {shape}",
                           hint="type one whole number per axis, separated by commas, e.g. 0, 1")
    out = []
    for p, n in zip(parts, shape):
        try:
            i = int(p)
        except ValueError:
            raise GradvizError(f"the index {text!r} has {p!r}, which is not a whole number",
                               hint="type one whole number per axis, separated by commas") from None
        if not -n <= i < n:
            raise GradvizError(f"the index {text!r} is outside the shape {shape}",
                               hint=f"each number must be between {-n} and {n - 1} on an axis of length {n}")
        out.append(i % n)
    return tuple(out)


def default_index(rec: Recording, leaf: str) -> tuple:
    """The element a panel opens on: where the final ``.grad`` is largest in size (0s when not kept)."""
    info = rec.leaves[leaf]
    shape = tuple(info.tensor.shape) if info.tensor is not None else ()
    g = info.grad.value if info.grad is not None else None
    if g is None or np.asarray(g).size == 0:
        return tuple(0 for _ in shape)
    a = np.abs(np.asarray(g, dtype=np.float64))
    return tuple(int(i) for i in np.unravel_index(int(np.nanargmax(a)) if np.isfinite(a).any() else 0, a.shape))


def accumulation_at(rec: Recording, leaf: str, index: tuple | None = None) -> ElementAccumulation:
    """Each contribution to leaf `leaf`'s ``.grad`` at element `index` (`default_index` when None),
    and the running sum as the cumulative sum of those values."""
    if leaf not in rec.leaves:
        raise GradvizError(f"the recording has no leaf named {leaf!r}",
                           hint="its leaves: " + ", ".join(rec.leaves))
    info = rec.leaves[leaf]
    shape = tuple(info.tensor.shape) if info.tensor is not None else (
        tuple(info.grad.shape) if info.grad is not None else ())
    index = default_index(rec, leaf) if index is None else tuple(int(i) for i in index)
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise GradvizError(f"element {index_text(index)} is outside {leaf}'s shape {shape}",
                           hint="pick a cell of the heat map or type one whole number per axis")
    out = ElementAccumulation(leaf, index, shape)
    values = []

    def add(source: str, producer: int, value) -> None:
        out.sources.append(source)
        out.producers.append(producer)
        if value is None:
            values.append(np.nan)
            out.grids.append(None)
            return
        a = np.asarray(value, dtype=np.float64)
        if a.shape != shape:  # a value kept in another layout of the same elements
            a = a.reshape(shape) if a.size == int(np.prod(shape, dtype=np.int64)) else None
        values.append(np.nan if a is None else float(a[index]))
        out.grids.append(None if a is None else as_grid(a))

    if info.initial_grad is not None:
        add(tr(".grad before backward"), -1, info.initial_grad.value)
    for c in info.contributions:
        node = rec.nodes[c.producer]
        place = where(rec, node)
        add(place or node_title(node), c.producer,
            None if c.value is None else c.value.value)
    out.values = np.asarray(values, dtype=np.float64)
    # the line is the cumulative sum of the bars, exactly: what a student adds up by eye
    out.running = np.cumsum(out.values)
    g = info.grad.value if info.grad is not None else None
    if g is not None:
        a = np.asarray(g, dtype=np.float64)
        out.grad = float(a.reshape(shape)[index]) if a.size == int(np.prod(shape, dtype=np.int64)) else None
    return out
