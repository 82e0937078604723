"""Typed training configuration (serialised next to every run and checkpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError

Precision = Literal["fp32", "bf16"]


def resolve_model(name: str, vocab_size: int, seq_len: int, **overrides: Any) -> ModelConfig:
    """The model a run of grid point (or paper model) ``name`` trains: the corpus'
    vocabulary, a window of the run's ``seq_len``, and ``overrides`` (e.g. ``n_layers``,
    ``backend``). The only place a training config's model is read from a name."""
    from optimal_sparsity.grid import get_config

    return get_config(name, vocab_size=vocab_size, max_seq_len=seq_len, **overrides)


def run_id_of(train: dict[str, Any], corpus_fingerprint: str | None) -> str:
    """The run identity of a serialised training config (``TrainConfig.run_id``); also
    reads the configs of checkpoints written before the model was stored resolved."""
    d = dict(train)
    if corpus_fingerprint:
        d["corpus"] = corpus_fingerprint
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainConfig:
    """The paper's recipe (docs/paper.md) with scaled-down sizes, for one resolved model
    (``model``: the architecture trained, vocabulary and window included; ``of_model``
    resolves a grid name against a corpus).

    AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on matrices), linear warm-up then
    cosine decay to ``min_lr_ratio`` x peak, gradient clipping at 1.0, loss = CE +
    load-balancing + z-loss. ``train_tokens`` (or ``steps``) sets the budget; one
    step consumes ``micro_batch * grad_accum * world_size`` sequences of ``seq_len``.
    """

    model: ModelConfig
    corpus: str
    seed: int = 0
    seq_len: int = 256
    micro_batch: int = 16
    grad_accum: int = 1
    train_tokens: int | None = None
    steps: int | None = None
    lr: float = 2e-3
    warmup_frac: float = 0.067  # the paper: 2,000 of 29,803 steps
    min_lr_ratio: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 0  # steps; 0 = only at the end
    eval_sequences: int = 64
    ckpt_interval: int = 0  # steps; 0 = only at the end (and on a signal)
    keep_fractions: tuple[float, ...] = (0.125, 0.25, 0.5)  # intermediate checkpoints kept
    keep_last: int = 1  # rolling checkpoints kept besides the kept ones
    load_log_interval: int = 10  # steps between per-expert load records
    precision: Precision = "fp32"
    threads: int = 0  # 0 = all cores

    @classmethod
    def of_model(cls, name: str, corpus: str | Path, *, vocab_size: int | None = None,
                 model_overrides: dict[str, Any] | None = None, **fields: Any) -> TrainConfig:
        """A config training grid point ``name`` on ``corpus`` (its vocabulary, read from
        the corpus unless ``vocab_size`` is given) with a window of ``seq_len``."""
        if vocab_size is None:
            from optimal_sparsity.data.shards import read_corpus_meta

            vocab_size = int(read_corpus_meta(Path(corpus))["vocab_size"])
        seq_len = fields.get("seq_len", cls.__dataclass_fields__["seq_len"].default)
        model = resolve_model(name, vocab_size, seq_len, **(model_overrides or {}))
        return cls(model=model, corpus=str(corpus), **fields)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(f"invalid training config: {msg}")

        need(isinstance(self.model, ModelConfig),
             "model must be a resolved ModelConfig (TrainConfig.of_model resolves a name)")
        need(self.model.max_seq_len >= self.seq_len,
             f"seq_len {self.seq_len} exceeds the model's window {self.model.max_seq_len}")

        need((self.train_tokens is None) != (self.steps is None),
             "give exactly one of train_tokens or steps")
        if self.train_tokens is not None:
            need(self.train_tokens > 0, f"train_tokens must be > 0 (got {self.train_tokens})")
        if self.steps is not None:
            need(self.steps > 0, f"steps must be > 0 (got {self.steps})")
        for f in ("seq_len", "micro_batch", "grad_accum", "eval_sequences", "load_log_interval"):
            need(getattr(self, f) >= 1, f"{f} must be >= 1")
        for f in ("eval_interval", "ckpt_interval", "keep_last", "threads"):
            need(getattr(self, f) >= 0, f"{f} must be >= 0")
        need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"lr must be a finite number > 0 (got {self.lr})")
        need(isinstance(self.seed, int) and 0 <= self.seed < 2**32,
             f"seed must be in [0, 2^32) (got {self.seed})")
        need(0 <= self.warmup_frac < 1, "warmup_frac must be in [0, 1)")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        need(self.grad_clip > 0, "grad_clip must be > 0")
        need(all(0 < f < 1 for f in self.keep_fractions), "keep_fractions must be in (0, 1)")
        need(self.precision in ("fp32", "bf16"), "precision must be fp32 or bf16")

    def tokens_per_step(self, world_size: int = 1) -> int:
        return self.seq_len * self.micro_batch * self.grad_accum * world_size

    def total_steps(self, world_size: int = 1) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, -(-int(self.train_tokens or 0) // self.tokens_per_step(world_size)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["keep_fractions"] = list(self.keep_fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if isinstance(d.get("model"), str):
            raise UserError(f"training config names its model ({d['model']!r}) instead of "
                            "holding it resolved: written by an earlier version of this "
                            "artifact; train the run again")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown training config field(s): {', '.join(sorted(unknown))}")
        if "keep_fractions" in d:
            d["keep_fractions"] = tuple(d["keep_fractions"])
        if isinstance(d.get("model"), dict):
            d["model"] = ModelConfig.from_dict(d["model"])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def run_id(self, corpus_fingerprint: str | None) -> str:
        """The identity of a training run: this config with its corpus named by content
        (the corpus fingerprint), not by path. It names the run directory of a sweep and
        the ``run`` of every results row of the run's checkpoints, so moving the data
        (``$OPTIMAL_SPARSITY_HOME``, a corpus directory) keeps both. Without a fingerprint
        (a checkpoint written without one) the corpus path stands in."""
        return run_id_of(self.to_dict(), corpus_fingerprint)

PAPER_STEPS = 29_803  # 125B tokens / (1024 x 4096)
PAPER_GLOBAL_BATCH = 1024  # sequences per optimizer step, over all ranks
PAPER_SEQ_LEN = 4096
PAPER_WARMUP_STEPS = 2_000


def paper_recipe(world_size: int, micro_batch: int) -> dict[str, Any]:
    """TrainConfig fields of the paper's pre-training recipe (docs/paper.md) on ``world_size``
    ranks: the global batch stays 1024 sequences (micro-batch x accumulation x ranks)."""
    per_rank = micro_batch * world_size
    if PAPER_GLOBAL_BATCH % per_rank:
        raise UserError(f"the paper's batch of {PAPER_GLOBAL_BATCH} sequences is not a "
                        f"multiple of micro-batch {micro_batch} x {world_size} rank(s)")
    return dict(seq_len=PAPER_SEQ_LEN, micro_batch=micro_batch,
                grad_accum=PAPER_GLOBAL_BATCH // per_rank, steps=PAPER_STEPS, lr=4e-4,
                warmup_frac=PAPER_WARMUP_STEPS / PAPER_STEPS, min_lr_ratio=0.1,
                precision="bf16", ckpt_interval=500)


PAPER_MODEL_OVERRIDES = {"backend": "megablocks"}  # the paper's recipe trains on MegaBlocks
