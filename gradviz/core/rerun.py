"""What re-runs a recorded model: the live half of a recording, kept apart from the data.

A `Recording` is data only. The checks that run model code again (finite differences, gradcheck
of a custom Function, the numerical local rule) need live objects as well: the runner that calls
the model, each custom Function's recorded call, and the modules whose parameters they perturb.
`Rerun` holds those. It is never saved: a recording opened from a file has none.

`gradviz.record` returns only the Recording and remembers its Rerun here, weakly keyed by the
recording (`rerun_of`), so ``gradviz.run_checks(rec)`` can find it while `rec` lives and the
live tensors go when `rec` goes.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from .recording import Recording

__all__ = ["Rerun", "RecordedRun", "remember", "rerun_of"]


@dataclass(eq=False)
class Rerun:
    """The live objects that re-run a recorded model; never serialised.

    Attributes
    ----------
    runner : Runner
        Calls the model again (``runner.call(dtype=...)``) and normalises what it returns
        (see `gradviz.core.targets`).
    replays : dict of int to tuple
        For each custom Function node id: ``((apply, args, kwargs), Function class or None)``, the
        call as recorded, so the node can be run again at its recorded inputs.
    modules : list of torch.nn.Module
        The modules that ran, in order of first use.
    warned : set
        The warnings (category, text) the model gave while it was recorded: its re-runs show
        each of them, and each new one, once (`gradviz.core.sandbox.Sandbox`'s ``warned``).
    """

    runner: Any
    replays: dict = field(default_factory=dict, repr=False)
    modules: list = field(default_factory=list, repr=False)
    warned: set = field(default_factory=set, repr=False)


@dataclass(eq=False)
class RecordedRun:
    """One run of `gradviz.core.recorder.record_run`: the data and what re-runs it."""

    recording: Recording
    rerun: Rerun


_RERUNS: "weakref.WeakKeyDictionary[Recording, Rerun]" = weakref.WeakKeyDictionary()


def remember(rec: Recording, rerun: Rerun) -> None:
    """Keep `rerun` for `rec` for as long as `rec` lives."""
    _RERUNS[rec] = rerun


def rerun_of(rec: Recording) -> Rerun | None:
    """The `Rerun` remembered for `rec`, or None (opened from a file, or made some other way)."""
    return _RERUNS.get(rec)
