"""Independent references for graph tests: torch's own graph, walked without gradviz."""


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
