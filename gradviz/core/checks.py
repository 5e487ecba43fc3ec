"""Check every gradient of a recording against manual calculation.

Rows of the check table, each with a reference, the largest absolute and relative errors, the
tolerance and a status:

- ``manual``: each leaf's ``.grad`` against the model's own numpy / closed-form calculation;
- ``finite-diff``: each leaf's ``.grad`` against central finite differences along a random
  direction and at single elements, the model re-run in float64 (as ``gradcheck`` does), or in its
  own dtype with a looser, stated tolerance;
- ``gradcheck``: every custom Function node, ``torch.autograd.gradcheck`` at its recorded inputs;
- ``local-rule``: every backward node against a numpy re-implementation of its local rule, from its
  saved tensors and incoming gradients;
- ``accumulation``: each leaf's recorded contributions (plus its starting ``.grad``) sum to its ``.grad``.

A node with no local rule is listed as ``no rule``: never a pass, a failure only with ``strict``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import complex_rules as _complex_rules
from . import rules as _rules
from .checktable import FAIL, NO_RULE, PASS, SKIPPED, Check, CheckTable, Tolerance, compare, compare_many
from .checktable import sample_elements as _sample, scale_of as _scale, tolerance_for as _tolerance_for
from .fdchecks import FD_BUDGET, fd_checks, recorded_gradient, widened
from .recording import Recording, short_source
from .rerun import Rerun, rerun_of
from .sandbox import gc_paused, promote_to_oldest
from .tensors import TensorData

__all__ = ["Check", "CheckTable", "run_checks", "Tolerance", "compare"]


def run_checks(rec: Recording, *, rerun: Rerun | None = None, strict: bool = False, manual: bool = True,
               finite_diff: bool = True, gradcheck: bool = True, rules: bool = True, flow: bool = True,
               accumulation: bool = True, fd_max_elements: int = 64, fd_budget: int = FD_BUDGET,
               progress: Callable[[float, str], None] | None = None) -> CheckTable:
    """Run every check on `rec` and return the table.

    Parameters
    ----------
    rec : Recording
    rerun : Rerun, optional
        What re-runs the model code (finite differences, gradcheck, the numerical local rule of a
        custom Function). Default: the one `gradviz.record` remembered for `rec`
        (`gradviz.core.rerun.rerun_of`); with none (a recording opened from a file) those checks
        are skipped with a note.
    strict : bool
        Count nodes with no local rule as failures.
    fd_max_elements : int
        Finite differences move at most this many single elements per leaf (a fixed random sample
        beyond that, stated in the row), besides one random direction through all of them.
    fd_budget : int
        Graph nodes the single-element re-runs evaluate at most in all (a re-run evaluates every
        node): a large graph gets fewer single elements, said so in the row; the directions (two
        re-runs per leaf) always run.
    """
    table = CheckTable(strict=strict)
    progress = progress or (lambda f, m: None)
    if rerun is None:
        rerun = rerun_of(rec)
    if manual:
        progress(0.0, "manual calculation")
        table.rows += _manual_checks(rec)
    if finite_diff:
        progress(0.1, "finite differences")
        table.rows += fd_checks(rec, rerun, fd_max_elements, _hooks_note(rec), fd_budget)
    if gradcheck:
        progress(0.4, "gradcheck of custom Functions")
        table.rows += _gradcheck_checks(rec, rerun)
    # a row or two per node: tens of thousands of small objects on a large graph, which live on with
    # the table; no collection walks the recording's objects while they are made (see gc_paused)
    with gc_paused():
        if rules:
            progress(0.6, "local rules")
            table.rows += _rule_checks(rec, rerun)
        if flow:
            progress(0.8, "gradient flow")
            table.rows += _flow_checks(rec)
        if accumulation:
            progress(0.9, "accumulation")
            table.rows += _accumulation_checks(rec)
        promote_to_oldest()  # (before the collector is back: its next young collection would walk them)
    progress(1.0, "done")
    return table


def _hooks_where(rec: Recording) -> str:
    """Where the script's gradient hooks are (``hook.py:5, a backward hook on module fc``), or ``""``."""
    hooks = rec.meta.get("grad_hooks") or []
    where = ", ".join(short_source(h) if ":" in h and not h.startswith("a ") else h for h in hooks[:3])
    return where + (f" and {len(hooks) - 3} more" if len(hooks) > 3 else "")


def _hooks_note(rec: Recording) -> str:
    """Say so when gradient hooks may make ``.grad`` differ from the derivative of the loss."""
    where = _hooks_where(rec)
    return (f"gradient hooks ({where}) can change what reaches .grad, so it need not be the derivative "
            "of the loss") if where else ""


