"""TensorStore: snapshots copied in groups are those of one-by-one capture; NaN/Inf found in bulk."""
import numpy as np
import torch

from gradviz.core.tensors import TensorStore


def _tensors():
    torch.manual_seed(0)
    a = torch.randn(2, 3)
    b = torch.randn(3)
    return [a, None, b, torch.randn(2, 3).t(), a, torch.tensor(1.5), torch.randn(2, 3, dtype=torch.float64),
            torch.ones(4, dtype=torch.bfloat16), torch.arange(6).reshape(2, 3), torch.randn(2, 3) * 1j,
            torch.randn(3).conj(), torch.zeros(0, 3)]


def _same(x, y):
    if x is None or y is None:
        return x is y
    return (x.shape == y.shape and x.dtype == y.dtype and x.device == y.device and x.uid == y.uid
            and x.requires_grad == y.requires_grad and (x.stats == y.stats)
            and ((x.value is None and y.value is None)
                 or (x.value.dtype == y.value.dtype and x.value.shape == y.value.shape
                     and x.value.tobytes() == y.value.tobytes())))


def test_capture_many_equals_one_by_one_bit_for_bit():
    ts = _tensors()
    one, many = TensorStore(True), TensorStore(True)
    expected = [one.capture(t) for t in ts]
    got = many.capture_many(ts)
    assert all(_same(x, y) for x, y in zip(expected, got))
    assert got[0] is got[4]  # the same tensor: one snapshot
    assert many.bytes_kept == one.bytes_kept


def test_capture_many_keeps_the_budget_in_order():
    ts = _tensors()
    budget = 60  # a few tensors' worth: later ones keep statistics only
    one, many = TensorStore(True, budget), TensorStore(True, budget)
    expected = [one.capture(t) for t in ts]
    got = many.capture_many(ts)
    assert any(d is not None and d.value is None for d in got)
    assert all(_same(x, y) for x, y in zip(expected, got))
    assert (many.dropped_count, many.dropped_bytes) == (one.dropped_count, one.dropped_bytes)


def test_nonfinite_names_exactly_the_snapshots_with_nan_or_inf():
    store = TensorStore(True)
    good = [torch.randn(2, 2) for _ in range(3)]
    bad_group = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    bad_single = torch.tensor([float("-inf")], dtype=torch.float64).expand(2)  # copied one at a time
    ints = torch.arange(4).reshape(2, 2)
    snaps = store.capture_many(good + [bad_group, ints])
    single = store.capture(bad_single)
    other = store.capture(torch.ones(3))
    assert store.nonfinite() == {id(snaps[3]), id(single)}
    assert id(other) not in store.nonfinite()


def test_without_values_the_same_held_tensor_shares_one_snapshot():
    store = TensorStore(False)
    t = torch.randn(2, 2)
    a, b = store.capture(t, True), store.capture(t, True)
    assert a is b and a.value is None
    t.add_(1)  # a new version is a new snapshot
    assert store.capture(t, True) is not a
    # gradients (not held): each capture its own
    assert store.capture(t) is not store.capture(t)


def test_statistics_past_the_budget_per_group_equal_one_by_one_and_numpy(monkeypatch):
    # many tensors of one shape past the budget: their statistics come from stacked chunks (two
    # chunks of 4 and one of 2 here), and are the numbers one-by-one capture gives, and numpy's
    from gradviz.core import tensors

    monkeypatch.setattr(tensors, "_STATS_CHUNK", 4)
    torch.manual_seed(1)
    ts = [torch.randn(5, 7) * (k + 1) for k in range(10)] + [torch.randn(3, 2, dtype=torch.complex64) for _ in range(3)]
    one, many = TensorStore(True, 0), TensorStore(True, 0)
    expected = [one.capture(t) for t in ts]
    got = many.capture_many(ts)
    assert all(d.value is None and d.stats is not None for d in got)
    assert all(_same(x, y) for x, y in zip(expected, got))
    for t, d in zip(ts, got):
        # (moduli of a complex tensor in its own precision, as torch's abs gives them, then float64)
        a = (np.abs(t.numpy()) if t.is_complex() else t.numpy()).astype(np.float64).reshape(-1)
        ref = {"min": a.min(), "max": a.max(), "mean": a.mean(), "norm": np.sqrt((a * a).sum())}
        # (complex: torch's and numpy's float32 moduli may differ in the last bit)
        rtol = 1e-6 if t.is_complex() else 1e-12
        assert all(np.isclose(d.stats[k], ref[k], rtol=rtol, atol=0) for k in ref), (d.stats, ref)
