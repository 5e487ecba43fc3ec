"""The timeline: forward then backward steps, node states, waiting counts, leaf gradients as they build."""
import numpy as np
import pytest

from gradviz.core import record
from gradviz.core.timeline import BACKWARD_DONE, COMPUTED, NOT_REACHED, Stepper, Timeline


@pytest.fixture(scope="module")
def rnn():
    return record("rnn-unrolled", params={"T": 40})


def test_steps_are_forward_then_backward(rnn):
    tl = Timeline(rnn)
    phases = [s.phase for s in tl.steps]
    assert phases[0] == "start"
    assert phases == ["start"] + ["forward"] * len(rnn.forward) + ["backward"] * len(rnn.backward)
    assert [s.node for s in tl.steps if s.phase == "backward"] == rnn.backward_order
    assert tl.phase_start("backward") == 1 + len(rnn.forward) and tl.phase_start("end") == len(tl) - 1


def test_random_access_equals_stepping_one_at_a_time(rnn):
    tl = Timeline(rnn)
    stepper = Stepper(tl)
    for i in range(1, len(tl)):
        state = stepper.next()
        direct = tl.state_at(i)
        assert state.step == direct.step
        np.testing.assert_array_equal(state.status, direct.status)
        np.testing.assert_array_equal(state.pending, direct.pending)
    for i in range(len(tl) - 1, -1, -7):
        state = stepper.set_step(i)
        np.testing.assert_array_equal(state.status, tl.state_at(i).status)


def test_pending_counts_follow_the_engine(rnn):
    tl = Timeline(rnn)
    start = tl.state_at(0)
    indeg = np.bincount([d for _, d, _ in rnn.edges], minlength=len(rnn.nodes))
    np.testing.assert_array_equal(start.pending, indeg)
    for i in range(tl.phase_start("backward"), len(tl)):
        state = tl.state_at(i)
        node = state.current
        # a node runs only once every gradient it waits for has arrived
        assert state.pending[node] == 0
        assert state.status[node] == BACKWARD_DONE
    end = tl.state_at(-1)
    assert (end.pending == 0).all()
    ran = set(rnn.backward_order)
    assert all(end.status[n] == BACKWARD_DONE for n in ran)


def test_forward_steps_compute_nodes_in_order(rnn):
    tl = Timeline(rnn)
    start = tl.state_at(0)
    leaves_inputs = {n.id for n in rnn.nodes if n.kind in ("leaf", "input")}
    assert set(np.flatnonzero(start.status == COMPUTED)) == leaves_inputs
    assert (start.status[[n.id for n in rnn.nodes if n.kind == "op"]] == NOT_REACHED).all()
    last_forward = tl.state_at(tl.phase_start("backward") - 1)
    assert (last_forward.status >= COMPUTED).all()


def test_shared_weight_waits_for_every_use():
    rec = record("repeated-layer", params={"k": 3})
    tl = Timeline(rec)
    acc = next(n.id for n in rec.nodes if n.leaf == "layer.weight")
    seen = []
    for i in range(tl.phase_start("backward"), len(tl)):
        state = tl.state_at(i)
        leaf = state.leaf("layer.weight")
        seen.append((int(state.pending[acc]), leaf.arrived, leaf.accumulated))
    # waits 3, 2, 1, 0 as the uses send their gradients; .grad is set only when the node runs
    assert [p for p, _, _ in seen][0] == 3 and seen[-1] == (0, 3, True)
    pend = [p for p, _, _ in seen]
    assert pend == sorted(pend, reverse=True)
    assert [a for _, a, _ in seen] == [3 - p for p in pend]
    assert sum(1 for *_, acc_done in seen if acc_done) == 1
    final = tl.state_at(-1).leaf("layer.weight")
    np.testing.assert_allclose(final.buffer.value, final.grad.value, rtol=1e-6)


def test_flowing_edges_carry_the_sent_gradients():
    rec = record("repeated-layer")
    tl = Timeline(rec)
    for i in range(tl.phase_start("backward"), len(tl)):
        state = tl.state_at(i)
        ev = rec.backward[state.step.event]
        sent = {(d, slot) for s, d, slot in rec.edges if s == state.current}
        assert {(d, slot) for _, d, slot, _ in state.flowing} == sent
        for _, _, slot, g in state.flowing:
            assert g is ev.grad_inputs[slot]


def test_stepper_emits_changed_nodes():
    rec = record("repeated-layer")
    stepper = Stepper(Timeline(rec))
    seen = []
    stepper.step_changed.connect(lambda state, changed: seen.append((state.step.index, set(changed.tolist()))))
    stepper.next()
    stepper.last()
    stepper.prev()
    assert [s for s, _ in seen] == [1, len(stepper) - 1, len(stepper) - 2]
    assert rec.forward[0].node in seen[0][1]
    acc = next(n.id for n in rec.nodes if n.leaf == "layer.weight")
    assert acc in seen[2][1]
    stepper.set_step(stepper.index)
    assert len(seen) == 3, "no move, no event"
    with pytest.raises(IndexError):
        Timeline(rec).state_at(10_000)
