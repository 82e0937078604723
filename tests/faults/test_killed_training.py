"""SIGKILL at random steps, mid-checkpoint-write included, then resume: the final weights
are bit-identical to an uninterrupted run, and no incomplete checkpoint is ever resumed."""

import json
import random
import subprocess
import sys

import torch
from safetensors.torch import load_file

from optimal_sparsity.checkpoint import verify_checkpoint
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import list_checkpoints

# Runs the trainer and SIGKILLs itself at a chosen moment: after optimizer step N
# ("step"), or inside the checkpoint write of step N, after the weights file is written
# and before the optimizer file ("checkpoint").
DRIVER = r"""
import json, os, signal, sys
import optimal_sparsity.checkpoint as ck
from optimal_sparsity.train.config import TrainConfig
from optimal_sparsity.train.loop import Trainer

cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
out, kind, at = sys.argv[2], sys.argv[3], int(sys.argv[4])
t = Trainer(cfg, out, progress=False)
if kind == "step":
    orig = t.train_step
    def step(s, samples):
        rec = orig(s, samples)
        if s + 1 == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return rec
    t.train_step = step
elif kind == "checkpoint":
    real = ck.save_file
    def save_file(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        if str(path).endswith("optimizer.safetensors") and f"step-{at:07d}" in str(path):
            os.kill(os.getpid(), signal.SIGKILL)
    ck.save_file = save_file
t.run()
"""


def weights(run):
    return load_file(list_checkpoints(run / "checkpoints")[-1][1] / "model.safetensors")


def test_six_kills_then_resume_bitwise(tiny_train_config, tmp_path):
    cfg = tiny_train_config.replace(steps=14, ckpt_interval=1, keep_last=2, threads=1)
    ref = tmp_path / "ref"
    Trainer(cfg, ref, progress=False).run()

    run = tmp_path / "run"
    rng = random.Random(7)
    plan = sorted(rng.sample(range(2, 14), 6))
    faults = [("checkpoint" if i % 2 else "step", at) for i, at in enumerate(plan)]
    for kind, at in faults:
        res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cfg.to_dict()),
                              str(run), kind, str(at)], capture_output=True, text=True)
        assert res.returncode == -9, (kind, at, res.stderr[-2000:])
        # every checkpoint under its final name is complete and verifies
        for _, path in list_checkpoints(run / "checkpoints"):
            verify_checkpoint(path)
        if kind == "checkpoint":  # the interrupted write never appears under its name
            assert all(s != at for s, _ in list_checkpoints(run / "checkpoints"))
    Trainer(cfg, run, progress=False).run()
    a, b = weights(ref), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in json.loads(x).items() if k != "tok_s"}
             for x in (run / "metrics.jsonl").read_text().splitlines()]
    want = [{k: v for k, v in json.loads(x).items() if k != "tok_s"}
            for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert strip == want  # the log equals the uninterrupted one: nothing lost or doubled
    print(f"faults injected: {faults}; losses: none")
