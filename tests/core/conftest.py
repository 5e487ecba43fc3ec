"""Fixtures the core tests share."""
import os

import pytest

from gradviz.core import fastpath


@pytest.fixture(scope="module")
def helper():
    """The recorder's compiled helper, built or loaded from the cache; skipped only where it cannot be built."""
    ok, reason = fastpath.build()
    if not ok:
        if reason.startswith("compiler missing") or "GRADVIZ_NO_BUILD" in reason:
            pytest.skip(reason)
        if os.environ.get("GRADVIZ_RECORD_PYTHON", "") not in ("", "0"):
            pytest.skip("GRADVIZ_RECORD_PYTHON is set")
        pytest.fail(f"the recorder's helper failed to build: {reason}")
    if fastpath.helper() is None:
        pytest.skip(fastpath.status())
    return fastpath.helper()
