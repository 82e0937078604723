"""checkpoints.lock: generated from code, strictly validated, resolved from a hub."""

from __future__ import annotations

import copy
import json
import struct

import pytest
from hub_helpers import DATA_REPO, MODEL_REPO, TINY

from optimal_sparsity.accounting import count_params
from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.grid import paper_models
from optimal_sparsity.hub import safetensors_header
from optimal_sparsity.hub.lock import DEFAULT_LOCK, from_dict, load_lock
from optimal_sparsity.hub.skeleton import DATASETS, UNRESOLVED_OFFLINE, skeleton
from optimal_sparsity.hub.update import update_lock


@pytest.fixture(scope="module")
def shipped():
    return load_lock(DEFAULT_LOCK)


def test_shipped_lock_is_what_the_code_generates(shipped):
    assert skeleton(previous=shipped).dumps() == DEFAULT_LOCK.read_text()


def test_shipped_lock_covers_the_release_and_records_its_state(shipped):
    math = [e for e in shipped.models if e.family == "math"]
    assert [e.repo_id for e in math] == [pm.hf_repo for pm in paper_models()]
    assert len(math) == 65
    for pm, e in zip(paper_models(), math, strict=True):
        pc = count_params(pm.config())
        assert (e.grid.d, e.grid.E, e.grid.k, e.grid.n_layers) == (pm.d, pm.E, pm.k, 16)
        assert (e.expected.total_params, e.expected.active_params) == (pc.total, pc.active)
        assert (e.expected.total_name, e.expected.active_name) == (pm.total_name, pm.active_name)
    code = [e for e in shipped.models if e.family == "code"]
    assert [e.repo_id for e in code] == ["llm-jp/optimal-sparsity-code-d512-E8-k2-320M-A170M"]
    assert "code_eval.sh" in code[0].source and "no public list" in shipped.code_models_note
    assert [d.repo_id for d in shipped.datasets] == [s.repo_id for s in DATASETS]
    # No machine here reaches the hub: every entry says so instead of carrying a guess.
    for e in shipped.entries:
        if not e.pinned:
            assert e.files is None and e.unresolved_reason == UNRESOLVED_OFFLINE


def _pinned_entry():
    return {"name": "x", "repo_id": "org/x", "family": "test",
            "grid": {"d": 32, "E": 4, "k": 2, "layers": 2},
            "expected": {"total_params": 10, "active_params": 5, "total_name": "",
                         "active_name": ""},
            "source": "test", "revision": "a" * 40, "unresolved_reason": None,
            "files": [{"path": "config.json", "size": 3, "sha256": "b" * 64},
                      {"path": "model.safetensors", "size": 9, "sha256": "c" * 64}]}


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda e: e.update(revision="main"), "revision must be 40 lowercase hex digits"),
    (lambda e: e.update(revision=None, unresolved_reason="offline"),
     "files must be null while the revision is null"),
    (lambda e: e.update(revision=None, files=None, unresolved_reason=""),
     "unresolved_reason must say why"),
    (lambda e: e["files"][1].update(path="pytorch_model.bin"), "pickled-weights file"),
    (lambda e: e["files"][1].update(path="../model.safetensors"), "unsafe path"),
    (lambda e: e["files"][0].update(sha256="B" * 64), "sha256 must be 64 lowercase hex"),
    (lambda e: e["files"].pop(0), "lists config.json"),
    (lambda e: e.update(extra=1), "fields must be exactly"),
    (lambda e: e["grid"].update(k=8), "grid k exceeds E"),
])
def test_lock_validation_refuses_malformed_entries(shipped, mutate, message):
    data = json.loads(shipped.dumps())
    good = _pinned_entry()
    data["models"] = [copy.deepcopy(good)]
    assert from_dict(data).find("x").pinned
    bad = copy.deepcopy(good)
    mutate(bad)
    data["models"] = [bad]
    with pytest.raises(IntegrityError, match=message):
        from_dict(data, "test.lock")


def test_write_skeleton_keeps_resolved_pins(shipped):
    data = json.loads(shipped.dumps())
    data["models"][0].update(revision="d" * 40, unresolved_reason=None, files=[
        {"path": "config.json", "size": 1, "sha256": "e" * 64},
        {"path": "model.safetensors", "size": 2, "sha256": "f" * 64}])
    regenerated = skeleton(previous=from_dict(data))
    assert regenerated.models[0].revision == "d" * 40
    assert regenerated.static_view() == shipped.static_view()


def test_update_pins_revisions_and_hashes_from_the_hub(hub, hub_root, unpinned_lock):
    logs: list[str] = []
    report = update_lock(unpinned_lock, ["tiny", "tiny-gsm", "pickled"],
                         endpoint=hub.endpoint, token=False, log=logs.append)
    assert report.resolved == ("tiny", "tiny-gsm")
    assert [n for n, _ in report.failed] == ["pickled"]
    model = report.lock.find("tiny")
    assert model.revision == hub.server.commit(MODEL_REPO)
    for f in model.files:  # LFS files from metadata, small files hashed after download
        served = hub_root / "models" / MODEL_REPO / f.path
        assert (f.size, f.sha256) == (served.stat().st_size, sha256_file(served))
    data = report.lock.find("tiny-gsm")
    assert data.revision == hub.server.commit(DATA_REPO, kind="dataset")
    assert "other/unused.jsonl" not in [f.path for f in data.files]
    # Unselected entries are untouched, and the result round-trips through the file format.
    path = report.lock.save(hub.tmp / "test.lock")
    assert load_lock(path).find("tiny") == model
    assert not load_lock(path).find("pickled").pinned


def test_update_of_a_missing_repo_leaves_the_entry_unpinned(hub, unpinned_lock):
    from dataclasses import replace

    lock = unpinned_lock.with_entry(replace(unpinned_lock.find("tiny"), repo_id="org/missing"))
    report = update_lock(lock, ["tiny"], endpoint=hub.endpoint, token=False, log=lambda _: None)
    assert report.resolved == () and "org/missing" in report.failed[0][1]
    assert report.lock.find("tiny") == lock.find("tiny")


def test_header_count_equals_the_model_count(hub_root):
    weights = hub_root / "models" / MODEL_REPO / "model.safetensors"
    counted = safetensors_header.count_params([weights], TINY.n_experts, TINY.top_k)
    pc = count_params(TINY)
    assert (counted.total, counted.active) == (pc.total, pc.active)
    assert counted.expert == pc.expert and counted.router == pc.router


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: b[:-1], "truncated or padded"),
    (lambda b: b + b"\0", "truncated or padded"),
    (lambda b: b[:4], "too short"),
    (lambda b: struct.pack("<Q", 1 << 40) + b[8:], "does not fit"),
    (lambda b: b[:8] + b"[" + b[9:], "not valid JSON"),
])
def test_header_check_refuses_damaged_files(hub_root, tmp_path, edit, message):
    data = (hub_root / "models" / MODEL_REPO / "model.safetensors").read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(edit(data))
    with pytest.raises(IntegrityError, match=message):
        safetensors_header.read_header(bad)
