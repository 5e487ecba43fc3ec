"""The finite-difference rows of the check table: each leaf's gradient against the model re-run.

The model runs again (in float64 where it can, as ``gradcheck`` does) with every source tensor set
to its recorded value and one leaf moved by ``+h d`` and ``-h d``; ``(L(+h d) - L(-h d)) / 2h`` is the
derivative of the loss along ``d``, with an error of order ``h^2``, and the recorded gradient ``g``
must give the same number, ``<g, d>``. Two kinds of move per leaf:

- a random direction ``d`` (unit length, fixed seed; each element's share has a random sign and a
  size between 1 and 2, so no element is left out and no two errors cancel): two re-runs check
  every element of the leaf at once, as ``gradcheck``'s fast mode does. A wrong gradient passes
  only where its error is orthogonal to ``d``;
- single elements (``d`` a unit vector): all of a small leaf, a fixed random sample of a large
  one, and fewer on a large graph, where each re-run is long: beyond two re-runs per leaf for the
  directions, finite differences re-run at most ``budget`` graph nodes in all.

A complex leaf moves along complex directions (an element along its real and its imaginary part),
which gives torch's gradient ``dL/dx + i dL/dy``: the derivative along ``d`` is ``Re <g, d>``.
"""
from __future__ import annotations

import numpy as np
import torch

from .checktable import FAIL, PASS, SKIPPED, Check, Tolerance, compare
from .checktable import sample_elements, scale_of, tolerance_for
from .fdrerun import PerturbedLoss, direction_move, element_move
from .recording import Recording
from .rerun import Rerun
from .sandbox import Sandbox

__all__ = ["fd_checks", "recorded_gradient", "widened", "unseen_note", "random_direction", "BEFORE_NOTE",
           "FD_BUDGET"]

BEFORE_NOTE = (".grad held a value before the recorded backward (a backward inside build(), or an earlier "
               "run): compared what the recorded backward added, .grad minus that value")

# graph nodes the single-element re-runs may evaluate in all (a 10,000-node graph: none; 100 nodes: 1,000 re-runs)
FD_BUDGET = 100_000

_DOUBLE = (torch.float64, torch.complex128)
# the step of central differences per unit of the values: sized for float64, and for other dtypes
_UNIT64, _UNIT = 1e-6, 1e-2


def random_direction(n: int, is_complex: bool, seed: int) -> np.ndarray:
    """A unit vector of `n` entries whose sizes lie within a factor of 2 of each other, random signs.

    Each entry is ``s * u`` with ``s`` a random sign and ``u`` uniform in [1, 2] (for complex, its
    real and its imaginary part each), then the vector is scaled to unit length: every element (every
    part) gets a share of at least half of the largest, and a wrong gradient's errors cancel only on
    a set of measure zero.
    """
    rng = np.random.default_rng([seed, n])
    d = rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
    if is_complex:
        # the imaginary parts too: an error in either part of an element moves <g, d>
        d = d + 1j * rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
    return d / np.linalg.norm(d) if n else d


def _along(g: np.ndarray, d: np.ndarray) -> float:
    """``Re <g, d>``: the derivative along `d` that a gradient `g` (torch's convention) gives."""
    return float(np.real(np.vdot(g, d))) if np.iscomplexobj(g) or np.iscomplexobj(d) else float(np.dot(g, d))


def _element_counts(sizes: list[tuple[int, bool]], max_elements: int, runs_left: int) -> list[int]:
    """How many single elements each leaf gets: up to `max_elements` each, round by round, within `runs_left`.

    ``sizes`` holds each leaf's element count and whether it is complex (an element then costs four
    re-runs, along its real and its imaginary part, instead of two).
    """
    counts = [0] * len(sizes)
    want = [min(n, max_elements) for n, _ in sizes]
    for _round in range(max(want, default=0)):
        grew = False
        for i, (n, is_complex) in enumerate(sizes):
            cost = 4 if is_complex else 2
            if counts[i] < want[i] and runs_left >= cost:
                counts[i] += 1
                runs_left -= cost
                grew = True
        if not grew:
            break
    return counts


