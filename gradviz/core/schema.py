"""The one schema of a recording, built once from its dataclasses: what every file and listing holds.

`fields_of(cls)` lists the stored fields of a record type (`Recording`, `ForwardEvent`, `GraphNode`,
`BackwardEvent`, `LeafInfo`, `Contribution`, `TensorData`, and the check table's rows), read from
``dataclasses.fields``: every field except back-links and caches (names starting with ``_``, and
`NOT_STORED`). Each `Field` says what its value is (its `kind`, from the annotation, or from `REFS`
where the value refers to something: a node, a forward event, a tensor) and how it is written (its
`codec`). Everything that writes or reads a recording walks these lists:

- the ``.gradviz`` file (`gradviz.core.storage`: tensors once in ``"tensors"``, arrays in ``.npy``),
- its validation before anything is built (`gradviz.core.validate`),
- ``gradviz inspect --json`` and the ``.json`` export (`gradviz.core.serialize`: tensors in place),
- GraphML's node attributes (`gradviz.core.exporters`),

so a field added to a dataclass reaches all of them, and they cannot drift apart. They share one
format name and version, `FORMAT` and `VERSION`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

from .recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording
from .tensors import TensorData

__all__ = ["FORMAT", "VERSION", "EARLIER_FORMATS", "Field", "fields_of", "NOT_STORED", "REFS", "RECORDS",
           "scalar_fields"]

FORMAT = "gradviz-recording"
VERSION = 1
# the same format under the name gradviz 0.1 wrote in .gradviz files before the schema was one
EARLIER_FORMATS = ("gradviz-saved-recording",)

# fields that are never stored: a back-link rebuilt on reading (besides caches named ``_...``)
NOT_STORED = {(Contribution, "leaf")}

# what each stored field refers to, where its annotation alone does not say
REFS: dict[tuple[type, str], str] = {
    (ForwardEvent, "index"): "position", (ForwardEvent, "node"): "node?",
    (ForwardEvent, "inputs"): "tensors", (ForwardEvent, "outputs"): "tensors",
    (ForwardEvent, "input_nodes"): "nodes?",
    (GraphNode, "id"): "position", (GraphNode, "forward_event"): "forward?", (GraphNode, "kind"): "kind",
    (GraphNode, "saved"): "mapping",
    (BackwardEvent, "index"): "position", (BackwardEvent, "node"): "node",
    (BackwardEvent, "grad_outputs"): "tensors?", (BackwardEvent, "grad_inputs"): "tensors?",
    (LeafInfo, "node"): "node?", (LeafInfo, "contributions"): "records",
    (Contribution, "producer"): "node", (Contribution, "slot"): "slot",
    (Contribution, "backward_event"): "backward-or-none",
    (Recording, "root"): "node", (Recording, "forward"): "records", (Recording, "nodes"): "records",
    (Recording, "backward"): "records", (Recording, "leaves"): "records",
    (Recording, "edges"): "edges", (Recording, "input_edges"): "edges",
    (Recording, "leaf_order"): "names", (Recording, "source_values"): "tensors",
    (Recording, "manual"): "pairs?", (Recording, "budget_bytes"): "count",
    (TensorData, "shape"): "shape", (TensorData, "value"): "array?", (TensorData, "stats"): "mapping?",
}

# the record type of each list of records
RECORDS: dict[tuple[type, str], type] = {
    (Recording, "forward"): ForwardEvent, (Recording, "nodes"): GraphNode, (Recording, "backward"): BackwardEvent,
    (Recording, "leaves"): LeafInfo, (LeafInfo, "contributions"): Contribution,
}

# a plain annotation -> its kind (anything else is "plain": JSON with tags for what JSON cannot hold)
_BY_ANNOTATION = {"int": "int", "int|None": "int?", "str": "str", "str|None": "str?", "bool": "bool",
                  "float": "float", "float|None": "float?", "TensorData|None": "tensor?", "TensorData": "tensor",
                  "dict": "mapping", "dict|None": "mapping?"}

# kind -> how the value is written; every other kind is one JSON scalar (int, str, bool, float, a reference)
_CODECS = {"tensor": "tensor", "tensors": "tensors", "records": "records", "edges": "edges", "pairs": "pairs",
           "shape": "shape", "array": "array", "mapping": "plain", "plain": "plain", "names": "plain",
           "nodes": "plain"}


@dataclass(frozen=True)
class Field:
    """One stored field of a record type.

    Attributes
    ----------
    name : str
        The dataclass field, and the key it is written under.
    kind : str
        What the value is: ``"int"``, ``"str?"``, ``"node"`` (a node id), ``"tensors"``,
        ``"records"``...; a trailing ``?`` means it may be null.
    required : bool
        The dataclass has no default for it, so a file must hold it.
    codec : str
        How it is written: ``"scalar"``, ``"tensor"`` (one tensor or null), ``"tensors"`` (a list of
        them), ``"plain"`` (tagged JSON), ``"records"`` (a list of records of `record`),
        ``"edges"`` (``[int, int, int]`` triples), ``"pairs"`` (``[name, value]`` pairs of a mapping),
        ``"shape"`` (a list of sizes), ``"array"`` (a tensor's values).
    record : type or None
        The record type of a ``"records"`` field.
    is_tuple, is_dict : bool
        The annotation is a tuple (a list read back is made one) or a dict (records are kept by
        their ``name``).
    """

    name: str
    kind: str
    required: bool
    codec: str
    record: type | None = None
    is_tuple: bool = False
    is_dict: bool = False

    @property
    def optional(self) -> bool:
        """Whether the value may be null."""
        return self.kind.endswith("?")


@cache
def fields_of(cls: type) -> tuple[Field, ...]:
    """The stored fields of record type `cls`, in the dataclass's order."""
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_") or (cls, f.name) in NOT_STORED:
            continue
        ann = str(f.type).replace(" ", "")
        kind = REFS.get((cls, f.name)) or _BY_ANNOTATION.get(ann, "plain")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append(Field(f.name, kind, required, _CODECS.get(kind.rstrip("?"), "scalar"),
                         RECORDS.get((cls, f.name)), ann.startswith("tuple"), ann.startswith("dict")))
    return tuple(out)


def scalar_fields(cls: type) -> tuple[Field, ...]:
    """The fields of `cls` written as one JSON scalar (text, numbers, references): GraphML's attributes."""
    return tuple(f for f in fields_of(cls) if f.codec == "scalar")

