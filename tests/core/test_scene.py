"""The Scene: one step as drawn, moved step by step, against a fresh build and independent references."""
from __future__ import annotations

import numpy as np
import pytest

import gradviz
from gradviz.core.layout import layered_layout
from gradviz.core.scene import (DONE, FLOWING, IDLE, KINDS, THEMES, build_scene, elide, format_shape, format_tensor,
                                text_width)
from gradviz.core.scene.text import name_px
from gradviz.core.tensors import TensorData
from gradviz.core.timeline import BACKWARD_DONE, Stepper, Timeline


def _snapshot(scene):
    return (scene.status.copy(), scene.pending.copy(), scene.style.copy(), scene.edge_state.copy(), scene.current,
            [(f.sender, f.receiver, f.text) for f in scene.flowing],
            [scene.lines(g) for g in range(len(scene))], [scene.badges(g) for g in range(len(scene))])


def _same(a, b, where):
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=where)
        else:
            assert x == y, where


@pytest.mark.parametrize("name,rolled", [("mlp", False), ("repeated-layer", True), ("rnn-unrolled", False),
                                         ("sum-xy-plus-z", False)])
def test_stepping_equals_a_fresh_build_at_every_step(name, rolled):
    rec = gradviz.record(name)
    tl = Timeline(rec)
    lay = layered_layout(rec, rolled=rolled)
    stepper = Stepper(tl)
    scene = build_scene(rec, lay, stepper.state)
    stepper.step_changed.connect(scene.update)
    order = list(range(1, len(tl))) + list(range(len(tl) - 2, -1, -1)) + [len(tl) - 1, len(tl) // 2, 0, 3]
    for i in order:
        stepper.set_step(i)
        fresh = build_scene(rec, lay, tl.state_at(i))
        _same(_snapshot(scene), _snapshot(fresh), f"{name} step {i}")


def test_a_jump_touches_only_the_changed_nodes():
    """A jump within one phase: the Scene changes the changed nodes' arrays and forgets only their labels;
    every other node keeps its made lines (the same list object), and a jump equals a fresh build."""
    rec = gradviz.record("rnn-unrolled", params={"T": 40})
    tl = Timeline(rec)
    lay = layered_layout(rec)
    a, b = tl.first_backward + 2, len(tl) - 4
    assert tl.state_at(a).phase == tl.state_at(b).phase
    stepper = Stepper(tl, a)
    scene = build_scene(rec, lay, stepper.state)
    made = [scene.lines(g) for g in range(len(scene))]
    seen = []
    stepper.step_changed.connect(lambda state, changed: seen.append((changed, *scene.update(state, changed))))
    stepper.set_step(b)
    (changed, groups, rows, everything), = seen
    sa, sb = tl.state_at(a), tl.state_at(b)
    want = np.flatnonzero((sa.status != sb.status) | (sa.pending != sb.pending))
    want = np.union1d(want, [c for c in (sa.current, sb.current) if c is not None])
    np.testing.assert_array_equal(changed, want)
    linked = {p for g in changed.tolist() for p in scene.linked(int(lay.group_of[g]))}
    assert not everything and set(groups.tolist()) == linked
    assert 0 < len(linked) < len(scene)
    for g in range(len(scene)):
        assert (scene.lines(g) is made[g]) == (g not in linked), g
    _same(_snapshot(scene), _snapshot(build_scene(rec, lay, sb)), "jump")


def test_edge_states_follow_the_senders():
    rec = gradviz.record("repeated-layer", params={"k": 3})
    tl = Timeline(rec)
    for rolled in (False, True):
        lay = layered_layout(rec, rolled=rolled)
        for i in range(len(tl)):
            state = tl.state_at(i)
            scene = build_scene(rec, lay, state)
            # reference: a drawn edge is done once any gradient edge it stands for had its sender run
            want = np.full(len(lay.adj), IDLE)
            for k, (s, _d, _slot) in enumerate(rec.edges):
                if state.status[s] == BACKWARD_DONE:
                    want[lay.edge_of[k]] = DONE
            for s, d, slot, _g in state.flowing:
                k = rec.edges.index((s, d, slot)) if isinstance(rec.edges[0], tuple) else \
                    [tuple(e) for e in rec.edges].index((s, d, slot))
                want[lay.edge_of[k]] = FLOWING
            np.testing.assert_array_equal(scene.edge_state, want, err_msg=f"rolled={rolled} step {i}")
            assert not scene.edge_state[lay.input_edge_rows].any()


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_styles_come_from_the_one_theme_table(theme):
    rec = gradviz.record("mlp")
    tl = Timeline(rec)
    state = tl.state_at(tl.first_backward + 3)
    scene = build_scene(rec, layered_layout(rec), state, theme)
    th = THEMES[theme]
    for n in rec.nodes:
        st = scene.node_style(n.id)
        s = int(state.status[n.id])
        assert st.kind == n.kind and st.fill == th[n.kind][s], n
        assert st.text == (th["text"] if s and n.kind != "input" else th["text_dim"])
    assert scene.background == th["background"]
    assert scene.current_outline().color == th["current"] and scene.current == state.current
    assert {f.text for f in scene.flowing} == {format_tensor(g) for _s, _d, _slot, g in state.flowing}


def test_labels_are_cut_to_their_box_and_say_so():
    rec = gradviz.record("rnn-unrolled", params={"T": 4})
    tl = Timeline(rec)
    scene = build_scene(rec, layered_layout(rec), tl.state_at(len(tl) - 1))
    for g in range(len(scene)):
        lines = scene.lines(g)
        if g >= len(rec.nodes):  # a proxy of a shared weight: its short name, whole, at full size
            assert lines == [rec.nodes[scene.members[g][0]].leaf.rsplit(".", 1)[-1]] and scene.name_px(g) == 12
            continue
        assert lines[0] == rec.nodes[g].label.split("\n")[0]  # names stay whole
        assert len(lines) <= 4
        for line in lines[1:]:
            assert text_width(line) <= scene.text_room(g) + 1e-9, line
    assert scene.lines(rec.root)[-1] == f"grad {format_tensor(rec.backward[0].grad_outputs[0])}"
    # a long value: cut where it no longer fits, with the ellipsis
    text, room = "grad [554, -106, -785]", 113.7
    short = elide(text, room)
    assert short.endswith("…") and text.startswith(short[:-1]) and short.startswith("grad [554, -106")
    assert text_width(short) <= room < text_width(text[:len(short)] + "…")  # one more character would not fit
    assert elide("short", 113.7) == "short"
    assert text_width("MulBackward0", bold=True) > text_width("MulBackward0") > 0


def test_names_shrink_to_fit_their_box_and_are_cut_only_past_the_smallest_size():
    rec = gradviz.record("mlp")
    scene = build_scene(rec, layered_layout(rec), None)
    for g in range(len(scene)):
        name, px = scene.lines(g)[0], scene.name_px(g)
        assert text_width(name, px, bold=True) <= scene.text_room(g)
        assert px == 12 or text_width(name, px + 1, bold=True) > scene.text_room(g)  # the largest size that fits
    long = next(g for g in range(len(scene)) if rec.nodes[g].name == "LogSoftmaxBackward0")
    assert scene.lines(long)[0] == "LogSoftmaxBackward0" and 8 <= scene.name_px(long) < 12
    assert name_px("x" * 80, 140.0) == 8.0 and elide("x" * 80, 140.0, 8.0, bold=True).endswith("…")


def test_formatters():
    assert format_shape(()) == "scalar" and format_shape((5,)) == "(5,)" and format_shape((2, 3)) == "2×3"
    t = TensorData(shape=(2,), dtype="float32", device="cpu", value=np.array([1.5, -2.0]))
    assert format_tensor(t) == "[1.5, -2]" and format_tensor(None) == "None"


def test_badges_and_translation():
    rec = gradviz.record("mlp")
    tl = Timeline(rec)
    scene = build_scene(rec, layered_layout(rec), tl.state_at(tl.first_backward))
    texts = {g: [b.text for b in scene.badges(g)] for g in range(len(scene))}
    for n in rec.nodes:
        saved = sum(isinstance(v, TensorData) for v in n.saved.values())
        assert (f"{saved} saved" in texts[n.id]) == bool(saved)
        if n.kind != "input" and scene.status[n.id] != BACKWARD_DONE:
            w = int(scene.pending[n.id])
            assert (f"waits {w}" if w else "ready") in texts[n.id]
    scene.set_translator(lambda text: text.upper())
    assert any("SAVED" in b.text for g in range(len(scene)) for b in scene.badges(g))


def test_a_scene_without_positions_is_what_dot_needs():
    rec = gradviz.record("repeated-layer", params={"k": 2})
    tl = Timeline(rec)
    state = tl.state_at(tl.first_backward + 2)
    flat, placed = build_scene(rec, None, state), build_scene(rec, layered_layout(rec), state)
    assert [flat.lines(i) for i in range(len(rec.nodes))] == [placed.lines(i) for i in range(len(rec.nodes))]
    np.testing.assert_array_equal(flat.style, placed.style)
    assert [f.text for f in flat.flowing] == [f.text for f in placed.flowing]
    with pytest.raises(ValueError, match="unknown theme"):
        flat.set_theme("neon")
    assert KINDS == ("op", "custom", "leaf", "input")


@pytest.mark.parametrize("direction", ["lr", "tb"])
def test_fold_marks_clear_every_badge_and_node(direction):
    """A folded chain's "↪ row k" tab is readable: no badge (the first node's "waits" tab) or node covers it."""
    rec = gradviz.record("rnn-unrolled", params={"T": 40})
    tl = Timeline(rec)
    lay = layered_layout(rec, direction, fold=12)
    marks = []
    for step in (tl.first_backward, tl.first_backward + 40, len(tl) - 1):
        scene = build_scene(rec, lay, tl.state_at(step))
        marks = scene.fold_marks()
        assert len(marks) >= 2
        tabs = [b for g in range(len(scene)) for b in scene.badges(g)]
        boxes = [scene.box(g) for g in range(len(scene))]
        for m in marks:
            for x, y, w, h in [(b.x, b.y, b.w, b.h) for b in tabs] + boxes:
                apart = m.x + m.w <= x or x + w <= m.x or m.y + m.h <= y or y + h <= m.y
                assert apart, (m.text, (m.x, m.y, m.w, m.h), (x, y, w, h))
