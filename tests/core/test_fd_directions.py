"""Finite differences along random directions (issue 16): fewer re-runs, still a check that fails.

Each leaf's gradient is compared with the derivative of the loss along one random direction through
all its elements (two re-runs), plus single elements as far as the re-run budget allows. These tests
run the direction alone (``fd_max_elements=0``) on gradients that are wrong by a little on one
element, on two swapped elements, on a complex part and through a hook, and check that it fails;
and on right ones, checked here independently against ``torch.autograd.grad`` and
``torch.autograd.gradcheck`` in float64, that it passes.
"""
import numpy as np
import pytest
import torch

from gradviz.core import record, run_checks
from gradviz.core.fdchecks import _element_counts, random_direction


def fd_rows(table):
    return {r.leaf: r for r in table.rows if r.kind == "finite-diff"}


def direction_only(rec):
    """The finite-difference rows with no single elements: the random direction alone decides."""
    return fd_rows(run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False,
                              fd_max_elements=0))


class Square(torch.autograd.Function):
    """x * x, with a backward that can be made wrong on chosen elements."""

    wrong: dict = {}

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = (2 * x * g).clone()
        flat = gx.view(-1)
        if "scale" in Square.wrong:
            element, factor = Square.wrong["scale"]
            flat[element] *= factor
        if "swap" in Square.wrong:
            i, j = Square.wrong["swap"]
            flat[i], flat[j] = flat[j].clone(), flat[i].clone()
        return gx


@pytest.fixture
def square():
    Square.wrong = {}
    yield Square
    Square.wrong = {}


def _square_model(n=300):
    def build():
        w = torch.linspace(-2.0, 2.0, n, dtype=torch.float64).requires_grad_()
        with torch.no_grad():
            w[7] = 1.5
        return (Square.apply(w).sin()).sum(), {"w": w}

    return build


def test_random_direction_is_a_unit_vector_with_no_small_share():
    for n, is_complex in [(1, False), (7, False), (300, False), (50, True)]:
        d = random_direction(n, is_complex, seed=3)
        assert d.shape == (n,) and np.iscomplexobj(d) == is_complex
        assert abs(np.linalg.norm(d) - 1.0) < 1e-12
        # every element's share within a factor of 2 of the largest
        assert np.abs(d).min() >= 0.5 * np.abs(d).max() - 1e-15
        np.testing.assert_array_equal(d, random_direction(n, is_complex, seed=3))  # a fixed seed
    assert not np.array_equal(random_direction(20, False, 0), random_direction(20, False, 1))


def test_right_custom_function_passes_and_matches_torch_in_float64(square):
    rec = record(_square_model())
    # the reference, without gradviz: torch's own gradient and gradcheck in float64
    w = torch.linspace(-2.0, 2.0, 300, dtype=torch.float64).requires_grad_()
    with torch.no_grad():
        w[7] = 1.5
    (expected,) = torch.autograd.grad((Square.apply(w).sin()).sum(), w)
    np.testing.assert_allclose(rec.leaves["w"].grad.value, expected.numpy(), rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(Square.apply, (w.detach()[:20].clone().requires_grad_(),), eps=1e-6,
                                     atol=1e-8, rtol=1e-6)
    row = direction_only(rec)["w"]
    assert row.status == "pass", row
    # float64 differences agree with the gradient along the direction to far below the tolerance
    assert row.max_abs < 1e-8 and row.tolerance.endswith("rtol=1e-05")
    assert "a random direction through all 300 elements, no single elements" in row.detail


def test_direction_alone_catches_a_backward_off_by_a_tenth_of_a_percent_on_one_element(square):
    square.wrong["scale"] = (7, 1.001)
    rec = record(_square_model())
    w = torch.linspace(-2.0, 2.0, 300, dtype=torch.float64).requires_grad_()
    with torch.no_grad():
        w[7] = 1.5
    # the Function is genuinely wrong: torch's gradcheck in float64 says so too
    assert not torch.autograd.gradcheck(Square.apply, (w.detach()[:20].clone().requires_grad_(),), eps=1e-6,
                                        atol=1e-8, rtol=1e-6, raise_exception=False)
    row = direction_only(rec)["w"]
    assert row.status == "fail", row
    # and with single elements (a small graph: all 64 sampled elements, element 7 among them or not)
    full = fd_rows(run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False))
    assert full["w"].status == "fail"


