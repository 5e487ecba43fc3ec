"""After a recording (or a check's re-runs) returns or raises, torch and Python are exactly as before.

The state is read here independently of gradviz.core.sandbox: every process-wide thing a recording
patches, compared by identity where it is an object.
"""
import builtins
import gc
import sys
import warnings

import pytest
import torch
from torch.nn.modules import module as _module

from gradviz.core import record, run_checks
from gradviz.core.errors import GradvizError, ScriptError
from gradviz.core.recorder import Cancelled
from gradviz.core.sandbox import Sandbox, gc_paused


def process_state() -> dict:
    tables = {name: table for name, table in vars(_module).items()
              if name.startswith("_global_") and isinstance(table, dict)}
    return {
        "Function.apply": torch.autograd.Function.__dict__["apply"],
        "Tensor.register_hook": torch.Tensor.__dict__["register_hook"],
        "Module._call_impl": torch.nn.Module.__dict__["_call_impl"],
        "torch.compile": torch.compile,
        "hook tables": {name: id(table) for name, table in tables.items()},
        "hooks": {name: list(table.items()) for name, table in tables.items()},
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "warnings.filters object": id(warnings.filters),
        "warnings.filters": list(warnings.filters),
        "warnings.showwarning": warnings.showwarning,
        "gc enabled": gc.isenabled(),
        "gc threshold": gc.get_threshold(),
        "sys.stdin": sys.stdin,
        "input": builtins.input,
        "function modes": len(torch.overrides._get_current_function_mode_stack()),
    }


@pytest.fixture
def unchanged():
    """Fail the test if any process-wide state differs after it from before it."""
    before = process_state()
    assert before["gc enabled"], "the collector should be on when a test starts"
    yield before
    after = process_state()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"changed by the run: {changed}"


def _linear_model(effect=None):
    def build():
        lin = torch.nn.Linear(3, 2)
        x = torch.randn(4, 3)
        if effect is not None:
            effect()
        return lin(x).tanh().sum(), lin
    return build


def _raise(exc):
    def effect():
        raise exc
    return effect


def test_a_recording_that_returns_leaves_everything_as_it_was(unchanged):
    rec = record("mlp")
    assert rec.nodes
    # inside, the patches really were applied
    seen = {}

    def build():
        seen.update(process_state())
        return _linear_model()()

    record(build)
    assert seen["Function.apply"] is not unchanged["Function.apply"]
    assert seen["Tensor.register_hook"] is not unchanged["Tensor.register_hook"]
    assert seen["torch.compile"] is not unchanged["torch.compile"]
    assert seen["sys.stdin"] is not unchanged["sys.stdin"]
    assert not seen["gc enabled"]
    # modules are followed by a wrapped Module._call_impl, or (torch._dynamo loaded) by two global hooks
    hooks = sum(len(h) for h in seen["hooks"].values()) - sum(len(h) for h in unchanged["hooks"].values())
    wrapped = seen["Module._call_impl"] is not unchanged["Module._call_impl"]
    assert (wrapped, hooks) == ((False, 2) if "torch._dynamo" in sys.modules else (True, 0))


@pytest.mark.parametrize("exc, caught", [
    (ValueError("bad"), ScriptError),
    (KeyboardInterrupt(), ScriptError),  # reported as what it was (exit 2), never a silent stop
    (SystemExit(3), ScriptError),
    (Cancelled(), Cancelled),
    (GradvizError("refused"), GradvizError),
])
def test_a_recording_that_raises_leaves_everything_as_it_was(unchanged, exc, caught):
    with pytest.raises(caught):
        record(_linear_model(_raise(exc)))


def test_sys_exit_in_a_model_is_an_error_not_an_exit(unchanged):
    with pytest.raises(ScriptError, match=r"called sys.exit\(3\)"):
        record(_linear_model(_raise(SystemExit(3))))


def test_a_cancelled_recording_leaves_everything_as_it_was(unchanged):
    with pytest.raises(Cancelled):
        record("mlp", cancel=lambda: True)


