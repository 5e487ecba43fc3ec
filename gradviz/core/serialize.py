"""The recording as JSON-ready data (``gradviz inspect --json``)."""
from __future__ import annotations

from typing import Any

from .recording import Recording
from .tensors import TensorData

__all__ = ["recording_to_json", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _t(data: TensorData | None, values: bool) -> Any:
    return None if data is None else data.to_json(values)


def _saved(v: Any, values: bool) -> Any:
    if isinstance(v, TensorData):
        return {"tensor": v.to_json(values)}
    return {"value": list(v) if isinstance(v, tuple) else v}


def recording_to_json(rec: Recording, values: bool = True, checks: Any = None) -> dict:
    """Return the recording as plain dicts and lists; tensors as ``{"shape", "dtype", "value"}``.

    Parameters
    ----------
    rec : Recording
    values : bool
        Include tensor values as nested lists (False keeps shapes and dtypes only).
    checks : CheckTable, optional
        A check table to include under ``"checks"``.
    """
    nodes = []
    for n in rec.nodes:
        nodes.append({
            "id": n.id, "name": n.name, "kind": n.kind, "torch_name": n.torch_name, "module": n.module,
            "use": n.use, "uses": n.uses, "backend": n.backend, "source": n.source, "leaf": n.leaf,
            "function": n.function, "forward_event": n.forward_event, "device": n.device,
            "tensor": _t(n.tensor, values),
            "saved": [{"name": k, **_saved(v, values)} for k, v in n.saved.items()],
        })
    leaves = {}
    for name, info in rec.leaves.items():
        leaves[name] = {
            "node": info.node, "shape": list(info.tensor.shape) if info.tensor is not None else None,
            "requires_grad": info.requires_grad,
            "value": _t(info.tensor, values),
            "grad": _t(info.grad, values),
            "initial_grad": _t(info.initial_grad, values),
            "contributions": [{"producer": c.producer, "slot": c.slot, "backward_event": c.backward_event,
                               "reduced_from": list(c.reduced_from) if c.reduced_from else None,
                               "value": _t(c.value, values), "running_sum": _t(c.running_sum, values)}
                              for c in info.contributions],
        }
    forward = [{"index": e.index, "op": e.op, "node": e.node, "module": e.module, "use": e.use,
                "source": e.source, "inplace": e.inplace, "input_nodes": e.input_nodes,
                "inputs": [_t(t, values) for t in e.inputs], "outputs": [_t(t, values) for t in e.outputs]}
               for e in rec.forward]
    backward = [{"index": e.index, "node": e.node,
                 "grad_outputs": [_t(g, values) for g in e.grad_outputs],
                 "grad_inputs": [_t(g, values) for g in e.grad_inputs]} for e in rec.backward]
    out = {
        "format": "gradviz-recording", "version": FORMAT_VERSION,
        "target": rec.target, "params": rec.params, "meta": rec.meta,
        "loss": _t(rec.loss, values), "root": rec.root,
        "nodes": nodes,
        "edges": [list(e) for e in rec.edges],
        "input_edges": [list(e) for e in rec.input_edges],
        "backward_order": rec.backward_order,
        "leaves": leaves,
        "forward": forward,
        "backward": backward,
        "leaf_order": rec.leaf_order,
        "dropped": rec.dropped,
        "keep_values": rec.keep_values,
    }
    if checks is not None:
        out["checks"] = checks.to_json()
    return out
