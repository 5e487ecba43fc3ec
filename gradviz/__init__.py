"""gradviz: see PyTorch autograd at work.

Record a model's forward and backward pass exactly, step through it, and check every gradient::

    import gradviz
    rec = gradviz.record("repeated-layer")
    print(gradviz.run_checks(rec).format())
"""
import gc as _gc

# importing torch makes ~10^5 objects that live as long as the process: the cycle collector's runs
# meanwhile (~400, a tenth of a second of the command line's start) would walk them and free nothing.
# Paused, then the objects moved to the oldest generation, where only full collections look
_gc_was_enabled = _gc.isenabled()
_gc.disable()
try:
    from .core import (BuildResult, CheckTable, GradvizError, Recording, Stepper, Timeline,  # noqa: F401
                       record, run_checks)
    from .core.sandbox import promote_to_oldest as _promote_to_oldest

    _promote_to_oldest()
finally:
    if _gc_was_enabled:
        _gc.enable()

__version__ = "0.1.0"
__all__ = ["record", "run_checks", "Recording", "Timeline", "Stepper", "CheckTable", "BuildResult",
           "GradvizError", "__version__"]
