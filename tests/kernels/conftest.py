"""Shared fixtures of the kernel tests: one build of the extension per test session."""
from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def build():
    """Build (or load from the cache) the compiled backends once; skip only when no compiler."""
    from gradviz.core import extension

    if os.environ.get("GRADVIZ_NO_BUILD", "") not in ("", "0"):
        pytest.skip("GRADVIZ_NO_BUILD is set")
    state = extension.build_state()
    if not state.cpu_ok:
        if state.cpu_reason.startswith("compiler missing"):
            pytest.skip(state.cpu_reason)
        pytest.fail(f"the cpp backend failed to build: {state.cpu_reason}")
    return state


@pytest.fixture(scope="session")
def ops(build):
    """``torch.ops.gradviz`` once the library is loaded."""
    return torch.ops.gradviz


def cuda_skip_reason(state) -> str:
    """Why the CUDA tests cannot run here, or ``""``."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if not state.cuda_ok:
        return f"cuda backend not built: {state.cuda_reason}"
    return ""


@pytest.fixture(params=["cpu", "cuda"])
def device(request, build):
    """Each device with a compiled backend; cuda is skipped with its reason where absent."""
    if request.param == "cuda":
        reason = cuda_skip_reason(build)
        if reason:
            pytest.skip(reason)
    return request.param


@pytest.fixture
def cuda_build(build):
    """The build, where the cuda backend can run here; skipped with the reason elsewhere."""
    reason = cuda_skip_reason(build)
    if reason:
        pytest.skip(reason)
    return build
