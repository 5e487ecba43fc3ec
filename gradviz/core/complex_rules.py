"""Local backward rules for nodes that touch complex tensors, in torch's convention.

For a real loss ``L`` of a complex ``z = x + iy``, torch's gradient is the conjugate Wirtinger
derivative times two: ``dL/dx + i dL/dy``. A node ``y = f(z)`` that receives ``g`` sends
``g * conj(df/dz) + conj(g) * df/dconj(z)``; for a holomorphic ``f`` (``df/dconj(z) = 0``) that is
``g * conj(f'(z))``. A real input that receives a complex gradient keeps its real part.

The real rules of `gradviz.core.rules` give these with little help, in numpy only:

* holomorphic ops (products, quotients, powers, ``exp``, ``tanh``, matrix products, ...): the real
  formula is analytic in the saved values, so evaluated in complex arithmetic on the *conjugated*
  saved values it is ``g * conj(f'(z))``;
* ops that only move elements or add them up with real coefficients (views, sums, slices, cat,
  ...): the rule is real-linear in ``g``, so ``R(Re g) + i R(Im g)``;
* ops that are not holomorphic (``abs``, ``angle``, ``conj``, ``view_as_real``, ``complex``, casts):
  their own formulas below.

Any other node class with a complex tensor has no complex-aware rule here: `apply_complex_rule`
returns None and the check says so (a real rule would discard the imaginary parts).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import rules as _rules
from .rules import RuleInput
from .rules.registry import _sum_to

__all__ = ["is_complex", "has_complex_rule", "apply_complex_rule"]

# analytic in their inputs: the real rule on conjugated saved values is torch's complex gradient
_HOLOMORPHIC = {
    "AddBackward0", "SubBackward0", "RsubBackward0", "RsubBackward1", "MulBackward0", "MulBackward1",
    "DivBackward0", "DivBackward1", "NegBackward0", "PowBackward0", "ExpBackward0", "LogBackward0",
    "SqrtBackward0", "RsqrtBackward0", "ReciprocalBackward0", "TanhBackward0", "SigmoidBackward0",
    "MmBackward0", "MvBackward0", "DotBackward0", "BmmBackward0", "AddmmBackward0",
}
# real-linear in g with real coefficients (structure only): rule(Re g) + i rule(Im g)
_LINEAR = {
    "AddBackward1", "SubBackward1", "SumBackward0", "SumBackward1", "MeanBackward0", "MeanBackward1",
    "TBackward0", "TBackward1", "TransposeBackward0", "TransposeBackward1", "PermuteBackward0",
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "SqueezeBackward0", "SqueezeBackward1",
    "SqueezeBackward2", "SqueezeBackward3", "SqueezeBackward4", "SqueezeBackward5", "UnsqueezeBackward0",
    "UnsqueezeBackward1", "CloneBackward0", "ExpandBackward0", "SelectBackward0", "SliceBackward0",
    "ConstantPadNdBackward0", "SplitBackward0", "SplitWithSizesBackward0", "UnbindBackward0",
    "CatBackward0", "StackBackward0", "IndexBackward0",
}


def _c(x) -> np.ndarray:
    return np.asarray(x, dtype=np.complex128)


def _abs(inp: RuleInput):
    # |z| = sqrt(z conj(z)): g * conj(z / (2|z|)) + g * z / (2|z|) = g * z / |z| (g real), 0 at 0
    z = _c(inp.saved["self"])
    mag = np.abs(z)
    sgn = np.where(mag == 0, 0, z / np.where(mag == 0, 1, mag))
    return [_c(inp.grad_outputs[0]) * sgn]


def _angle(inp: RuleInput):
    # angle(z) = atan2(y, x): dL/dx + i dL/dy = g * (-y + i x) / |z|^2 = g * i z / |z|^2, 0 at 0
    z = _c(inp.saved["self"])
    mag2 = np.abs(z) ** 2
    return [np.where(mag2 == 0, 0, _c(inp.grad_outputs[0]) * 1j * z / np.where(mag2 == 0, 1, mag2))]


def _conj(inp: RuleInput):
    # conj(z) is anti-holomorphic: d conj(z) / d conj(z) = 1, so z receives conj(g)
    return [np.conj(_c(inp.grad_outputs[0]))]


def _view_as_real(inp: RuleInput):
    # view_as_real(z)[..., 0] = x, [..., 1] = y: z receives g_x + i g_y
    g = np.asarray(inp.grad_outputs[0], dtype=np.float64)
    return [g[..., 0] + 1j * g[..., 1]]


def _view_as_complex(inp: RuleInput):
    # view_as_complex(v) = v[..., 0] + i v[..., 1]: v receives (Re g, Im g)
    g = _c(inp.grad_outputs[0])
    return [np.stack([g.real, g.imag], axis=-1)]


def _complex(inp: RuleInput):
    # complex(a, b) = a + i b with a, b real: a receives Re g, b receives Im g
    g = _c(inp.grad_outputs[0])
    return [g.real, g.imag]


def _to_copy(inp: RuleInput):
    # a cast is the identity; a real input keeps the real part (done for every slot below)
    return [_c(inp.grad_outputs[0])]


_OWN = {
    "AbsBackward0": _abs, "AngleBackward0": _angle, "ConjBackward0": _conj, "ConjPhysicalBackward0": _conj,
    "ViewAsRealBackward0": _view_as_real, "ViewAsComplexBackward0": _view_as_complex,
    "ComplexBackward0": _complex, "ToCopyBackward0": _to_copy,
}


def is_complex(inp: RuleInput) -> bool:
    """Whether any saved tensor, incoming gradient or slot of the node is complex."""
    arrays = [v for v in inp.saved.values() if isinstance(v, np.ndarray)]
    arrays += [g for g in inp.grad_outputs if g is not None]
    if any(np.iscomplexobj(a) for a in arrays):
        return True
    if any(isinstance(v, complex) for v in inp.saved.values()):
        return True
    return any(m is not None and "complex" in str(m[1]) for m in inp.input_meta)


def has_complex_rule(name: str) -> bool:
    """Whether node class `name` has a complex-aware rule here."""
    return name in _HOLOMORPHIC or name in _LINEAR or name in _OWN


def _conjugated(v):
    if isinstance(v, np.ndarray) and np.iscomplexobj(v):
        return np.conj(v)
    if isinstance(v, complex):
        return v.conjugate()
    return v


def _real_input(inp: RuleInput, part) -> RuleInput:
    """`inp` with every incoming gradient replaced by its real or imaginary part."""
    gouts = [None if g is None else part(np.asarray(g)) for g in inp.grad_outputs]
    meta = [None if m is None else (m[0], "float64") for m in inp.input_meta]
    return replace(inp, grad_outputs=gouts, input_meta=meta)


def apply_complex_rule(inp: RuleInput) -> list[np.ndarray | None] | None:
    """The node's gradients in torch's complex convention, one per slot; None with no such rule.

    A slot whose input is real gets the real part (what torch sends a real input).
    """
    if all(g is None for g in inp.grad_outputs):
        return [None] * len(inp.input_meta)
    if inp.name in _OWN:
        raw = _OWN[inp.name](inp)
    elif inp.name in _HOLOMORPHIC:
        conj = replace(inp, saved={k: _conjugated(v) for k, v in inp.saved.items()},
                       grad_outputs=[None if g is None else _c(g) for g in inp.grad_outputs])
        raw = _rules.apply_rule(conj)
    elif inp.name in _LINEAR:
        re = _rules.apply_rule(_real_input(inp, np.real))
        im = _rules.apply_rule(_real_input(inp, np.imag))
        raw = [None if a is None or b is None else a + 1j * b for a, b in zip(re, im)]
    else:
        return None
    out: list[np.ndarray | None] = []
    for i, meta in enumerate(inp.input_meta):
        value = raw[i] if raw is not None and i < len(raw) else None
        if meta is None or value is None:
            out.append(None)
            continue
        value = _sum_to(np.asarray(value), tuple(int(s) for s in meta[0]))
        out.append(value if "complex" in str(meta[1]) else np.real(value))
    return out
