"""Run gradviz commands under a memory and time cap, each in its own process; print the results as JSON.

Usage: ``python capped_cli.py RUNS.json`` where RUNS.json holds ``[{"argv": [...], "cwd": "..."}, ...]``.
gradviz and torch are imported once; each command then runs in a forked child with ``RLIMIT_AS``
and an alarm set, its stdout and stderr in files, exactly as ``python -m gradviz.cli ARGV`` would
exit. The result per run: exit code (negative: killed by that signal), stdout, stderr, the child's
peak resident memory (from ``wait4``) and its wall time.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time

ADDRESS_SPACE = int(os.environ.get("CAPPED_AS_MB", "2048")) << 20  # torch alone maps ~650 MB
SECONDS = int(os.environ.get("CAPPED_SECONDS", "60"))


def run_one(argv: list[str], cwd: str) -> dict:
    from gradviz.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: one command, as the gradviz executable would run it
            try:
                os.chdir(cwd)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
                signal.alarm(SECONDS)
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - what Python would print at exit
                    import traceback

                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(locals().get("code", 70))
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"argv": argv, "code": code, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "max_rss_mb": usage.ru_maxrss / 1024,
                "seconds": seconds}


def main() -> None:
    import torch  # noqa: F401 - imported before forking, as the CLI's own import does

    import gradviz.cli  # noqa: F401
    import gradviz.core.storage  # noqa: F401

    with open(sys.argv[1]) as fh:
        runs = json.load(fh)
    print(json.dumps([run_one(r["argv"], r["cwd"]) for r in runs]))


if __name__ == "__main__":
    main()
