"""The desktop app: Qt views of the core's recording and stepper. The only package that imports Qt."""
from .pyside_fix import protect_none as _protect_none

# PySide6 6.12 on Python 3.11 drops a reference to None on every void call; painting a large graph
# would abort Python (see pyside_fix). Guard every use of the Qt layer, the app's included.
_protect_none()
