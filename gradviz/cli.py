"""The ``gradviz`` command line: the same core as the app, headless.

Exit codes: 0 success, 1 a check failed, 2 bad input (a clear message on stderr, no stack trace
unless ``--debug``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Callable

__all__ = ["main", "build_parser", "command", "DEFAULT_MODEL"]

DEFAULT_MODEL = "repeated-layer"
_COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def command(name: str, help: str):
    """Register a subcommand: decorate ``run(args) -> int``; its ``.arguments(parser)`` adds options."""

    def deco(run):
        def arguments(fn):
            _COMMANDS[name] = (run, fn, help)
            return fn

        run.arguments = arguments
        _COMMANDS[name] = (run, lambda p: None, help)
        return run

    return deco


def _target_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    if default is None:
        p.add_argument("target", help="a built-in model (gradviz list), a model script path/to/file.py[:function] "
                                      "or a saved recording run.gradviz")
    else:
        p.add_argument("target", nargs="?", default=default,
                       help=f"a built-in model (gradviz list), a model script path/to/file.py[:function] "
                            f"or a saved recording run.gradviz (default: {default})")
    p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE",
                   help="a built-in model's parameter, repeatable (--param k=3 --param tanh=true)")
    p.add_argument("--max-nodes", type=int, default=None, help="refuse graphs larger than this (default 200,000)")
    p.add_argument("--budget-mb", type=float, default=None,
                   help="memory for kept tensor values in MiB (default 256); past it tensors keep statistics")
    p.add_argument("--isolate", action="store_true",
                   help="run the model code in a child process: a crash, os._exit or a hang ends only that process")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the model after this many seconds (implies --isolate; default: no limit; "
                        "app: 300, 0 for none)")
    p.add_argument("--max-memory", type=float, default=None, metavar="MB",
                   help="limit the model's process to this much memory in MiB (implies --isolate; default: none; "
                        "app: half the RAM, 0 for none)")


def _session_options(args, keep_values: bool = True) -> dict:
    """The `Session` options of the command line: ``--max-nodes``, ``--budget-mb``, and the isolation of model
    code (``--isolate``, ``--timeout``, ``--max-memory``; a limit of 0 is none)."""
    from .core.recorder import DEFAULT_MAX_NODES
    from .core.tensors import DEFAULT_BUDGET_BYTES

    budget = DEFAULT_BUDGET_BYTES if args.budget_mb is None else int(args.budget_mb * 2**20)
    options = {"keep_values": keep_values, "budget_bytes": budget, "max_nodes": args.max_nodes or DEFAULT_MAX_NODES}
    timeout, memory = getattr(args, "timeout", None), getattr(args, "max_memory", None)
    if getattr(args, "isolate", False) or timeout is not None or memory is not None:
        options["isolate"] = True
    if timeout is not None:
        options["timeout"] = timeout or None
    if memory is not None:
        options["max_memory_mb"] = memory or None
    return options


def _session(args, keep_values: bool = True):
    """A `Session` with the options of the command line (`_session_options`)."""
    from .core.session import Session

    return Session(**_session_options(args, keep_values))


def _open(args, keep_values: bool = True, progress: Callable | None = None):
    """A `Session` with the command's TARGET open (a .gradviz file is loaded, anything else recorded;
    with --isolate in a child process that records and checks it, this one opens what it wrote)."""
    session = _session(args, keep_values)
    session.open(args.target, args.param, progress=progress)
    return session


# ---------------------------------------------------------------------------------------------
@command("list", "list the built-in models and their parameters")
def _cmd_list(args) -> int:
    from .core.models import MODELS

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
    from .core.serialize import recording_to_json

    session = _open(args, keep_values=not args.no_values)
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
        print(f"  {n.id:5d}  {n.name:28s} {n.kind:6s} {extra:8s} {mod:18s} {leaf:16s} {_short(n.source)}")
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
    _target_args(p)
    p.add_argument("--json", action="store_true", help="print the recording as JSON")
    p.add_argument("--no-values", action="store_true", help="keep shapes and dtypes only")
    p.add_argument("--compact", action="store_true", help="JSON on one line")


def _short(source: str | None) -> str:
    from .core.recording import short_source

    return short_source(source)


@command("check", "check every gradient against manual calculation; exit 1 if any check fails")
def _cmd_check(args) -> int:
    session = _open(args)
    # a saved recording: the checks stored at record time, when the model could still run
    table = session.run_checks(strict=args.strict, finite_diff=not args.no_fd, fd_max_elements=args.fd_elements)
    if args.json:
        print(json.dumps(table.to_json(), indent=1))
    else:
        from .core.explain import summary_text
        from .core.textable import format_checks

        print(f"{summary_text(session.recording)}\n")
        print(format_checks(table, every_row=args.all))
    return 0 if table.ok else 1


@_cmd_check.arguments
def _(p):
    from .core.textable import FOLD_AT

    _target_args(p)
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
    session = _open(args)
    print(format_steps(session.recording, session.timeline))
    return 0


@_cmd_steps.arguments
def _(p):
    _target_args(p, DEFAULT_MODEL)


@command("flow", "print the gradient norm at every backward step, node, module use and leaf")
def _cmd_flow(args) -> int:
    session = _open(args)
    flow = session.flow()
    if args.json:
        print(json.dumps(flow.to_json(), indent=1))
        return 0
    print(f"{session.recording.summary()}\n")
    print(flow.format())
    return 0


@_cmd_flow.arguments
def _(p):
    _target_args(p)
    p.add_argument("--json", action="store_true", help="print the norms as JSON (null where not recorded)")


def format_steps(rec, timeline=None) -> str:
    """The timeline as text, in the current language: each step explained in one line
    (`gradviz.core.explain`), the gradients it sends, the leaves it touches."""
    from .core.explain import summary_text
    from .core.i18n import tr
    from .core.labels import node_title
    from .core.timeline import Timeline

    tl = timeline if timeline is not None else Timeline(rec)
    lines = [summary_text(rec), ""]
    for step in tl.steps:
        lines.append(f"[{step.index:3d}] {step.describe(rec)}")
        if step.phase == "forward":
            ev = rec.forward[step.event]
            if ev.outputs:
                where = f"   ({_short(ev.source)})" if ev.source else ""
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


@command("record", "record a target, run its checks, and save both to a .gradviz file")
def _cmd_record(args) -> int:
    from .core.storage import SUFFIX

    if not args.output.lower().endswith(SUFFIX):
        from .core.errors import GradvizError

        raise GradvizError(f"the output {args.output!r} must end in {SUFFIX}",
                           hint="to write other formats use gradviz export TARGET -o FILE")
    progress = _progress_lines if args.progress else None
    session = _open(args, keep_values=not args.no_values, progress=_part(progress, 0.0, 0.6))
    skip = args.no_checks or (args.checks_max_nodes is not None and len(session.recording.nodes) > args.checks_max_nodes)
    table = None if skip else session.run_checks(finite_diff=not args.no_fd, fd_max_elements=args.fd_elements,
                                                 progress=_part(progress, 0.6, 0.95))
    # a .gradviz file: the recording and the session's checks
    path = session.export(args.output, progress=_part(progress, 0.95, 1.0))
    size = os.path.getsize(path)
    checks = "no checks" if table is None else ("checks pass" if table.ok else f"{len(table.failed)} check(s) FAIL")
    print(f"{session.recording.summary()}\nsaved {path} ({size / 2**20:.2f} MiB; {checks})")
    return 0


@_cmd_record.arguments
def _(p):
    _target_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.gradviz", help="the file to write")
    p.add_argument("--no-values", action="store_true", help="keep shapes and dtypes only")
    p.add_argument("--no-checks", action="store_true", help="do not run and store the checks")
    p.add_argument("--no-fd", action="store_true", help="skip the finite-difference checks")
    p.add_argument("--fd-elements", type=int, default=64, metavar="N",
                   help="finite differences on at most N single elements per leaf, besides a random "
                        "direction (default 64)")
    p.add_argument("--checks-max-nodes", type=int, default=None, metavar="N",
                   help="store no checks for a graph of more than N nodes (gradviz check runs them)")
    # for gradviz.core.isolate: progress as 'gradviz-isolate: progress FRACTION MESSAGE' lines on stdout
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)


def _progress_lines(fraction: float, message: str) -> None:
    """Print one progress line for the parent process (`gradviz.core.isolate` reads them)."""
    from .core.isolate import TAG

    print(f"{TAG} progress {fraction:.3f} {' '.join(str(message).split())}", flush=True)


def _part(progress: Callable | None, start: float, end: float) -> Callable | None:
    """`progress` for one part of a command: its fractions mapped onto [start, end]."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(start + (end - start) * max(0.0, float(fraction)), message)


