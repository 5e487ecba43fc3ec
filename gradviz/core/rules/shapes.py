"""Rules of shape and view nodes: reshapes, transposes, indexing, concatenation."""
from __future__ import annotations


import numpy as np

from .registry import _g, _np_dtype, _s, _shape, _slots, _sum_to, _want, rule


# ------------------------------------------------------------------------------- shape / views


@rule("TBackward0", "TBackward1")
def _t(inp):
    g = _g(inp)
    # t(x) swaps the two dims (no-op for < 2 dims): transpose back
    return _slots(inp, lambda: g.T if g.ndim == 2 else g)


@rule("TransposeBackward0", "TransposeBackward1")
def _transpose(inp):
    # transpose(x, d0, d1) is its own inverse
    return _slots(inp, lambda: np.swapaxes(_g(inp), _s(inp, "dim0"), _s(inp, "dim1")))


@rule("PermuteBackward0")
def _permute(inp):
    g = _g(inp)
    dims = [d % g.ndim for d in _s(inp, "dims")]
    # permute back with the inverse permutation
    return _slots(inp, lambda: np.transpose(g, np.argsort(dims)))


@rule("ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0",
      "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
      "SqueezeBackward3", "SqueezeBackward4", "SqueezeBackward5")
def _view(inp):
    # a view / squeeze only relabels elements: reshape g back to the input's saved sizes
    return _slots(inp, lambda: _g(inp).reshape(_s(inp, "self_sym_sizes")))


@rule("UnsqueezeBackward0", "UnsqueezeBackward1")
def _unsqueeze(inp):
    # unsqueeze(x, d) inserts a size-1 dim: squeeze it out again
    return _slots(inp, lambda: np.squeeze(_g(inp), axis=_s(inp, "dim")))


@rule("CloneBackward0")
def _clone(inp):
    # d clone(x)/dx = identity
    return _slots(inp, lambda: _g(inp))


@rule("ToCopyBackward0")
def _to_copy(inp):
    g = _g(inp)
    # d x.to(dtype)/dx = identity, with g cast back to the input's dtype
    if _want(inp, 0):
        dt = _np_dtype(inp.input_meta[0][1])
        if dt is not None and dt.kind == "f":
            g = g.astype(dt).astype(np.float64)
    return _slots(inp, lambda: g)


@rule("ExpandBackward0")
def _expand(inp):
    # expand repeats x along new/size-1 dims: sum g over them
    return _slots(inp, lambda: _sum_to(_g(inp), _s(inp, "self_sym_sizes")))


@rule("SelectBackward0")
def _select(inp):
    out = np.zeros(_s(inp, "self_sym_sizes"))
    # x.select(dim, i): g lands at index i along dim, zeros elsewhere
    np.moveaxis(out, _s(inp, "dim"), 0)[_s(inp, "index")] = _g(inp)
    return _slots(inp, lambda: out)


@rule("SliceBackward0")
def _slice(inp):
    out = np.zeros(_s(inp, "self_sym_sizes"))
    sl = slice(_s(inp, "start"), _s(inp, "end"), _s(inp, "step"))
    # x[start:end:step] along dim: g lands in the slice, zeros elsewhere
    np.moveaxis(out, _s(inp, "dim"), 0)[sl] = np.moveaxis(_g(inp), _s(inp, "dim"), 0)
    return _slots(inp, lambda: out)


