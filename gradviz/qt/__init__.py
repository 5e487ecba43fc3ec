"""The desktop app: Qt views of the core's recording and stepper. The only package that imports Qt."""
from .pyside_fix import protect_none as _protect_none

__all__ = ["none_refcount_guarded"]

# PySide6 6.12.0 on Python 3.11 drops references to None/True/False (see pyside_fix): guard every
# use of the Qt layer, the app and the image exporters included.
none_refcount_guarded = _protect_none()
