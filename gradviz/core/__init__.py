"""The gradviz core: recording, graph model, stepping, checks. Never imports Qt."""
# exporters (and storage, which it imports) register Recording.save/export/_repr_svg_ on import
from . import exporters as _exporters  # noqa: F401
from .buildresult import BuildResult
from .checks import CheckTable, run_checks
from .document import Document
from .errors import Cancelled, GradvizError
from .recorder import RecordedRun, record, record_run
from .recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording
from .rerun import Rerun, rerun_of
from .tensors import TensorData
from .timeline import Stepper, StepState, Timeline

__all__ = ["record", "run_checks", "Recording", "GraphNode", "ForwardEvent", "BackwardEvent", "Contribution",
           "LeafInfo", "TensorData", "Timeline", "Stepper", "StepState", "CheckTable", "BuildResult",
           "GradvizError", "Cancelled", "record_run", "RecordedRun", "Rerun", "rerun_of", "Document"]
