"""The pure Recording and its Rerun: what re-runs the model lives apart from the data."""
from __future__ import annotations

import dataclasses
import gc

import gradviz
from gradviz.core import Cancelled, Document, RecordedRun, Rerun, record_run, rerun_of
from gradviz.core.recording import Recording


def test_recording_is_data_only():
    names = {f.name for f in dataclasses.fields(Recording)}
    assert not names & {"runner", "replays", "modules", "stored_checks"}


def test_record_run_gives_the_recording_and_its_rerun():
    run = record_run("linear-function")
    assert isinstance(run, RecordedRun) and isinstance(run.rerun, Rerun)
    custom = [n.id for n in run.recording.nodes if n.kind == "custom"]
    assert custom and set(custom) <= set(run.rerun.replays)
    assert run.rerun.runner.name == "linear-function"
    # the documented gradviz.record remembers it too, so gradviz.run_checks(rec) re-runs the model
    assert rerun_of(run.recording) is run.rerun


def test_run_checks_explicit_rerun_then_registry_then_skip():
    rec = gradviz.record("sum-xy-plus-z")
    fd = [r for r in gradviz.run_checks(rec).rows if r.kind == "finite-diff"]
    assert fd and all(r.status == "pass" for r in fd)
    # a copy of the data has no Rerun remembered: finite differences are skipped, with the reason
    bare = dataclasses.replace(rec)
    assert rerun_of(bare) is None
    skipped = [r for r in gradviz.run_checks(bare).rows if r.kind == "finite-diff"]
    assert skipped and all(r.status == "skipped" and "opened from a file" in r.detail for r in skipped)
    # given explicitly, the Rerun is used
    again = [r for r in gradviz.run_checks(bare, rerun=rerun_of(rec)).rows if r.kind == "finite-diff"]
    assert [r.status for r in again] == ["pass"] * len(fd)


def test_the_registry_does_not_keep_a_recording_alive():
    import weakref

    rec = gradviz.record("mlp")
    rerun = weakref.ref(rerun_of(rec))
    gone = weakref.ref(rec)
    del rec
    gc.collect()
    assert gone() is None and rerun() is None


def test_cancelled_is_one_class_wherever_it_is_imported():
    from gradviz.core.errors import Cancelled as from_errors
    from gradviz.core.recorder import Cancelled as from_recorder

    assert from_recorder is from_errors is Cancelled


def test_document_holds_the_recording_and_its_checks():
    rec = gradviz.record("sum-xy-plus-z")
    doc = Document(rec, gradviz.run_checks(rec))
    assert doc.recording is rec and doc.checks.ok
