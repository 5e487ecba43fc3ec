"""The lesson engine on the shipped lessons: every step resolves, every answer matches, every check holds."""
import numpy as np
import pytest

from gradviz.cli import main
from gradviz.lessons import LessonRun, list_lessons, load_lesson
from gradviz.lessons.catalog import lesson_folders

NAMES = [f.name for f in lesson_folders()]


@pytest.fixture(scope="module")
def runs():
    """One opened run per lesson and language (recording is the slow part: do it once)."""
    cache = {}

    def get(name, lang):
        if (name, lang) not in cache:
            cache[name, lang] = LessonRun(load_lesson(name), lang).open()
        return cache[name, lang]

    return get


def test_six_lessons_in_order():
    lessons = list_lessons()
    assert [les.name for les in lessons] == ["gradients-by-hand", "custom-function", "linear-layer", "cpp-and-cuda",
                                             "reusing-a-layer", "rnn-through-time"]
    assert [les.order for les in lessons] == [1, 2, 3, 4, 5, 6]
    for les in lessons:
        assert set(les.texts) == {"en", "zh"}
    for les in lessons:
        assert set(les.texts) == {"en", "zh"}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("name", NAMES)
def test_every_lesson_checks_in_both_languages(runs, name, lang):
    run = runs(name, lang)
    report = run.self_check()
    assert report.ok, "\n".join(report.lines)
    # every step sits on an event of its recording, and going there moves the stepper there
    for k, step in enumerate(run.steps):
        view = run.go(k)
        assert run.session.stepper.index == view.timeline_step
        tl = run.session.timeline
        if step.at.node is not None:
            st = tl.steps[view.timeline_step]
            assert st.phase == step.at.phase
            node = run.recording.nodes[st.node]
            assert step.at.node in (node.name, node.leaf)
            if step.at.use is not None:
                assert node.use == step.at.use
        # every placeholder was filled in
        text = "\n".join(b.text for b in view.blocks + view.question + run.reveal(k))
        assert 'grad("' not in text and "contribution(" not in text and "node(" not in text


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_marked_wrong(runs, name):
    run = runs(name, "en")
    for k, step in enumerate(run.steps):
        if step.predict is None:
            continue
        run.go(k)
        right = run.expected(k)
        wrong = {"number": lambda v: str(v + 1.0 + abs(v)), "shape": lambda v: str(tuple(s + 1 for s in v) + (7,)),
                 "choice": lambda v: str(v % len(run.view(k).choices) + 1)}[step.predict.kind](right)
        assert not run.grade(k, wrong).correct, (name, step.id, wrong)
        assert run.grade(k, run.answer_text(k)).correct
        assert not run.grade(k, "banana").correct


def test_lesson5_numbers(runs):
    run = runs("reusing-a-layer", "en")
    w = 0.9472
    x, label = 10.0, 5.0
    closed = 4 * (w * w * x - label) * w * x  # dL/dw = 4 (w^2 x - label) w x
    assert closed == pytest.approx(150.4865, abs=1e-4)
    k = [s.id for s in run.steps].index("accumulate")
    run.go(k)
    assert run.expected(k) == pytest.approx(closed, abs=2e-4)
    rec = run.recording
    contribs = [c.value.value.item() for c in rec.leaves["layer.weight"].contributions]
    assert contribs == pytest.approx([75.2433, 75.2433], abs=1e-4)
    shown = "\n".join(b.text for b in run.reveal(k))
    assert "150.4865" in shown and "75.2433 + 75.2433 = 150.4865" in shown


def test_lesson5_walk_shows_the_numbers(capsys):
    code = main(["lesson", "reusing-a-layer", "--no-input"])
    out = capsys.readouterr().out
    assert code == 0
    assert "150.4865" in out and out.count("75.2433") >= 4


def test_list_prints_one_lesson_a_line_name_first(capsys):
    assert main(["lesson", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [les.name for les in list_lessons()]


def test_progress_is_kept_between_runs(capsys, tmp_path):
    assert main(["lesson", "reusing-a-layer", "--no-input"]) == 0
    capsys.readouterr()
    assert main(["lesson", "--list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("reusing-a-layer"))
    assert "9/9 steps" in line and "finished" in line


def test_folder_path_works_as_a_name(capsys):
    folder = str(load_lesson("reusing-a-layer").folder)
    assert main(["lesson", folder, "--check"]) == 0
    assert "all hold" in capsys.readouterr().out
    assert main(["lesson", "--validate", folder]) == 0
    assert "valid" in capsys.readouterr().out


def test_matrix_blocks_carry_arrays(runs):
    run = runs("reusing-a-layer", "en")
    k = [s.id for s in run.steps].index("three-uses")
    view = run.go(k)
    mats = [b for b in view.blocks if b.kind == "matrix"]
    assert mats and all(np.asarray(m.value).size >= 1 for m in mats)


def test_lesson6_gradient_shrinks_towards_early_steps(runs):
    run = runs("rnn-through-time", "en")
    k = [s.id for s in run.steps].index("shrinking")
    view = run.go(k)
    flow = [m for m in view.blocks if m.kind == "matrix"][0].value
    assert len(flow) == 5 and all(a > b for a, b in zip(flow, flow[1:]))  # t = 5 first, t = 1 last
    # the gradient-flow view's number is the gradient arriving at the first node of each use to run
    scope = run._scope
    for t in range(1, 6):
        assert scope.evaluate(f'flow("cell", {t})') == pytest.approx(
            scope.evaluate(f'norm(node("TanhBackward0", use={t}).grad_output[0])'), rel=1e-6)  # float64 vs float32 sums
