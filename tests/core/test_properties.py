"""Property-based tests over random op graphs with reused tensors and reused modules."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradviz.core import record, run_checks
from graph_reference import recorded_edges, torch_edges

UNARY = ["tanh", "sigmoid", "relu", "neg", "exp_small", "t", "sqrt_pos", "log_pos", "sum_keep", "mean_rows",
         "softmax", "log_softmax", "unsqueeze_squeeze", "reshape", "permute", "clone", "pow3"]
BINARY = ["add", "sub", "mul", "div", "mm", "rsub", "stack_sum", "cat_half"]
MODULE = ["linear"]

op_strategy = st.one_of(
    st.tuples(st.sampled_from(UNARY), st.integers(0, 50)),
    st.tuples(st.sampled_from(BINARY), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.sampled_from(MODULE), st.integers(0, 50)),
)


def _apply(op, args, layer):
    name = op[0]
    a = args[0]
    if name == "tanh":
        return torch.tanh(a)
    if name == "sigmoid":
        return torch.sigmoid(a)
    if name == "relu":
        return torch.relu(a)
    if name == "neg":
        return -a
    if name == "exp_small":
        return torch.exp(a * 0.1)
    if name == "t":
        return a.t()
    if name == "sqrt_pos":
        return torch.sqrt(a * a + 1.0)
    if name == "log_pos":
        return torch.log(a * a + 1.0)
    if name == "sum_keep":
        return a.sum(dim=1, keepdim=True).expand(3, 3)
    if name == "mean_rows":
        return a.mean(dim=0).unsqueeze(0).expand(3, 3) * 1.0
    if name == "softmax":
        return torch.softmax(a, dim=1)
    if name == "log_softmax":
        return torch.log_softmax(a, dim=0)
    if name == "unsqueeze_squeeze":
        return a.unsqueeze(0).squeeze(0)
    if name == "reshape":
        return a.reshape(9).view(3, 3)
    if name == "permute":
        return a.permute(1, 0)
    if name == "clone":
        return a.clone()
    if name == "pow3":
        return a.pow(3) * 0.1
    if name == "linear":
        return layer(a)
    b = args[1]
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div":
        return a / (b * b + 1.0)
    if name == "mm":
        return a @ b * 0.5
    if name == "rsub":
        return 1.0 - a * b
    if name == "stack_sum":
        return torch.stack([a, b]).sum(0)
    if name == "cat_half":
        return torch.cat([a[:2], b[2:]], dim=0)
    raise AssertionError(name)


def make_builder(ops, seed):
    def build():
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        layer = torch.nn.Linear(3, 3)
        leaves = {f"p{i}": torch.randn(3, 3, generator=g).requires_grad_() for i in range(3)}
        pool = list(leaves.values())
        for op in ops:
            args = [pool[i % len(pool)] for i in op[1:]]
            pool.append(_apply(op, args, layer))
        loss = pool[-1].sum() + 0.1 * sum(p.pow(2).sum() for p in pool[3:])
        named = dict(leaves)
        named.update({f"layer.{k}": v for k, v in layer.named_parameters()})
        return loss, named
    return build


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_strategy, min_size=1, max_size=8), seed=st.integers(0, 1000))
def test_random_graphs(ops, seed):
    build = make_builder(ops, seed)
    rec = record(build)

    # leaf grads equal torch.autograd.grad on an identical fresh run, bit for bit
    loss, named = build()
    names = [k for k, v in named.items() if v.requires_grad]
    grads = torch.autograd.grad(loss, [named[k] for k in names], allow_unused=True)
    for k, g in zip(names, grads):
        got = rec.leaves[k].grad
        if g is None:
            assert got is None, k
        else:
            np.testing.assert_array_equal(got.value, g.numpy(), err_msg=k)

    # every edge torch has is in the graph, slot by slot
    assert recorded_edges(rec) == torch_edges(loss)

    # backward runs every node after all nodes that send it gradients, each node once
    pos = {n: i for i, n in enumerate(rec.backward_order)}
    assert len(pos) == len(rec.backward_order)
    for s, d, _ in rec.edges:
        assert pos[s] < pos[d]

    # contributions sum to .grad, every node's local rule holds, and every node received the sum
    # of what was sent to it (reused tensors: several senders)
    table = run_checks(rec, manual=False, finite_diff=False, gradcheck=False, strict=True)
    assert table.ok, table.format()
    assert {r.kind for r in table.rows} == {"local-rule", "flow", "accumulation"}
    assert len([r for r in table.rows if r.kind == "flow"]) == sum(
        1 for n in rec.nodes if n.kind not in ("leaf", "input") and n.id != 0 and len(
            next(e for e in rec.backward if e.node == n.id).grad_outputs) == 1)
