"""Commands that write files: record (a .gradviz file with its checks) and export (every format)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from .registry import command, open_target, target_args

__all__: list[str] = []


@command("record", "record a target, run its checks, and save both to a .gradviz file")
def _cmd_record(args) -> int:
    from ..core.storage import SUFFIX

    if not args.output.lower().endswith(SUFFIX):
        from ..core.errors import GradvizError

        raise GradvizError(f"the output {args.output!r} must end in {SUFFIX}",
                           hint="to write other formats use gradviz export TARGET -o FILE")
    progress = _progress_lines if args.progress else None
    session = open_target(args, keep_values=not args.no_values, progress=_part(progress, 0.0, 0.6))
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
    target_args(p)
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
    from ..core.isolate import TAG

    print(f"{TAG} progress {fraction:.3f} {' '.join(str(message).split())}", flush=True)


def _part(progress: Callable | None, start: float, end: float) -> Callable | None:
    """`progress` for one part of a command: its fractions mapped onto [start, end]."""
    if progress is None:
        return None
    return lambda fraction, message="": progress(start + (end - start) * max(0.0, float(fraction)), message)


@command("export", "export a target's graph or data: .png .svg .pdf .gif .dot .graphml .json .gradviz")
def _cmd_export(args) -> int:
    session = open_target(args)

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
    from ..core.exporters import LAYOUTS, THEMES

    target_args(p)
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
    from ..core.errors import GradvizError

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise GradvizError(f"--fold {text!r} is not auto, off or a number of layers per row",
                           hint="for example --fold 60")
    return n
