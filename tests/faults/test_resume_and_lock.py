"""A resumed run refuses a corpus other than its checkpoint's; a run directory has one
trainer at a time; two figure renderings never share a temporary name."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from optimal_sparsity.cli import main
from optimal_sparsity.data.corpus import build_corpus
from optimal_sparsity.data.presets import PRESETS

from .conftest import snapshot


def small_corpus(path, **changes):
    cfg = dataclasses.replace(PRESETS["tiny"], train_tokens=30_000, val_tokens=5_000,
                              tokenizer_sample_docs=1000, **changes)
    shutil.rmtree(path, ignore_errors=True)
    return build_corpus(cfg, path)


def train(corpus, out, steps=2):
    return main(["train", "--config", "s-d32-E2-k1", "--corpus", str(corpus), "--out", str(out),
                 "--steps", str(steps), "--seq-len", "64", "--micro-batch", "2",
                 "--threads", "1"])


@pytest.mark.parametrize("changes", [{"seed": 1}, {"vocab_size": 320}],
                         ids=["another-seed", "another-vocabulary"])
def test_resume_refuses_a_rebuilt_corpus(tmp_path, capsys, changes):
    corpus, out = tmp_path / "corpus", tmp_path / "run"
    small_corpus(corpus)
    assert train(corpus, out) == 0
    small_corpus(corpus, **changes)  # same path, other data
    capsys.readouterr()
    before = snapshot(out)
    assert train(corpus, out) == 2
    err = capsys.readouterr().err.strip()
    assert "another corpus" in err and "\n" not in err and "Traceback" not in err, err
    assert snapshot(out) == before


HOLD = r"""
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_second_trainer_on_one_run_directory_refuses(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / "train.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert train(tiny_corpus, out) == 2
        err = capsys.readouterr().err.strip()
        assert "being trained by another process" in err and "\n" not in err, err
        assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(tiny_corpus, out) == 0  # the lock is free again
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_figure_rendering_uses_its_own_temporary_names(tmp_path):
    from optimal_sparsity.figures.registry import get_figure
    from optimal_sparsity.figures.render import render
    from optimal_sparsity.results.tasks import PROXY_TASKS

    # another renderer of the same figure is midway: its temporary file is in place
    (tmp_path / "fig1").mkdir()
    (tmp_path / "fig1" / ".tmp-fig1.png").mkdir()
    res = render(get_figure("fig1"), [], tmp_path, mode="retrain", scale="test",
                 tasks=PROXY_TASKS, label="empty")
    assert (tmp_path / res.outputs["png"]).stat().st_size > 0
    shutil.rmtree(tmp_path / "fig1" / ".tmp-fig1.png")
