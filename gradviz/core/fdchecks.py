"""The finite-difference rows of the check table: each leaf's gradient against the model re-run.

The model runs again (in float64 where it can, as ``gradcheck`` does) with every source tensor set
to its recorded value and one element moved by ``+h`` and ``-h``; ``(L(+h) - L(-h)) / 2h`` is that
element's derivative of the loss, with an error of order ``h^2``. A complex element moves along its
real and its imaginary part, which gives torch's gradient ``dL/dx + i dL/dy``.
"""
from __future__ import annotations

import numpy as np
import torch

from .checktable import FAIL, PASS, SKIPPED, Check, Tolerance, compare
from .checktable import sample_elements, scale_of, tolerance_for
from .recorder import leaf_first_use_order
from .recording import Recording
from .rerun import Rerun
from .sandbox import Sandbox

__all__ = ["fd_checks", "recorded_gradient", "widened", "unseen_note", "BEFORE_NOTE"]

BEFORE_NOTE = (".grad held a value before the recorded backward (a backward inside build(), or an earlier "
               "run): compared what the recorded backward added, .grad minus that value")

_DOUBLE = (torch.float64, torch.complex128)


def fd_checks(rec: Recording, rerun: Rerun | None, max_elements: int, hooks_note: str = "") -> list[Check]:
    """One ``finite-diff`` row per leaf whose ``.grad`` is set.

    Parameters
    ----------
    rec : Recording
    rerun : Rerun or None
        What re-runs the model; None (a recording opened from a file) skips every row, said so.
    max_elements : int
        At most this many elements per leaf (a fixed random sample beyond, stated in the row).
    hooks_note : str
        Added to each row's note: where gradient hooks may make ``.grad`` differ from the derivative.
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
    sources = rec.source_values

    def loss_with(leaf_index: int | None, flat_index: int, delta, dtype):
        state = {}

        def on_leaf(t, idx):
            with torch.no_grad():
                # evaluate at exactly the recorded point: a float64 re-run may draw other random values
                data = sources[idx] if idx < len(sources) else None
                if data is not None and data.value is not None and tuple(t.shape) == tuple(data.shape):
                    t.copy_(torch.from_numpy(np.asarray(data.value)))
                if idx == leaf_index:
                    t.view(-1)[flat_index] += delta
                    state["dtype"] = t.dtype

        out = leaf_first_use_order(runner, on_leaf, dtype=dtype)
        built = runner.normalise(out)
        return float(built.loss.detach().to(torch.float64).cpu()), state.get("dtype")

    # does the model run in float64 when the default dtype is float64 and its modules are cast to
    # float64? (asked of a leaf that is checked: the first source tensor may be an integer index,
    # which has no float64 form)
    probe = next((order[n] for n in targets if n in order), None)
    # the modules' parameters and buffers hold working copies while the model re-runs (the sandbox
    # casts them to float64 with cast64, and restores the originals, untouched, afterwards)
    copies = Sandbox(modules=rerun.modules, cast64=True, warned=rerun.warned)
    try:
        with copies:
            _, probe_dtype = loss_with(probe, 0, 0.0, torch.float64)
    except Exception:  # noqa: BLE001 - a model that cannot run in float64
        copies = Sandbox(modules=rerun.modules, cast64=False, warned=rerun.warned)
        try:
            # differentiate in the model's own dtype, loosely
            with copies:
                loss_with(probe, 0, 0.0, None)
            probe_dtype = None
        except Exception as exc:  # noqa: BLE001 - reported in the rows
            return [Check("finite-diff", f"{n}.grad", "finite differences", SKIPPED, leaf=n,
                          detail=f"re-running the model failed: {exc}") for n in targets]
    in64 = probe_dtype in _DOUBLE
    run_dtype = torch.float64 if in64 else None
    with copies:
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
            is_complex = np.iscomplexobj(got)
            idx, note = sample_elements(got.size, max_elements)
            values = info.tensor.value.reshape(-1) if info.tensor.value is not None else None
            # a complex element moves along its real part, then its imaginary part
            directions = (1.0, 1j) if is_complex else (1.0,)
            # a leaf the script makes in its own dtype (dtype=torch.float32) stays so in a float64
            # re-run: its differences get the step and tolerance of that dtype
            leaf64 = in64 and loss_with(order[name], 0, 0.0, run_dtype)[1] in _DOUBLE
            fd = np.zeros(len(idx), dtype=np.complex128 if is_complex else np.float64)
            for j, flat in enumerate(idx):
                x = abs(values[flat]) if values is not None else 1.0
                # central differences: error O(h^2); h scaled to the value, sized for the dtype's precision
                h = (1e-6 if leaf64 else 1e-2) * max(1.0, float(x))
                for d in directions:
                    up, _ = loss_with(order[name], int(flat), d * h, run_dtype)
                    down, _ = loss_with(order[name], int(flat), -d * h, run_dtype)
                    fd[j] += d * (up - down) / (2 * h)
            got = got.reshape(-1)[idx]
            along = " along real and imaginary parts" if is_complex else ""
            if leaf64:
                dtype = info.grad.dtype if info.grad.dtype in ("float64", "complex128") else "float32"
                tol = tolerance_for(dtype, "finite-diff", scale_of(fd))
                reference = f"central differences{along}, {'complex128' if is_complex else 'float64'}"
            else:
                tol = Tolerance(5e-2 * max(1.0, scale_of(fd)), 5e-2)
                why = "the leaf is made in its own dtype" if in64 else "model does not run in float64"
                reference = f"central differences{along}, {info.grad.dtype} ({why})"
            tol = widened(tol, info)
            ea, er, ok = compare(got, fd, tol)
            rows.append(Check("finite-diff", f"{name}.grad", reference, PASS if ok else FAIL, ea, er, str(tol),
                              info.node, name, "; ".join(filter(None, [before, note, hooks_note]))))
    return rows


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