@command("export", "export a target's graph or data: .png .svg .pdf .gif .dot .graphml .json .gradviz")
def _cmd_export(args) -> int:
    session = _open(args)

    def progress(fraction: float, message: str) -> None:
        if fraction < 0:
            print(f"note: {message}", file=sys.stderr)

    extra = {k: v for k, v in (("around", args.around), ("steps", args.steps), ("page", args.page)) if v is not None}
    if args.fold != "auto":
        extra["fold"] = None if args.fold in ("off", "0") else _fold_rows(args.fold)
    if args.whole:
        extra["whole"] = True
    if args.no_proxies:
        extra["proxies"] = False
    if args.collapse is not None:
        extra["collapse"] = args.collapse
    path = session.export(args.output, step=args.step, phase=args.phase, layout=args.layout, theme=args.theme,
                          scale=args.scale, progress=progress, **extra)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB)")
    return 0


@_cmd_export.arguments
def _(p):
    from .core.exporters import LAYOUTS, THEMES

    _target_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file; its extension names the format")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--step", type=int, default=None, metavar="N",
                      help="show the graph at timeline step N (default: the end; gradviz steps lists them)")
    when.add_argument("--phase", choices=("forward", "backward", "end"), default=None,
                      help="show the first step of this phase")
    p.add_argument("--layout", choices=LAYOUTS, default="lr", help="lr: left to right, the loss on the right; tb: top to bottom, the loss at the bottom")
    p.add_argument("--theme", choices=tuple(THEMES), default="light")
    p.add_argument("--scale", type=float, default=None,
                   help="size factor for images (default: 1, or smaller to fit, never below a legible 0.75)")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--around", metavar="NODE", default=None,
                      help="images: only the part of the graph around NODE (an id or a name)")
    part.add_argument("--steps", metavar="A:B", default=None,
                      help="images: only the part of the graph that timeline steps A to B run")
    part.add_argument("--whole", action="store_true",
                      help="images: the whole graph legible in one image, a long chain folded to fit a square "
                           "(PNG: up to 16384 px per side, 1 GiB of memory, tens of seconds)")
    p.add_argument("--page", metavar="SIZE", default=None,
                   help="PDF: paper size (a4, a3, a2, letter, tabloid): as many pages as a legible drawing needs")
    p.add_argument("--fold", metavar="auto|off|N", default="auto",
                   help="images: wrap a long chain into rows of N layers (auto: when it is much longer than a page)")
    p.add_argument("--no-proxies", action="store_true",
                   help="images: draw every edge to a shared parameter instead of a proxy next to each far use")
    p.add_argument("--collapse", metavar="use|N", default=None,
                   help="images: draw each module use (use), or each block of N consecutive uses, as one box")


