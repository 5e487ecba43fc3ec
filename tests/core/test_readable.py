"""Readable at every size, in the layout and the Scene: proxies of shared parameters, long chains folded."""

import numpy as np
import pytest

from gradviz.core import record
from gradviz.core.fold import FOLD_ASPECT
from gradviz.core.edges import edge_segments, edge_spans
from gradviz.core.layout import NODE_H, NODE_W, layered_layout
from gradviz.core.proxies import MAX_DRAWN_SPAN, PROXY_H
from gradviz.core.scene import build_scene
from gradviz.core.timeline import Stepper, Timeline


def _overlaps(lay) -> int:
    """Pairs of drawn boxes that overlap (sorted sweep along x)."""
    lo, hi = lay.pos - lay.size / 2, lay.pos + lay.size / 2
    order = np.argsort(lo[:, 0])
    hits = 0
    for k, i in enumerate(order.tolist()):
        for j in order[k + 1:].tolist():
            if lo[j, 0] >= hi[i, 0]:
                break
            hits += lo[j, 1] < hi[i, 1] and lo[i, 1] < hi[j, 1]
    return hits


@pytest.mark.parametrize("direction", ["lr", "tb"])
def test_a_shared_weight_is_drawn_as_proxies_next_to_its_far_uses(direction):
    rec = record("rnn-unrolled", params={"T": 5})
    lay = layered_layout(rec, direction)
    scene = build_scene(rec, lay, None)
    before = layered_layout(rec, direction, proxies=False)
    assert edge_spans(before).max() > 10  # without proxies a weight's edge runs across the picture
    assert edge_spans(lay).max() <= MAX_DRAWN_SPAN
    proxies = np.flatnonzero(lay.proxy_of >= 0)
    weight = rec.leaves["cell.weight_hh"].node
    mine = proxies[lay.proxy_of[proxies] == weight]
    assert len(mine) == 4  # five uses: the closest keeps its edge to the true node, the other four get a proxy
    for p in mine.tolist():
        users = lay.adj[lay.adj[:, 1] == p, 0]
        assert len(users) == 1 and lay.layer[p] == lay.layer[users[0]] + 1  # right beside its use
        assert lay.members[p] == [weight] and scene.lines(p) == ["weight_hh"]
        assert lay.size[p, 1] == PROXY_H < NODE_H
    # the recording's edges are all still drawn, each to the true node or a proxy of it
    for k, (s, d, _slot) in enumerate(rec.edges):
        row = lay.edge_of[k]
        drawn = lay.adj[row, 1]
        assert lay.adj[row, 0] == s and (drawn == d or lay.proxy_of[drawn] == d)
    assert _overlaps(lay) == 0
    # selecting a proxy selects its true node, whose outline comes with one around every proxy
    scene.selected = int(lay.group_of[lay.members[int(mine[0])][0]])
    assert scene.selected == weight
    assert sorted(o.group for o in scene.linked_outlines()) == sorted(mine.tolist())
    assert sorted(scene.linked(int(mine[1]))) == sorted([weight, *mine.tolist()])


def test_small_models_keep_their_look():
    # a parameter used twice keeps its edges, and no built-in model at its defaults but the RNN gets proxies
    for name in ("mlp", "repeated-layer", "linear-function", "sum-xy-plus-z"):
        rec = record(name)
        lay, plain = layered_layout(rec), layered_layout(rec, proxies=False, fold=None)
        assert (lay.proxy_of < 0).all() and lay.fold is None
        np.testing.assert_array_equal(lay.pos, plain.pos)


def test_proxies_show_their_true_nodes_state_at_every_step():
    rec = record("rnn-unrolled", params={"T": 4})
    lay = layered_layout(rec)
    tl = Timeline(rec)
    stepper = Stepper(tl)
    scene = build_scene(rec, lay, stepper.state)
    stepper.step_changed.connect(scene.update)
    proxies = np.flatnonzero(lay.proxy_of >= 0)
    assert len(proxies)
    reached = False
    for step in range(1, len(tl)):
        stepper.set_step(step)
        np.testing.assert_array_equal(scene.status[proxies], scene.status[lay.proxy_of[proxies]])
        np.testing.assert_array_equal(scene.style[proxies], scene.style[lay.proxy_of[proxies]])
        # a gradient sent to a shared weight arrives at the proxy beside its use
        for f in scene.flowing:
            if lay.proxy_of[f.receiver] >= 0:
                reached = True
                assert np.allclose(f.route[-1], lay.pos[f.receiver])
    assert reached and scene.status[proxies].max() == 2  # they ran backward with their true node


