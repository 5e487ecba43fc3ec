"""Saved recordings: round trips, hostile and damaged files, atomic writes."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gradviz
from gradviz.core.atomic import TEMP_PREFIX
from gradviz.core.checks import run_checks
from gradviz.core.errors import GradvizError
from gradviz.core.serialize import recording_to_json
from gradviz.core.rerun import rerun_of
from gradviz.core.storage import (STORAGE_VERSION, load_recording, read_document, save_recording, write_document,
                                  write_recording)


@pytest.fixture(scope="module")
def recs():
    return {name: gradviz.record(name) for name in ("sum-xy-plus-z", "repeated-layer", "rnn-unrolled", "mlp",
                                                     "linear-function")}


def _same(a, b):
    ja, jb = recording_to_json(a), recording_to_json(b)
    assert json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True)


@pytest.mark.parametrize("name", ["sum-xy-plus-z", "repeated-layer", "rnn-unrolled", "mlp", "linear-function"])
def test_round_trip_same_graph_events_values(recs, tmp_path, name):
    rec = recs[name]
    path = tmp_path / "run.gradviz"
    save_recording(rec, path)
    back = load_recording(path)
    _same(rec, back)
    assert rerun_of(back) is None and read_document(path).checks is None
    assert not hasattr(back, "runner") and not hasattr(back, "stored_checks")
    assert back.edges == rec.edges and back.input_edges == rec.input_edges
    assert back.backward_order == rec.backward_order
    assert back.leaf_order == rec.leaf_order
    assert back.params == rec.params and back.meta == rec.meta and back.dropped == rec.dropped
    assert len(back.source_values) == len(rec.source_values)
    for a, b in zip(rec.source_values, back.source_values):
        assert a.uid == b.uid and (a.value is None or np.array_equal(a.value, b.value))
    assert (rec.manual is None) == (back.manual is None)
    for k, v in (rec.manual or {}).items():
        assert (v is None and back.manual[k] is None) or np.array_equal(v, back.manual[k])
    for a, b in zip(rec.nodes, back.nodes):
        assert a.saved.keys() == b.saved.keys()
        for k in a.saved:
            va, vb = a.saved[k], b.saved[k]
            if isinstance(va, gradviz.core.TensorData):
                assert np.array_equal(va.value, vb.value) and va.value.dtype == vb.value.dtype
            else:
                assert va == vb and type(va) is type(vb)


def test_shared_tensor_snapshots_stay_shared(recs, tmp_path):
    rec = recs["repeated-layer"]
    save_recording(rec, tmp_path / "r.gradviz")
    back = load_recording(tmp_path / "r.gradviz")

    def sharing(r):
        seen, pairs = {}, []
        every = [t for e in r.backward for t in e.grad_inputs + e.grad_outputs]
        every += [c.value for i in r.leaves.values() for c in i.contributions]
        every += [t for e in r.forward for t in e.inputs + e.outputs]
        for k, t in enumerate(every):
            if t is not None:
                pairs.append(seen.setdefault(id(t), k))
        return pairs

    assert sharing(rec) == sharing(back)
    assert len(set(sharing(back))) < len(sharing(back))  # the model does share snapshots


def test_contributions_reduced_from_and_running_sums(tmp_path):
    rec = gradviz.record("repeated-layer", params={"k": 3})
    # torch's own ops reduce broadcasts themselves, so mark one contribution as an engine reduction
    first = next(iter(rec.leaves.values())).contributions[0]
    first.reduced_from = (4,) + tuple(first.value.shape)
    reduced = [c.reduced_from for i in rec.leaves.values() for c in i.contributions]
    assert sum(r is not None for r in reduced) == 1
    save_recording(rec, tmp_path / "b.gradviz")
    back = load_recording(tmp_path / "b.gradviz")
    assert [c.reduced_from for i in back.leaves.values() for c in i.contributions] == reduced
    assert all(type(r) is tuple for r in reduced if r is not None)
    for name, info in back.leaves.items():
        for c, c0 in zip(info.contributions, rec.leaves[name].contributions):
            assert c.leaf is info
            assert np.array_equal(c.running_sum.value, c0.running_sum.value)


def test_keep_values_false_and_nonfinite_stats(tmp_path):
    rec = gradviz.record("mlp", keep_values=False)
    rec.meta["odd"] = {"nan": float("nan"), "tuple": (1, 2), "complex": 1 + 2j, 3: "int key", "$x": 1}
    save_recording(rec, tmp_path / "k.gradviz")
    back = load_recording(tmp_path / "k.gradviz")
    assert back.keep_values is False
    odd = back.meta["odd"]
    assert np.isnan(odd["nan"]) and odd["tuple"] == (1, 2) and odd["complex"] == 1 + 2j
    assert odd[3] == "int key" and odd["$x"] == 1
    assert all(t.value is None for e in back.backward for t in e.grad_inputs if t is not None)


def test_stored_checks_round_trip(recs, tmp_path):
    rec = recs["sum-xy-plus-z"]
    table = run_checks(rec)
    save_recording(rec, tmp_path / "c.gradviz", checks=table)
    doc = read_document(tmp_path / "c.gradviz")
    assert doc.checks.to_json() == table.to_json()
    assert doc.checks.format() == table.format()
    # checks run on the opened file skip what needs the model, with that reason
    fresh = run_checks(doc.recording)
    assert any("opened from a file" in r.detail for r in fresh.rows if r.status == "skipped")


def test_saving_an_opened_recording_again_keeps_everything(recs, tmp_path):
    rec = recs["rnn-unrolled"]
    table = run_checks(rec)
    save_recording(rec, tmp_path / "a.gradviz", checks=table)
    once = read_document(tmp_path / "a.gradviz")
    write_document(tmp_path / "b.gradviz", once)  # its stored checks go with it
    twice = read_document(tmp_path / "b.gradviz")
    _same(rec, twice.recording)
    assert twice.checks.to_json() == table.to_json()


def test_recording_save_method(recs, tmp_path):
    out = recs["mlp"].save(tmp_path / "m.gradviz")
    assert out.exists()
    _same(recs["mlp"], load_recording(out))


# ---------------------------------------------------------------------------------------------
# damaged and hostile files

def _saved_bytes(rec, tmp_path) -> bytes:
    save_recording(rec, tmp_path / "good.gradviz")
    return (tmp_path / "good.gradviz").read_bytes()


def _rezip(tmp_path, members: dict, name="bad.gradviz", compression=zipfile.ZIP_DEFLATED):
    p = tmp_path / name
    with zipfile.ZipFile(p, "w", compression) as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return p


def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _refused(path, *words):
    with pytest.raises(GradvizError) as err:
        load_recording(path)
    text = err.value.format()
    for w in words:
        assert w in text, text
    return text


def test_truncated_file_refused(recs, tmp_path):
    data = _saved_bytes(recs["mlp"], tmp_path)
    for cut in (10, len(data) // 2, len(data) - 30):
        p = tmp_path / f"t{cut}.gradviz"
        p.write_bytes(data[:cut])
        _refused(p, "cannot open", "truncated")


def test_not_a_zip_and_missing_refused(tmp_path):
    p = tmp_path / "x.gradviz"
    p.write_text("hello")
    _refused(p, "not a zip")
    _refused(tmp_path / "nope.gradviz", "no such file")
    _refused(tmp_path, "folder")


def test_corrupted_member_refused(recs, tmp_path):
    data = bytearray(_saved_bytes(recs["mlp"], tmp_path))
    # flip bytes in the middle of the stored float array: the CRC check catches it
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("arrays/float32.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 8] = b"\xff" * 8
    p = tmp_path / "c.gradviz"
    p.write_bytes(bytes(data))
    _refused(p, "arrays/float32.npy", "corrupted", "CRC")


def test_broken_json_fields_refused(recs, tmp_path):
    members = _members(_saved_bytes(recs["mlp"], tmp_path))
    doc = json.loads(members["recording.json"])
    doc["edges"][0] = [0, 10**6, 0]
    _refused(_rezip(tmp_path, {**members, "recording.json": json.dumps(doc)}), "edges[0][1]", "out of range")
    doc = json.loads(members["recording.json"])
    del doc["nodes"][0]["kind"]
    _refused(_rezip(tmp_path, {**members, "recording.json": json.dumps(doc)}), "nodes[0]", "'kind'")
    doc = json.loads(members["recording.json"])
    doc["tensors"][0]["value"]["offset"] = 10**12
    _refused(_rezip(tmp_path, {**members, "recording.json": json.dumps(doc)}), "arrays/float32.npy", "uses")
    _refused(_rezip(tmp_path, {**members, "recording.json": b"{not json"}), "not valid JSON")


def test_newer_version_refused(recs, tmp_path):
    members = _members(_saved_bytes(recs["mlp"], tmp_path))
    doc = json.loads(members["recording.json"])
    doc["version"] = STORAGE_VERSION + 1
    text = _refused(_rezip(tmp_path, {**members, "recording.json": json.dumps(doc)}), "newer gradviz",
                    f"version {STORAGE_VERSION + 1}", "upgrade")
    assert "\n" not in text


def test_pickle_inside_refused(recs, tmp_path):
    members = _members(_saved_bytes(recs["mlp"], tmp_path))

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    # a pickle as an extra member
    _refused(_rezip(tmp_path, {**members, "data.pkl": pickle.dumps(Boom())}), "unexpected member", "data.pkl")
    # a pickled object array where an array is expected
    buf = io.BytesIO()
    np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
    _refused(_rezip(tmp_path, {**members, "arrays/float32.npy": buf.getvalue()}), "object", "never loaded")
    assert not (tmp_path / "PWNED").exists()


def test_path_traversal_and_odd_names_refused(recs, tmp_path):
    members = _members(_saved_bytes(recs["mlp"], tmp_path))
    for name in ("../evil.json", "/etc/passwd", "arrays/../../x.npy", "arrays/Float32.npy"):
        _refused(_rezip(tmp_path, {**members, name: b"x"}), "unexpected member")
    assert not (tmp_path.parent / "evil.json").exists()


def test_huge_declared_sizes_refused(recs, tmp_path):
    members = _members(_saved_bytes(recs["mlp"], tmp_path))
    # an array header declaring far more elements than the member holds: refused before allocation
    head = io.BytesIO()
    np.lib.format.write_array_header_2_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    _refused(_rezip(tmp_path, {**members, "arrays/float32.npy": head.getvalue() + b"\0" * 64}),
             "declares 1000000000000 elements")
    # a zip bomb: a member that expands far beyond its compressed size
    bomb = _rezip(tmp_path, {**members, "arrays/float64.npy": b"\0" * (64 << 20)}, name="bomb.gradviz")
    _refused(bomb, "zip bomb")
    # too many members
    many = {**members, **{f"arrays/f{i}.npy": b"" for i in range(80)}}
    _refused(_rezip(tmp_path, many), "members")
    # total declared size over the caller's limit
    with pytest.raises(GradvizError, match="more than the limit of 1000 bytes"):
        load_recording(tmp_path / "good.gradviz", max_bytes=1000)


def test_forged_declared_size_in_zip_headers_refused(recs, tmp_path):
    data = bytearray(_saved_bytes(recs["mlp"], tmp_path))
    # rewrite the central directory's uncompressed size of recording.json to 4 GB
    import struct

    cd = data.find(b"PK\x01\x02")
    idx = data.find(b"PK\x01\x02")
    while idx != -1:
        name_len = struct.unpack_from("<H", data, idx + 28)[0]
        if data[idx + 46:idx + 46 + name_len] == b"recording.json":
            struct.pack_into("<I", data, idx + 24, 0xFFFFFFF0)
        idx = data.find(b"PK\x01\x02", idx + 4)
    assert cd != -1
    p = tmp_path / "forged.gradviz"
    p.write_bytes(bytes(data))
    _refused(p, "cannot open", "4294967280 bytes")


# ---------------------------------------------------------------------------------------------
# atomic writes

def test_failed_save_keeps_old_file_and_leaves_no_temp(recs, tmp_path, monkeypatch):
    path = tmp_path / "run.gradviz"
    save_recording(recs["sum-xy-plus-z"], path)
    before = path.read_bytes()

    def explode(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(np.lib.format, "write_array_header_2_0", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_recording(recs["mlp"], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.gradviz"]
    _same(recs["sum-xy-plus-z"], load_recording(path))


def test_cancelled_save_leaves_nothing(recs, tmp_path):
    from gradviz.core.errors import Cancelled

    rec = gradviz.record("rnn-unrolled", params={"T": 200})
    with pytest.raises(Cancelled):
        save_recording(rec, tmp_path / "c.gradviz", cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths_have_clear_messages(recs, tmp_path):
    with pytest.raises(GradvizError, match="does not exist"):
        save_recording(recs["mlp"], tmp_path / "no" / "such" / "dir.gradviz")
    with pytest.raises(GradvizError, match="folder"):
        save_recording(recs["mlp"], tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(GradvizError, match="permission"):
            save_recording(recs["mlp"], ro / "x.gradviz")
    finally:
        ro.chmod(0o700)


def test_write_recording_is_plain_zip_of_json_and_npy(recs, tmp_path):
    write_recording(recs["mlp"], tmp_path / "plain.gradviz")
    with zipfile.ZipFile(tmp_path / "plain.gradviz") as zf:
        names = sorted(zf.namelist())
        assert names[-1] == "recording.json" and all(n.startswith("arrays/") for n in names[:-1])
        arr = np.load(io.BytesIO(zf.read("arrays/float32.npy")), allow_pickle=False)
        assert arr.ndim == 1 and arr.dtype == np.float32
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# files written by earlier versions keep opening

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["repeated-layer", "mlp"])
def test_format_v1_files_still_open(name):
    """Files written (before the schema was unified) by gradviz 0.1's storage, with their inspect --json."""
    doc = read_document(DATA / f"v1-{name}.gradviz")
    expected = json.loads((DATA / f"v1-{name}.inspect.json").read_text())
    got = json.loads(json.dumps(recording_to_json(doc.recording, values=True, checks=doc.checks)))
    assert got == expected
    assert (doc.checks is not None) == ("checks" in expected)
