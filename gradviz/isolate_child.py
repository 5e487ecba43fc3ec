"""The child side of `gradviz.core.isolate`: one interpreter that makes one recording, then ends.

It runs the command line, so it sits beside it, above the core. ``python -m gradviz.isolate_child [--max-memory MB]`` limits its own data segment, imports torch
and gradviz (the slow part of starting, done before any run is asked for, so a spare child can wait
ready, and says ``gradviz-isolate: ready``), then reads one request from stdin, a JSON line ``{"argv": [...], "cwd": "..."}``, says
``gradviz-isolate: begin`` on stdout and runs ``gradviz ARGV`` (``record TARGET -o FILE --progress``).
Its exit code is the command's; if the parent dies first (SIGKILL, SIGTERM), a watch thread ends the
child's whole process group within half a second. An empty stdin (the parent went away, or did not need this child)
ends it at once with 0 and nothing done.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
import time

__all__ = ["main"]


def _limit(max_memory_mb: float) -> None:
    """Cap this process's data segment (heap, mmap'd tensors) at `max_memory_mb` MiB."""
    limit = int(max_memory_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _watch_parent(interval: float = 0.5) -> None:
    """End this process group when the parent is gone (killed outright, it could not stop this run itself)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="gradviz-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Wait for one request on stdin and run it; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _watch_parent()
    if len(argv) == 2 and argv[0] == "--max-memory":
        _limit(float(argv[1]))
    # the imports a recording needs, made before the request comes (a spare child waits here, warm)
    import torch  # noqa: F401

    from gradviz import cli
    from gradviz.core import checks, session, storage  # noqa: F401
    from gradviz.core.isolate import TAG

    print(f"{TAG} ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    os.chdir(request["cwd"])
    print(f"{TAG} begin", flush=True)
    return cli.main(list(request["argv"]))


if __name__ == "__main__":  # pragma: no cover - run as the child
    code = main()
    # the file is written (atomically, synced) and the messages are out: skip the interpreter's teardown,
    # which with torch loaded costs longer than a small recording
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
