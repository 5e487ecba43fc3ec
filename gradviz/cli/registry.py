"""The command line's registry of subcommands, and the options and Session every command shares."""
from __future__ import annotations

import argparse
from typing import Callable

__all__ = ["DEFAULT_MODEL", "COMMANDS", "command", "target_args", "session_options", "open_target", "short"]

DEFAULT_MODEL = "repeated-layer"
COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def command(name: str, help: str):
    """Register a subcommand: decorate ``run(args) -> int``; its ``.arguments(parser)`` adds options."""

    def deco(run):
        def arguments(fn):
            COMMANDS[name] = (run, fn, help)
            return fn

        run.arguments = arguments
        COMMANDS[name] = (run, lambda p: None, help)
        return run

    return deco


def target_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
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


def session_options(args, keep_values: bool = True) -> dict:
    """The `Session` options of the command line: ``--max-nodes``, ``--budget-mb``, and the isolation of model
    code (``--isolate``, ``--timeout``, ``--max-memory``; a limit of 0 is none)."""
    from ..core.recorder import DEFAULT_MAX_NODES
    from ..core.tensors import DEFAULT_BUDGET_BYTES

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
    from ..core.session import Session

    return Session(**session_options(args, keep_values))


def open_target(args, keep_values: bool = True, progress: Callable | None = None):
    """A `Session` with the command's TARGET open (a .gradviz file is loaded, anything else recorded;
    with --isolate in a child process that records and checks it, this one opens what it wrote)."""
    session = _session(args, keep_values)
    session.open(args.target, args.param, progress=progress)
    return session


def short(source: str | None) -> str:
    from ..core.recording import short_source

    return short_source(source)
