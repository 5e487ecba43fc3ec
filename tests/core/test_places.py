"""Each forward op's place: its rank among the ops of its kind in its module call, counted in one pass."""
import torch

import gradviz
from gradviz.core.labels import places


def test_ops_are_numbered_within_their_call_like_counting_them_one_by_one():
    def build():
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 3)
        h = torch.randn(2, 3)
        for _ in range(40):  # 40 tanh outside every module: one long call of the top level
            h = torch.tanh(lin(h))
        return h.pow(2).mean(), lin

    rec = gradviz.record(build)
    got = places(rec)
    events = rec.forward
    for ev, place in zip(events, got):
        key = (ev.module, ev.use) if ev.module else (None, None)
        same = [e.index for e in events if ((e.module, e.use) if e.module else (None, None)) == key
                and e.op == ev.op]
        assert (place.nth, place.of) == (same.index(ev.index) + 1, len(same))
    assert max(p.of for p in got if p.op == "tanh") == 40
