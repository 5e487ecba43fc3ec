"""The command line's entry point: the parser of every registered command, the app command, no
command (the app, or the default model's steps and checks without a display), and the one place
where failures become a message and an exit code."""
from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings

from . import show, write  # noqa: F401 - registers their commands, in the order --help lists them
from .registry import COMMANDS, DEFAULT_MODEL, command, session_options, target_args
from .show import format_steps

__all__ = ["main", "run", "build_parser", "bug_line"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gradviz/


def _prestart_child(options: dict) -> None:
    """Start the app's first model process now: it imports torch while this one imports Qt and builds the window."""
    from ..core.isolate import app_max_memory_mb, prestart

    prestart(options["max_memory_mb"] if "max_memory_mb" in options else app_max_memory_mb())


@command("app", "open the desktop app on a target (built-in model, model script)")
def _cmd_app(args) -> int:
    options = session_options(args)
    _prestart_child(options)
    try:
        from ..qt.app import run_app
    except ImportError as exc:
        from ..core.errors import GradvizError

        raise GradvizError(f"the desktop app cannot start: {exc}",
                           hint="install the gui extra: pip install 'gradviz[gui]'") from None
    # the window opens TARGET in the same Session the other commands use (in a worker, with progress)
    from ..qt.app import app_session

    # model code runs in a child process per run, with the app's limits unless --timeout/--max-memory say
    return run_app(args.target, params=args.param, session=app_session(**options),
                   lesson=args.lesson)


@_cmd_app.arguments
def _(p):
    target_args(p, DEFAULT_MODEL)
    p.add_argument("--lesson", metavar="NAME", help="open the Lesson dock on this lesson (gradviz lesson --list)")


def _register_lessons() -> None:
    from ..lessons.cli import register  # the lesson command's code lives with the lessons

    register(command)


_register_lessons()


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
    for name, (run, arguments, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        arguments(p)
        p.set_defaults(run=run)
    return parser


def _version() -> str:
    from .. import __version__

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
            from ..qt.app import run_app
        except ImportError:
            from ..core.isolate import discard_spare

            discard_spare()  # no app: the model runs here after all
            run_app = None
        if run_app is not None:
            return run_app(None)
    from ..core.session import Session

    session = Session()
    session.open(DEFAULT_MODEL)
    print("No display: printing the default model's steps and checks (gradviz --help lists commands).\n")
    print(format_steps(session.recording, session.timeline))
    print()
    from ..core.textable import format_checks

    table = session.run_checks()
    print(format_checks(table))
    return 0 if table.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..core.i18n import system_language, using

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


def run() -> None:
    """The ``gradviz`` program: `main` on the process's arguments, then the process ends with its code.

    What the command made (a recording of 11,907 nodes is ~10^5 objects) lives until the process
    ends, and the interpreter's last collections would walk all of it (~0.35 s after ``check
    rnn-unrolled -p T=1700``) for memory the process gives back anyway: it is frozen out of their
    way (``gc.freeze``). The end is otherwise as usual: exit handlers run, output is flushed.
    (Not in `main`, which also runs inside other programs and tests.)
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line: gradviz's own as a notice, a script's with where it came from."""
    from ..core.errors import ChildWarning
    from ..core.recording import short_source

    if issubclass(category, ChildWarning):  # the model's child process printed it whole already
        print(str(message), file=sys.stderr)
    elif os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):  # raised by gradviz itself
        print(f"notice: {message}", file=sys.stderr)
    else:
        print(f"warning: {category.__name__}: {message} ({short_source(f'{filename}:{lineno}')})",
              file=sys.stderr)


def _run(args) -> int:
    """Run the parsed command, turning every failure into a message and an exit code."""
    from ..core.errors import GradvizError

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
