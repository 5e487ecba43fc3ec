"""Classroom text in the core: labels that say where an op ran, every step explained in one line (en and
zh), one translation catalogue, and a check table that fits its terminal."""
import re
import textwrap

import numpy as np
import pytest

import gradviz
from gradviz.cli import main
from gradviz.core import i18n
from gradviz.core.checks import run_checks
from gradviz.core.explain import explain
from gradviz.core.labels import label_lines, where
from gradviz.core.layout import layered_layout
from gradviz.core.scene import build_scene
from gradviz.core.textable import cell_width, format_checks, format_table, wrap_cell
from gradviz.core.timeline import Timeline

THREE_TANH = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        h = torch.tanh(h * 2)
        return torch.tanh(h).sum()

def build():
    torch.manual_seed(0)
    net = Net()
    return net(torch.randn(2, 3)), net
"""


@pytest.fixture
def zh():
    i18n.set_language("zh")
    i18n.clear_missing()
    yield
    i18n.set_language("en")


def _labels(rec, name):
    return sorted(label_lines(rec, n)[1] for n in rec.nodes if n.name == name)


def test_repeated_layer_labels_tell_the_two_tanh_calls_apart():
    rec = gradviz.record("repeated-layer", params={"k": 3, "n": 3, "tanh": True})
    assert _labels(rec, "TanhBackward0") == ["tanh 1 of 2 in RepeatedLayerNet", "tanh 2 of 2 in RepeatedLayerNet"]
    # a module that ran more than once says which use; its one op is the module itself
    assert _labels(rec, "MmBackward0") == [f"layer · use {u}/3" for u in (1, 2, 3)]


def test_a_module_run_once_has_no_use_and_an_op_in_its_forward_says_after_what(tmp_path):
    rec = gradviz.record("mlp")
    assert _labels(rec, "AddmmBackward0") == ["fc1", "fc2"]
    assert _labels(rec, "ReluBackward0") == ["after fc1 in MLP"]
    assert not any("use 1/1" in line for n in rec.nodes for line in label_lines(rec, n))
    path = tmp_path / "three_tanh.py"
    path.write_text(textwrap.dedent(THREE_TANH))
    rec = gradviz.record(str(path))
    assert _labels(rec, "TanhBackward0") == [f"tanh {i} of 3 in Net" for i in (1, 2, 3)]
    # the scene draws the same line
    scene = build_scene(rec, layered_layout(rec), Timeline(rec).state_at(0))
    drawn = sorted(scene.lines(g)[1] for g in range(len(scene)) if scene.lines(g)[0] == "TanhBackward0")
    assert drawn == [f"tanh {i} of 3 in Net" for i in (1, 2, 3)]


def test_every_step_is_explained_and_names_what_each_receiver_waits_for():
    rec = gradviz.record("repeated-layer")
    tl = Timeline(rec)
    lines = [explain(rec, s) for s in tl.steps]
    assert lines[0].startswith("start: ")
    assert lines[2] == "forward 2/3: linear (layer · use 2/2) computes 0.0005605"
    # the second TBackward0 run leaves layer.weight waiting for one more gradient, the last one for none
    sends = [line for line in lines if "to layer.weight" in line]
    assert sends[0].endswith("sends 0.7486 to layer.weight, which waits for 1 more")
    assert sends[1].endswith("sends 0.7486 to layer.weight, which is now ready")
    assert lines[-1].endswith("AccumulateGrad writes layer.weight.grad: 1.497, the sum of its 2 contributions")
    # the waits agree with the timeline's own dependency counts
    for s in tl.steps[tl.first_backward:]:
        state = tl.state_at(s.index)
        for _src, dst, _slot, _g in state.flowing:
            n = int(state.pending[dst])
            assert (f"waits for {n} more" if n else "is now ready") in explain(rec, s)
    assert tl.steps[5].describe(rec) == lines[5]


def test_every_step_explained_in_chinese_with_no_english_left(zh):
    for name, params in [("repeated-layer", {"k": 3, "n": 3, "tanh": True}), ("mlp", None), ("sum-xy-plus-z", None)]:
        rec = gradviz.record(name, params=params)
        for s in Timeline(rec).steps:
            text = explain(rec, s)
            # what may stay Latin: node and op names, module and leaf names, numbers, shapes
            rest = re.sub(r"[A-Za-z_][\w.]*(?:\[\w+\])?", "", text)
            assert not re.search(r"[A-Za-z]", rest), text
            assert re.search(r"[\u4e00-\u9fff]", text), text
    assert not i18n.missing()


def test_a_leaf_shows_its_buffer_until_accumulate_grad_runs():
    rec = gradviz.record("repeated-layer")
    tl = Timeline(rec)
    lay = layered_layout(rec)
    leaf = next(n.id for n in rec.nodes if n.leaf == "layer.weight")
    acc = tl.step_of(leaf)
    seen = []
    for i in range(tl.first_backward, len(tl)):
        lines = build_scene(rec, lay, tl.state_at(i)).lines(leaf)
        seen.append(lines[1:])
        if i < acc:
            assert not any(line.startswith("grad") for line in lines), lines
    assert ["buffer 0.7486", "1 of 2 arrived"] in seen
    assert ["buffer 1.497", "2 of 2 arrived"] in seen
    assert seen[-1] == ["grad 1.497"]


def test_the_catalogue_translates_check_rows_back_from_their_words(zh):
    assert i18n.translate("node 3 LinearFunction [cpp] receives node 1") == "节点 3 LinearFunction [cpp] 接收节点 1"
    assert i18n.translate("layer.weight.grad = node 3 + node 5 + node 7") == "layer.weight.grad = 节点 3 + 节点 5 + 节点 7"
    assert i18n.translate("numpy rule for LinearFunctionBackward") == "LinearFunctionBackward 的 numpy 规则"
    assert i18n.translate("0.1, 0.2") == "0.1, 0.2"
    assert i18n.tr("{op} {nth} of {of}", op="tanh", nth=2, of=2) == "tanh 第 2/2 次"


def test_system_language_follows_the_locale():
    assert i18n.system_language({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.system_language({"LANG": "en_GB.UTF-8"}) == "en"
    assert i18n.system_language({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US"}) == "zh"
    assert i18n.system_language({}) == "en"


def test_wrapping_keeps_every_word_whole():
    assert wrap_cell("numpy rule for LinearFunctionBackward", 22) == ["numpy rule for", "LinearFunctionBackward"]
    # a word wider than the column is split, never dropped
    assert "".join(wrap_cell("LinearFunctionBackward", 16)) == "LinearFunctionBackward"
    assert wrap_cell("node 12 MmBackward0 receives node 7", 18) == ["node 12", "MmBackward0", "receives node 7"]
    assert cell_width("节点 3") == 6
    lines = format_table(("a", "b"), [("x" * 5, "one two three four")], 14, flexible=(1,), minimum=4)
    assert max(cell_width(line) for line in lines) <= 14


@pytest.mark.parametrize("width", [60, 80, 100, 200])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_check_table_fits_its_terminal_and_cuts_nothing(width, lang):
    rec = gradviz.record("repeated-layer", params={"k": 3})
    table = run_checks(rec, finite_diff=False)
    with i18n.using(lang):
        text = format_checks(table, width)
    rows = text.split("\n\n")[0].splitlines()
    # the table's own lines (not the notes) fit from 80 columns on (below, words are split, not cut)
    if width >= 80:
        assert max(cell_width(line) for line in rows) <= width
    # every node number a check names is there, whole, on the line where its row starts
    sep = next(i for i, line in enumerate(rows) if line.startswith("---"))
    starts = [line for line in rows[sep + 1:] if not line.startswith(" ")]
    assert len(starts) == len(table.rows)
    for r, line in zip(table.rows, starts):
        for num in re.findall(r"^node (\d+)", r.what):
            assert re.search(rf"(node|节点) {num}\b", line), (num, line)
    if width >= 100:  # and every rule's name whole on one line
        for name in {n.name for n in rec.nodes if n.kind == "op"}:
            assert any(name in line for line in rows), name


def test_cli_check_table_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code = main(["--lang", "en", "check", "repeated-layer", "--no-fd"])
    out = capsys.readouterr().out
    assert code == 0
    table = out.split("\n\n")[1]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert any(re.search(r"(^|\s)node 0(\s|$)", line) for line in table.splitlines())
    code = main(["--lang", "zh", "check", "repeated-layer", "--no-fd"])
    out = capsys.readouterr().out
    assert "项检查" in out and "通过" in out


@pytest.mark.parametrize("name,leaf,params", [("repeated-layer", "layer.weight", {"k": 3, "n": 3}),
                                              ("rnn-unrolled", "cell.weight_hh", None)])
def test_accumulation_at_one_element_is_the_cumulative_sum_of_its_contributions(name, leaf, params):
    from gradviz.core.accumulation import (accumulation_at, as_grid, grid_cell_to_index, index_to_grid_cell,
                                           parse_index)

    rec = gradviz.record(name, params=params)
    info = rec.leaves[leaf]
    shape = tuple(info.tensor.shape)
    assert len(shape) == 2 and len(info.contributions) >= 3
    index = parse_index("1, -1", shape)
    assert index == (1, shape[1] - 1)
    acc = accumulation_at(rec, leaf, index)
    # independent reference: each contribution's value at the element, from the recording's arrays
    want = [float(np.asarray(c.value.value)[index]) for c in info.contributions]
    np.testing.assert_allclose(acc.values, want, rtol=0, atol=0)
    # the plotted line is exactly the running sum of the bars
    total = 0.0
    for k, v in enumerate(want):
        total += v
        assert acc.running[k] == pytest.approx(total, rel=0, abs=1e-12)
    # and it ends at the .grad torch computed (float32 sums: a float32 tolerance)
    assert acc.running[-1] == pytest.approx(float(info.grad.value[index]), rel=1e-5, abs=1e-6)
    assert acc.grad == pytest.approx(float(info.grad.value[index]))
    # a heat map cell names its element and back
    for g in acc.grids:
        assert g.shape == as_grid(info.grad.value).shape
    r, c = index_to_grid_cell(shape, index)
    assert grid_cell_to_index(shape, r, c) == index
    assert acc.grids[0][r, c] == acc.values[0]
    assert len(acc.rows()) == len(want)
    assert acc.sources[0].endswith(f"use {len(want)}/{len(want)}")  # the last use's gradient arrives first


def test_bad_element_index_is_one_clear_line():
    from gradviz.core.accumulation import parse_index
    from gradviz.core.errors import GradvizError

    for text in ("1", "a, 1", "5, 0"):
        with pytest.raises(GradvizError) as err:
            parse_index(text, (3, 3))
        assert "\n" not in str(err.value.args[0])
