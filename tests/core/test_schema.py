"""One schema, built from the dataclasses, behind the .gradviz file, inspect --json and GraphML."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import gradviz
from gradviz.core import exporters
from gradviz.core.recording import BackwardEvent, Contribution, ForwardEvent, GraphNode, LeafInfo, Recording
from gradviz.core.schema import EARLIER_FORMATS, FORMAT, VERSION, fields_of, scalar_fields
from gradviz.core.serialize import recording_to_json
from gradviz.core.storage import _Decoder, _Encoder, read_document
from gradviz.core.tensors import TensorData

DATA = Path(__file__).parent / "data"


def names(cls) -> set[str]:
    return {f.name for f in fields_of(cls)}


@pytest.fixture(scope="module")
def rec():
    return gradviz.record("repeated-layer")


@pytest.fixture(scope="module")
def saved(rec, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("schema") / "run.gradviz"
    rec.save(path)
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("recording.json"))


def test_the_schema_is_the_dataclasses_fields():
    # every field but caches (_...) and the contribution's back-link to its leaf
    assert names(GraphNode) == {"id", "name", "kind", "torch_name", "module", "use", "uses", "backend", "source",
                                "forward_event", "leaf", "function", "saved", "tensor", "device"}
    assert names(Contribution) == {"producer", "slot", "value", "backward_event", "reduced_from"}
    assert names(TensorData) == {"shape", "dtype", "device", "value", "stats", "requires_grad", "uid"}
    assert "_graph" not in names(Recording) and "source_values" in names(Recording)


def test_the_file_holds_every_field_of_the_schema(saved):
    assert (saved["format"], saved["version"]) == (FORMAT, VERSION)
    assert set(saved) == names(Recording) | {"format", "version", "checks", "tensors"}
    for key, cls in (("forward", ForwardEvent), ("nodes", GraphNode), ("backward", BackwardEvent),
                     ("leaves", LeafInfo), ("tensors", TensorData)):
        assert all(set(entry) == names(cls) for entry in saved[key]), key
    contributions = [c for leaf in saved["leaves"] for c in leaf["contributions"]]
    assert contributions and all(set(c) == names(Contribution) for c in contributions)


def test_inspect_json_has_the_same_fields_and_format(rec):
    data = recording_to_json(rec)
    assert (data["format"], data["version"]) == (FORMAT, VERSION)
    # the file's fields, less what only re-running checks needs, plus the engine's order
    assert set(data) == names(Recording) - {"source_values", "manual"} | {"format", "version", "backward_order"}
    assert all(set(n) == names(GraphNode) for n in data["nodes"])
    assert all(set(e) == names(ForwardEvent) for e in data["forward"])
    assert all(set(e) == names(BackwardEvent) for e in data["backward"])
    # leaves keyed by name, their tensor as shape and value
    assert all(set(leaf) == names(LeafInfo) - {"name", "tensor"} | {"shape", "value"}
               for leaf in data["leaves"].values())
    contributions = [c for leaf in data["leaves"].values() for c in leaf["contributions"]]
    assert contributions and all(set(c) == names(Contribution) | {"running_sum"} for c in contributions)
    # a tensor in place: its fields at their defaults left out, never its id in a file
    tensors = [t for e in data["forward"] for t in e["outputs"]]
    assert all({"shape", "dtype", "device", "value"} <= set(t) <= names(TensorData) - {"uid"} for t in tensors)


def test_graphml_attributes_are_the_schema_scalars(rec, tmp_path):
    out = exporters.export(rec, tmp_path / "g.graphml")
    g = nx.read_graphml(out, force_multigraph=True)
    scalars = {f.name for f in scalar_fields(GraphNode)} - {"id"}
    assert scalars == {"name", "kind", "torch_name", "module", "use", "uses", "backend", "source", "forward_event",
                       "leaf", "function", "device"}
    for n in rec.nodes:
        attrs = g.nodes[str(n.id)]
        # every scalar the node has is an attribute, with its value (GraphML has no null: None is left out)
        assert {k for k in scalars if getattr(n, k) is not None} <= set(attrs)
        assert all(str(attrs[k]) == str(getattr(n, k)) for k in scalars if getattr(n, k) is not None)


@pytest.mark.parametrize("name", ["repeated-layer", "mlp"])
def test_files_under_the_earlier_name_open(name):
    path = DATA / f"v1-{name}.gradviz"
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("recording.json"))["format"] == EARLIER_FORMATS[0]
    assert read_document(path).recording.target == name


@dataclass(eq=False)
class _NewRecord:
    """A record type with a field of every kind, as a field added to a dataclass would be."""

    id: int
    label: str
    tensor: TensorData | None
    extra: dict = field(default_factory=dict)
    note: str | None = None
    flag: bool = False
    reduced: tuple | None = None


def test_a_new_field_is_written_and_read_back_from_its_dataclass():
    # nothing in storage names these fields: they come from dataclasses.fields
    t = TensorData((2,), "float32", "cpu", np.array([1.5, -2.0], dtype=np.float32), uid=7)
    obj = _NewRecord(3, "x", t, {"k": (1, 2), "nan": float("nan")}, None, True, (4, 5))
    enc = _Encoder()
    entry = json.loads(json.dumps(enc.record(_NewRecord, obj)))
    arrays = {name: np.concatenate(parts) for name, parts in enc.arrays.items()}
    back = _Decoder(Path("x"), {"tensors": json.loads(json.dumps(enc.tensors))}, arrays).record(_NewRecord, entry)
    assert (back.id, back.label, back.note, back.flag, back.reduced) == (3, "x", None, True, (4, 5))
    assert back.extra["k"] == (1, 2) and np.isnan(back.extra["nan"])
    assert back.tensor.shape == (2,) and back.tensor.uid == 7 and back.tensor.value.tolist() == [1.5, -2.0]
