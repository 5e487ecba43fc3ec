"""The part of a Session a lesson uses, until the core's `Session` lands (same method names).

`LessonDriver` records a target, holds its timeline and stepper, moves the step and runs the checks:
``open``, ``step_to``, ``go_to``, ``run_checks`` and the ``recording``, ``timeline``, ``stepper`` and
``checks`` properties, exactly as `gradviz.core.session.Session` names them.
"""
from __future__ import annotations

from ..core.checks import run_checks
from ..core.recorder import record
from ..core.timeline import Stepper, Timeline

__all__ = ["LessonDriver", "make_driver"]


class LessonDriver:
    """Record a target, step through it, run its checks (Qt-free)."""

    def __init__(self):
        self.recording = None
        self.timeline = None
        self.stepper = None
        self.checks = None
        self.target = None
        self.params = None

    def open(self, target, params=None):
        """Record `target` with `params` and go to its first step."""
        self.recording = record(target, params=params or None)
        self.target, self.params = target, dict(params or {})
        self.timeline = Timeline(self.recording)
        self.stepper = Stepper(self.timeline)
        self.checks = None
        return self.recording

    def step_to(self, i: int):
        """Move to timeline step `i`; return its state."""
        return self.stepper.set_step(i)

    def go_to(self, node_id: int, phase: str = "backward"):
        """Move to the step where node `node_id` runs in `phase`."""
        i = self.timeline.step_of(node_id, phase)
        if i is None:
            raise ValueError(f"node {node_id} does not run in {phase}")
        return self.step_to(i)

    def run_checks(self, strict: bool = False, finite_diff: bool = True):
        """Run every check of the recording and keep the table."""
        self.checks = run_checks(self.recording, strict=strict, finite_diff=finite_diff)
        return self.checks


def make_driver():
    """A fresh driver for one lesson run."""
    return LessonDriver()
