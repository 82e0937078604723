"""What the benchmark measures: each row is a small declarative case; suites list them.

A case names its shape; ``optimal_sparsity.bench.builders`` turns it into peers (the
callables timed side by side) and the matmul FLOPs one call executes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from optimal_sparsity.grid import GridPoint

Dtype = Literal["float32", "bfloat16"]


@dataclass(frozen=True)
class MatmulCase:
    """``[m, k] @ [k, n]``: the machine's own matmul peak (and MoE-like shapes)."""

    m: int
    k: int
    n: int
    dtype: Dtype = "float32"
    kind: str = "matmul"

    @property
    def name(self) -> str:
        return f"mm {self.m}x{self.k}x{self.n} {self.dtype}"


@dataclass(frozen=True)
class MoELayerCase:
    """One MoE layer, forward + backward on ``tokens`` tokens: ours vs HF's block.

    ``family`` is ``scaled`` (the CPU ladder, expert FFN 2d) or ``paper`` (d=512..).
    """

    d: int
    n_experts: int
    top_k: int
    tokens: int = 4096
    family: str = "scaled"
    dtype: Dtype = "float32"
    kind: str = "moe_layer"

    @property
    def ffn(self) -> int:
        return 2 * self.d

    @property
    def name(self) -> str:
        return f"{GridPoint(self.d, self.n_experts, self.top_k).short} T={self.tokens}"


def _model_label(model: str, n_layers: int | None) -> str:
    return f"{model} L={n_layers}" if n_layers else model


@dataclass(frozen=True)
class TrainStepCase:
    """A whole training step of a scaled-down model on random tokens: forward, backward,
    AdamW step, zero_grad. ``n_layers``/``vocab_size`` default to the ladder's."""

    model: str
    micro_batch: int = 16
    seq_len: int = 256
    n_layers: int | None = None
    vocab_size: int | None = None
    block_bytes: int | None = None  # ours: the fused MoE's cache blocks (None: its default)
    kind: str = "train_step"

    @property
    def name(self) -> str:
        return f"{_model_label(self.model, self.n_layers)} {self.micro_batch}x{self.seq_len}"


STUDY_VOCAB = 512  # the study corpus's tokenizer (study/design.py)


@dataclass(frozen=True)
class EvalLossCase:
    """Scoring, as task loss and lm-eval log-likelihoods run it: a no-grad forward and
    log-softmax over ``batch`` sequences of ``seq_len`` tokens."""

    model: str
    batch: int = 16
    seq_len: int = 128
    n_layers: int | None = None
    vocab_size: int | None = STUDY_VOCAB
    kind: str = "eval_loss"

    @property
    def name(self) -> str:
        return f"{_model_label(self.model, self.n_layers)} {self.batch}x{self.seq_len}"


@dataclass(frozen=True)
class GenerateCase:
    """Greedy generation: ``batch`` prompts of ``prompt_len`` tokens, exactly
    ``new_tokens`` new tokens each (no stop token)."""

    model: str
    batch: int = 16
    prompt_len: int = 64
    new_tokens: int = 64
    n_layers: int | None = None
    vocab_size: int | None = STUDY_VOCAB
    kind: str = "generate"

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.new_tokens

    @property
    def name(self) -> str:
        return (f"{_model_label(self.model, self.n_layers)} "
                f"{self.batch}x({self.prompt_len}+{self.new_tokens})")


@dataclass(frozen=True)
class EndToEndCase:
    """``./reproduce --scale SCALE`` from an empty cache, in a fresh process: wall time
    and the peak resident memory of its largest process. Timed once (it takes minutes)."""

    scale: str = "smoke"
    kind: str = "e2e"

    @property
    def name(self) -> str:
        return f"./reproduce --scale {self.scale}"


@dataclass(frozen=True)
class StudyTrainCase:
    """A design's training throughput under each trainer setup (``bench.study``): every
    grid point of ``design`` trained ``seconds`` per setup and round, in worker processes,
    at the design's batch, window and vocabulary."""

    design: str
    seconds: float = 5.0
    rounds: int = 3
    setups: tuple[str, ...] = ("today", "side-by-side", "study")
    kind: str = "study_train"

    @property
    def name(self) -> str:
        return f"{self.design} design"


@dataclass(frozen=True)
class UnderLoadCase:
    """One grid point of ``design`` trained under each setup, idle and beside one
    CPU-bound process of ``competitor_threads`` threads (``bench.study``)."""

    design: str
    point: str
    competitor_threads: int = 2
    seconds: float = 5.0
    rounds: int = 3
    setups: tuple[str, ...] = ("today", "all-cores-spin1000", "all-cores-passive", "study")
    kind: str = "under_load"

    @property
    def name(self) -> str:
        return f"{self.point} ({self.design}), one {self.competitor_threads}-thread competitor"


