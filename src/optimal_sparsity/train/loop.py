"""The training loop: deterministic, resumable, optionally data-parallel (torchrun).

Run directory::

    train.lock             held while a trainer works here (a second one refuses)
    train_config.json      the TrainConfig and its run id (a resumed run must have the same id)
    metrics.jsonl          one line per step (+ validation and expert-load records)
    checkpoints/step-N/    model + optimizer + RNG + data position (see state.py)
    summary.json           written at the end: final losses, throughput, sizes

Stopping: SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 (Slurm's and submitit's warning before
a time limit or preemption), or a file ``STOP`` in the run directory (what the batch
script of a multi-node job writes when Slurm signals it), make the run checkpoint at the
end of the current step and return "interrupted"; under torchrun the ranks agree on the
step. Rerunning the same command resumes.

Bitwise resume on CPU: the data position is one integer (samples consumed), the
sampler's order depends only on (seed, epoch), the optimizer state and RNG are restored
exactly, and the metrics log is truncated to the checkpoint's offset. A resume refuses a
corpus other than the one the checkpoint was trained on; a non-finite loss stops the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from optimal_sparsity.accounting import count_params, matmul_flops_per_token
from optimal_sparsity.atomic import sweep_stale, write_json
from optimal_sparsity.checkpoint import check_corpus, load_tensors, read_config, save_checkpoint
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.data.shards import BatchSampler, fixed_batches, open_split, read_corpus_meta
from optimal_sparsity.errors import UserError
from optimal_sparsity.model import build_model
from optimal_sparsity.model.mean_ce import mean_ce
from optimal_sparsity.progress import Progress
from optimal_sparsity.train import state as st
from optimal_sparsity.train.allocator import keep_freed_memory
from optimal_sparsity.train.config import TrainConfig
from optimal_sparsity.train.schedule import lr_at

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
STOP_FILE = "STOP"


@dataclass
class RunResult:
    status: str  # "finished" | "interrupted"
    step: int
    total_steps: int
    out: Path
    summary: dict[str, Any]


def _apart_from_corpus(train: dict[str, Any] | None) -> dict[str, Any] | None:
    """A serialised training config without what its corpus decides (the model's
    vocabulary is the corpus tokenizer's)."""
    if not isinstance(train, dict) or not isinstance(train.get("model"), dict):
        return train
    return {**train, "model": {k: v for k, v in train["model"].items() if k != "vocab_size"}}


def memory_estimate(mc: ModelConfig, cfg: TrainConfig) -> int:
    """A lower bound on the bytes one training step needs: weights, gradients and AdamW's
    two moments (fp32), and the activations kept for the backward pass of one micro-batch
    (per token and layer about 34 d + 5 heads x seq_len values, plus k experts' hidden
    states; logits and their gradient)."""
    params = count_params(mc).total
    per_token = (mc.n_layers * (34 * mc.d_model + 5 * mc.n_heads * cfg.seq_len
                                + 3 * mc.top_k * mc.ffn_hidden) + 2 * mc.vocab_size)
    return 4 * (4 * params + cfg.micro_batch * cfg.seq_len * per_token)


def available_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_memory(mc: ModelConfig, cfg: TrainConfig, device: torch.device) -> None:
    """Refuse a run whose step cannot fit in the memory the device has free."""
    need, have = memory_estimate(mc, cfg), available_memory(device)
    if have is not None and need > have:
        raise UserError(
            f"{mc.name} with micro-batch {cfg.micro_batch} x {cfg.seq_len} tokens needs at "
            f"least {need / 2**30:.1f} GiB on {device.type}, {have / 2**30:.1f} GiB is free: "
            "use a smaller --micro-batch (and --grad-accum for the same batch)")


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, fused: bool = False
                    ) -> torch.optim.AdamW:
    """The trainer's AdamW: weight decay on matrices only, the per-parameter loop
    (``foreach=False``: the pinned runs' bits). ``fused``: torch's fused kernel instead
    (a benchmark peer; about 1 ulp from the loop, so not the trainer's)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
        **({"fused": True} if fused else {"foreach": False}))


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return rank, world


class Trainer:
    def __init__(self, cfg: TrainConfig, out: str | Path, progress: bool | None = None,
                 device: str | None = None, log_interval_s: float | None = None) -> None:
        """``progress``: None, a bar on a terminal and else a line every
        ``log_interval_s`` seconds (see ``optimal_sparsity.progress``) with tokens/s and
        achieved FLOP/s; True, always the bar; False, nothing."""
        self.cfg = cfg
        self.out = Path(out)
        self.rank, self.world = _dist_info()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.progress = progress
        self.log_interval_s = log_interval_s

        self.corpus = Path(cfg.corpus)
        self.corpus_meta = read_corpus_meta(self.corpus)
        self.model_cfg = cfg.model
        if cfg.model.vocab_size != self.corpus_meta["vocab_size"]:
            raise UserError(f"model {cfg.model.name} has a vocabulary of "
                            f"{cfg.model.vocab_size} tokens, corpus {self.corpus} of "
                            f"{self.corpus_meta['vocab_size']}: resolve the model against "
                            "this corpus (TrainConfig.of_model)")
        self.params = count_params(self.model_cfg)
        self.total_steps = cfg.total_steps(self.world)
        self.warmup = round(cfg.warmup_frac * self.total_steps)
        self.keep_steps = {max(1, round(f * self.total_steps)) for f in cfg.keep_fractions}
        self.keep_steps.add(self.total_steps)
        self.seqs_per_step = cfg.micro_batch * cfg.grad_accum * self.world
        self.tokens_per_step = self.seqs_per_step * cfg.seq_len
        check_memory(self.model_cfg, cfg, self.device)

        self.sampler = BatchSampler(open_split(self.corpus, "train"), cfg.seq_len, cfg.seed)
        self.val_batches = fixed_batches(open_split(self.corpus, "val"), cfg.seq_len,
                                         cfg.eval_sequences, cfg.micro_batch)

        if self.device.type == "cpu":
            keep_freed_memory()
        model = build_model(self.model_cfg, seed=cfg.seed)  # init on CPU: same on any device
        self.model = model.to(self.device)
        self.opt = build_optimizer(self.model, cfg)
        self.ddp = None
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._stop_signal: int | None = None

    # Paths and bookkeeping -------------------------------------------------------------
    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    def _check_run_dir(self) -> None:
        """Refuse a directory that holds another run. Runs are compared by run id (the
        corpus by fingerprint, not path), so a run whose data moved resumes in place."""
        path = self.out / "train_config.json"
        run_id = self.cfg.run_id(read_corpus_meta(self.corpus).get("fingerprint"))
        want = {"train": self.cfg.to_dict(), "world_size": self.world, "run": run_id}
        if path.is_file():
            have = json.loads(path.read_text())
            keys = ("run", "world_size") if "run" in have else ("train", "world_size")
            if any(have.get(k) != want[k] for k in keys):
                if (_apart_from_corpus(have.get("train")) == _apart_from_corpus(want["train"])
                        and have.get("world_size") == self.world):
                    raise UserError(f"{self.out} holds a run trained on another corpus than "
                                    f"{self.corpus} now holds (run id {have.get('run')}, now "
                                    f"{run_id}); use that corpus or another --out")
                raise UserError(f"{self.out} holds a run with a different training config "
                                f"(see {path}); use another --out to start a new run")
        elif self.rank == 0:
            write_json(path, want)

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    # Checkpoints -----------------------------------------------------------------------
    def save(self, step: int, samples: int) -> Path | None:
        path = st.step_dir(self.ckpt_root, step)
        if self.rank == 0:
            tensors, groups = st.optimizer_tensors(self.opt)
            offset = self.metrics_path.stat().st_size if self.metrics_path.exists() else 0
            state = {"step": step, "samples": samples, "tokens": samples * self.cfg.seq_len,
                     "total_steps": self.total_steps, "param_groups": groups,
                     "metrics_offset": offset, "rng": st.rng_json()}
            meta = {"train": self.cfg.to_dict(), "step": step,
                    "tokens": samples * self.cfg.seq_len,
                    "corpus_fingerprint": self.corpus_meta.get("fingerprint")}
            if path.exists():  # a newer checkpoint that did not verify (resume skipped it)
                st.remove_checkpoint(path)
            save_checkpoint(path, self.model, self.model_cfg,
                            tokenizer_dir=CorpusFiles(self.corpus).tokenizer_dir, meta=meta,
                            tensors={st.OPTIMIZER_FILE: tensors},
                            json_files={st.STATE_FILE: state})
            self._prune(step)
        if self.world > 1:
            dist.barrier()
        return path

    def _prune(self, newest: int) -> None:
        """Drop rolling checkpoints beyond ``keep_last``; all of them once the run is done."""
        rolling = [(s, p) for s, p in st.list_checkpoints(self.ckpt_root)
                   if s not in self.keep_steps and s != newest]
        keep = 0 if newest == self.total_steps else self.cfg.keep_last
        excess = len(rolling) - max(0, keep - (newest not in self.keep_steps))
        for _, p in rolling[:max(0, excess)]:
            st.remove_checkpoint(p)

    def _check_corpus(self, ckpt: Path) -> None:
        """Refuse to resume on a corpus other than the checkpoint's (same path, new data)."""
        meta = read_config(ckpt)
        have, want = self.corpus_meta.get("fingerprint"), meta.get("corpus_fingerprint")
        vocab = meta["model"].get("vocab_size")
        if have != want or vocab != self.model_cfg.vocab_size:
            raise UserError(
                f"{self.out}: checkpoint {ckpt.name} was trained on another corpus (fingerprint "
                f"{want}, vocabulary {vocab}) than {self.corpus} now holds (fingerprint {have}, "
                f"vocabulary {self.model_cfg.vocab_size}); use that corpus or another --out")
        try:
            check_corpus(ckpt, self.corpus)
        except UserError as err:
            raise UserError(f"{self.out}: cannot resume: {err}") from None

    def _resume(self) -> tuple[int, int]:
        point = st.latest_resume_point(self.ckpt_root)
        if point is None:
            if self.rank == 0 and self.metrics_path.exists():
                self.metrics_path.unlink()  # a run that never checkpointed starts over
            return 0, 0
        self._check_corpus(point.path)
        weights = load_tensors(point.path / "model.safetensors", self.device)
        self.model.load_state_dict(weights, strict=True)
        tensors = st.load_optimizer_file(point.path)
        st.restore_optimizer(self.opt, tensors, point.state["param_groups"])
        st.restore_rng_json(point.state["rng"])
        if self.rank == 0 and self.metrics_path.exists():
            with open(self.metrics_path, "r+b") as f:
                f.truncate(point.state["metrics_offset"])
        return point.step, point.state["samples"]

    # Evaluation during training ----------------------------------------------------------
    def validation_loss(self) -> float:
        return mean_ce(self.model, self.val_batches, self.device)

    # The loop ------------------------------------------------------------------------------
    def _handle_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        """A signal here, or the stop file; under torchrun, on any rank (all agree)."""
        stop = self._stop_signal is not None or (
            self.rank == 0 and (self.out / STOP_FILE).exists())
        if self.world > 1:
            flag = torch.tensor([float(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, step: int, samples: int) -> dict[str, Any]:
        cfg, mc = self.cfg, self.model_cfg
        lr = lr_at(step, self.total_steps, cfg.lr, self.warmup, cfg.min_lr_ratio)
        for g in self.opt.param_groups:
            g["lr"] = lr
        net = self.ddp or self.model
        parts = torch.zeros(4, dtype=torch.float64)  # loss, ce, lb, z
        load = torch.zeros(mc.n_layers, mc.n_experts, dtype=torch.float64)
        base = samples + self.rank * cfg.grad_accum * cfg.micro_batch
        for micro in range(cfg.grad_accum):
            x, y = self.sampler.batch(base + micro * cfg.micro_batch, cfg.micro_batch)
            sync = micro == cfg.grad_accum - 1
            ctx = net.no_sync() if (self.ddp is not None and not sync) else contextlib.nullcontext()
            with ctx:
                with self._autocast():
                    out = net(x.to(self.device), labels=y.to(self.device), return_logits=False)
                (out.loss / cfg.grad_accum).backward()
            parts += torch.stack([out.loss.detach(), out.ce_loss.detach(), out.lb_loss.detach(),
                                  out.z_loss.detach()]).double().cpu()
            for i, r in enumerate(out.routing):
                load[i] += torch.bincount(r.top_idx.reshape(-1), minlength=mc.n_experts).cpu()
        if self.world > 1:
            dist.all_reduce(parts)
            dist.all_reduce(load)
            parts /= self.world
        parts /= cfg.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        frac = load / load.sum(dim=1, keepdim=True)
        rec = {"step": step + 1, "tokens": (samples + self.seqs_per_step) * cfg.seq_len,
               "lr": lr, "loss": parts[0].item(), "ce": parts[1].item(),
               "lb": parts[2].item(), "z": parts[3].item(), "grad_norm": grad_norm.item(),
               "imbalance": [round(v, 4) for v in (frac.max(dim=1).values * mc.n_experts).tolist()]}
        if (step + 1) % cfg.load_log_interval == 0 or step + 1 == self.total_steps:
            rec["expert_load"] = [[round(v, 5) for v in row] for row in frac.tolist()]
        return rec

    @contextlib.contextmanager
    def _locked(self):
        """Hold ``train.lock`` (rank 0): a second trainer on this directory refuses."""
        if self.rank != 0:
            yield
            return
        from filelock import FileLock, Timeout

        self.out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.out / "train.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(f"{self.out} is being trained by another process (it holds "
                            f"{self.out / 'train.lock'}); wait for it or use another --out"
                            ) from None
        try:
            # Nobody else writes here now: what a killed trainer left is stale.
            sweep_stale(self.out)
            sweep_stale(self.ckpt_root)
            yield
        finally:
            lock.release()

    def run(self) -> RunResult:
        with self._locked():
            return self._run()

    def _run(self) -> RunResult:
        cfg = self.cfg
        if self.world > 1:
            dist.barrier()
        self._check_run_dir()
        step, samples = self._resume()
        old = {s: signal.signal(s, self._handle_signal) for s in STOP_SIGNALS}
        bar = None
        if self.rank == 0 and self.progress is not False:
            flops = self.tokens_per_step * matmul_flops_per_token(self.model_cfg, cfg.seq_len)
            bar = Progress(self.total_steps, f"{self.model_cfg.name} train", "steps",
                           initial=step, mode="bar" if self.progress else None,
                           stream=sys.stderr, interval=self.log_interval_s,
                           rates={"tok/s": self.tokens_per_step, "FLOP/s": flops})
        t_start = time.perf_counter()
        rates: list[float] = []
        status = "finished"
        try:
            while step < self.total_steps:
                t0 = time.perf_counter()
                rec = self.train_step(step, samples)
                if not math.isfinite(rec["loss"]):
                    raise UserError(
                        f"{self.out}: the loss is {rec['loss']} at step {step + 1} (lr "
                        f"{rec['lr']:.3g}); training stopped, checkpoints are kept as they were")
                dt = time.perf_counter() - t0
                step += 1
                samples += self.seqs_per_step
                rec["tok_s"] = round(self.tokens_per_step / dt, 1)
                rates.append(self.tokens_per_step / dt)
                at_eval = cfg.eval_interval and step % cfg.eval_interval == 0
                if at_eval or step == self.total_steps:
                    rec["val_loss"] = self.validation_loss()
                self._log(rec)
                if bar is not None:
                    bar.update(1, loss=f"{rec['loss']:.3f}")
                due = (cfg.ckpt_interval and step % cfg.ckpt_interval == 0)
                stop = self._should_stop()
                if due or step in self.keep_steps or stop:
                    self.save(step, samples)
                if stop and self.rank == 0:
                    (self.out / STOP_FILE).unlink(missing_ok=True)  # consumed
                if stop and step < self.total_steps:
                    status = "interrupted"
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if bar is not None:
                bar.close()
        summary = self._summary(step, samples, rates, time.perf_counter() - t_start, status)
        return RunResult(status, step, self.total_steps, self.out, summary)

    def _summary(self, step: int, samples: int, rates: list[float], wall: float,
                 status: str) -> dict[str, Any]:
        last = {}
        if self.rank == 0 and self.metrics_path.exists():
            for line in self.metrics_path.read_text().splitlines():
                rec = json.loads(line)
                last.update({k: rec[k] for k in ("loss", "ce", "val_loss") if k in rec})
        steady = sorted(rates[2:] or rates)
        tok_s = steady[len(steady) // 2] if steady else None  # none measured this session
        mc = self.model_cfg
        summary = {
            "status": status, "model": mc.to_dict(), "step": step,
            "total_steps": self.total_steps, "tokens": samples * self.cfg.seq_len,
            "total_params": self.params.total, "active_params": self.params.active,
            "tpp": samples * self.cfg.seq_len / self.params.total,
            "final_train_ce": last.get("ce"), "final_val_loss": last.get("val_loss"),
            "median_tokens_per_s": tok_s, "wall_s_this_session": wall,
            "achieved_flops": tok_s * matmul_flops_per_token(mc, self.cfg.seq_len)
            if tok_s is not None else None,
            "world_size": self.world, "threads": torch.get_num_threads(),
        }
        if self.rank == 0 and status == "finished":
            write_json(self.out / "summary.json", summary)
        return summary
