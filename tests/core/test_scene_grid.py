"""BoxGrid: a rectangle's boxes found through grid cells equal those found by testing every box."""
import numpy as np

import gradviz
from gradviz.core.layout import layered_layout
from gradviz.core.scene import build_scene
from gradviz.core.scene.grid import MAX_SPAN, BoxGrid


def _brute(lo, hi, x0, y0, x1, y1):
    return np.flatnonzero((hi[:, 0] >= x0) & (lo[:, 0] <= x1) & (hi[:, 1] >= y0) & (lo[:, 1] <= y1))


def test_grid_queries_equal_testing_every_box():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 10_000, (3000, 2))
    size = rng.uniform(0, 300, (3000, 2))
    size[:40] *= 60  # boxes much larger than a cell: kept on the list every query tests
    hi = lo + size
    grid = BoxGrid(lo, hi, cell=256)
    assert len(grid.big) >= 30 and len(grid.items) > len(lo) - len(grid.big)
    for _ in range(300):
        x0, y0 = rng.uniform(-500, 10_500, 2)
        w, h = rng.uniform(0, 2000, 2) * rng.choice([0, 1, 8])  # points, view-sized, most of the plane
        got = grid.query(x0, y0, x0 + w, y0 + h)
        np.testing.assert_array_equal(got, _brute(lo, hi, x0, y0, x0 + w, y0 + h))
    assert not len(grid.query(5, 5, 4, 4)) and not len(BoxGrid(np.zeros((0, 2)), np.zeros((0, 2))).query(0, 0, 1, 1))
    assert MAX_SPAN >= 4


def test_a_scene_finds_its_nodes_and_segments_in_a_rectangle_through_its_grid():
    rec = gradviz.record("rnn-unrolled", params={"T": 60})
    scene = build_scene(rec, layered_layout(rec), None)
    half = scene.size / 2
    x, y, w, h = scene.bounds
    for fx, fy in ((0.1, 0.2), (0.5, 0.5), (0.9, 0.7)):
        x0, y0 = x + fx * w, y + fy * h
        got = scene.nodes_in(x0, y0, x0 + 700, y0 + 400)
        np.testing.assert_array_equal(got, _brute(scene.pos - half, scene.pos + half, x0, y0, x0 + 700, y0 + 400))
        np.testing.assert_array_equal(scene.segments_in(x0, y0, x0 + 700, y0 + 400),
                                      _brute(scene.seg_lo, scene.seg_hi, x0, y0, x0 + 700, y0 + 400))
    g = len(scene) // 2
    assert scene.node_at(*scene.pos[g]) == g and scene.node_at(x - 1000, y - 1000) == -1
