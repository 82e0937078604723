"""What the project writes: modes from the umask; `export` takes what `eval` takes; stale
temporaries are removed by the next writer; summary.json is valid JSON; corpora and model
files are checked before post-training or lm-eval loads them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optimal_sparsity.cli import main
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import list_checkpoints


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_written_file_honours_the_umask(tiny_train_config, tmp_path, umask):
    from optimal_sparsity.figures.registry import get_figure
    from optimal_sparsity.figures.render import render
    from optimal_sparsity.results.tasks import PROXY_TASKS

    old = os.umask(umask)
    try:
        run = tmp_path / "run"
        Trainer(tiny_train_config.replace(steps=2, keep_fractions=()), run, progress=False).run()
        ckpt = list_checkpoints(run / "checkpoints")[-1][1]
        assert main(["export", str(ckpt), str(tmp_path / "hf")]) == 0
        render(get_figure("fig1"), [], tmp_path / "figures", mode="retrain", scale="test",
               tasks=PROXY_TASKS, label="empty")
    finally:
        os.umask(old)
    seen = set()
    for p in tmp_path.rglob("*"):
        if p.name == "train.lock":  # filelock's own file
            continue
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))
        seen.add(p.name)
    assert {"model.safetensors", "optimizer.safetensors", "summary.json", "train_config.json",
            "config.json", "fig1.png", "data.csv", "verdicts.json"} <= seen


def test_export_accepts_what_eval_accepts(tiny_run, tmp_path, capsys):
    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1][1]
    assert main(["export", str(tiny_run), str(tmp_path / "from-run")]) == 0
    assert f"newest checkpoint of the run: {ckpt}" in capsys.readouterr().err
    assert main(["export", str(ckpt), str(tmp_path / "from-ckpt")]) == 0
    assert main(["export", str(tmp_path / "from-ckpt"), str(tmp_path / "from-hf")]) == 0
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        got = {(tmp_path / d / name).read_bytes() for d in ("from-run", "from-ckpt", "from-hf")}
        assert len(got) == 1, name
    empty = tmp_path / "empty-run"
    (empty / "checkpoints").mkdir(parents=True)
    assert main(["export", str(empty), str(tmp_path / "x")]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_killed_writers_leave_nothing_behind(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    gone = dead_pid()
    # what a trainer killed mid-checkpoint, mid-write or mid-prune leaves
    left = [run / "checkpoints" / f".tmp-step-0000008.{gone}.a1b2c3",
            run / "checkpoints" / ".tmp-step-0000012.xyz",  # no process id: an older writer
            run / "checkpoints" / f".tmp-delete-step-0000002.{gone}",
            run / f".tmp-summary.json.{gone}.q9"]
    for p in left:
        p.mkdir() if "step" in p.name else p.write_text("partial")
    result = trainer_for(run).run()  # resumes at its last step: nothing to train
    assert result.status == "finished"
    assert not [p for p in left if p.exists()]
    # summary.json is valid JSON even though no step ran in this session
    summary = json.loads((run / "summary.json").read_text(), parse_constant=_no_constants)
    assert summary["median_tokens_per_s"] is None

    # next to an export or a corpus: a dead writer's temporaries go, a live one's stay
    ckpt = list_checkpoints(run / "checkpoints")[-1][1]
    dead = [tmp_path / f".tmp-hf.{gone}.k2", tmp_path / f".tmp-old-hf.{gone}"]
    live = tmp_path / f".tmp-hf.{os.getpid()}.zz"
    for p in [*dead, live]:
        p.mkdir()
    assert main(["export", str(ckpt), str(tmp_path / "hf")]) == 0
    assert not [p for p in dead if p.exists()] and live.is_dir()


def trainer_for(run: Path) -> Trainer:
    from optimal_sparsity.train.config import TrainConfig

    cfg = json.loads((run / "train_config.json").read_text())["train"]
    return Trainer(TrainConfig.from_dict(cfg), run, progress=False)


def _no_constants(name):
    raise AssertionError(f"summary.json holds {name}")


def test_selfconsistency_refuses_a_corpus_with_another_tokenizer(tiny_run, tiny_corpus,
                                                                 tmp_path, capsys):
    other = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, other)
    tok = other / "tokenizer" / "tokenizer.json"
    data = json.loads(tok.read_text())
    data["model"]["vocab"] = {k + "x": v for k, v in data["model"]["vocab"].items()}
    tok.write_text(json.dumps(data))
    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1][1]
    assert main(["selfconsistency", str(ckpt), "--corpus", str(other), "--problems", "2",
                 "--r-max", "1", "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not trained with the tokenizer" in err and "\n" not in err
    assert not (tmp_path / "res").exists()


def test_paper_accuracy_loads_safetensors_only(tiny_run, tmp_path):
    from lm_eval.models.huggingface import HFLM

    from optimal_sparsity.eval.paper_tasks import model_args

    ckpt = list_checkpoints(tiny_run / "checkpoints")[-1][1]
    hf = tmp_path / "hf"
    assert main(["export", str(ckpt), str(hf)]) == 0
    args = {k: v for k, v in model_args(hf, "hf").items() if k != "max_length"}
    assert HFLM(**args, device="cpu", batch_size=1).model is not None  # the kwarg is taken
    # the same directory with pickled weights only: refused, never unpickled
    from safetensors.torch import load_file

    state = load_file(hf / "model.safetensors")
    (hf / "model.safetensors").unlink()
    torch.save(state, hf / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        HFLM(**args, device="cpu", batch_size=1)
