"""The gradviz core: recording, graph model, stepping, checks. Never imports Qt."""
from .checks import CheckTable, run_checks
from .errors import GradvizError
from .recorder import BuildResult, Cancelled, record
from .recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording
from .tensors import TensorData
from .timeline import Stepper, StepState, Timeline

__all__ = ["record", "run_checks", "Recording", "GraphNode", "ForwardEvent", "BackwardEvent", "Contribution",
           "LeafInfo", "TensorData", "Timeline", "Stepper", "StepState", "CheckTable", "BuildResult",
           "GradvizError", "Cancelled"]
