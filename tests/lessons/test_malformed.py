"""A malformed lesson gets one clear line naming the file, the line and the problem, and exit code 2."""
import importlib.util
from pathlib import Path

import pytest

from gradviz.cli import main

_spec = importlib.util.spec_from_file_location("make_broken_lessons", Path(__file__).with_name("make_broken_lessons.py"))
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return make.write_cases(tmp_path_factory.mktemp("lessons"))


def test_the_good_case_validates(cases, capsys):
    folder, _ = cases["good"]
    assert main(["lesson", "--validate", str(folder)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("case", [c for c, v in make.CASES.items() if v[2]])
@pytest.mark.parametrize("how", ["--validate", "--check"])
def test_malformed_lesson_message_and_exit_2(cases, capsys, case, how):
    folder, expect = cases[case]
    argv = ["lesson", "--validate", str(folder)] if how == "--validate" else ["lesson", str(folder), "--check"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(folder) in lines[0]
    assert expect in lines[0], lines[0]
    assert "Traceback" not in err


def test_expressions_are_never_given_to_python(tmp_path):
    """An expression that would write a file if it ran cannot run, whatever it is wrapped in."""
    from gradviz.core.recorder import record
    from gradviz.lessons.expr import ExpressionError, Scope

    scope = Scope(record("repeated-layer"))
    target = tmp_path / "pwned"
    for expr in [f'grad("layer.weight").tofile("{target}")', '[c for c in "ab"]', '(lambda: 1)()',
                 'node("MmBackward0").__class__.__subclasses__()', f'open("{target}", "w")',
                 'grad.__globals__', 'node("MmBackward0").saved.clear()']:
        with pytest.raises(ExpressionError):
            scope.evaluate(expr)
    assert not target.exists()
    assert scope.evaluate('shape(node("MmBackward0", use=2).grad_input[0])') == (1, 1)


def test_unknown_lesson_name(capsys):
    assert main(["lesson", "no-such-lesson"]) == 2
    err = capsys.readouterr().err
    assert "no such lesson" in err and "Traceback" not in err
