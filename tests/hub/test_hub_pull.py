"""Pull from the local hub stand-in: a clean pull that evaluates, and every corruption refused."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hub_helpers import MODEL_REPO, TINY
from transformers import AutoModelForCausalLM

import optimal_sparsity.hub.pull as pull_module
from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.hf_export import import_hf
from optimal_sparsity.hub.pull import pull, pulled_dir, pulled_model_dir
from optimal_sparsity.hub.update import update_lock
from optimal_sparsity.model import build_model


def _lock_sha(entry, path):
    return next(f.sha256 for f in entry.files if f.path == path)


def _served(hub_root, path):
    return (hub_root / "models" / MODEL_REPO / path).read_bytes()


def test_clean_pull_verifies_and_evaluates(hub, pinned_lock):
    entry = pinned_lock.find("tiny")
    logs: list[str] = []
    res = pull(entry, hub.cache, token=False, log=logs.append)
    assert (res.pinned, res.reused) == (True, False)
    assert res.revision == entry.revision == hub.server.commit(MODEL_REPO)
    assert any("pinned" in m and "verified" in m for m in logs)
    d = pulled_model_dir("tiny", pinned_lock, hub.cache)
    assert d == res.path
    assert sorted(p.name for p in d.iterdir()) == [
        ".optimal-sparsity-output", "PULL.json", "README.md", "config.json",
        "generation_config.json", "model.safetensors"]
    assert not list((hub.cache / ".staging").glob("model-*"))  # staging removed on success

    # Evaluate: our importer and transformers load the same weights the exporter wrote.
    ours, cfg = import_hf(d)
    assert cfg.fingerprint() == TINY.fingerprint()
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    reference = build_model(TINY, seed=0)
    ids = torch.randint(0, TINY.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = ours(ids).logits
        assert torch.equal(logits, reference(ids).logits)
        assert (hf(ids).logits - logits).abs().max().item() <= 1e-5
        hf_loss = hf(ids, labels=ids).loss.item()
    our_loss = F.cross_entropy(logits[:, :-1].reshape(-1, TINY.vocab_size),
                               ids[:, 1:].reshape(-1)).item()
    assert abs(hf_loss - our_loss) <= 1e-5
    assert abs(our_loss - math.log(TINY.vocab_size)) < 0.5  # an untrained model: near uniform

    # A second pull finds the verified copy and downloads nothing.
    hub.server.requests.clear()
    again = pull(entry, hub.cache, token=False, log=logs.append)
    assert again.reused and again.path == d
    assert hub.server.requests == []


def test_unpinned_entry_is_refused_and_names_the_flag(hub, unpinned_lock):
    with pytest.raises(UserError) as err:
        pull(unpinned_lock.find("tiny"), hub.cache, token=False)
    msg = str(err.value)
    assert "pins no revision" in msg and "--allow-unpinned" in msg and "\n" not in msg
    assert hub.server.requests == []  # refused before touching the network
    assert not (hub.cache / "models" / "tiny").exists()


def test_unpinned_pull_with_flag_says_hashes_were_not_locked(hub, unpinned_lock):
    logs: list[str] = []
    res = pull(unpinned_lock.find("tiny"), hub.cache, allow_unpinned=True, token=False,
               log=logs.append)
    assert not res.pinned and res.revision == hub.server.commit(MODEL_REPO)
    assert any("UNPINNED" in m and "not against checkpoints.lock" in m for m in logs)
    record = json.loads((res.path / "PULL.json").read_text())
    assert record["pinned"] is False and record["hashes_checked_against"] == "the hub's metadata"
    with pytest.raises(UserError, match="--allow-unpinned"):
        pulled_model_dir("tiny", unpinned_lock, hub.cache)
    assert pulled_model_dir("tiny", unpinned_lock, hub.cache, allow_unpinned=True) == res.path


def test_substituted_file_is_refused_and_the_good_copy_survives(hub, pinned_lock):
    entry = pinned_lock.find("tiny")
    want = _lock_sha(entry, "model.safetensors")
    # No earlier copy: nothing appears under the final name.
    hub.server.add_fault(MODEL_REPO, "model.safetensors", "flip")
    with pytest.raises(IntegrityError) as err:
        pull(entry, hub.tmp / "fresh-cache", token=False)
    msg = str(err.value)
    got = re.search(r"sha256 ([0-9a-f]{64}) \(", msg).group(1)
    assert "model.safetensors" in msg and want in msg and got != want and "\n" not in msg
    assert not (hub.tmp / "fresh-cache" / "models" / "tiny").exists()

    # With a verified copy in place, a substituted re-download leaves it untouched.
    good = pull(entry, hub.cache, token=False)
    before = sha256_file(good.path / "model.safetensors")
    hub.server.add_fault(MODEL_REPO, "model.safetensors", "flip")
    with pytest.raises(IntegrityError, match=want):
        pull(entry, hub.cache, force=True, token=False)
    assert pulled_model_dir("tiny", pinned_lock, hub.cache) == good.path
    assert sha256_file(good.path / "model.safetensors") == before == want
    staging = hub.cache / ".staging" / f"model-tiny-{entry.revision}"
    assert not (staging / "model.safetensors").exists()  # the bad bytes were not kept


def test_truncated_transfer_is_resumed_with_a_range_request(hub, pinned_lock, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub resumes from the last whole chunk it wrote (10 MB by default); small
    # chunks let a 260 kB file show the range request.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.server.requests.clear()
    hub.server.add_fault(MODEL_REPO, "model.safetensors", "truncate:4096")
    res = pull(pinned_lock.find("tiny"), hub.cache, token=False)
    ranges = [r[2] for r in hub.gets("/model.safetensors")]
    assert ranges == [None, "bytes=4096-"]
    assert pulled_model_dir("tiny", pinned_lock, hub.cache) == res.path


def test_truncated_file_is_refused(hub, hub_root, pinned_lock, unpinned_lock):
    full = _served(hub_root, "model.safetensors")
    hub.server.replace_file(MODEL_REPO, "model.safetensors", full[: len(full) // 2],
                            new_commit=False)
    entry = pinned_lock.find("tiny")
    with pytest.raises(IntegrityError) as err:
        pull(entry, hub.cache, token=False)
    msg = str(err.value)
    assert f"({len(full) // 2} bytes)" in msg and f"({len(full)} bytes)" in msg
    assert _lock_sha(entry, "model.safetensors") in msg
    # Unpinned, the hub's own metadata describes the short file; the header check refuses it.
    with pytest.raises(IntegrityError, match=r"model\.safetensors: header describes"):
        pull(unpinned_lock.find("tiny"), hub.cache, allow_unpinned=True, token=False)
    assert not (hub.cache / "models" / "tiny").exists()


def test_server_error_mid_download_keeps_completed_files_for_the_next_pull(hub, pinned_lock,
                                                                           monkeypatch):
    monkeypatch.setattr(pull_module, "RETRY_DELAYS_S", (0.0,) * 3)
    entry = pinned_lock.find("tiny")
    # a server that keeps failing: every retry gets a 500 too
    hub.server.add_fault(MODEL_REPO, "model.safetensors", "truncate:4096", *["status:500"] * 4)
    with pytest.raises(UserError) as err:
        pull(entry, hub.cache, token=False)
    msg = str(err.value)
    assert "download of" in msg and "model.safetensors" in msg and "500" in msg
    assert "\n" not in msg and not isinstance(err.value, IntegrityError)
    assert not (hub.cache / "models" / "tiny").exists()
    staging = hub.cache / ".staging" / f"model-tiny-{entry.revision}"
    assert (staging / "config.json").is_file() and not (staging / "model.safetensors").exists()

    hub.server.requests.clear()
    res = pull(entry, hub.cache, token=False)
    assert hub.gets("/config.json") == []  # completed files were reused, not downloaded again
    assert len(hub.gets("/model.safetensors")) == 1
    assert pulled_model_dir("tiny", pinned_lock, hub.cache) == res.path


def test_wrong_config_is_refused(hub, hub_root, pinned_lock, unpinned_lock):
    cfg = json.loads(_served(hub_root, "config.json"))
    cfg["num_experts_per_tok"] = 4
    hub.server.replace_file(MODEL_REPO, "config.json", json.dumps(cfg).encode(),
                            new_commit=False)
    # Served under the pinned commit, the bytes differ from the lock: refused by hash.
    with pytest.raises(IntegrityError, match=r"config\.json failed verification"):
        pull(pinned_lock.find("tiny"), hub.cache, token=False)
    # Unpinned, the hub's metadata matches the new file: the config check refuses it.
    with pytest.raises(IntegrityError) as err:
        pull(unpinned_lock.find("tiny"), hub.cache, allow_unpinned=True, token=False)
    assert "config.json num_experts_per_tok is 4, the lock's grid point has k=2" in str(err.value)
    # And `lock --update` does not pin it, saying why.
    report = update_lock(unpinned_lock, ["tiny"], endpoint=hub.endpoint, token=False,
                         log=lambda _: None)
    assert report.resolved == () and "num_experts_per_tok is 4" in report.failed[0][1]
    stays = report.lock.find("tiny")
    assert not stays.pinned and "num_experts_per_tok is 4" in stays.unresolved_reason
    assert not (hub.cache / "models" / "tiny").exists()


def test_parameter_count_must_match_the_lock(hub, pinned_lock):
    entry = pinned_lock.find("tiny")
    wrong = replace(entry, expected=replace(entry.expected,
                                            total_params=entry.expected.total_params + 1))
    with pytest.raises(IntegrityError) as err:
        pull(wrong, hub.cache, token=False)
    msg = str(err.value)
    assert f"hold {entry.expected.total_params:,} parameters" in msg
    assert f"the lock expects {entry.expected.total_params + 1:,}" in msg


def test_pickled_weights_are_never_pulled(hub, unpinned_lock):
    with pytest.raises(IntegrityError, match=r"only pytorch_model\.bin.*never loaded"):
        pull(unpinned_lock.find("pickled"), hub.cache, allow_unpinned=True, token=False)
    assert hub.gets("/pytorch_model.bin") == []
    report = update_lock(unpinned_lock, ["pickled"], endpoint=hub.endpoint, token=False,
                         log=lambda _: None)
    assert report.resolved == () and "pickled weights are never loaded" in report.failed[0][1]


def test_offline_mode_uses_only_verified_copies(hub, pinned_lock, monkeypatch):
    entry = pinned_lock.find("tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        pull(entry, hub.cache, token=False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    pull(entry, hub.cache, token=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.server.requests.clear()
    assert pull(entry, hub.cache, token=False).reused
    assert hub.server.requests == []


def test_a_copy_corrupted_on_disk_is_detected_and_replaced(hub, pinned_lock):
    entry = pinned_lock.find("tiny")
    res = pull(entry, hub.cache, token=False)
    weights = res.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.safetensors failed verification"):
        pulled_model_dir("tiny", pinned_lock, hub.cache)
    again = pull(entry, hub.cache, token=False, log=lambda _: None)
    assert not again.reused
    assert pulled_model_dir("tiny", pinned_lock, hub.cache) == res.path


def test_dataset_pull_takes_only_the_included_files(hub, pinned_lock):
    entry = pinned_lock.find("tiny-gsm")
    assert [f.path for f in entry.files] == ["README.md", "main/test.jsonl", "main/train.parquet"]
    res = pull(entry, hub.cache, token=False, log=lambda _: None)
    assert res.path == hub.cache / "datasets" / "tiny-gsm"
    assert (res.path / "main" / "test.jsonl").is_file() and not (res.path / "other").exists()
    assert pulled_dir("tiny-gsm", pinned_lock, hub.cache) == res.path
    with pytest.raises(UserError, match="is a data set"):
        pulled_model_dir("tiny-gsm", pinned_lock, hub.cache)


def test_pinned_pull_ignores_a_newer_upload_on_main(hub, hub_root, pinned_lock):
    entry = pinned_lock.find("tiny")
    cfg = json.loads(_served(hub_root, "config.json"))
    cfg["num_experts_per_tok"] = 4
    hub.server.replace_file(MODEL_REPO, "config.json", json.dumps(cfg).encode())
    assert hub.server.commit(MODEL_REPO) != entry.revision  # main moved on
    res = pull(entry, hub.cache, token=False, log=lambda _: None)
    assert res.revision == entry.revision
    assert json.loads((res.path / "config.json").read_text())["num_experts_per_tok"] == 2


def test_server_errors_are_retried_with_backoff(hub, pinned_lock, monkeypatch, capsys):
    waits: list[float] = []
    monkeypatch.setattr(pull_module.time, "sleep", waits.append)
    entry = pinned_lock.find("tiny")
    hub.server.requests.clear()
    hub.server.add_fault(MODEL_REPO, "model.safetensors", "status:500", "status:503")
    res = pull(entry, hub.cache, token=False, log=lambda _: None)
    assert pulled_model_dir("tiny", pinned_lock, hub.cache) == res.path
    assert waits == list(pull_module.RETRY_DELAYS_S[:2])  # growing waits, then success
    assert len(hub.gets("/model.safetensors")) == 3
    assert "retrying in" in capsys.readouterr().err
def test_sharded_release_is_pulled_verified_and_loaded(tmp_path):
    """A release split into shards with an index (what the exporter writes above its shard
    size): pinned, pulled, each shard checked against the index, loaded whole."""
    from optimal_sparsity.hf_export import WEIGHTS_INDEX
    from optimal_sparsity.hub.lock import Lock
    from optimal_sparsity.hub.skeleton import model_entry
    from optimal_sparsity.testing.local_hub import LocalHub, client_env, write_model_repo

    write_model_repo(tmp_path / "hub", MODEL_REPO, TINY, seed=0, max_shard_size=40_000)
    lock = Lock(models=(model_entry("tiny", MODEL_REPO, TINY, family="test", source="test"),),
                datasets=())
    server = LocalHub(tmp_path / "hub")
    with server as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        pinned = update_lock(lock, ["tiny"], endpoint=endpoint, token=False, log=lambda _: None)
        res = pull(pinned.lock.find("tiny"), tmp_path / "cache", token=False)
    shards = sorted(p.name for p in res.path.glob("*.safetensors"))
    assert len(shards) > 2 and (res.path / WEIGHTS_INDEX).is_file()
    assert {f.path for f in pinned.lock.find("tiny").files} >= {*shards, WEIGHTS_INDEX}
    ours, _ = import_hf(res.path)
    ids = torch.randint(0, TINY.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, build_model(TINY, seed=0)(ids).logits)