def fd_checks(rec: Recording, rerun: Rerun | None, max_elements: int, hooks_note: str = "",
              budget: int = FD_BUDGET) -> list[Check]:
    """One ``finite-diff`` row per leaf whose ``.grad`` is set.

    Parameters
    ----------
    rec : Recording
    rerun : Rerun or None
        What re-runs the model; None (a recording opened from a file) skips every row, said so.
    max_elements : int
        At most this many single elements per leaf (a fixed random sample beyond, stated in the
        row), besides the random direction.
    hooks_note : str
        Added to each row's note: where gradient hooks may make ``.grad`` differ from the derivative.
    budget : int
        Graph nodes the single-element re-runs may evaluate in all (each re-run evaluates
        ``len(rec.nodes)``); the directions always run.
    """
    rows: list[Check] = []
    runner = None if rerun is None else rerun.runner
    targets = [n for n, info in rec.leaves.items()
               if info.requires_grad and info.grad is not None and info.grad.value is not None]
    if not targets:
        return rows
    if runner is None:
        return [Check("finite-diff", f"{n}.grad", "finite differences", SKIPPED, leaf=n,
                      detail="the recording was opened from a file: the model is not here to re-run")
                for n in targets]
    unseen = unseen_note(rec)
    if unseen:
        return [Check("finite-diff", f"{n}.grad", "finite differences", SKIPPED, leaf=n, node=rec.leaves[n].node,
                      detail=unseen) for n in targets]
    order = {name: i for i, name in enumerate(rec.leaf_order)}
    plan = []
    for name in targets:
        info = rec.leaves[name]
        if name not in order:
            rows.append(Check("finite-diff", f"{name}.grad", "finite differences", SKIPPED, leaf=name,
                              node=info.node, detail="the leaf was not used by a recorded op"))
            continue
        got, before = recorded_gradient(info)
        if got is None:
            rows.append(Check("finite-diff", f"{name}.grad", "finite differences", SKIPPED, leaf=name,
                              node=info.node, detail=before))
            continue
        plan.append((name, info, got, before))
    if not plan:
        return rows
    loss_with = PerturbedLoss(rec, runner)

    # does the model run in float64 when the default dtype is float64 and its modules are cast to
    # float64? The first run, the first leaf moved along its direction (+h d), tells: it notes each
    # source's dtype (a leaf made in its own dtype stays so), and serves the first row when the
    # answer is yes. The modules' parameters and buffers hold working copies while the model
    # re-runs (the sandbox casts them to float64 with cast64, and restores the originals, untouched)
    name0, info0, got0, _ = plan[0]
    index0 = order[name0]
    direction0 = random_direction(got0.size, np.iscomplexobj(got0), index0)

    def probe(cast64: bool, unit: float, dtype) -> tuple[Sandbox, float]:
        copies = Sandbox(modules=rerun.modules, cast64=cast64, warned=rerun.warned)
        with copies:
            up = loss_with(index0, direction_move(_direction_step(info0, unit) * direction0), dtype)
        return copies, up

    try:
        copies, first_up = probe(True, _UNIT64, torch.float64)
        in64 = loss_with.dtypes.get(index0) in _DOUBLE
    except Exception:  # noqa: BLE001 - a model that cannot run in float64
        try:
            # differentiate in the model's own dtype, loosely
            copies, first_up = probe(False, _UNIT, None)
            in64 = False
        except Exception as exc:  # noqa: BLE001 - reported in the rows
            return [Check("finite-diff", f"{n}.grad", "finite differences", SKIPPED, leaf=n,
                          detail=f"re-running the model failed: {exc}") for n in targets]
    else:
        if not in64:
            first_up = None  # (a float64 run, but the rows re-run in the default dtype)
    run_dtype = torch.float64 if in64 else None
    # the single elements: what the budget leaves after the directions (two re-runs per leaf)
    runs_left = budget // max(1, len(rec.nodes)) - 2 * len(plan)
    counts = _element_counts([(got.size, np.iscomplexobj(got)) for _, _, got, _ in plan], max_elements, runs_left)
    with copies:
        for k, ((name, info, got, before), count) in enumerate(zip(plan, counts)):
            leaf64 = in64 and loss_with.dtypes.get(order[name]) in _DOUBLE
            rows.append(_leaf_row(loss_with, order[name], name, info, got, count, leaf64, in64, run_dtype,
                                  before, hooks_note, len(rec.nodes), first_up if k == 0 else None))
    return rows


def _direction_step(info, unit: float) -> float:
    """The step ``h`` along a unit direction: `unit` times the leaf's largest magnitude (at least 1)."""
    values = info.tensor.value
    scale = float(np.abs(values).max()) if values is not None and np.size(values) else 1.0
    return unit * max(1.0, scale)


