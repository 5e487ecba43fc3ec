"""A gradient's value on its arrow covers no node and no other value, at every backward step."""
from pathlib import Path

import numpy as np
import pytest

from gradviz.core import Timeline, record
from gradviz.core.layout import layered_layout
from gradviz.core.scene import build_scene

NET20 = str(Path(__file__).resolve().parents[1] / "qt" / "data" / "net20.py")
CASES = [("sum-xy-plus-z", {}), ("linear-function", {}), ("repeated-layer", {}),
         ("repeated-layer", {"k": 3, "n": 3, "tanh": True}), ("rnn-unrolled", {}), ("mlp", {}), (NET20, {})]


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("target,params", CASES, ids=[f"{t.split('/')[-1]}{p or ''}" for t, p in CASES])
def test_flowing_values_cover_no_node_and_no_other_value(target, params):
    rec = record(target, params=params)
    tl = Timeline(rec)
    scene = build_scene(rec, layered_layout(rec), tl.state_at(0))
    labels = 0
    for i in range(tl.first_backward, len(tl)):
        scene.update(tl.state_at(i), None)
        boxes = [f.label_box for f in scene.flowing if f.text]
        labels += len(boxes)
        for k, box in enumerate(boxes):
            x, y, w, h = box
            b = scene.boxes
            hit = (b[:, 0] < x + w) & (x < b[:, 0] + b[:, 2]) & (b[:, 1] < y + h) & (y < b[:, 1] + b[:, 3])
            assert not hit.any(), f"step {i}: the value {scene.flowing[k].text!r} covers node {np.flatnonzero(hit)}"
            assert not any(_overlap(box, other) for other in boxes[k + 1:]), f"step {i}: two values overlap"
    assert labels > 0
