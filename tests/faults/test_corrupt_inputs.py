"""Truncated or bit-flipped checkpoints, token shards and results, and manifests that do
not match: each is detected and refused with a clear error, never loaded."""

import json
import shutil

import pytest

from optimal_sparsity.checkpoint import load_checkpoint, save_checkpoint
from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.model import build_model
from optimal_sparsity.results.table import Row, read_rows, write_part
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import latest_resume_point


def flip(path, offset=100):
    data = bytearray(path.read_bytes())
    data[min(offset, len(data) - 1)] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


@pytest.fixture
def ckpt(tmp_path, tiny_cfg):
    return save_checkpoint(tmp_path / "ckpt", build_model(tiny_cfg, seed=0), tiny_cfg)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
@pytest.mark.parametrize("damage", [flip, truncate])
def test_checkpoint_refused(ckpt, name, damage):
    damage(ckpt / name)
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
        load_checkpoint(ckpt)


def test_manifest_mismatch_and_missing(ckpt):
    m = json.loads((ckpt / "MANIFEST.json").read_text())
    m["files"]["model.safetensors"]["sha256"] = "0" * 64
    (ckpt / "MANIFEST.json").write_text(json.dumps(m))
    with pytest.raises(IntegrityError, match="does not match manifest 0000"):
        load_checkpoint(ckpt)
    (ckpt / "MANIFEST.json").unlink()
    with pytest.raises(IntegrityError, match="not a complete checkpoint"):
        load_checkpoint(ckpt)
    (ckpt / "MANIFEST.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="corrupt"):
        load_checkpoint(ckpt)


def test_resume_skips_a_corrupt_latest_checkpoint(tiny_train_config, tmp_path, capsys):
    cfg = tiny_train_config.replace(steps=6, ckpt_interval=2, keep_last=5)
    Trainer(cfg, tmp_path / "run", progress=False).run()
    root = tmp_path / "run" / "checkpoints"
    flip(root / "step-0000006" / "optimizer.safetensors", 5000)
    point = latest_resume_point(root)
    assert point.step == 3  # the kept intermediate (rolling ones are pruned at the end)
    assert "skipping checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [flip, truncate])
def test_token_shard_refused(tiny_corpus, tmp_path, damage):
    from optimal_sparsity.data.shards import open_split

    bad = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, bad)
    damage(bad / "train.bin")
    with pytest.raises(IntegrityError, match=r"train\.bin"):
        open_split(bad, "train")


def test_corrupt_results_part_named(tmp_path, capsys):
    path = write_part(tmp_path, "a.jsonl", [Row(run="r", model="m", step=1, task="t",
                                                 metric="acc", value=0.5)])
    path.write_text(path.read_text()[:-20] + "\n")
    assert read_rows(tmp_path) == []  # never served; the evaluation recomputes it
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "a.jsonl" in err and "treated as missing" in err
