"""Recording a model on both paths (the compiled helper's and Python's), and the text that compares them."""
import json

from gradviz.core import fastpath, record
from gradviz.core.serialize import recording_to_json


def record_both(target, **kw):
    """`record(target, **kw)` with the helper, then with Python alone: (compiled, python)."""
    compiled = record(target, **kw)
    with fastpath.python_only():
        assert fastpath.helper() is None
        python = record(target, **kw)
    return compiled, python


def recording_text(rec) -> str:
    """The recording's JSON with sorted keys, without the timings (which differ between runs)."""
    data = recording_to_json(rec)
    data["meta"].pop("seconds", None)
    return json.dumps(data, sort_keys=True, default=str)
