"""Independent references for graph tests: torch's own graph, walked without gradviz; and a graph
part that graph tests share."""
from concurrent.futures import ThreadPoolExecutor

import torch


def threaded_half(w):
    """sigmoid(tanh(randn(5, 4) @ w)) * w.sum(), the tanh(... @ w) half made in a worker thread (a
    capture in this thread does not see its nodes), the leaf `w` used in both halves."""

    def part():
        return torch.tanh(torch.randn(5, 4) @ w)

    with ThreadPoolExecutor(max_workers=1) as pool:
        a = pool.submit(part).result()
    return torch.sigmoid(a) * w.sum()


def torch_edges(loss):
    """Every (sender name, receiver name, slot) of the graph behind `loss`, by a plain DFS."""
    out, seen, stack = [], set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        for slot, (nxt, _) in enumerate(fn.next_functions):
            if nxt is not None:
                out.append((fn.name().rsplit("::", 1)[-1], nxt.name().rsplit("::", 1)[-1], slot))
                stack.append(nxt)
    return sorted(out)


def recorded_edges(rec):
    """The same triples from a recording."""
    return sorted((rec.nodes[s].torch_name, rec.nodes[d].torch_name, slot) for s, d, slot in rec.edges)
