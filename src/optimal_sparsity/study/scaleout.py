"""One paper-scale grid point as one Slurm job: torchrun across N nodes x G GPUs.

The batch script (``batch_script``) finds the nodes from Slurm's environment
(``scontrol show hostnames $SLURM_JOB_NODELIST``; the first is the rendezvous host,
``MASTER_ADDR``/``MASTER_PORT``), runs one torchrun per node through ``srun`` (node rank
``$SLURM_NODEID``, c10d rendezvous) and trains with the paper recipe
(``train --preset paper``: bf16, MegaBlocks, checkpoints every K steps). Slurm's warning
before the time limit (``--signal=B:USR1@...``) or a ``scancel --signal=USR1 --batch``
makes the script write the run's ``STOP`` file: every rank checkpoints at the same step
and exits; the script then requeues the job (``--requeue``) and the next start resumes
from that checkpoint.

``memory_rows`` is what each grid size needs per GPU with this trainer (data parallel:
every GPU holds the whole model and optimizer) and a throughput estimate; see
docs/scale-out.md.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.accounting import count_params, matmul_flops_per_token, training_memory
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.grid import PAPER_TOKENS
from optimal_sparsity.study.slurm import SlurmSettings
from optimal_sparsity.train.loop import STOP_FILE

STOP_GRACE_S = 600  # Slurm's warning this long before the time limit
H100_BF16_DENSE_FLOPS = 989e12  # NVIDIA's H100 SXM dense bf16 peak
MFU = 0.30  # the model-FLOPs utilisation the throughput estimate assumes
GPU_MEMORY = 80 * 2**30  # H100 80 GB


def torchrun_command(nnodes: int | str, nproc_per_node: int, node_rank: int | str,
                     endpoint: str, rdzv_id: str, train_args: list[str],
                     python: str = sys.executable) -> list[str]:
    """torchrun (``python -m torch.distributed.run``) of ``./reproduce train`` on one node."""
    return [python, "-m", "torch.distributed.run", "--nnodes", str(nnodes),
            "--nproc-per-node", str(nproc_per_node), "--node-rank", str(node_rank),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
            "-m", "optimal_sparsity.cli", "train", *train_args]


def paper_train_args(model: str, corpus: Path, run_dir: Path, micro_batch: int,
                     ckpt_interval: int, seed: int = 0) -> list[str]:
    return ["--preset", "paper", "--config", model, "--corpus", str(corpus), "--out",
            str(run_dir), "--micro-batch", str(micro_batch), "--ckpt-interval",
            str(ckpt_interval), "--seed", str(seed)]


def batch_script(settings: SlurmSettings, train_args: list[str], run_dir: Path,
                 job_name: str, python: str = sys.executable) -> str:
    """The sbatch script of one multi-node training run (see the module docstring)."""
    gpus = settings.gpus_per_node or 8
    # Expanded on each node by the shell srun starts there.
    cmd = torchrun_command('"$SLURM_NNODES"', gpus, '"$SLURM_NODEID"',
                           '"$MASTER_ADDR:$MASTER_PORT"', '"$SLURM_JOB_ID"', [], python)
    node_cmd = " ".join(c if c.startswith('"') else shlex.quote(c) for c in cmd)
    node_cmd += " " + " ".join(shlex.quote(a) for a in train_args)
    run = shlex.quote(str(run_dir))
    gpu_settings = settings if settings.gpus_per_node else _with_gpus(settings, gpus)
    lines = ["#!/bin/bash",
             *gpu_settings.sbatch_lines(job_name, str(run_dir / "slurm-%j.out")),
             "#SBATCH --requeue",
             f"#SBATCH --signal=B:USR1@{STOP_GRACE_S}",
             "",
             "set -uo pipefail",
             f"run_dir={run}",
             'mkdir -p "$run_dir"',
             f'rm -f "$run_dir/{STOP_FILE}"',
             "stopped=0",
             "# Slurm's warning (or scancel --signal=USR1 --batch): every rank checkpoints",
             "# at the same step and exits, then this job is requeued and resumes.",
             f'trap \'stopped=1; touch "$run_dir/{STOP_FILE}"\' USR1 TERM',
             'mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
             'export MASTER_ADDR="${nodes[0]}"',
             "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 40000))",
             f"echo \"$(date -u) job $SLURM_JOB_ID: {settings.nodes} node(s) x {gpus} GPUs, "
             "rendezvous $MASTER_ADDR:$MASTER_PORT\"",
             "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c " + shlex.quote(
                 "exec " + node_cmd) + " &",
             "pid=$!",
             "while :; do",
             '  wait "$pid"; status=$?',
             '  kill -0 "$pid" 2>/dev/null || break  # a trap ended the wait, not srun',
             "done",
             'if grep -qs \'"status": "finished"\' "$run_dir/summary.json"; then exit 0; fi',
             'if [ "$stopped" = 1 ]; then',
             '  echo "$(date -u) checkpointed on request; requeueing $SLURM_JOB_ID"',
             '  scontrol requeue "$SLURM_JOB_ID"',
             "  exit 0",
             "fi",
             "exit $status",
             ""]
    return "\n".join(lines)


def _with_gpus(settings: SlurmSettings, gpus: int) -> SlurmSettings:
    from dataclasses import replace

    return replace(settings, gpus_per_node=gpus)


@dataclass(frozen=True)
class MemoryRow:
    model: str
    total_params: int
    active_params: int
    model_state_bytes: int  # fp32 weights + fp32 grads + AdamW moments
    bf16_copy_bytes: int  # autocast's bf16 copies of the weights
    activation_bytes: int  # per micro-batch
    flops_per_token: float

    @property
    def per_gpu_bytes(self) -> int:
        return self.model_state_bytes + self.bf16_copy_bytes + self.activation_bytes

    def tokens_per_s_per_gpu(self, peak: float = H100_BF16_DENSE_FLOPS, mfu: float = MFU
                             ) -> float:
        return mfu * peak / self.flops_per_token

    def hours(self, gpus: int, tokens: float = PAPER_TOKENS) -> float:
        return tokens / (self.tokens_per_s_per_gpu() * gpus) / 3600


def memory_row(cfg: ModelConfig, micro_batch: int, seq_len: int) -> MemoryRow:
    pc = count_params(cfg)
    mem = training_memory(cfg, micro_batch, seq_len)
    return MemoryRow(cfg.name, pc.total, pc.active, mem["weights"] + mem["grads"] + mem["adam"],
                     mem["bf16_weights"], mem["activations"],
                     matmul_flops_per_token(cfg, seq_len))


def memory_table(rows: list[MemoryRow], gpus: int, micro_batch: int, seq_len: int) -> str:
    """Markdown: per-GPU memory (GiB) and the estimated throughput of each grid point."""
    gib = 2**30
    head = ["model", "total params", "active params",
            "weights+grads+AdamW (fp32) GiB", "bf16 weight copies GiB",
            f"activations (mb {micro_batch} x {seq_len}) GiB", "per GPU GiB", "fits 80 GB",
            "est. tok/s/GPU", f"est. hours for 125B tokens on {gpus} GPUs"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r.model, f"{r.total_params / 1e9:.2f}B", f"{r.active_params / 1e9:.2f}B",
                 f"{r.model_state_bytes / gib:.1f}", f"{r.bf16_copy_bytes / gib:.1f}",
                 f"{r.activation_bytes / gib:.1f}", f"{r.per_gpu_bytes / gib:.1f}",
                 "yes" if r.per_gpu_bytes <= GPU_MEMORY else "no",
                 f"{r.tokens_per_s_per_gpu():,.0f}", f"{r.hours(gpus):.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
