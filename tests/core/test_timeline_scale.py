"""The timeline at scale: random access equals stepping, and memory linear in the graph."""
import functools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradviz.core import record
from gradviz.core.timeline import BACKWARD_DONE, COMPUTED, MAX_CHECKPOINTS, NOT_REACHED, Stepper, Timeline

MODELS = [("rnn-unrolled", {"T": 3}), ("rnn-unrolled", {"T": 400}), ("repeated-layer", {"k": 40}), ("mlp", {}),
          ("sum-xy-plus-z", {})]


@functools.lru_cache(maxsize=None)
def _recorded(i):
    target, params = MODELS[i]
    rec = record(target, params=params or None, keep_values=False)
    return rec, Timeline(rec)


def _reference(rec, i):
    """The state after step i, from the recording alone: forward ops computed in order, then
    each backward node run and its gradients sent, one edge at a time."""
    n = len(rec.nodes)
    status = np.full(n, NOT_REACHED, dtype=np.int8)
    pending = np.zeros(n, dtype=np.int32)
    for _, d, _ in rec.edges:
        pending[d] += 1
    position = {ev.index: p for p, ev in enumerate(rec.forward)}
    for node in rec.nodes:
        p = position.get(node.forward_event)
        if node.kind in ("leaf", "input") or p is None or p < i:
            status[node.id] = COMPUTED
    for ev in rec.backward[:max(0, i - len(rec.forward))]:
        status[ev.node] = BACKWARD_DONE
        for s, d, _ in rec.edges:
            if s == ev.node:
                pending[d] -= 1
    return status, pending


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.integers(0, len(MODELS) - 1), fraction=st.floats(0, 1))
def test_state_at_any_step_equals_the_state_reached_step_by_step(model, fraction):
    rec, tl = _recorded(model)
    i = round(fraction * (len(tl) - 1))
    state = tl.state_at(i)
    status, pending = _reference(rec, i)
    np.testing.assert_array_equal(state.status, status)
    np.testing.assert_array_equal(state.pending, pending)
    # and the stepper, moved one step at a time from a checkpoint's neighbour, agrees
    stepper = Stepper(tl, max(0, i - 70))
    while stepper.index < i:
        stepper.next()
    np.testing.assert_array_equal(stepper.state.status, status)
    np.testing.assert_array_equal(stepper.state.pending, pending)


def test_every_step_of_a_long_timeline_equals_stepping_one_by_one():
    rec, tl = _recorded(1)
    assert tl.interval > 64, "the timeline is long enough to space its checkpoints out"
    stepper = Stepper(tl)
    for i in range(1, len(tl)):
        state = stepper.next()
        direct = tl.state_at(i)
        np.testing.assert_array_equal(state.status, direct.status)
        np.testing.assert_array_equal(state.pending, direct.pending)


def test_changed_nodes_are_numpy_arrays_of_exactly_the_moved_nodes():
    rec, tl = _recorded(2)
    stepper = Stepper(tl)
    got = []
    stepper.step_changed.connect(lambda state, changed: got.append(changed))
    for i in range(1, len(tl)):
        old = stepper.state
        new = stepper.next()
        moved = set(np.flatnonzero((old.status != new.status) | (old.pending != new.pending)).tolist())
        assert isinstance(got[-1], np.ndarray)
        current = {c for c in (old.current, new.current) if c is not None}
        assert set(got[-1].tolist()) - current == moved - current
    stepper.set_step(3)
    assert isinstance(got[-1], np.ndarray)


def test_checkpoints_stay_a_fixed_multiple_of_one_state():
    # bytes, not time: the stored copies of the state never exceed MAX_CHECKPOINTS + 1 states,
    # and everything the timeline keeps is linear in nodes + edges + steps
    for T in (50, 400, 1500):
        rec = record("rnn-unrolled", params={"T": T}, keep_values=False)
        tl = Timeline(rec)
        state = tl.state_at(0)
        one = state.status.nbytes + state.pending.nbytes
        assert tl.checkpoint_bytes <= (MAX_CHECKPOINTS + 1) * one
        size = len(rec.nodes) + len(rec.edges) + len(tl)
        assert tl.nbytes <= (MAX_CHECKPOINTS + 1) * one + 40 * size