Case = (MatmulCase | MoELayerCase | TrainStepCase | EvalLossCase | GenerateCase | StudyTrainCase
        | UnderLoadCase | EndToEndCase)
CASE_TYPES: dict[str, type] = {"matmul": MatmulCase, "moe_layer": MoELayerCase,
                               "train_step": TrainStepCase, "eval_loss": EvalLossCase,
                               "generate": GenerateCase, "study_train": StudyTrainCase,
                               "under_load": UnderLoadCase, "e2e": EndToEndCase}


def case_to_dict(case: Case) -> dict[str, Any]:
    return asdict(case)


def case_from_dict(d: dict[str, Any]) -> Case:
    return CASE_TYPES[d["kind"]](**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in d.items()})  # JSON has no tuples


_PEAK = [MatmulCase(2048, 2048, 2048), MatmulCase(2048, 2048, 2048, "bfloat16")]
_MOE_LIKE = [MatmulCase(1024, d, 2 * d) for d in (64, 128, 256, 512)]
_SCALED_MOE = [MoELayerCase(d, e, k) for d, e, k in [
    (64, 8, 2), (64, 32, 4), (128, 8, 2), (128, 32, 4), (128, 64, 8),
    (256, 8, 2), (256, 16, 4), (256, 64, 8)]]
_PAPER_MOE = [MoELayerCase(512, e, k, family="paper") for e, k in [
    (8, 2), (16, 4), (32, 8), (64, 2), (64, 8)]]
_TRAIN = [TrainStepCase(m) for m in ("s-d64-E8-k2", "s-d128-E8-k2", "s-d128-E32-k4",
                                     "s-d256-E16-k4", "s-d256-E64-k16")]
# The study's evaluation shapes (d=64, vocab 512, 128-token windows) and a wider model.
_EVAL = [EvalLossCase("s-d64-E8-k1"), EvalLossCase("s-d64-E8-k2"),
         EvalLossCase("s-d256-E16-k4")]
_GENERATE = [GenerateCase("s-d64-E8-k1"), GenerateCase("s-d64-E8-k1", batch=1),
             GenerateCase("s-d256-E16-k4")]

# GPU (bf16, paper widths): `./reproduce bench --suite gpu --device cuda`; adds the
# MegaBlocks peer where it imports. Not yet run: no GPU was lent so far.
_GPU_MOE = [MoELayerCase(d, e, k, tokens=16384, family="paper", dtype="bfloat16")
            for d in (512, 1024) for e, k in [(8, 2), (16, 4), (64, 8), (128, 8), (256, 16)]]

# The study itself: each design's sweep under today's and the study's trainer setups, and
# the densest-compute point beside a competing process.
_STUDY = [StudyTrainCase("smoke"), StudyTrainCase("full"),
          UnderLoadCase("full", "s-d64-E16-k4")]

SUITES: dict[str, list[Case]] = {
    "full": [*_PEAK, *_MOE_LIKE, *_SCALED_MOE, *_PAPER_MOE, *_TRAIN, *_EVAL, *_GENERATE,
             *_STUDY],
    "quick": [*_PEAK,
              MoELayerCase(64, 8, 2), MoELayerCase(128, 8, 2), MoELayerCase(256, 16, 4),
              MoELayerCase(512, 8, 2, tokens=2048, family="paper"),
              TrainStepCase("s-d64-E8-k2", micro_batch=8), TrainStepCase("s-d256-E16-k4",
                                                                         micro_batch=8),
              EvalLossCase("s-d64-E8-k1"), GenerateCase("s-d64-E8-k1")],
    # The study's own training (about 12 minutes): also part of "full".
    "study": _STUDY,
    # The reproduction, timed end to end from an empty cache: smoke (the default, about
    # 12 minutes) and full (about two hours); e2e-smoke is the first alone.
    "e2e": [EndToEndCase("smoke"), EndToEndCase("full")],
    "e2e-smoke": [EndToEndCase("smoke")],
    "gpu": [MatmulCase(8192, 8192, 8192, "bfloat16"), *_GPU_MOE],
    # One tiny shape of each kind: what the test suite runs.
    "tiny": [MatmulCase(128, 128, 128),
             MoELayerCase(32, 4, 2, tokens=64),
             TrainStepCase("s-d32-E4-k2", micro_batch=2, seq_len=32, n_layers=1,
                           vocab_size=64),
             EvalLossCase("s-d32-E4-k2", batch=2, seq_len=32, n_layers=1, vocab_size=64),
             GenerateCase("s-d32-E4-k2", batch=2, prompt_len=8, new_tokens=4, n_layers=1,
                          vocab_size=64)],
}
