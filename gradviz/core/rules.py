"""Independent numpy re-implementations of the local backward rule of each autograd node class.

Every rule takes a `RuleInput` (what the node saved, the gradients arriving at it, and the shape and
dtype of the gradient torch sends along each ``next_functions`` slot) and returns one float64 array
per slot, or ``None`` for a slot it does not compute. Rules use numpy only, never torch: they are the
reference the recorded torch gradients are checked against.

Conventions
-----------
* ``g`` is the gradient arriving at the node (``grad_outputs[0]``), in float64.
* Slots are numbered like ``fn.next_functions``; a slot whose ``input_meta`` is ``None`` gets ``None``.
* Broadcast inputs get their gradient summed back to the slot's shape (`_sum_to`).
* Saved negative ints reach us wrapped to unsigned 64 bit (``-1`` reads as ``2**64 - 1``);
  `_int` undoes that.

Slots a rule cannot compute from what the node saved return ``None`` (shown as "no manual rule"):

* ``IndexBackward0`` when the indices list holds ``None`` (a ``:`` between advanced indices): the
  saved reader turns such a list into strings, so the index tensors are lost.
* ``EmbeddingBackward0`` with ``sparse=True`` (torch's gradient is a sparse tensor).
* ``CatBackward0`` for an input whose offset along ``dim`` depends on the sizes of two or more
  inputs that get no gradient: the node saves only ``dim``, and sizes are known only from
  ``input_meta`` (one missing size is inferred from the total).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["RuleInput", "rule", "has_rule", "rule_names", "apply_rule"]


@dataclass
class RuleInput:
    """What a rule sees of one autograd node (see the module docstring)."""

    name: str
    saved: dict[str, object] = field(default_factory=dict)
    grad_outputs: list[np.ndarray | None] = field(default_factory=list)
    input_meta: list[tuple[tuple[int, ...], str] | None] = field(default_factory=list)


RuleFn = Callable[[RuleInput], "list[np.ndarray | None]"]
_RULES: dict[str, RuleFn] = {}


def rule(*names: str) -> Callable[[RuleFn], RuleFn]:
    """Register the decorated function as the backward rule of the node classes ``names``."""

    def deco(fn: RuleFn) -> RuleFn:
        for n in names:
            _RULES[n] = fn
        return fn

    return deco


def has_rule(name: str) -> bool:
    """Whether a manual rule exists for the node class ``name``."""
    return name in _RULES


def rule_names() -> list[str]:
    """Sorted names of all node classes with a manual rule."""
    return sorted(_RULES)


def apply_rule(inp: RuleInput) -> list[np.ndarray | None] | None:
    """Run the rule for ``inp.name``; ``None`` when no rule exists.

    Returns one entry per ``input_meta`` slot: a float64 array shaped as that slot says, or ``None``
    where the slot is ``None`` or the rule cannot compute it.

    Raises
    ------
    ValueError
        When a rule returns an array whose shape differs from the slot's shape (a bug in the rule).
    """
    fn = _RULES.get(inp.name)
    if fn is None:
        return None
    if all(g is None for g in inp.grad_outputs):
        return [None] * len(inp.input_meta)  # nothing arrived: torch sends nothing on either
    raw = fn(inp)
    out: list[np.ndarray | None] = []
    for i, meta in enumerate(inp.input_meta):
        value = raw[i] if i < len(raw) else None
        if meta is None or value is None:
            out.append(None)
            continue
        arr = _f(value)
        shape = tuple(int(s) for s in meta[0])
        if arr.shape != shape:
            raise ValueError(f"rule {inp.name}: slot {i} has shape {arr.shape}, expected {shape}")
        out.append(arr)
    return out


# ----------------------------------------------------------------------------------------- helpers

_U64 = 1 << 64


def _int(v):
    """Undo the unsigned wrap of a saved negative int (also inside tuples)."""
    if isinstance(v, tuple):
        return tuple(_int(x) for x in v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= (1 << 63):
        return int(v) - _U64
    return v


def _f(x) -> np.ndarray:
    # float64; complex stays complex (gradviz.core.complex_rules evaluates some rules in complex)
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64, copy=False)


def _g(inp: RuleInput, i: int = 0) -> np.ndarray | None:
    go = inp.grad_outputs[i] if i < len(inp.grad_outputs) else None
    return None if go is None else _f(go)


def _s(inp: RuleInput, key: str):
    """A saved value: arrays as float64, everything else as saved (with negative ints restored)."""
    v = inp.saved.get(key)
    if isinstance(v, np.ndarray):
        return _f(v)
    return _int(v)


def _want(inp: RuleInput, i: int) -> bool:
    return i < len(inp.input_meta) and inp.input_meta[i] is not None


def _shape(inp: RuleInput, i: int) -> tuple[int, ...]:
    return tuple(int(s) for s in inp.input_meta[i][0])


def _sum_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape``: drop leading dims, sum dims that were size 1."""
    a = _f(a)
    shape = tuple(shape)
    lead = a.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum a gradient of shape {a.shape} to {shape}")
    if lead > 0:
        a = a.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and a.shape[i] != 1)
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    if a.shape != shape:
        raise ValueError(f"cannot sum a gradient of shape {a.shape} to {shape}")
    return a


