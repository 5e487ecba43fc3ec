"""Rules of reductions and linear algebra."""
from __future__ import annotations

import math

import numpy as np

from .registry import _dims, _g, _s, _slots, _unreduce, rule


# ----------------------------------------------------------------------------- reductions


@rule("SumBackward0")
def _sum(inp):
    # d(sum x)/dx_i = 1 : broadcast g to x's shape
    return _slots(inp, lambda: np.broadcast_to(_g(inp), _s(inp, "self_sym_sizes")))


@rule("SumBackward1")
def _sum_dim(inp):
    sizes = _s(inp, "self_sym_sizes")
    g = _unreduce(_g(inp), sizes, _s(inp, "dim"), _s(inp, "keepdim"))
    # d(sum over dim)/dx_i = 1 : put back reduced dims, broadcast
    return _slots(inp, lambda: np.broadcast_to(g, sizes))


@rule("MeanBackward0")
def _mean(inp):
    sizes = _s(inp, "self_sym_sizes")
    # d(mean x)/dx_i = 1/n
    return _slots(inp, lambda: np.broadcast_to(_g(inp) / _s(inp, "self_sym_numel"), sizes))


@rule("MeanBackward1")
def _mean_dim(inp):
    sizes = _s(inp, "self_sym_sizes")
    dim = _s(inp, "dim")
    n = math.prod(sizes[a] for a in _dims(dim, len(sizes)))
    g = _unreduce(_g(inp), sizes, dim, _s(inp, "keepdim"))
    # d(mean over dim)/dx_i = 1/n, n = product of reduced sizes
    return _slots(inp, lambda: np.broadcast_to(g / n, sizes))


@rule("MaxBackward1", "MinBackward1")
def _max_all(inp):
    x, y = _s(inp, "self"), _s(inp, "result")
    # d max(x)/dx_i = 1 at the argmax, shared evenly among ties
    mask = x == y
    return _slots(inp, lambda: _g(inp) * mask / mask.sum())


@rule("MaxBackward0", "MinBackward0")
def _max_dim(inp):
    sizes, dim = _s(inp, "self_sym_sizes"), _s(inp, "dim") % len(_s(inp, "self_sym_sizes"))
    keep = _s(inp, "keepdim")
    idx = np.asarray(inp.saved["indices"], dtype=np.int64)
    g = _g(inp)
    if not keep:
        idx, g = np.expand_dims(idx, dim), np.expand_dims(g, dim)
    out = np.zeros(sizes)
    # d max(x, dim)/dx = 1 at the saved argmax index along dim
    np.put_along_axis(out, idx, g, axis=dim)
    return _slots(inp, lambda: out)


@rule("AmaxBackward0", "AminBackward0")
def _amax(inp):
    x, y = _s(inp, "self"), _s(inp, "result")
    dim, keep = _s(inp, "dim"), _s(inp, "keepdim")
    y = _unreduce(y, x.shape, dim, keep)
    g = _unreduce(_g(inp), x.shape, dim, keep)
    axes = _dims(dim, x.ndim)
    mask = x == y
    # d amax/dx = 1 at the max positions, shared evenly among ties along the reduced dims
    return _slots(inp, lambda: g * mask / mask.sum(axis=axes, keepdims=True))


# --------------------------------------------------------------------------------- linear algebra


@rule("MmBackward0")
def _mm(inp):
    g, a, b = _g(inp), _s(inp, "self"), _s(inp, "mat2")
    # d(A@B)/dA = g @ B^T ; d(A@B)/dB = A^T @ g
    return _slots(inp, lambda: g @ b.T, lambda: a.T @ g)


@rule("MvBackward0")
def _mv(inp):
    g, a, v = _g(inp), _s(inp, "self"), _s(inp, "vec")
    # d(A@v)/dA = outer(g, v) ; d(A@v)/dv = A^T @ g
    return _slots(inp, lambda: np.outer(g, v), lambda: a.T @ g)


@rule("DotBackward0")
def _dot(inp):
    g, a, b = _g(inp), _s(inp, "self"), _s(inp, "tensor")
    # d(a.b)/da = b ; d(a.b)/db = a
    return _slots(inp, lambda: g * b, lambda: g * a)


@rule("BmmBackward0")
def _bmm(inp):
    g, a, b = _g(inp), _s(inp, "self"), _s(inp, "mat2")
    # per batch: dA = g @ B^T ; dB = A^T @ g
    return _slots(inp, lambda: g @ b.transpose(0, 2, 1), lambda: a.transpose(0, 2, 1) @ g)


@rule("AddmmBackward0")
def _addmm(inp):
    g, a, b = _g(inp), _s(inp, "mat1"), _s(inp, "mat2")
    alpha, beta = _s(inp, "alpha"), _s(inp, "beta")
    # out = beta*C + alpha*(A@B): dC = beta*g (summed to C's broadcast shape) ; dA = alpha g B^T ; dB = alpha A^T g
    return _slots(inp, lambda: beta * g, lambda: alpha * (g @ b.T), lambda: alpha * (a.T @ g))