# ---------------------------------------------------------------------------------------------
def _manual_checks(rec: Recording) -> list[Check]:
    rows = []
    if rec.manual is None:
        note = rec.meta.get("manual_note")
        if note:
            rows.append(Check("manual", "leaf gradients", "manual calculation", SKIPPED, detail=note))
        return rows
    for name, expected in rec.manual.items():
        info = rec.leaves.get(name)
        if info is None:
            rows.append(Check("manual", f"{name}.grad", "manual calculation", FAIL,
                              detail=f"the manual calculation names {name!r}, which the recording does not have"))
            continue
        got, before = recorded_gradient(info) if info.grad is not None and info.grad.value is not None else (None, "")
        if expected is None:
            ok = info.grad is None
            rows.append(Check("manual", f"{name}.grad", "manual: None (no gradient)", PASS if ok else FAIL,
                              leaf=name, node=info.node,
                              detail="" if ok else "the manual calculation expects no gradient, but .grad is set"))
            continue
        if info.grad is None or got is None:
            status = FAIL if info.grad is None else SKIPPED
            rows.append(Check("manual", f"{name}.grad", "manual calculation", status, leaf=name, node=info.node,
                              detail=".grad is None" if info.grad is None else before or "values were not kept"))
            continue
        expected = np.asarray(expected, dtype=np.float64)
        # (with a .grad from before the recorded backward: what this backward added to it)
        tol = widened(_tolerance_for(info.grad.dtype, "manual", _scale(expected)), info)
        ea, er, ok = compare(got, expected, tol)
        rows.append(Check("manual", f"{name}.grad", "manual calculation (numpy)", PASS if ok else FAIL,
                          ea, er, str(tol), info.node, name, before))
    return rows


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
def _to64(obj, requires):
    # copies, never aliases: gradcheck and the numerical local rule perturb these in place, and a
    # float64 leaf of the user's must not be touched
    if isinstance(obj, torch.Tensor):
        # float -> float64, complex -> complex128 (gradcheck checks complex in torch's convention)
        wide = torch.float64 if obj.is_floating_point() else torch.complex128 if obj.is_complex() else None
        t = (obj.detach().to(wide, copy=True) if wide is not None else obj.detach().clone()).contiguous()
        return t.requires_grad_(bool(requires.get(id(obj), False))) if wide is not None else t
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to64(o, requires) for o in obj)
    return obj


def _gradcheck_checks(rec: Recording, rerun: Rerun | None) -> list[Check]:
    replays = {} if rerun is None else rerun.replays
    rows = []
    for node in rec.nodes:
        if node.kind != "custom":
            continue
        replay = replays.get(node.id)
        what = f"node {node.id} {node.name}" + (f" [{node.backend}]" if node.backend else "")
        if replay is None or replay[0] is None:
            why = ("the recording was opened from a file: the Function is not here to run" if rerun is None else
                   "the Function's call was not seen while recording (made in another thread or in TorchScript)")
            rows.append(Check("gradcheck", what, "torch.autograd.gradcheck, float64", SKIPPED, node=node.id,
                              detail=why))
            continue
        (fn, args, kwargs), _cls = replay
        requires = {id(a): a.requires_grad for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)}
        args64 = _to64(args, requires)
        kwargs64 = {k: _to64(v, requires) for k, v in kwargs.items()}
        tensors = [a for a in args64 if isinstance(a, torch.Tensor) and a.requires_grad]
        positions = [i for i, a in enumerate(args64) if isinstance(a, torch.Tensor) and a.requires_grad]

        def f(*ts):
            full = list(args64)
            for p, t in zip(positions, ts):
                full[p] = t
            return fn(*full, **kwargs64)

        try:
            ok = torch.autograd.gradcheck(f, tuple(tensors), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True)
            rows.append(Check("gradcheck", what, "torch.autograd.gradcheck, float64", PASS if ok else FAIL,
                              tolerance="atol=1e-05 rtol=1e-03", node=node.id))
        except Exception as exc:  # noqa: BLE001 - a failed gradcheck is a failed row
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rows.append(Check("gradcheck", what, "torch.autograd.gradcheck, float64", FAIL,
                              tolerance="atol=1e-05 rtol=1e-03", node=node.id, detail=first))
    return rows