@pytest.mark.parametrize("direction", ["lr", "tb"])
def test_a_long_chain_folds_into_rows_of_a_page_shape(direction):
    rec = record("rnn-unrolled", params={"T": 120})
    lay = layered_layout(rec, direction)
    assert lay.fold is not None and len(lay.fold.rows) > 2
    lo, hi = (lay.pos - lay.size / 2).min(0), (lay.pos + lay.size / 2).max(0)
    w, h = hi - lo
    assert FOLD_ASPECT / 1.6 < w / h < FOLD_ASPECT * 1.6  # a page, not a strip
    assert edge_spans(lay).max() <= MAX_DRAWN_SPAN
    assert _overlaps(lay) == 0
    # time order kept: reading row after row, forward position along the row, the layers run from the
    # first step (the highest layer) to the loss (layer 0)
    axis = 0 if direction == "lr" else 1
    row = lay.fold.row_of_layer[lay.layer]
    reading = np.lexsort((lay.pos[:, axis], row))
    assert np.all(np.diff(lay.layer[reading]) <= 0)
    # every fold edge leaves its row at the row's end and comes in at the next row's start, in the gap
    crossing = [r for r, (s, d) in enumerate(lay.adj.tolist()) if row[s] != row[d]]
    assert crossing and all(r in lay.bends for r in crossing)
    a, b, owner = edge_segments(lay)
    assert np.isfinite(a).all() and set(crossing) <= set(owner.tolist())
    scene = build_scene(rec, lay, None)
    marks = scene.fold_marks()
    assert len(marks) == len(lay.fold.rows) - 1 and marks[0].text.endswith(" 2")


def test_fold_can_be_asked_for_or_refused():
    rec = record("rnn-unrolled", params={"T": 20})
    assert layered_layout(rec, fold=None).fold is None
    lay = layered_layout(rec, fold=9)
    assert lay.fold.per_row == 9 and len(lay.fold.rows) == -(-(lay.layer.max() + 1) // 9)
    assert edge_spans(lay).max() <= MAX_DRAWN_SPAN
    with pytest.raises(ValueError):
        layered_layout(rec, fold=-2)


def test_a_1700_step_rnn_has_no_edge_longer_than_three_layers():
    rec = record("rnn-unrolled", params={"T": 1700})
    for direction in ("lr", "tb"):
        lay = layered_layout(rec, direction)
        assert edge_spans(lay).max() <= 3
        w, h = (lay.pos + lay.size / 2).max(0) - (lay.pos - lay.size / 2).min(0)
        assert max(w / h, h / w) < 2.0


def test_collapse_draws_each_block_of_uses_as_one_box_with_its_gradients_in_and_out():
    rec = record("rnn-unrolled", params={"T": 12})
    lay = layered_layout(rec, collapse=3)
    cells = sorted(lay.titles, key=lambda g: lay.titles[g][1])  # in time order
    assert len(cells) == 4  # 12 steps in blocks of 3
    assert [lay.titles[g][1:3] for g in cells] == [(1, 3), (4, 6), (7, 9), (10, 12)]
    for g in cells:
        assert all(rec.nodes[v].module == "cell" for v in lay.members[g])
        assert lay.titles[g][3] == len(lay.members[g])
    # the gradient goes from each block to the one before it in time, and each block sends to the weights
    between = {(int(s), int(d)) for s, d in lay.adj.tolist() if s in lay.titles and d in lay.titles and s != d}
    first_use = {g: lay.titles[g][1] for g in cells}
    assert sorted(first_use[d] for _s, d in between) == [1, 4, 7]
    assert edge_spans(lay).max() <= MAX_DRAWN_SPAN
    tl = Timeline(rec)
    stepper = Stepper(tl)
    scene = build_scene(rec, lay, stepper.state)
    stepper.step_changed.connect(scene.update)
    assert scene.lines(cells[1]) == ["cell", "uses 4–6", f"{len(lay.members[cells[1]])} × node"]
    for step in (5, tl.first_backward + 3, len(tl) - 1, 2):
        stepper.set_step(step)
        fresh = build_scene(rec, lay, tl.state_at(step))
        np.testing.assert_array_equal(scene.status, fresh.status)
        np.testing.assert_array_equal(scene.pending, fresh.pending)
        for f in scene.flowing:
            assert f.sender != f.receiver  # gradients inside a block are not drawn as arrows
    with pytest.raises(ValueError):
        layered_layout(rec, collapse="sometimes")


def test_a_collapsed_1700_step_rnn_is_legible_whole_on_one_png():
    from gradviz.core.pages import LEGIBLE_SCALE, plan_image

    rec = record("rnn-unrolled", params={"T": 1700})
    scene = build_scene(rec, layered_layout(rec, collapse=20), None)
    plan = plan_image(scene, None, None, 16384, 16384 * 8192)
    assert plan.source == scene.bounds and plan.scale >= LEGIBLE_SCALE and not plan.notes


def test_an_unrouted_long_edge_of_a_folded_layout_is_drawn_as_short_stubs():
    # without proxies, the weights' edges span up to 60 layers: too many to route, drawn as a stub at each end
    rec = record("rnn-unrolled", params={"T": 20})
    lay = layered_layout(rec, proxies=False, fold=9)
    a, b, owner = edge_segments(lay)
    long_rows = np.flatnonzero(edge_spans(lay) > 8)
    assert len(long_rows)
    stub = np.isin(owner, long_rows)
    length = np.hypot(*(b[stub] - a[stub]).T)
    assert length.max() <= 2 * (200 - NODE_W) + 1e-6  # within two layer gaps, however far the other end is