def test_a_model_that_reads_stdin_is_refused_and_stdin_comes_back(unchanged):
    with pytest.raises(GradvizError, match="standard input"):
        record(_linear_model(lambda: input("v? ")))


def test_what_a_model_changes_itself_is_put_back(unchanged):
    mine = _module.register_module_forward_pre_hook(lambda *a: None)  # a hook of the user's, before
    before = process_state()

    def effect():
        mine.remove()
        torch.set_default_dtype(torch.float64)
        warnings.filterwarnings("ignore")
        warnings.showwarning = lambda *a, **k: None
        _module.register_module_forward_hook(lambda *a: None)
        _module.register_module_full_backward_hook(lambda *a: None)
        torch.compile = lambda *a, **k: None
        torch.nn.Module._call_impl = lambda self, *a, **k: None
        sys.stdin = None
        gc.enable()
        gc.set_threshold(1, 2, 3)
        raise KeyboardInterrupt

    try:
        with pytest.raises(ScriptError, match="KeyboardInterrupt"):
            record(_linear_model(effect))
        after = process_state()
        assert {k: after[k] for k in before if after[k] != before[k]} == {}
    finally:
        mine.remove()


def test_a_model_that_leaves_grad_mode_off_gets_it_back(unchanged):
    def build():
        x = torch.ones(2, requires_grad=True)
        loss = (x * 2).sum()
        torch.set_grad_enabled(False)
        return loss, {"x": x}

    record(build)


def test_a_compiled_module_records_and_leaves_everything_as_it_was(unchanged):
    lin = torch.nn.Linear(3, 2)
    fast = torch.compile(lin, backend="eager")
    state = process_state()  # compiling imports torch._dynamo, which may add warnings filters

    def build():
        return torch.tanh(fast(torch.randn(4, 3))).sum(), {}

    record(build)
    assert process_state() == state
    unchanged.update(state)


def test_show_once_warnings_are_not_shown_again_after_a_recording():
    # the sandbox's warnings filter must not reset the process's "already shown" registries
    def warn():
        warnings.warn("gradviz test: shown once", UserWarning)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        warn()
        record("mlp")
        warn()
    assert len(shown) == 1


def test_checks_re_runs_restore_parameters_and_state_even_when_interrupted(unchanged):
    lin = torch.nn.Linear(3, 2)
    original = {name: (p.data_ptr(), p.detach().clone()) for name, p in lin.named_parameters()}
    calls = [0]

    def build():
        calls[0] += 1
        if calls[0] == 3:  # the record, the float64 probe, then the first finite difference
            raise KeyboardInterrupt
        return lin(torch.ones(2, 3)).sum(), lin

    rec = record(build)
    with pytest.raises(ScriptError, match="KeyboardInterrupt"):  # reported as what it was (issue 12)
        run_checks(rec)
    assert calls[0] == 3
    for name, p in lin.named_parameters():
        ptr, value = original[name]
        # the same storage as before, untouched (not a float64 working copy)
        assert p.data_ptr() == ptr and p.dtype == torch.float32 and torch.equal(p.detach(), value)


def test_checks_re_run_in_float64_on_copies():
    lin = torch.nn.Linear(3, 2)
    dtypes = []

    def build():
        dtypes.append(lin.weight.dtype)
        return lin(torch.ones(2, 3)).sum(), lin

    weight = lin.weight.data.clone()
    table = run_checks(record(build), manual=False, rules=False, gradcheck=False)
    assert table.ok, table
    assert dtypes[0] == torch.float32 and set(dtypes[1:]) == {torch.float64}
    assert lin.weight.dtype == torch.float32 and torch.equal(lin.weight.data, weight)


def test_the_collector_switch_is_counted_across_users():
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer user still needs it off
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


def test_a_sandbox_is_not_entered_twice_at_once():
    box = Sandbox()
    with box:
        with pytest.raises(RuntimeError):
            box.__enter__()
    with box:  # but again afterwards
        pass