@rule("ConstantPadNdBackward0")
def _constant_pad(inp):
    g = _g(inp)
    pad = _s(inp, "pad")
    # pad(x): the gradient of x is g with the padding cut off (negative pads re-padded with zeros)
    idx, widths = [slice(None)] * g.ndim, [(0, 0)] * g.ndim
    for k in range(len(pad) // 2):
        ax = g.ndim - 1 - k
        lo, hi = pad[2 * k], pad[2 * k + 1]
        idx[ax] = slice(max(lo, 0), g.shape[ax] - max(hi, 0))
        widths[ax] = (max(-lo, 0), max(-hi, 0))
    return _slots(inp, lambda: np.pad(g[tuple(idx)], widths))


def _split_grads(inp, sizes_list):
    sizes, dim = _s(inp, "self_sym_sizes"), _s(inp, "dim") % len(_s(inp, "self_sym_sizes"))
    parts = []
    for i, n in enumerate(sizes_list):
        g = _g(inp, i)
        if g is None:  # an output nobody used contributes zeros
            shp = list(sizes)
            shp[dim] = n
            g = np.zeros(shp)
        parts.append(g)
    # split: concatenate the pieces' gradients back along dim
    return _slots(inp, lambda: np.concatenate(parts, axis=dim))


@rule("SplitBackward0")
def _split(inp):
    sizes, dim, k = _s(inp, "self_sym_sizes"), _s(inp, "dim"), _s(inp, "split_size")
    n = sizes[dim % len(sizes)]
    pieces = [min(k, n - s) for s in range(0, n, k)] if k else [n]
    return _split_grads(inp, pieces)


@rule("SplitWithSizesBackward0")
def _split_with_sizes(inp):
    return _split_grads(inp, list(_s(inp, "split_sizes")))


@rule("UnbindBackward0")
def _unbind(inp):
    dim = _s(inp, "dim")
    shape = _shape(inp, 0) if _want(inp, 0) else None
    parts = []
    for i in range(len(inp.grad_outputs)):
        g = _g(inp, i)
        if g is None:
            g = np.zeros(np.delete(np.array(shape), dim % len(shape)))
        parts.append(g)
    # unbind: stack the pieces' gradients back along dim
    return _slots(inp, lambda: np.stack(parts, axis=dim))


@rule("CatBackward0")
def _cat(inp):
    g = _g(inp)
    dim = _s(inp, "dim") % g.ndim
    n = len(inp.input_meta)
    sizes = [(_shape(inp, i)[dim] if len(_shape(inp, i)) == g.ndim else 0) if _want(inp, i) else None
             for i in range(n)]
    total = g.shape[dim]
    if sizes.count(None) == 1:  # one input without grad: its size is what is left over
        sizes[sizes.index(None)] = total - sum(s for s in sizes if s is not None)
    # cat: each input's gradient is its slice of g along dim
    out: list[np.ndarray | None] = []
    for i in range(n):
        if sizes[i] is None:
            out.append(None)
            continue
        before, after = sizes[:i], sizes[i + 1:]
        if None not in before:
            start = sum(before)
        elif None not in after:
            start = total - sizes[i] - sum(after)
        else:  # sizes on both sides unknown (several inputs without grad): offset not recoverable
            out.append(None)
            continue
        piece = np.take(g, np.arange(start, start + sizes[i]), axis=dim)
        if _want(inp, i) and len(_shape(inp, i)) != g.ndim:  # legacy empty 1-D input
            piece = np.zeros(_shape(inp, i))
        out.append(piece if _want(inp, i) else None)
    return out


@rule("StackBackward0")
def _stack(inp):
    g = _g(inp)
    dim = _s(inp, "dim")
    # stack: input i's gradient is g[..., i, ...] along dim
    return [np.take(g, i, axis=dim) if _want(inp, i) else None for i in range(len(inp.input_meta))]


def _index_list(inp):
    """The saved ``indices`` as a list of arrays/None, or ``False`` if they were lost."""
    if "indices" in inp.saved:
        v = inp.saved["indices"]
        if isinstance(v, tuple) and all(x is None or isinstance(x, np.ndarray) for x in v):
            return list(v)
        return False  # saved reader turned a list with None entries into strings
    keys = sorted((k for k in inp.saved if k.startswith("indices[")), key=lambda k: int(k[8:-1]))
    return [inp.saved[k] for k in keys]


@rule("IndexBackward0")
def _index(inp):
    idx = _index_list(inp)
    if idx is False:
        return [None] * len(inp.input_meta)
    full: list = []
    for t in idx:
        if t is None:
            full.append(slice(None))
        elif np.asarray(t).dtype == bool:
            full.extend(np.nonzero(t))  # a mask stands for the index arrays of its True entries
        else:
            full.append(np.asarray(t, dtype=np.int64))
    out = np.zeros(_s(inp, "self_sym_sizes"))
    # x[idx]: scatter-add g into the indexed positions (repeated indices accumulate)
    np.add.at(out, tuple(full), _g(inp))
    return _slots(inp, lambda: out)


@rule("GatherBackward0")
def _gather(inp):
    x, dim = _s(inp, "self"), _s(inp, "dim")
    index = np.asarray(inp.saved["index"], dtype=np.int64)
    pos = list(np.indices(index.shape, sparse=True))
    pos[dim % x.ndim] = index
    out = np.zeros(x.shape)
    # gather: scatter-add g back to the gathered positions
    np.add.at(out, tuple(pos), _g(inp))
    return _slots(inp, lambda: out)


@rule("WhereBackward0")
def _where(inp):
    c, g = np.asarray(inp.saved["condition"], dtype=bool), _g(inp)
    # where(c, a, b): g goes to a where c, to b elsewhere
    return _slots(inp, lambda: np.where(c, g, 0.0), lambda: np.where(c, 0.0, g))


@rule("MaskedFillBackward0")
def _masked_fill(inp):
    m = np.asarray(inp.saved["mask"], dtype=bool)
    # masked_fill(x, m, v): filled positions no longer depend on x
    return _slots(inp, lambda: np.where(m, 0.0, _g(inp)))
