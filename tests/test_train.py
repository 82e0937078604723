"""The trainer: learning, bitwise resume, signals, schedule, dry run, torchrun."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from optimal_sparsity.errors import UserError
from optimal_sparsity.train.loop import STOP_FILE, Trainer
from optimal_sparsity.train.schedule import lr_at
from optimal_sparsity.train.state import list_checkpoints


def final_weights(run_dir):
    steps = list_checkpoints(run_dir / "checkpoints")
    return load_file(steps[-1][1] / "model.safetensors")


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10, 0.1) == pytest.approx(0.55)  # cosine midpoint
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_training_lowers_loss_and_writes_run(tiny_train_config, tmp_path):
    cfg = tiny_train_config.replace(steps=30, eval_interval=10)
    res = Trainer(cfg, tmp_path / "run", progress=False).run()
    assert res.status == "finished" and res.step == 30
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 31))
    assert recs[-1]["ce"] < recs[0]["ce"] - 0.5
    assert recs[-1]["val_loss"] < recs[9]["val_loss"]
    assert len(recs[-1]["imbalance"]) == 2 and "expert_load" in recs[-1]
    assert all(abs(sum(row) - 1) < 1e-4 for row in recs[-1]["expert_load"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tokens"] == 30 * 4 * 64 and summary["median_tokens_per_s"] > 0
    # kept: the intermediate at 50% and the final; rolling ones pruned
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [15, 30]


@pytest.mark.parametrize("how", ["SIGUSR1", "stop file"])
def test_resume_after_signal_is_bitwise_identical(tiny_train_config, tmp_path, how):
    """A signal (Slurm's SIGUSR1 warning included) or the batch script's stop file:
    checkpoint, stop, resume bitwise."""
    ref = tmp_path / "ref"
    Trainer(tiny_train_config, ref, progress=False).run()

    run = tmp_path / "run"
    t = Trainer(tiny_train_config, run, progress=False)
    orig = t.train_step

    def step_then_signal(step, samples):
        rec = orig(step, samples)
        if step == 6 and how == "stop file":
            (run / STOP_FILE).touch()
        elif step == 6:
            os.kill(os.getpid(), getattr(signal, how))
        return rec

    t.train_step = step_then_signal
    res = t.run()
    assert res.status == "interrupted" and res.step == 7
    assert not (run / STOP_FILE).exists()  # consumed
    res = Trainer(tiny_train_config, run, progress=False).run()
    assert res.status == "finished"
    assert_bitwise_equal(final_weights(ref), final_weights(run))
    assert (ref / "metrics.jsonl").read_text().count("\n") == 12
    strip = [{k: v for k, v in json.loads(x).items() if k != "tok_s"}
             for x in (run / "metrics.jsonl").read_text().splitlines()]
    want = [{k: v for k, v in json.loads(x).items() if k != "tok_s"}
            for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert strip == want


def _train_cmd(cfg, out):
    return [sys.executable, "-m", "optimal_sparsity.cli", "train", "--config", cfg.model.name,
            "--corpus", cfg.corpus, "--out", str(out), "--steps", str(cfg.steps),
            "--seq-len", str(cfg.seq_len), "--micro-batch", str(cfg.micro_batch),
            "--ckpt-interval", "2", "--threads", "1", "--lr", str(cfg.lr)]


def test_sigkill_then_resume_is_bitwise_identical(tiny_corpus, tmp_path):
    from optimal_sparsity.train.config import TrainConfig

    cfg = TrainConfig.of_model("s-d32-E4-k2", corpus=str(tiny_corpus), steps=16, seq_len=64,
                      micro_batch=4, lr=3e-3)
    subprocess.run(_train_cmd(cfg, tmp_path / "ref"), check=True, capture_output=True)
    proc = subprocess.Popen(_train_cmd(cfg, tmp_path / "run"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")]
        if done and max(done) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert done and max(done) < 16, "the run finished before it could be killed"
    subprocess.run(_train_cmd(cfg, tmp_path / "run"), check=True, capture_output=True)
    assert_bitwise_equal(final_weights(tmp_path / "ref"), final_weights(tmp_path / "run"))


def test_resume_refuses_a_different_config(tiny_train_config, tmp_path):
    Trainer(tiny_train_config.replace(steps=2), tmp_path / "run", progress=False).run()
    with pytest.raises(UserError, match="different training config"):
        Trainer(tiny_train_config.replace(steps=3, lr=1e-3), tmp_path / "run",
                progress=False).run()


def test_dry_run_paper_config_and_small_config(capsys):
    from optimal_sparsity.train.dry_run import dry_run

    info = dry_run("d2048-E128-k16", micro_batch=1, seq_len=16)
    assert info["total_params"] == 52_220_200_960 and "meta" in info["mode"]
    info = dry_run("s-d64-E8-k2", seq_len=32)
    assert info["mode"].startswith("forward") and info["loss"] > 0


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=None), dict(lr=-1.0),
                                 dict(micro_batch=0), dict(precision="fp8")])
def test_bad_train_configs(tiny_train_config, bad):
    with pytest.raises(UserError):
        tiny_train_config.replace(**bad)


def test_torchrun_two_processes_match_one(tiny_train_config, tmp_path):
    """DDP over 2 CPU processes (gloo) == 1 process accumulating the same 2 micro-batches."""
    one = tiny_train_config.replace(steps=6, grad_accum=2, ckpt_interval=0, threads=1)
    Trainer(one, tmp_path / "one", progress=False).run()
    script = tmp_path / "ddp.py"
    two = one.replace(grad_accum=1)
    script.write_text(
        "import json, sys\n"
        "from optimal_sparsity.train.config import TrainConfig\n"
        "from optimal_sparsity.train.loop import Trainer\n"
        f"cfg = TrainConfig.from_dict(json.loads({json.dumps(json.dumps(two.to_dict()))}))\n"
        f"Trainer(cfg, {str(tmp_path / 'two')!r}, progress=False).run()\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", str(script)], capture_output=True, text=True,
                         env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for k in a:  # same math; only the order of the gradient sum differs
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    la = [json.loads(x)["loss"] for x in (tmp_path / "one/metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "two/metrics.jsonl").read_text().splitlines()]
    assert la == pytest.approx(lb, rel=1e-5)