def _leaf_row(loss_with: PerturbedLoss, index: int, name: str, info, got: np.ndarray, count: int, leaf64: bool,
              in64: bool, run_dtype, before: str, hooks_note: str, nodes: int, up: float | None = None) -> Check:
    """The ``finite-diff`` row of one leaf: its random direction and `count` single elements.

    `up`: the loss at ``+h d`` when a run already gave it (the first run of all).
    """
    is_complex = np.iscomplexobj(got)
    flat_got = got.reshape(-1)
    values = info.tensor.value.reshape(-1) if info.tensor.value is not None else None
    # central differences: error O(h^2); h scaled to the values, sized for the dtype's precision
    unit = _UNIT64 if leaf64 else _UNIT

    def step(x) -> float:
        return unit * max(1.0, float(x))

    # every element at once, along a random direction of unit length
    d = random_direction(got.size, is_complex, index)
    h = _direction_step(info, unit)
    if up is None:
        up = loss_with(index, direction_move(h * d), run_dtype)
    down = loss_with(index, direction_move(-h * d), run_dtype)
    fd_dir = (up - down) / (2 * h)
    # single elements; a complex element moves along its real part, then its imaginary part
    idx, sample_note = sample_elements(got.size, count)
    directions = (1.0, 1j) if is_complex else (1.0,)
    fd = np.zeros(len(idx), dtype=np.complex128 if is_complex else np.float64)
    for j, flat in enumerate(idx):
        h = step(abs(values[flat]) if values is not None else 1.0)
        for e in directions:
            up = loss_with(index, element_move(int(flat), e * h), run_dtype)
            down = loss_with(index, element_move(int(flat), -e * h), run_dtype)
            fd[j] += e * (up - down) / (2 * h)
    actual = np.concatenate([[_along(flat_got, d)], flat_got[idx]])
    reference = np.concatenate([[fd_dir], fd])
    along = " along real and imaginary parts" if is_complex else ""
    if leaf64:
        dtype = info.grad.dtype if info.grad.dtype in ("float64", "complex128") else "float32"
        tol = tolerance_for(dtype, "finite-diff", scale_of(reference))
        text = f"central differences{along}, {'complex128' if is_complex else 'float64'}"
    else:
        tol = Tolerance(5e-2 * max(1.0, scale_of(reference)), 5e-2)
        why = "the leaf is made in its own dtype" if in64 else "model does not run in float64"
        text = f"central differences{along}, {info.grad.dtype} ({why})"
    tol = widened(tol, info)
    ea, er, ok = compare(actual, reference, tol)
    sampled = ""
    if count == 0:
        sampled = (f"a random direction through all {got.size} elements, no single elements (the re-runs "
                   f"of a {nodes}-node graph are capped)")
    elif len(idx) < got.size:
        sampled = f"a random direction and {sample_note}"
    note = "; ".join(filter(None, [before, sampled, hooks_note]))
    return Check("finite-diff", f"{name}.grad", text, PASS if ok else FAIL, ea, er, str(tol), info.node, name, note)


def recorded_gradient(info) -> tuple[np.ndarray | None, str]:
    """What the recorded backward added to a leaf's ``.grad``, and a note saying how it was found.

    ``.grad`` itself, unless it already held a value before the recorded backward (``initial_grad``:
    a ``backward(retain_graph=True)`` inside ``build()``, a gradient left from an earlier step);
    then ``.grad - initial_grad``, the sum of the recorded contributions, which is what the
    derivative of the loss is compared with. None (and why) when a value was not kept.
    """
    grad = np.asarray(info.grad.value)
    if info.initial_grad is None:
        return grad, ""
    if info.initial_grad.value is None:
        return None, "values were not kept (.grad held a value before the recorded backward)"
    before = np.asarray(info.initial_grad.value)
    return grad.astype(np.result_type(grad, before, np.float64)) - before, BEFORE_NOTE


def widened(tol: Tolerance, info) -> Tolerance:
    """`tol` with room for the rounding of ``.grad = initial_grad + contribution`` in ``.grad``'s dtype.

    ``.grad - initial_grad`` recovers the contribution only up to that rounding: half a unit in the
    last place of ``.grad`` (``eps / 2 * |.grad|``) per element, which can exceed a tolerance scaled
    to a small contribution when the earlier gradient was large.
    """
    if info.initial_grad is None or info.grad.value is None:
        return tol
    grad = np.asarray(info.grad.value)
    if grad.dtype.kind not in "fc" or grad.size == 0:
        return tol
    return Tolerance(tol.atol + float(np.finfo(grad.dtype).eps) * float(np.abs(grad).max()), tol.rtol)


def unseen_note(rec: Recording) -> str:
    """Why finite differences cannot re-run `rec` faithfully, or ``""``.

    A re-run sets each source tensor to its recorded value, and moves one element, where the op
    that first uses it runs; it sees ops in its own thread only. Nodes of the graph that no op seen
    while recording made (``meta["unseen_nodes"]``: ops run in another thread, e.g. in a
    ``ThreadPoolExecutor`` inside ``build()``, or in TorchScript) used values a re-run can neither
    set nor move, so its differences would be those of another function: a false failure.
    """
    ids = rec.meta.get("unseen_nodes") or []
    if not ids:
        return ""
    names = ", ".join(f"node {i} {rec.nodes[i].name}" for i in ids[:3] if 0 <= i < len(rec.nodes))
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return (f"ops ran where gradviz cannot follow them ({names}{more}: made in another thread or in "
            "TorchScript): a re-run cannot set the values they used, so finite differences are skipped; "
            "gradcheck, local rules, flow and accumulation still check every node")