def _slots(inp: RuleInput, *fns: Callable[[], np.ndarray]) -> list[np.ndarray | None]:
    """Evaluate the slot formulas only for slots torch sends a gradient along, summed to their shape."""
    out = []
    for i, f in enumerate(fns):
        out.append(_sum_to(f(), _shape(inp, i)) if _want(inp, i) else None)
    return out


def _dims(dim, ndim: int) -> tuple[int, ...]:
    """Normalise a saved reduction ``dim`` (None/() mean all dims) to sorted non-negative axes."""
    dim = _int(dim)
    if dim is None or dim == ():
        return tuple(range(ndim))
    if not isinstance(dim, tuple):
        dim = (dim,)
    return tuple(sorted(d % ndim if ndim else 0 for d in dim))


def _np_dtype(s: str):
    s = str(s).replace("torch.", "")
    try:
        return np.dtype(s)
    except TypeError:
        return None  # e.g. bfloat16: numpy cannot round to it


def _unreduce(g: np.ndarray, sizes: tuple[int, ...], dim, keepdim: bool) -> np.ndarray:
    """Put back the reduced dims of ``g`` (size 1) so it broadcasts against ``sizes``."""
    axes = _dims(dim, len(sizes))
    if not keepdim:
        for a in axes:
            g = np.expand_dims(g, a)
    return g


# ------------------------------------------------------------------------------ arithmetic