def _fold_rows(text: str) -> int:
    """--fold N: the number of layers per row."""
    from .core.errors import GradvizError

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise GradvizError(f"--fold {text!r} is not auto, off or a number of layers per row",
                           hint="for example --fold 60")
    return n


@command("backends", "report which backends of the linear op can run here, and why not")
def _cmd_backends(args) -> int:
    try:
        from .core.extension import format_backend_report
    except ImportError:
        from .core.backends import backend_names, get_backend

        for name in backend_names():
            info = get_backend(name)
            print(f"{name:6s} {'yes' if info.available else 'no ':3s} {info.reason}")
        return 0
    print(format_backend_report())
    return 0


def _prestart_child(options: dict) -> None:
    """Start the app's first model process now: it imports torch while this one imports Qt and builds the window."""
    from .core.isolate import app_max_memory_mb, prestart

    prestart(options["max_memory_mb"] if "max_memory_mb" in options else app_max_memory_mb())


@command("app", "open the desktop app on a target (built-in model, model script)")
def _cmd_app(args) -> int:
    options = _session_options(args)
    _prestart_child(options)
    try:
        from .qt.app import run_app
    except ImportError as exc:
        from .core.errors import GradvizError

        raise GradvizError(f"the desktop app cannot start: {exc}",
                           hint="install the gui extra: pip install 'gradviz[gui]'") from None
    # the window opens TARGET in the same Session the other commands use (in a worker, with progress)
    from .qt.app import app_session

    # model code runs in a child process per run, with the app's limits unless --timeout/--max-memory say
    return run_app(args.target, params=args.param, session=app_session(**options),
                   lesson=args.lesson)


