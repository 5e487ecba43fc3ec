"""TensorStore: snapshots copied in groups are those of one-by-one capture; NaN/Inf found in bulk."""
import math

import numpy as np
import pytest
import torch

from gradviz.core import tensors
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


def _stats_of(ts):
    """`capture_many`'s ``stats`` in Python: each one's `_stats` (the helper's numbers)."""
    rows = [tensors._stats(torch.as_tensor(t)) for t in ts]
    return np.array([[r["min"], r["max"], r["mean"], r["norm"]] for r in rows], dtype=np.float64)


@pytest.mark.parametrize("stats", [None, _stats_of], ids=["stacked", "direct"])
def test_capture_many_of_owned_arrays_among_tensors_counts_as_one_by_one(stats):
    # owned gradients come as numpy arrays over their memory, other ones as tensors: the two kinds
    # alternate across the budget's edge, each numbered and counted as captured one at a time
    torch.manual_seed(1)
    items = []
    for k in range(12):
        t = torch.randn(2, 3, dtype=torch.float64 if k % 5 == 0 else torch.float32)
        items.append(t.numpy().copy() if k % 3 else t)
    budget = 150  # about six of them: the later ones keep statistics only
    one, many = TensorStore(True, budget), TensorStore(True, budget)
    expected = [one.capture(torch.from_numpy(x) if isinstance(x, np.ndarray) else x) for x in items]
    got = many.capture_many(items, owned=[isinstance(x, np.ndarray) for x in items], stats=stats)
    assert any(d.value is None for d in got) and any(d.value is not None for d in got)
    assert [d.uid for d in got] == list(range(1, 13))
    assert all(_same(x, y) for x, y in zip(expected, got))
    assert (many.bytes_kept, many.dropped_count, many.dropped_bytes) == (
        one.bytes_kept, one.dropped_count, one.dropped_bytes)
    assert many.capture(torch.ones(1)).uid == 13  # the store's count carries on from there


def test_nonfinite_finds_single_snapshots_past_the_first_chunk():
    store = TensorStore(True)
    n = 3 * tensors._FINITE_CHUNK + 5
    singles = [store.capture(torch.full((2,), float(i))) for i in range(n)]
    bad = {n - 3: float("nan"), 2 * tensors._FINITE_CHUNK: float("inf")}
    for i, v in bad.items():
        singles[i].value[1] = v
    assert store.nonfinite() == {id(singles[i]) for i in bad}


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


def _lanes(values: list) -> dict:
    """min, max, mean and norm of `values` (Python floats) as `_stats_rows` defines them, one add at a time.

    Value i is added to lane i % 4, each lane left to right; the four lanes are added left to
    right; the same for the squares; zeros come out as +0.0.
    """
    if any(math.isnan(v) for v in values):
        lo = hi = math.nan
    else:
        lo, hi = min(values) + 0.0, max(values) + 0.0
    sums, squares = [0.0] * 4, [0.0] * 4
    for i, v in enumerate(values):
        sums[i % 4] += v
        squares[i % 4] += v * v
    total = ((sums[0] + sums[1]) + sums[2]) + sums[3]
    norm = math.sqrt(((squares[0] + squares[1]) + squares[2]) + squares[3])
    return {"min": lo, "max": hi, "mean": total / len(values) + 0.0, "norm": norm}


def _same_number(x: float, y: float) -> bool:
    """The same float bit for bit (zeros by sign too), any NaN equal to any NaN."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_statistics_add_in_four_lanes_in_float64_with_torchs_nan_and_inf(dtype):
    # rows whose sums show their order (1e16 + 1 - 1e16 + 1 depends on where each addition
    # rounds), of 1 to 39 values (lanes left empty), NaN, +-inf, zeros of both signs
    inf, nan = math.inf, math.nan
    torch.manual_seed(2)
    cancelling = [1e16, 1.0, -1e16, 1.0, 3.0, 1e-3, 7.0, 0.3]
    rows = [[0.1 * k for k in range(1, 40)], cancelling,
            [1.0, nan, -inf, 2.0, 0.5, 4.0, 2.0, 9.0], [inf, 1.0, 2.0, -3.0, 0.0, 1.0, 1.0, 1.0],
            [inf, -inf, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0],
            [-0.0] * 8, torch.randn(8).tolist(), [-0.0], [2.0, -3.0, 5.0], torch.randn(13).tolist()]
    for row in rows:
        x = torch.tensor([row], dtype=dtype)
        got = tensors._stats_rows(x)[0]
        want = _lanes([float(v) for v in x[0].tolist()])
        assert all(_same_number(got[k], want[k]) for k in want), (row, got, want)
        # torch's float64 reductions: NaN and inf where these are, the same numbers up to rounding
        x64 = x.to(torch.float64)
        ref = {"min": x64.amin().item(), "max": x64.amax().item(), "mean": x64.mean().item(),
               "norm": torch.linalg.vector_norm(x64).item()}
        for k in ref:
            assert math.isnan(got[k]) == math.isnan(ref[k]) and math.isinf(got[k]) == math.isinf(ref[k])
            if row is not cancelling and math.isfinite(ref[k]):
                assert math.isclose(got[k], ref[k], rel_tol=1e-12, abs_tol=1e-300), (row, k, got, ref)
    # a row alone and among others: the same numbers (a row does not depend on its group)
    group = torch.tensor([rows[0][:8], cancelling, rows[7]])
    assert tensors._stats_rows(group)[1] == tensors._stats_rows(group[1:2])[0]


def test_statistics_of_a_non_contiguous_tensor_are_those_of_its_values_in_order():
    torch.manual_seed(3)
    t = torch.randn(6, 5, dtype=torch.float64).t()[:, ::2] * 1e3
    got = tensors._stats(t)
    assert all(_same_number(got[k], v) for k, v in _lanes(t.reshape(-1).tolist()).items())


@pytest.mark.parametrize("columns", [1, 3, 4, 13, 64])
def test_statistics_of_many_rows_at_once_are_those_of_each_row_alone(columns):
    # (64 rows or more are summed a group of four columns at a time across the rows, fewer along
    # each row: both must give each row's numbers)
    torch.manual_seed(5)
    rows = torch.randn(70, columns) * 1e3
    rows[3, 0], rows[5, -1], rows[8, :] = math.nan, -math.inf, -0.0
    rows[9, 0] = math.inf
    rows[9, -1] = -math.inf if columns > 1 else math.inf
    together = tensors._stats_rows(rows)
    for k, row in enumerate(rows):
        alone = tensors._stats_rows(row[None])[0]
        want = _lanes(row.tolist())
        assert all(_same_number(together[k][s], alone[s]) and _same_number(alone[s], want[s]) for s in want), (
            k, together[k], alone, want)
