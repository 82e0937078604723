"""The paper-scale job: its batch script, the paper recipe, the memory table, and the
torchrun command it runs on each node exercised as 2 nodes x 1 process on localhost."""

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optimal_sparsity.cli import main
from optimal_sparsity.paths import REPO
from optimal_sparsity.study import scaleout
from optimal_sparsity.study.slurm import SlurmSettings
from optimal_sparsity.train.state import list_checkpoints


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_weights(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(list_checkpoints(run_dir / "checkpoints")[-1][1] / "model.safetensors")


def test_two_nodes_on_localhost_match_one_process(tiny_corpus, tmp_path):
    """Two torchrun invocations (--nnodes 2, node rank 0 and 1, c10d rendezvous on
    127.0.0.1, gloo), each the per-node command of the batch script, train 6 steps of a
    tiny model: both finish, and the weights equal one process accumulating the same
    global batch (2 micro-batches) up to float summation order (atol 1e-5, rtol 1e-4)."""
    common = ["--config", "s-d32-E4-k2", "--corpus", str(tiny_corpus), "--steps", "6",
              "--seq-len", "64", "--micro-batch", "4", "--threads", "1", "--lr", "3e-3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    one = subprocess.run([sys.executable, "-m", "optimal_sparsity.cli", "train", *common,
                          "--grad-accum", "2", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=240)
    assert one.returncode == 0, one.stderr[-2000:]
    endpoint = f"127.0.0.1:{free_port()}"
    train_args = [*common, "--grad-accum", "1", "--out", str(tmp_path / "two")]
    procs = [subprocess.Popen(scaleout.torchrun_command(2, 1, rank, endpoint, "test",
                                                        train_args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env, "LOGLEVEL": "WARNING"})
             for rank in (0, 1)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
    assert summary["step"] == 6
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_batch_script_rendezvous_requeue_and_signal(tmp_path):
    settings = SlurmSettings(partition="gpu", account="proj", time="7-00:00:00", nodes=4,
                             cpus_per_task=64, extra=("--exclusive",))
    code, script, err = run_cli(
        "scale-out", "--config", "d512-E8-k2", "--corpus", str(tmp_path / "corpus"),
        "--out", str(tmp_path / "run"), "--slurm-partition", "gpu", "--slurm-account", "proj",
        "--slurm-time", "7-00:00:00", "--slurm-nodes", "4", "--slurm-cpus-per-task", "64",
        "--slurm-extra=--exclusive", "--ckpt-interval", "250", "--dry-run")
    assert code == 0, err
    assert script == scaleout.batch_script(settings, scaleout.paper_train_args(
        "d512-E8-k2", tmp_path / "corpus", tmp_path / "run", 1, 250), tmp_path / "run",
        "os-d512-E8-k2")
    for line in ("--nodes=4", "--gpus-per-node=8", "--ntasks-per-node=1", "--partition=gpu",
                 "--account=proj", "--time=7-00:00:00", "--exclusive", "--requeue",
                 f"--signal=B:USR1@{scaleout.STOP_GRACE_S}"):
        assert f"#SBATCH {line}\n" in script, line
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script
    assert 'export MASTER_ADDR="${nodes[0]}"' in script and "MASTER_PORT=" in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and "trap " in script
    node = re.search(r"bash -c '(.*)' &", script).group(1)
    for part in ('--nnodes "$SLURM_NNODES"', "--nproc-per-node 8", '--node-rank "$SLURM_NODEID"',
                 "--rdzv-backend c10d", '--rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"',
                 "train --preset paper --config d512-E8-k2", "--ckpt-interval 250"):
        assert part in node, part
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_paper_preset_is_the_papers_recipe(tmp_path, monkeypatch):
    from optimal_sparsity.cli import build_parser
    from optimal_sparsity.commands.train import _train_config

    (tmp_path / "corpus").mkdir()  # a tokenized corpus' record (its vocabulary is read)
    (tmp_path / "corpus" / "corpus.json").write_text('{"vocab_size": 99584}')
    monkeypatch.setenv("WORLD_SIZE", "32")
    args = build_parser().parse_args(["train", "--preset", "paper", "--config", "d512-E8-k2",
                                      "--corpus", str(tmp_path / "corpus"), "--out", "x",
                                      "--micro-batch", "16"])
    cfg = _train_config(args)
    assert (cfg.seq_len, cfg.micro_batch, cfg.grad_accum, cfg.steps) == (4096, 16, 2, 29_803)
    assert cfg.micro_batch * cfg.grad_accum * 32 == 1024
    assert (cfg.lr, cfg.min_lr_ratio, cfg.precision) == (4e-4, 0.1, "bf16")
    assert round(cfg.warmup_frac * cfg.total_steps(32)) == 2000
    assert cfg.model.backend == "megablocks" and cfg.ckpt_interval == 500
    assert (cfg.model.d_model, cfg.model.vocab_size, cfg.model.max_seq_len) == (512, 99584, 4096)
    monkeypatch.setenv("WORLD_SIZE", "24")
    code, _, err = run_cli("train", "--preset", "paper", "--config", "d512-E8-k2",
                           "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "o"),
                           "--micro-batch", "16")
    assert code == 2 and "not a multiple of micro-batch 16 x 24" in err
    code, _, err = run_cli("train", "--preset", "paper", "--config", "d512-E8-k2", "--out", "o")
    assert code == 2 and "--preset paper needs --corpus" in err


def test_memory_table_is_the_artifacts_and_docs_hold_it():
    code, out, err = run_cli("scale-out", "--memory", "--slurm-nodes", "4")
    assert code == 0, err
    lines = out.splitlines()
    rows = [x for x in lines if x.startswith("| d")]
    assert len(rows) == 65  # every released math model
    from optimal_sparsity.accounting import count_params
    from optimal_sparsity.grid import get_config

    cfg = get_config("d512-E8-k2")
    r = scaleout.memory_row(cfg, 1, 4096)
    assert r.model_state_bytes == 16 * count_params(cfg).total
    assert r.bf16_copy_bytes == 2 * count_params(cfg).total
    docs = (REPO / "docs" / "scale-out.md").read_text()
    assert out in docs, "docs/scale-out.md: paste `./reproduce scale-out --memory --slurm-nodes 4`"


@pytest.mark.parametrize("argv,msg", [
    (["scale-out", "--config", "d512-E8-k2"], "scale-out needs --corpus, --out"),
    (["scale-out", "--config", "d999-E8-k2", "--corpus", "c", "--out", "o"], "unknown model"),
    (["scale-out", "--config", "d512-E8-k2", "--corpus", "c", "--out", "o",
      "--slurm-time", "tomorrow", "--dry-run"], "is not minutes"),
])
def test_scale_out_bad_input_is_one_line(argv, msg):
    code, _, err = run_cli(*argv)
    assert code == 2 and msg in err and err.count("\n") == 1