# ---------------------------------------------------------------------------------------------
def _rule_checks(rec: Recording, rerun: Rerun | None) -> list[Check]:
    rows: list = []
    # the real nodes' comparisons wait, to be made all at once (compare_many): (row, node, what, reference,
    # how many slots), and the slots' (sent gradient, rule's gradient)
    waiting, pairs = [], []
    for ev in rec.backward:
        node = rec.nodes[ev.node]
        if node.kind == "leaf":
            continue
        what = f"node {node.id} {node.name}" + (f" [{node.backend}]" if node.backend else "")
        if _complex_node(node, ev):
            rows.append(_complex_rule_check(node, ev, what, rerun))
            continue
        if not _rules.has_rule(node.torch_name):
            rows.append(_numeric_vjp_check(rerun, node, ev, what) or Check(
                "local-rule", what, "no manual rule", NO_RULE, node=node.id,
                detail=f"no numpy rule for {node.torch_name}"))
            continue
        reference = f"numpy rule for {node.torch_name}"
        inp, missing = _rule_input(node, ev)
        if missing:
            rows.append(Check("local-rule", what, reference, SKIPPED, node=node.id, detail="values were not kept"))
            continue
        try:
            expected = _rules.apply_rule(inp)
        except Exception as exc:  # noqa: BLE001 - a rule that cannot run is reported, not raised
            rows.append(Check("local-rule", what, reference, FAIL, node=node.id,
                              detail=f"the rule raised {type(exc).__name__}: {exc}"))
            continue
        slots = _compared_slots(ev, expected)
        if not slots:
            rows.append(Check("local-rule", what, reference, NO_RULE, node=node.id,
                              detail="the rule computes none of this node's gradients"))
            continue
        waiting.append((len(rows), node.id, what, reference, len(slots)))
        rows.append(None)
        pairs += slots
    results = compare_many([g.value for g, _ in pairs], [e for _, e in pairs], [g.dtype for g, _ in pairs], "rule")
    k = 0
    for at, node_id, what, reference, n in waiting:
        rows[at] = _worst_row(node_id, what, reference, results[k:k + n])
        k += n
    return rows


def _compared_slots(ev, expected) -> list:
    """The slots where a node sent a gradient with a value and its rule computes one: (sent, rule's)."""
    return [(g, e) for g, e in zip(ev.grad_inputs, expected or [])
            if g is not None and e is not None and g.value is not None]


def _worst_row(node_id: int, what: str, reference: str, results: list) -> Check:
    """A node's row from its slots' comparisons: the worst errors, a pass if every slot passed."""
    worst_a = worst_r = 0.0
    ok = True
    for ea, er, good, _tol in results:
        worst_a, worst_r = max(worst_a, ea), max(worst_r, er)
        ok = ok and good
    return Check("local-rule", what, reference, PASS if ok else FAIL, worst_a, worst_r, str(results[-1][3]), node_id)


def _rule_input(node, ev) -> tuple[_rules.RuleInput, bool]:
    """What a numpy rule sees of `node`, and whether values it needs were not kept."""
    saved = {}
    missing = False
    for k, v in node.saved.items():
        if isinstance(v, TensorData):
            if v.value is None:
                missing = True
            saved[k] = v.value
        else:
            saved[k] = v
    gout = [None if g is None else g.value for g in ev.grad_outputs]
    missing = missing or any(g is None and d is not None for g, d in zip(gout, ev.grad_outputs))
    meta = [None if g is None else (tuple(g.shape), g.dtype) for g in ev.grad_inputs]
    return _rules.RuleInput(node.torch_name, saved, gout, meta), missing


def _rule_row(node, ev, what: str, reference: str, expected) -> Check:
    """Compare the gradients a node sent with what its rule computes, slot by slot."""
    slots = _compared_slots(ev, expected)
    if not slots:
        return Check("local-rule", what, reference, NO_RULE, node=node.id,
                     detail="the rule computes none of this node's gradients")
    results = [(*compare(g.value, e, tol), tol) for g, e in slots
               for tol in [_tolerance_for(g.dtype, "rule", _scale(np.asarray(e)))]]
    return _worst_row(node.id, what, reference, results)


def _complex_node(node, ev) -> bool:
    """Whether a node saved, received or sent a complex tensor."""
    data = [v for v in node.saved.values() if isinstance(v, TensorData)]
    data += [g for g in list(ev.grad_outputs) + list(ev.grad_inputs) if g is not None]
    return any(str(t.dtype).startswith("complex") for t in data)


