"""gradviz pauses the cycle collector where it makes objects that live on, and leaves it as it found it.

Importing gradviz (torch's ~10^5 objects) and making the check table's rows run with the collector
off, and what they made is moved to the oldest generation before it is on again: no collection
walks those objects (a young collection may still run, over the few objects made since). Afterwards
the collector is on if it was on, off if it was off, and nothing stays frozen.
"""
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradviz.core import record, run_checks

ROOT = Path(__file__).resolve().parents[2]

# each collection: how many objects it walks (the generations it collects), at its start
WATCH = """
import gc
walked = []
def watch(phase, info):
    if phase == "start":
        walked.append(sum(len(gc.get_objects(generation=g)) for g in range(info["generation"] + 1)))
gc.callbacks.append(watch)
"""


@pytest.mark.parametrize("before", [True, False])
def test_importing_gradviz_walks_nothing_and_leaves_the_collector_as_it_was(before):
    code = (WATCH + f"{'gc.enable()' if before else 'gc.disable()'}\n"
            "import gradviz\n"
            "print(gc.isenabled(), gc.get_freeze_count(), max(walked, default=0))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         check=True).stdout.split()
    assert (out[0] == "True") == before and out[1] == "0"
    assert int(out[2]) < 1000  # (torch's import alone: collections of tens of thousands of objects)


def test_no_collection_walks_the_rows_of_every_node():
    rec = record("rnn-unrolled", params={"T": 200})  # 1,207 nodes: ~2,400 rows, their arrays and texts
    scope = {}
    exec(WATCH, scope)
    try:
        table = run_checks(rec, manual=False, finite_diff=False, gradcheck=False)
        gc.collect(0)  # (the next young collection: it finds the rows gone to the oldest generation)
    finally:
        gc.callbacks.remove(scope["watch"])
    assert len(table.rows) > 2400 and table.ok
    assert max(scope["walked"]) < 1000, scope["walked"]


def test_the_checks_leave_the_collector_as_it_was_and_nothing_frozen():
    rec = record("rnn-unrolled", params={"T": 3})
    assert gc.isenabled()
    table = run_checks(rec)
    assert table.ok and gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        run_checks(rec, finite_diff=False)
        assert not gc.isenabled()
    finally:
        gc.enable()