@_cmd_app.arguments
def _(p):
    _target_args(p, DEFAULT_MODEL)
    p.add_argument("--lesson", metavar="NAME", help="open the Lesson dock on this lesson (gradviz lesson --list)")


def _register_lessons() -> None:
    from .lessons.cli import register  # the lesson command's code lives with the lessons

    register(command)


_register_lessons()


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="gradviz", description="See PyTorch autograd at work: record, step through and check every gradient. "
                                    "With no command: open the app, or with no display, print the default "
                                    "model's steps and checks.")
    parser.add_argument("--debug", action="store_true", help="show full stack traces")
    parser.add_argument("--lang", choices=("en", "zh"), default=None,
                        help="the language of tables and step captions (default: the system locale's, "
                             "zh for LANG=zh_CN.UTF-8, else en)")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (run, arguments, help) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        arguments(p)
        p.set_defaults(run=run)
    return parser


def _version() -> str:
    from . import __version__

    return f"gradviz {__version__}"


def _has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _default(args) -> int:
    """No command: the app where a display and Qt are there, else the default model's steps and checks."""
    if _has_display():
        _prestart_child({})
        try:
            from .qt.app import run_app
        except ImportError:
            from .core.isolate import discard_spare

            discard_spare()  # no app: the model runs here after all
            run_app = None
        if run_app is not None:
            return run_app(None)
    from .core.session import Session

    session = Session()
    session.open(DEFAULT_MODEL)
    print("No display: printing the default model's steps and checks (gradviz --help lists commands).\n")
    print(format_steps(session.recording, session.timeline))
    print()
    from .core.textable import format_checks

    table = session.run_checks()
    print(format_checks(table))
    return 0 if table.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .core.i18n import system_language, using

    with warnings.catch_warnings(), using(args.lang or system_language()):
        # the warnings' display and the language are restored when main() returns
        # each warning (category and text) reaches the user once: a model that warns in a loop,
        # or on each of the checks' re-runs, gives one line
        shown: set = set()

        def show_once(message, category, filename, lineno, file=None, line=None):
            if (category, str(message)) not in shown:
                shown.add((category, str(message)))
                _show_warning(message, category, filename, lineno, file, line)

        warnings.showwarning = show_once
        return _run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line: gradviz's own as a notice, a script's with where it came from."""
    from .core.errors import ChildWarning
    from .core.recording import short_source

    if issubclass(category, ChildWarning):  # the model's child process printed it whole already
        print(str(message), file=sys.stderr)
    elif os.path.abspath(filename).startswith(os.path.dirname(os.path.abspath(__file__)) + os.sep):
        print(f"notice: {message}", file=sys.stderr)
    else:
        print(f"warning: {category.__name__}: {message} ({short_source(f'{filename}:{lineno}')})",
              file=sys.stderr)


def _run(args) -> int:
    """Run the parsed command, turning every failure into a message and an exit code."""
    from .core.errors import GradvizError

    try:
        if getattr(args, "run", None) is None:
            return _default(args)
        return args.run(args)
    except GradvizError as exc:
        if args.debug or _debug_env():
            raise
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`gradviz steps ... | head`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so that Python's flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except MemoryError:
        if args.debug or _debug_env():
            raise
        print("error: out of memory (the recording or the model is too large for this machine)", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 2, no traceback
        if args.debug or _debug_env():
            raise
        print(f"error: {bug_line(exc)}", file=sys.stderr)
        return 2


def _debug_env() -> bool:
    return os.environ.get("GRADVIZ_DEBUG", "") not in ("", "0")


def bug_line(exc: BaseException) -> str:
    """One line for an exception gradviz did not expect: what it was, and that it is a bug to report."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 100 else text[:97] + "..."
    return (f"unexpected {type(exc).__name__}{': ' + text if text else ''}; this is a bug in gradviz: please report "
            "it (GRADVIZ_DEBUG=1 shows the trace)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
