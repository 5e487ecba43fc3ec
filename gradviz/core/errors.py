"""Errors that gradviz reports to the user as one clear message (exit code 2 on the command line)."""
from __future__ import annotations

__all__ = ["GradvizError", "ScriptError", "GraphTooLarge", "NonFiniteError", "InplaceModifiedError", "Cancelled",
           "BackendUnavailable", "ChildWarning"]


class GradvizError(Exception):
    """A problem with the user's input, reported as a message that names the problem and the fix.

    Parameters
    ----------
    message : str
        What went wrong, in one sentence.
    hint : str, optional
        What to do about it.
    details : str, optional
        Extra lines shown under the message (for example the user's own stack frames).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str = "", details: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def format(self) -> str:
        """Return the full text shown to the user."""
        text = f"error: {self.message}"
        if self.details:
            text += "\n" + self.details.rstrip()
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def __str__(self) -> str:  # pragma: no cover - exercised through format()
        return self.format()


class ScriptError(GradvizError):
    """The user's model script is missing, malformed, or raised."""


class GraphTooLarge(GradvizError):
    """The autograd graph has more nodes than the configured limit."""


class NonFiniteError(GradvizError):
    """A NaN or Inf appeared in the forward or backward pass."""


class InplaceModifiedError(GradvizError):
    """A tensor saved for backward was modified in place afterwards."""


class Cancelled(Exception):
    """Long work (recording, checks, saving, exporting) was cancelled by the caller.

    Not a `GradvizError`: nothing went wrong, so there is nothing to report but that it stopped.
    """


class BackendUnavailable(GradvizError):
    """A backend asked for by name cannot run here (no CUDA, no compiler, a build error)."""


class ChildWarning(UserWarning):
    """A warning the model's child process printed, passed on as its one finished line (``warning: ...``)."""
