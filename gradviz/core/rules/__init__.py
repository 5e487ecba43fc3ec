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

# each family registers its rules with the registry as it is imported
from . import elementwise, losses, reductions, shapes  # noqa: F401
from .registry import RuleInput, apply_rule, has_rule, rule, rule_names

__all__ = ["RuleInput", "rule", "has_rule", "rule_names", "apply_rule"]