@rule("AddBackward0")
def _add(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # d(a + alpha*b)/da = 1 ; d/db = alpha
    return _slots(inp, lambda: g, lambda: alpha * g)


@rule("AddBackward1", "SubBackward1")
def _add_scalar(inp):
    # d(a +- c)/da = 1
    return _slots(inp, lambda: _g(inp))


@rule("SubBackward0")
def _sub(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # d(a - alpha*b)/da = 1 ; d/db = -alpha
    return _slots(inp, lambda: g, lambda: -alpha * g)


@rule("RsubBackward0")
def _rsub(inp):
    g, alpha = _g(inp), _s(inp, "alpha")
    # rsub(a, b) = b - alpha*a : d/da = -alpha ; d/db = 1
    return _slots(inp, lambda: -alpha * g, lambda: g)


@rule("RsubBackward1")
def _rsub_scalar(inp):
    # rsub(a, c) = c - alpha*a : d/da = -alpha
    return _slots(inp, lambda: -_s(inp, "alpha") * _g(inp))


@rule("MulBackward0")
def _mul(inp):
    g = _g(inp)
    # d(a*b)/da = b ; d(a*b)/db = a
    return _slots(inp, lambda: g * _s(inp, "other"), lambda: g * _s(inp, "self"))


@rule("MulBackward1")
def _mul_scalar(inp):
    # d(a*c)/da = c
    return _slots(inp, lambda: _g(inp) * _s(inp, "other"))


@rule("DivBackward0")
def _div(inp):
    g = _g(inp)
    # d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
    return _slots(inp, lambda: g / _s(inp, "other"),
                  lambda: -g * _s(inp, "self") / (_s(inp, "other") ** 2))


@rule("DivBackward1")
def _div_scalar(inp):
    # d(a/c)/da = 1/c
    return _slots(inp, lambda: _g(inp) / _s(inp, "other"))


@rule("DivBackward2")
def _div_mode(inp):
    g = _g(inp)
    if _s(inp, "rounding_mode") is not None:
        # floor/trunc(a/b) is piecewise constant: derivative 0 almost everywhere
        return _slots(inp, lambda: np.zeros_like(g), lambda: np.zeros_like(g))
    return _div(inp)


@rule("DivBackward3")
def _div_scalar_mode(inp):
    g = _g(inp)
    if _s(inp, "rounding_mode") is not None:
        return _slots(inp, lambda: np.zeros_like(g))  # floor/trunc: derivative 0
    return _div_scalar(inp)


@rule("NegBackward0")
def _neg(inp):
    # d(-a)/da = -1
    return _slots(inp, lambda: -_g(inp))


@rule("PowBackward0")
def _pow_scalar_exp(inp):
    g, x, p = _g(inp), _s(inp, "self"), _s(inp, "exponent")
    # d(x^p)/dx = p * x^(p-1)  (0 when p == 0)
    if p == 0:
        return _slots(inp, lambda: np.zeros_like(g))
    return _slots(inp, lambda: g * p * np.power(x, p - 1.0))


@rule("PowBackward1")
def _pow_tensor(inp):
    g, x, p, y = _g(inp), _s(inp, "self"), _s(inp, "exponent"), _s(inp, "result")
    # d(x^p)/dx = p * x^(p-1) (0 where p == 0) ; d(x^p)/dp = x^p * log(x) (0 where x == 0 and p >= 0)
    def dx():
        with np.errstate(all="ignore"):
            return np.where(p == 0, 0.0, g * p * np.power(x, p - 1.0))

    def dp():
        with np.errstate(all="ignore"):
            return g * np.where((x == 0) & (p >= 0), 0.0, y * np.log(x))

    return _slots(inp, dx, dp)


@rule("PowBackward2")
def _pow_scalar_base(inp):
    g, c, y = _g(inp), _s(inp, "self"), _s(inp, "result")
    # d(c^p)/dp = c^p * log(c)  (0 where c == 0 and p >= 0)
    p = _s(inp, "exponent")

    def dp():
        if c == 0:
            return np.where(p >= 0, 0.0, g * y * -np.inf)
        return g * y * math.log(c)

    return _slots(inp, dp)


@rule("ExpBackward0")
def _exp(inp):
    # d(e^x)/dx = e^x = result
    return _slots(inp, lambda: _g(inp) * _s(inp, "result"))


@rule("LogBackward0")
def _log(inp):
    # d(log x)/dx = 1/x
    return _slots(inp, lambda: _g(inp) / _s(inp, "self"))


@rule("SqrtBackward0")
def _sqrt(inp):
    # d(sqrt x)/dx = 1 / (2 sqrt x)
    return _slots(inp, lambda: _g(inp) / (2.0 * _s(inp, "result")))


@rule("RsqrtBackward0")
def _rsqrt(inp):
    # d(x^-1/2)/dx = -1/2 x^-3/2 = -1/2 result^3
    return _slots(inp, lambda: -0.5 * _g(inp) * _s(inp, "result") ** 3)


@rule("ReciprocalBackward0")
def _reciprocal(inp):
    # d(1/x)/dx = -1/x^2 = -result^2
    return _slots(inp, lambda: -_g(inp) * _s(inp, "result") ** 2)


@rule("AbsBackward0")
def _abs(inp):
    # d|x|/dx = sign(x)  (0 at 0)
    return _slots(inp, lambda: _g(inp) * np.sign(_s(inp, "self")))


# ----------------------------------------------------------------------------- activations


@rule("TanhBackward0")
def _tanh(inp):
    # d tanh(x)/dx = 1 - tanh(x)^2
    return _slots(inp, lambda: _g(inp) * (1.0 - _s(inp, "result") ** 2))


@rule("SigmoidBackward0")
def _sigmoid(inp):
    # d s(x)/dx = s(x) (1 - s(x))
    y = _s(inp, "result")
    return _slots(inp, lambda: _g(inp) * y * (1.0 - y))


@rule("ReluBackward0")
def _relu(inp):
    # d relu(x)/dx = 1 where relu(x) > 0 else 0
    return _slots(inp, lambda: _g(inp) * (_s(inp, "result") > 0))


@rule("ThresholdBackward0")
def _threshold(inp):
    # threshold(x, t, v) = x where x > t else v : derivative 1 where x > t
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") > _s(inp, "threshold")))


@rule("HardtanhBackward0")
def _hardtanh(inp):
    x = _s(inp, "self")
    # hardtanh(x) = clamp(x, lo, hi): derivative 1 strictly inside (lo, hi)
    return _slots(inp, lambda: _g(inp) * ((x > _s(inp, "min_val")) & (x < _s(inp, "max_val"))))


@rule("LeakyReluBackward0")
def _leaky_relu(inp):
    x = _s(inp, "self")
    # d leaky_relu(x)/dx = 1 where x > 0 else slope
    return _slots(inp, lambda: _g(inp) * np.where(x > 0, 1.0, _s(inp, "negative_slope")))


def _sigm(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@rule("LogSigmoidBackward0")
def _logsigmoid(inp):
    # d log(s(x))/dx = 1 - s(x) = s(-x)
    return _slots(inp, lambda: _g(inp) * _sigm(-_s(inp, "self")))


@rule("SoftplusBackward0")
def _softplus(inp):
    x, beta, thr = _s(inp, "self"), _s(inp, "beta"), _s(inp, "threshold")
    # softplus(x) = log(1 + e^(beta x)) / beta, linear (= x) where beta x > threshold:
    # derivative s(beta x), or 1 above the threshold
    return _slots(inp, lambda: _g(inp) * np.where(beta * x > thr, 1.0, _sigm(beta * x)))


@rule("SiluBackward0")
def _silu(inp):
    x = _s(inp, "self")
    s = _sigm(x)
    # d(x s(x))/dx = s(x) (1 + x (1 - s(x)))
    return _slots(inp, lambda: _g(inp) * s * (1.0 + x * (1.0 - s)))


_erf = np.vectorize(math.erf, otypes=[np.float64])


@rule("GeluBackward0")
def _gelu(inp):
    x, approx = _s(inp, "self"), _s(inp, "approximate")
    if approx == "tanh":
        # gelu ~ x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        k = math.sqrt(2.0 / math.pi)
        t = np.tanh(k * (x + 0.044715 * x**3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * 0.044715 * x**2)
    else:
        # gelu = x Phi(x): derivative Phi(x) + x phi(x)
        d = 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return _slots(inp, lambda: _g(inp) * d)


@rule("ClampBackward1")
def _clamp(inp):
    x, lo, hi = _s(inp, "self"), _s(inp, "min"), _s(inp, "max")
    # d clamp(x, lo, hi)/dx = 1 where lo <= x <= hi (bounds inclusive) else 0
    mask = np.ones_like(x, dtype=bool)
    if lo is not None:
        mask &= x >= lo
    if hi is not None:
        mask &= x <= hi
    return _slots(inp, lambda: _g(inp) * mask)


@rule("ClampMinBackward0")
def _clamp_min(inp):
    # d max(x, lo)/dx = 1 where x >= lo
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") >= _s(inp, "min")))


@rule("ClampMaxBackward0")
def _clamp_max(inp):
    # d min(x, hi)/dx = 1 where x <= hi
    return _slots(inp, lambda: _g(inp) * (_s(inp, "self") <= _s(inp, "max")))


@rule("ClampBackward0")
def _clamp_tensor(inp):
    g, x, lo, hi = _g(inp), _s(inp, "self"), _s(inp, "min"), _s(inp, "max")
    # slots (self, min, max): the gradient goes to whichever of x, lo, hi the output equals
    # (x inside [lo, hi]; lo where x < lo; hi where x > hi; hi wins when lo > hi)
    if lo is not None and hi is not None:
        m_x = (x >= lo) & (x <= hi)
        m_lo = (x < lo) & (lo < hi)
        m_hi = (x > hi) | (hi < lo)
    elif lo is not None:
        m_x, m_lo, m_hi = x >= lo, x < lo, None
    else:
        m_x, m_lo, m_hi = x <= hi, None, x > hi
    return _slots(inp, lambda: g * m_x, lambda: g * m_lo, lambda: g * m_hi)


def _max_min_pair(inp, sign):
    g, a, b = _g(inp), _s(inp, "self"), _s(inp, "other")
    # maximum(a, b): gradient to the larger one, split in half on ties (sign flips for minimum)
    ga = np.where(a == b, g / 2, np.where(sign * (a - b) > 0, g, 0.0))
    gb = np.where(a == b, g / 2, np.where(sign * (b - a) > 0, g, 0.0))
    return _slots(inp, lambda: ga, lambda: gb)


@rule("MaximumBackward0")
def _maximum(inp):
    return _max_min_pair(inp, 1.0)


@rule("MinimumBackward0")
def _minimum(inp):
    return _max_min_pair(inp, -1.0)


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


# ---------------------------------------------------------------------------------- losses, nn


_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


@rule("MseLossBackward0")
def _mse(inp):
    x, t, g = _s(inp, "self"), _s(inp, "target"), _g(inp)
    red = _REDUCTIONS[_s(inp, "reduction")]
    scale = 2.0 / (np.broadcast(x, t).size if red == "mean" else 1.0)
    d = scale * (x - t) * g
    # L = (mean|sum) (x - t)^2 : dL/dx = 2 (x - t) [/ n] ; dL/dt = -dL/dx
    return _slots(inp, lambda: d, lambda: -d)


@rule("SoftmaxBackward0")
def _softmax(inp):
    y, g, dim = _s(inp, "result"), _g(inp), _s(inp, "dim")
    # y = softmax(x): dx = y * (g - sum(g * y, dim))
    return _slots(inp, lambda: y * (g - (g * y).sum(axis=dim, keepdims=True)))


@rule("LogSoftmaxBackward0")
def _log_softmax(inp):
    y, g, dim = _s(inp, "result"), _g(inp), _s(inp, "dim")
    # y = log_softmax(x): dx = g - softmax(x) * sum(g, dim), softmax(x) = exp(y)
    return _slots(inp, lambda: g - np.exp(y) * g.sum(axis=dim, keepdims=True))


@rule("NllLossBackward0", "NllLoss2DBackward0")
def _nll(inp):
    x = _s(inp, "self")
    t = np.asarray(inp.saved["target"], dtype=np.int64)
    w = _s(inp, "weight")
    ignore = _s(inp, "ignore_index")
    red = _REDUCTIONS[_s(inp, "reduction")]
    g = _g(inp)
    cdim = 0 if x.ndim == 1 else 1
    n_cls = x.shape[cdim]
    w = np.ones(n_cls) if w is None else w
    valid = t != ignore
    tc = np.where(valid, t, 0)
    wt = np.where(valid, w[tc], 0.0)  # weight of each sample's target class (0 if ignored)
    # L_i = -w[t_i] x[i, t_i] : dL/dx[i, t_i] = -w[t_i] * g_i  (mean: divided by sum of w[t_i])
    if red == "mean":
        total = wt.sum()
        coef = -wt * g / total if total != 0 else np.zeros_like(wt)
    else:
        coef = -wt * g
    out = np.zeros(x.shape)
    moved = np.moveaxis(out, cdim, -1)
    np.put_along_axis(moved, tc[..., None], np.asarray(coef)[..., None], axis=-1)
    return _slots(inp, lambda: out)


@rule("EmbeddingBackward0")
def _embedding(inp):
    if _s(inp, "sparse"):
        return [None] * len(inp.input_meta)  # torch's gradient is a sparse tensor
    idx = np.asarray(inp.saved["indices"], dtype=np.int64).ravel()
    g = _g(inp)
    g = g.reshape(idx.size, g.shape[-1])
    pad = _s(inp, "padding_idx")
    if _s(inp, "scale_grad_by_freq"):
        counts = np.bincount(idx, minlength=_s(inp, "weight_sym_argsize_0"))
        g = g / counts[idx][:, None]
    keep = idx != pad  # the padding row never gets a gradient
    out = np.zeros((_s(inp, "weight_sym_argsize_0"), g.shape[-1]))
    # out = W[idx]: scatter-add each g row into row idx of dW
    np.add.at(out, idx[keep], g[keep])
    return _slots(inp, lambda: out)


def _norm_backward(g, xhat, rstd, axes):
    # y = xhat * w, xhat = (x - mean) * rstd with mean/var over `axes`:
    # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    return rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))


@rule("NativeLayerNormBackward0")
def _layer_norm(inp):
    x, g = _s(inp, "input"), _g(inp)
    k = len(_s(inp, "normalized_shape"))
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    # eps is not saved, so the forward statistics (mean = result1, rstd = result2) are taken as saved
    mean, rstd = _s(inp, "result1"), _s(inp, "result2")
    w = _s(inp, "weight")
    xhat = (x - mean) * rstd
    gx = g * w if w is not None else g
    # dW = sum over leading dims of g * xhat ; db = sum of g
    return _slots(inp, lambda: _norm_backward(gx, xhat, rstd, axes),
                  lambda: (g * xhat).sum(axis=lead), lambda: g.sum(axis=lead))


@rule("NativeBatchNormBackward0")
def _batch_norm(inp):
    x, g, eps = _s(inp, "input"), _g(inp), _s(inp, "eps")
    axes = (0,) + tuple(range(2, x.ndim))
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    w = _s(inp, "weight")
    wb = 1.0 if w is None else w.reshape(cshape)
    if _s(inp, "training"):
        # batch statistics, recomputed: mean and biased variance over (N, *spatial) per channel
        mean = x.mean(axis=axes, keepdims=True)
        rstd = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
        xhat = (x - mean) * rstd
        dx = lambda: _norm_backward(g * wb, xhat, rstd, axes)  # noqa: E731
    else:
        # eval: y = (x - running_mean) / sqrt(running_var + eps) * w + b is affine in x
        rstd = 1.0 / np.sqrt(_s(inp, "running_var").reshape(cshape) + eps)
        xhat = (x - _s(inp, "running_mean").reshape(cshape)) * rstd
        dx = lambda: g * wb * rstd  # noqa: E731
    # dW = sum g * xhat ; db = sum g (per channel)
    return _slots(inp, dx, lambda: (g * xhat).sum(axis=axes), lambda: g.sum(axis=axes))


@rule("ConvolutionBackward0")
def _convolution(inp):
    x, w, g = _s(inp, "input"), _s(inp, "weight"), _g(inp)
    stride, pad, dil = _s(inp, "stride"), _s(inp, "padding"), _s(inp, "dilation")
    groups, transposed = _s(inp, "groups"), _s(inp, "transposed")
    nsp = x.ndim - 2
    stride, pad, dil = (tuple(v) * (nsp if len(v) == 1 else 1) for v in (stride, pad, dil))
    ksize = w.shape[2:]
    N = x.shape[0]
    G = groups
    dx = np.zeros(x.shape)
    dw = np.zeros(w.shape)
    if not transposed:
        # y[n, o, p] = sum_{c, k} w[o, c, k] * xpad[n, c, p*stride + k*dilation]  (per group)
        # dxpad[n, c, p*s + k*d] += g[n, o, p] w[o, c, k] ; dw[o, c, k] = sum_{n, p} g[n, o, p] xpad[n, c, p*s + k*d]
        out_sp = g.shape[2:]
        xpad = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
        dxpad = np.zeros(xpad.shape)
        cin_g, cout_g = x.shape[1] // G, w.shape[0] // G
        gg = g.reshape(N, G, cout_g, -1)
        wg = w.reshape(G, cout_g, cin_g, *ksize)
        for k in itertools.product(*(range(s) for s in ksize)):
            sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (out_sp[i] - 1) + 1, stride[i])
                       for i in range(nsp))
            xs = xpad[(slice(None), slice(None)) + sl].reshape(N, G, cin_g, -1)
            dw[(slice(None), slice(None)) + k] = np.einsum("ngop,ngcp->goc", gg, xs).reshape(G * cout_g, cin_g)
            contrib = np.einsum("ngop,goc->ngcp", gg, wg[(slice(None),) * 3 + k])
            dxpad[(slice(None), slice(None)) + sl] += contrib.reshape(N, x.shape[1], *out_sp)
        dx = dxpad[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(pad, x.shape[2:]))]
    else:
        # transposed: ypad[n, o, p*s + k*d] += x[n, c, p] w[c, o, k], y = ypad cropped by padding
        # dx[n, c, p] = sum_{o, k} gpad[n, o, p*s + k*d] w[c, o, k] ; dw[c, o, k] = sum_{n, p} x[n, c, p] gpad[...]
        in_sp = x.shape[2:]
        gpad = np.pad(g, [(0, 0), (0, 0)] + [(p, p) for p in pad])
        cin_g, cout_g = x.shape[1] // G, w.shape[1]
        xg = x.reshape(N, G, cin_g, -1)
        wg = w.reshape(G, cin_g, cout_g, *ksize)
        for k in itertools.product(*(range(s) for s in ksize)):
            sl = tuple(slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (in_sp[i] - 1) + 1, stride[i])
                       for i in range(nsp))
            gs = gpad[(slice(None), slice(None)) + sl].reshape(N, G, cout_g, -1)
            dw[(slice(None), slice(None)) + k] = np.einsum("ngcp,ngop->gco", xg, gs).reshape(G * cin_g, cout_g)
            dx += np.einsum("ngop,gco->ngcp", gs, wg[(slice(None),) * 3 + k]).reshape(x.shape)
    # bias: db[o] = sum over batch and space of g
    return _slots(inp, lambda: dx, lambda: dw, lambda: g.sum(axis=(0,) + tuple(range(2, g.ndim))))


@rule("LinearFunctionBackward")
def _linear_function(inp):
    # output = x @ W^T + b: d/dx = g @ W ; d/dW = g^T @ x ; d/db = sum of g over the batch rows
    g = _g(inp)
    x, w = _s(inp, "saved_tensors[0]"), _s(inp, "saved_tensors[1]")
    return _slots(inp, lambda: g @ w, lambda: g.T @ x, lambda: g.sum(0))