def _complex_rule_check(rec_node, ev, what: str, rerun: Rerun | None) -> Check:
    """A node with complex tensors: its local rule in torch's conjugate Wirtinger convention.

    A numpy rule of `gradviz.core.complex_rules`, or for a custom Function its forward
    differentiated numerically along real and imaginary parts; else skipped, with a note (a real
    rule would discard the imaginary parts).
    """
    node = rec_node
    reference = f"complex numpy rule for {node.torch_name}"
    if not _complex_rules.has_complex_rule(node.torch_name):
        numeric = _numeric_vjp_check(rerun, node, ev, what)
        if numeric is not None:
            return numeric
        return Check("local-rule", what, "complex numpy rule", SKIPPED, node=node.id,
                     detail=f"complex tensors: no complex-aware numpy rule for {node.torch_name} "
                            "(finite differences of the whole model, along real and imaginary parts, "
                            "check the leaves' gradients)")
    inp, missing = _rule_input(node, ev)
    if missing:
        return Check("local-rule", what, reference, SKIPPED, node=node.id, detail="values were not kept")
    try:
        expected = _complex_rules.apply_complex_rule(inp)
    except Exception as exc:  # noqa: BLE001 - a rule that cannot run is reported, not raised
        return Check("local-rule", what, reference, FAIL, node=node.id,
                     detail=f"the rule raised {type(exc).__name__}: {exc}")
    return _rule_row(node, ev, what, reference, expected)


def _numeric_vjp_check(rerun: Rerun | None, node, ev, what: str, max_elements: int = 64) -> Check | None:
    """The local rule of a custom node with no numpy rule: its forward, differentiated numerically.

    Custom nodes are ``torch.autograd.Function``s and custom ops (the compiled backends'
    ``gradviz::linear``, whose node torch names ``GeneratedBackwardFor_...``); both are replayed
    through the call the recording saw.

    The node's backward turned the gradients that arrived (``grad_outputs``) into one gradient
    per tensor input (``grad_inputs``). Independently of that backward, each of those is the
    derivative of ``sum_j <grad_output_j, output_j(inputs)>`` with respect to that input: central
    differences of the Function's own forward, in float64, at the recorded inputs (a fixed
    sample of `max_elements` elements per input beyond that). None when the Function cannot be
    re-run here (a recording opened from a file); skipped when values were not kept.
    """
    replay = None if rerun is None else rerun.replays.get(node.id)
    if node.kind != "custom" or replay is None or replay[0] is None:
        return None
    (fn, args, kwargs), _cls = replay
    gouts = [None if g is None else g.value for g in ev.grad_outputs]
    reference = "numerical VJP of its forward, float64"
    if any(g is not None and g.value is None for g in ev.grad_outputs) or \
            any(g is not None and g.value is None for g in ev.grad_inputs):
        return Check("local-rule", what, reference, SKIPPED, node=node.id, detail="values were not kept")
    # one slot of grad_inputs per tensor argument of apply(), in order
    tensor_args = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    args64 = list(_to64(list(args), {}))
    kwargs64 = {k: _to64(v, {}) for k, v in kwargs.items()}

    def objective() -> float:
        with torch.no_grad():
            outs = fn(*args64, **kwargs64)
        outs = [outs] if isinstance(outs, torch.Tensor) else [o for o in outs if isinstance(o, torch.Tensor)]
        total = 0.0
        for out, g in zip(outs, gouts):
            if g is not None and (out.is_floating_point() or out.is_complex()):
                # <g, out> as real vectors: Re(conj(g) * out), which for real tensors is g * out
                out = out.detach().cpu().numpy().astype(np.complex128 if out.is_complex() else np.float64)
                total += float(np.real(np.conj(np.asarray(g)) * out).sum())
        return total

    worst_a = worst_r = 0.0
    ok, compared, tol_text, notes = True, 0, "", []
    try:
        for slot, pos in enumerate(tensor_args):
            got = ev.grad_inputs[slot] if slot < len(ev.grad_inputs) else None
            x = args64[pos]
            if got is None or not (x.is_floating_point() or x.is_complex()):
                continue
            flat = x.view(-1)
            n = flat.numel()
            idx, note = _sample(n, max_elements)
            if note:
                notes.append(f"input {slot}: {note}")
            # a complex input moves along its real and its imaginary part: torch's gradient is
            # d/dx + i d/dy of the objective
            directions = (1.0, 1j) if x.is_complex() else (1.0,)
            numeric = np.zeros(len(idx), dtype=np.complex128 if x.is_complex() else np.float64)
            for j, k in enumerate(idx):
                k = int(k)
                keep = flat[k].item()
                h = 1e-6 * max(1.0, abs(keep))
                for d in directions:
                    flat[k] = keep + d * h
                    up = objective()
                    flat[k] = keep - d * h
                    down = objective()
                    flat[k] = keep
                    numeric[j] += d * (up - down) / (2 * h)
            tol = _tolerance_for(got.dtype, "finite-diff", _scale(numeric))
            tol_text = str(tol)
            ea, er, good = compare(np.asarray(got.value).reshape(-1)[idx], numeric, tol)
            worst_a, worst_r = max(worst_a, ea), max(worst_r, er)
            ok = ok and good
            compared += 1
    except Exception as exc:  # noqa: BLE001 - a forward that cannot be re-run here is reported
        return Check("local-rule", what, reference, SKIPPED, node=node.id,
                     detail=f"re-running the Function's forward failed: {type(exc).__name__}: {exc}")
    if compared == 0:
        return None
    return Check("local-rule", what, reference, PASS if ok else FAIL, worst_a, worst_r, tol_text, node.id,
                 detail="; ".join(notes))


