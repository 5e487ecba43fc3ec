"""What a ``.gradviz`` file holds: one recording and the check table stored with it."""
from __future__ import annotations

from dataclasses import dataclass

from .checktable import CheckTable
from .recording import Recording

__all__ = ["Document"]


@dataclass(eq=False)
class Document:
    """A saved recording: the data, and the checks run when the model could still run.

    Attributes
    ----------
    recording : Recording
    checks : CheckTable or None
        The table stored at record time (``gradviz record`` runs and stores it), or None. A file
        cannot re-run its model, so these are the only finite-difference and gradcheck rows it has.
    """

    recording: Recording
    checks: CheckTable | None = None
