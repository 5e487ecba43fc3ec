"""Commands that print what a recording holds: list, inspect, check, steps, flow, backends."""
from __future__ import annotations

import json
import sys

from .registry import DEFAULT_MODEL, command, open_target, short, target_args

__all__ = ["format_steps"]


@command("list", "list the built-in models and their parameters")
def _cmd_list(args) -> int:
    from ..core.models import MODELS

    if args.json:
        print(json.dumps({name: {"description": m.description, "params": m.defaults}
                          for name, m in MODELS.items()}, indent=2))
        return 0
    print("Built-in models (gradviz check NAME --param KEY=VALUE):")
    for name, m in MODELS.items():
        print(f"  {name:16s} {m.description}")
        params = ", ".join(f"{k}={v}" for k, v in m.defaults.items())
        print(f"  {'':16s} params: {params}")
    return 0


@_cmd_list.arguments
def _(p):
    p.add_argument("--json", action="store_true", help="print JSON")


@command("inspect", "record a target and print the recording (nodes, edges, backward order, leaves)")
def _cmd_inspect(args) -> int:
    from ..core.serialize import recording_to_json

    session = open_target(args, keep_values=not args.no_values)
    rec = session.recording
    if args.json:
        data = recording_to_json(rec, values=not args.no_values)
        data["flow"] = session.flow().to_json()
        json.dump(data, sys.stdout, indent=None if args.compact else 1)
        print()
        return 0
    print(rec.summary())
    print("\nnodes (id, name, kind, module/use, source):")
    for n in rec.nodes:
        mod = f"{n.module} use {n.use}/{n.uses}" if n.module and n.use else ""
        extra = f"[{n.backend}]" if n.backend else ""
        leaf = f"leaf {n.leaf}" if n.leaf else ""
        print(f"  {n.id:5d}  {n.name:28s} {n.kind:6s} {extra:8s} {mod:18s} {leaf:16s} {short(n.source)}")
    print("\nbackward order:", " ".join(str(i) for i in rec.backward_order))
    print("\nleaves:")
    for name, info in rec.leaves.items():
        grad = "None" if info.grad is None else info.grad.summary()
        print(f"  {name}: shape {tuple(info.tensor.shape) if info.tensor else '?'}, grad {grad}, "
              f"{len(info.contributions)} contribution(s)")
        for c in info.contributions:
            print(f"      from node {c.producer} slot {c.slot}: {c.value.summary() if c.value else '?'}"
                  f" (running sum {c.running_sum.summary() if c.running_sum else '?'})")
    return 0


@_cmd_inspect.arguments
def _(p):
    target_args(p)
    p.add_argument("--json", action="store_true", help="print the recording as JSON")
    p.add_argument("--no-values", action="store_true", help="keep shapes and dtypes only")
    p.add_argument("--compact", action="store_true", help="JSON on one line")




@command("check", "check every gradient against manual calculation; exit 1 if any check fails")
def _cmd_check(args) -> int:
    session = open_target(args)
    # a saved recording: the checks stored at record time, when the model could still run
    table = session.run_checks(strict=args.strict, finite_diff=not args.no_fd, fd_max_elements=args.fd_elements)
    if args.json:
        print(json.dumps(table.to_json(), indent=1))
    else:
        from ..core.explain import summary_text
        from ..core.textable import format_checks

        print(f"{summary_text(session.recording)}\n")
        print(format_checks(table, every_row=args.all))
    return 0 if table.ok else 1


@_cmd_check.arguments
def _(p):
    from ..core.textable import FOLD_AT

    target_args(p)
    p.add_argument("--json", action="store_true", help="print the check table as JSON")
    p.add_argument("--strict", action="store_true", help="a node with no manual rule is a failure")
    p.add_argument("--all", action="store_true",
                   help=f"every row; without it a kind of check with more than {FOLD_AT} rows (one per node) "
                        "shows its rows that did not pass and its passing ones as one row")
    p.add_argument("--no-fd", action="store_true", help="skip the finite-difference checks")
    p.add_argument("--fd-elements", type=int, default=64, metavar="N",
                   help="finite differences on at most N single elements per leaf (a fixed sample beyond), "
                        "besides a random direction through all of them")


@command("steps", "print the timeline: every forward and backward step, with what it changes")
def _cmd_steps(args) -> int:
    session = open_target(args)
    print(format_steps(session.recording, session.timeline))
    return 0


@_cmd_steps.arguments
def _(p):
    target_args(p, DEFAULT_MODEL)


@command("flow", "print the gradient norm at every backward step, node, module use and leaf")
def _cmd_flow(args) -> int:
    session = open_target(args)
    flow = session.flow()
    if args.json:
        print(json.dumps(flow.to_json(), indent=1))
        return 0
    print(f"{session.recording.summary()}\n")
    print(flow.format())
    return 0


@_cmd_flow.arguments
def _(p):
    target_args(p)
    p.add_argument("--json", action="store_true", help="print the norms as JSON (null where not recorded)")


def format_steps(rec, timeline=None) -> str:
    """The timeline as text, in the current language: each step explained in one line
    (`gradviz.core.explain`), the gradients it sends, the leaves it touches."""
    from ..core.explain import summary_text
    from ..core.i18n import tr
    from ..core.labels import node_title
    from ..core.timeline import Timeline

    tl = timeline if timeline is not None else Timeline(rec)
    lines = [summary_text(rec), ""]
    for step in tl.steps:
        lines.append(f"[{step.index:3d}] {step.describe(rec)}")
        if step.phase == "forward":
            ev = rec.forward[step.event]
            if ev.outputs:
                where = f"   ({short(ev.source)})" if ev.source else ""
                lines.append("        " + tr("output {value}", value=ev.outputs[0].summary()) + where)
        elif step.phase == "backward":
            state = tl.state_at(step.index)
            ev = rec.backward[step.event]
            node = rec.nodes[step.node]
            if ev.grad_outputs:
                lines.append("        " + tr("in: {values}", values=", ".join(g.summary() if g else "None"
                                                                           for g in ev.grad_outputs)))
            for src, dst, slot, g in state.flowing:
                lines.append("        " + tr("out[{slot}] -> node {id} {name}: {value}  (it waits for {n} more)",
                                             slot=slot, id=dst, name=node_title(rec.nodes[dst]),
                                             value=g.summary() if g else "None", n=int(state.pending[dst])))
            if node.kind == "leaf" and node.leaf:
                info = rec.leaves[node.leaf]
                parts = [c.value.summary() for c in info.contributions if c.value]
                lines.append(f"        {node.leaf}.grad = " + " + ".join(parts) +
                             f" = {info.grad.summary() if info.grad else 'None'}")
    return "\n".join(lines)


@command("backends", "report which backends of the linear op can run here, and why not")
def _cmd_backends(args) -> int:
    try:
        from ..core.extension import format_backend_report
    except ImportError:
        from ..core.backends import backend_names, get_backend

        for name in backend_names():
            info = get_backend(name)
            print(f"{name:6s} {'yes' if info.available else 'no ':3s} {info.reason}")
        return 0
    print(format_backend_report())
    return 0