def test_direction_alone_catches_two_swapped_elements(square):
    # equal and opposite errors: a direction of random signs alone would miss them half the time
    square.wrong["swap"] = (3, 250)
    row = direction_only(record(_square_model()))["w"]
    assert row.status == "fail", row


def test_direction_alone_catches_a_hook_that_changes_one_element():
    def build():
        w = torch.linspace(0.1, 1.0, 64, dtype=torch.float64).requires_grad_()
        y = w * 3.0

        def nudge(g):
            g = g.clone()
            g[40] *= 1.002
            return g

        y.register_hook(nudge)
        return y.tanh().sum(), {"w": w}

    row = direction_only(record(build))["w"]
    assert row.status == "fail" and "gradient hooks (" in row.detail, row


def test_direction_alone_catches_a_wrong_imaginary_part():
    class Conj(torch.autograd.Function):
        # y = z * c for a fixed complex c: the gradient is g * conj(c); here its imaginary part is off
        @staticmethod
        def forward(ctx, z):
            return z * (0.5 + 2.0j)

        @staticmethod
        def backward(ctx, g):
            gz = (g * (0.5 - 2.0j)).clone()
            gz[5] = gz[5] + 1e-3j
            return gz

    def build():
        z = torch.linspace(-1, 1, 30, dtype=torch.float64).to(torch.complex128)
        z = (z + 0.3j * z.flip(0)).requires_grad_()
        return Conj.apply(z).abs().pow(2).sum(), {"z": z}

    row = direction_only(record(build))["z"]
    assert row.status == "fail" and "real and imaginary" in row.reference, row


def test_right_complex_and_float32_leaves_pass_along_a_direction():
    def build():
        z = torch.linspace(-1, 1, 12, dtype=torch.float64).to(torch.complex128)
        z = (z + 0.25j * z.flip(0)).requires_grad_()
        w = torch.linspace(-1, 1, 40, dtype=torch.float32, requires_grad=True)
        return (z * z).abs().sum() + (w.tanh() * w).sum().to(torch.float64), {"z": z, "w": w}

    rows = direction_only(record(build))
    assert rows["z"].status == "pass" and rows["w"].status == "pass", rows
    assert "own dtype" in rows["w"].reference


def test_single_elements_share_the_budget_round_by_round():
    # four leaves, 10 re-runs: one element each (2 re-runs), then one more for the first
    assert _element_counts([(12, False), (16, False), (4, False), (4, False)], 64, 10) == [2, 1, 1, 1]
    assert _element_counts([(12, False), (3, False)], 64, 1000) == [12, 3]  # all, within the cap
    assert _element_counts([(12, False), (3, True)], 2, 1000) == [2, 2]  # at most max_elements
    assert _element_counts([(12, False), (3, True)], 64, 5) == [2, 0]  # a complex element costs 4
    assert _element_counts([(5, False)], 64, -8) == [0]  # the directions took it all


def test_a_large_graph_gets_the_direction_and_says_so():
    # the budget in graph nodes: 10 nodes x 2 re-runs per leaf leaves nothing for single elements
    def build():
        w = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64).requires_grad_()
        h = w
        for _ in range(4):
            h = torch.tanh(h * 1.1)
        return h.sum(), {"w": w}

    rec = record(build)
    table = run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False,
                       fd_budget=2 * len(rec.nodes))
    (row,) = fd_rows(table).values()
    assert row.status == "pass" and "a random direction through all 9 elements, no single elements" in row.detail
    roomy = fd_rows(run_checks(rec, manual=False, gradcheck=False, rules=False, flow=False, accumulation=False))
    assert roomy["w"].status == "pass" and roomy["w"].detail == ""  # all 9 elements and the direction
