"""The main window's stepping: the session's step commands, playing, and the panels following the step.

`QtPlayback` is a mixin of `QtMainWindow`. While playing the graph follows every step and the other
panels (transport, event list, accumulation, flow marker, inspector) catch up at most 25 times a second;
pausing brings them up to date.
"""
from __future__ import annotations

from PySide6.QtCore import QTimer

__all__ = ["QtPlayback"]


class QtPlayback:
    """Step, play and pause; show each step in the panels."""

    def _init_playback(self) -> None:
        """The play timer, and the 40 ms timer that lets the panels catch up while playing."""
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._on_play_tick)
        self._panels_stale = False
        self._panels_timer = QTimer(self)
        self._panels_timer.setSingleShot(True)
        self._panels_timer.setInterval(40)
        self._panels_timer.timeout.connect(self._flush_panels)

    def step_to(self, i: int) -> None:
        """Go to step `i` of the timeline."""
        self.session.step_to(i)

    def step_next(self) -> None:
        """One step forward."""
        self.session.next()

    def step_prev(self) -> None:
        """One step back."""
        self.session.prev()

    def step_first(self) -> None:
        """Jump to the start."""
        self.session.first()

    def step_last(self) -> None:
        """Jump to the end of backward."""
        self.session.last()

    def jump_backward(self) -> None:
        """Jump to the first backward step."""
        self.session.go_to_phase("backward")

    def toggle_play(self) -> None:
        """Play or pause."""
        if self.play_timer.isActive():
            self.stop()
        elif self.stepper is not None:
            if self.stepper.index >= len(self.timeline) - 1:
                self.session.first()
            self.play_timer.start(max(1, 1000 // self.transport.steps_per_second()))
            self._play_icon(True)

    def stop(self) -> None:
        """Pause playing."""
        self.play_timer.stop()
        self._play_icon(False)
        self._panels_timer.stop()
        self._flush_panels()

    def is_playing(self) -> bool:
        return self.play_timer.isActive()

    def _on_speed_changed(self, _index: int) -> None:
        if self.play_timer.isActive():
            self.play_timer.setInterval(max(1, 1000 // self.transport.steps_per_second()))

    def _on_play_tick(self) -> None:
        if self.stepper is None or self.stepper.index >= len(self.timeline) - 1:
            self.stop()
            return
        self.session.next()

    def _on_step_changed(self, state, changed) -> None:
        if self.play_timer.isActive() and changed is not None:
            # playing: the graph follows every step; the other views catch up at most 25 times a second
            self._panels_stale = True
            if not self._panels_timer.isActive():
                self._panels_timer.start()
            return
        self._update_panels(state, changed)

    def _flush_panels(self) -> None:
        if self._panels_stale and self.stepper is not None:
            self._panels_stale = False
            self._update_panels(self.stepper.state, None if self.play_timer.isActive() else ())

    def _update_panels(self, state, changed) -> None:
        """Show `state` in the transport, event list, accumulation, flow marker and inspector."""
        tl = self.timeline
        self.transport.set_state(state, len(tl), state.step.describe(self.recording))
        self.events.set_step(state.step.index)
        self.flow.set_state(state)
        self.accumulation.set_state(state)
        sel = self.inspector.node_id
        if not self._pinned and state.current is not None:
            # the Inspector follows the current step unless the user pinned a node by selecting it
            if sel != state.current or changed is None or state.phase == "backward":
                self.inspector.show_node(self.recording, state.current, state, tl)
        elif sel is not None and (changed is None or not len(changed) or sel in changed) and state.phase == "backward":
            self.inspector.show_node(self.recording, sel, state, tl)
