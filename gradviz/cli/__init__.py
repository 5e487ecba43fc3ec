"""The ``gradviz`` command line: the same core as the app, headless.

Exit codes: 0 success, 1 a check failed, 2 bad input (a clear message on stderr, no stack trace
unless ``--debug``). `registry` holds the subcommands (a decorator, as glue's registries do);
`show` the commands that print a recording, `write` those that write files, `main` the parser,
the app and the handling of every failure.
"""
from __future__ import annotations

from .main import bug_line, build_parser, main, run
from .registry import COMMANDS as _COMMANDS, DEFAULT_MODEL, command  # noqa: F401 - _COMMANDS: tests patch it
from .show import format_steps

__all__ = ["main", "run", "build_parser", "command", "DEFAULT_MODEL", "format_steps", "bug_line"]