# ---------------------------------------------------------------------------------------------
def _flow_checks(rec: Recording) -> list[Check]:
    """Each node received the sum of what its consumers sent it (the chain rule's sum over paths).

    The engine adds up the gradients that several consumers send to one node before running it;
    a gradient hook on the tensor between them is the one thing that can make the two differ.
    """
    ran = {ev.node: ev for ev in rec.backward}
    senders: dict[int, list[tuple[int, int]]] = {}
    for src, dst, slot in rec.edges:
        senders.setdefault(dst, []).append((src, slot))
    where = _hooks_where(rec)
    changed = ("the gradient changed between the senders and this node: " +
               (f"a gradient hook does that ({where})" if where else "only a gradient hook should"))
    rows, got, totals, dtypes = [], [], [], []
    for dst, incoming in senders.items():
        node = rec.nodes[dst]
        ev = ran.get(dst)
        if node.kind == "leaf" or ev is None or len(ev.grad_outputs) != 1:
            continue  # leaves: the accumulation check; several outputs: no single sum to compare
        sent = [ran[src].grad_inputs[slot] if src in ran and slot < len(ran[src].grad_inputs) else None
                for src, slot in incoming]
        arrived = ev.grad_outputs[0]
        values = [t.value for t in sent if t is not None]
        if arrived is None or arrived.value is None or any(t is not None and t.value is None for t in sent) \
                or not values:
            continue  # nothing was sent (or values were not kept): nothing to compare
        # (complex gradients are summed as complex numbers)
        total = np.asarray(values[0], dtype=np.result_type(np.float64, *values))
        for v in values[1:]:
            total = total + v
        names = " + ".join(f"node {src}" for src, _ in incoming)
        what = f"node {dst} {node.name}" + (f" [{node.backend}]" if node.backend else "") + f" receives {names}"
        reference = f"sum of the {len(values)} gradients sent" if len(values) > 1 else f"the gradient {names} sent"
        rows.append((what, reference, dst))
        got.append(arrived.value)
        totals.append(total)
        dtypes.append(arrived.dtype)
    # every node's comparison at once
    return [Check("flow", what, reference, PASS if ok else FAIL, ea, er, str(tol), dst, detail="" if ok else changed)
            for (what, reference, dst), (ea, er, ok, tol) in zip(rows, compare_many(got, totals, dtypes, "rule"))]


def _accumulation_checks(rec: Recording) -> list[Check]:
    rows = []
    for name, info in rec.leaves.items():
        if info.node is None or info.grad is None:
            continue
        terms = ([".grad before"] if info.initial_grad is not None else []) + \
            [f"node {c.producer}" for c in info.contributions]
        # a leaf used at every step of a long loop: its first terms and its last (the reference says how many)
        what = f"{name}.grad = " + " + ".join(terms if len(terms) <= 8 else [*terms[:4], "…", terms[-1]])
        if info.grad.value is None or any(c.value is None or c.value.value is None for c in info.contributions):
            rows.append(Check("accumulation", what, "sum of contributions", SKIPPED, node=info.node, leaf=name,
                              detail="values were not kept"))
            continue
        if not info.contributions:
            rows.append(Check("accumulation", what, "sum of contributions", FAIL, node=info.node, leaf=name,
                              detail="no contribution was recorded for a leaf whose .grad is set"))
            continue
        total = info.contributions[-1].running_sum.value
        tol = _tolerance_for(info.grad.dtype, "rule", _scale(total))
        ea, er, ok = compare(info.grad.value, total, tol)
        rows.append(Check("accumulation", what, f"sum of {len(info.contributions)} contributions",
                          PASS if ok else FAIL, ea, er, str(tol), info.node, name))
    return rows
