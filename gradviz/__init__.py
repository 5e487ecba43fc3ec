"""gradviz: see PyTorch autograd at work.

Record a model's forward and backward pass exactly, step through it, and check every gradient::

    import gradviz
    rec = gradviz.record("repeated-layer")
    print(gradviz.run_checks(rec).format())
"""
from .core import (BuildResult, CheckTable, GradvizError, Recording, Stepper, Timeline, record,  # noqa: F401
                   run_checks)

__version__ = "0.1.0"
__all__ = ["record", "run_checks", "Recording", "Timeline", "Stepper", "CheckTable", "BuildResult",
           "GradvizError", "__version__"]
