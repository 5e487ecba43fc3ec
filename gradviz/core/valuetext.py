"""A value as gradviz writes it, in a node's label and in a sentence: `format_tensor`, `format_shape`.

The Scene (`gradviz.core.scene.text`, which re-exports these) cuts the text to a node's box;
`gradviz.core.explain` puts it in its sentences. Both are above this module, so one step's values
read the same in every picture and every explanation.
"""
from __future__ import annotations

import numpy as np

from .tensors import TensorData

__all__ = ["SMALL", "format_tensor", "format_shape"]

SMALL = 4  # tensors with at most this many elements show their values in labels


def format_tensor(t: TensorData | None, small: int = SMALL) -> str:
    """Short text for a tensor: its values when it has at most `small` elements, else its shape."""
    if t is None:
        return "None"
    if t.value is not None and t.numel <= small:
        vals = np.asarray(t.value).reshape(-1)
        if vals.dtype.kind in "fc":
            digits = 4 if t.numel == 1 else 3  # lists must fit a node's width
            text = ", ".join(f"{float(v):.{digits}g}" for v in vals)
        else:
            text = ", ".join(str(v) for v in vals.tolist())
        return text if t.numel == 1 else f"[{text}]"
    return format_shape(t.shape)


def format_shape(shape) -> str:
    """A shape as a label shows it: ``5×3``, ``(5,)`` for a vector (a bare ``5`` reads as a value), ``scalar``."""
    shape = tuple(shape)
    if not shape:
        return "scalar"
    return f"({shape[0]},)" if len(shape) == 1 else "×".join(str(s) for s in shape)
