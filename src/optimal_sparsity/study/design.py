"""The scaled-down study's design, per scale, as data.

A design fixes everything a figure session needs: the corpus (one token budget shared
by every grid point), the grid points, the seeds, the training recipe and what is
evaluated. Scales: ``tiny`` (the end-to-end test: seconds per point), ``smoke`` (the
default ``./reproduce``: at most 15 minutes on 2 cores) and ``full`` (the whole
scaled-down study: at most 2 hours on 2 cores). Every study family has k >= 2 (at k = 1
the router learns nothing from the LM loss: ``config.K1_ROUTER_NOTE``). RESULTS.md records
how each choice was made and which probe justified it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimal_sparsity.data.arithmetic import ArithmeticConfig
from optimal_sparsity.data.corpus import CorpusConfig
from optimal_sparsity.data.knowledge import KnowledgeConfig
from optimal_sparsity.data.scripts import ScriptsConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.grid import GridPoint, scaled_config
from optimal_sparsity.train.config import TrainConfig

SCALES = ("tiny", "smoke", "full")


@dataclass(frozen=True)
class EvalPlan:
    """How much evaluation each checkpoint gets (items per task; 0 = all)."""

    limit: int = 0
    batch_size: int = 32
    max_new_tokens: int = 48
    sc_problems: int = 100  # self-consistency problems per model
    sc_max_power: int = 5  # N = 1, 2, ..., 2^r
    grpo_preset: str = "cpu"
    grpo_overrides: tuple[tuple[str, Any], ...] = ()  # GRPOSettings fields, as pairs
    fewshot_shots: tuple[int, ...] = (0, 1, 2, 3)
    fewshot_limit: int = 200
    # torch threads while evaluating (0: as the process has). One, as in the training pool's
    # evaluation, makes the numbers independent of the machine's cores and of --jobs.
    threads: int = 0


@dataclass(frozen=True)
class StudyDesign:
    scale: str
    corpus: CorpusConfig
    points: tuple[GridPoint, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any]
    eval: EvalPlan = field(default_factory=EvalPlan)
    # The active-parameter family (d, k) whose models get test-time compute, GRPO and
    # few-shot evaluation (Fig 6, 10, 11), with its first ``posttrain_seeds`` seeds.
    posttrain_family: tuple[int, int] = (0, 0)
    posttrain_seeds: int = 1
    # The E values of that family that also get GRPO (None: all of them); GRPO is the
    # costliest evaluation (about 3 min per model and prompt set on 2 cores).
    grpo_experts: tuple[int, ...] | None = None
    intermediate_fractions: tuple[float, ...] = (0.25, 0.5)  # Fig 4 checkpoints
    # Claims this scale has the power to decide (None: all). With one seed, only those
    # whose effect is large against the full-scale seed spread (RESULTS.md).
    decides: tuple[str, ...] | None = None
    # The scale whose pinned seed variance stands in for metrics this design does not
    # replicate (one seed, the same recipe): ``claims.stats``.
    noise_from: str | None = None
    # Replicated anchors: these points also train with ``anchor_seeds`` (beside ``seeds``),
    # so every family has a pooled seed variance at its two ends.
    anchors: tuple[GridPoint, ...] = ()
    anchor_seeds: tuple[int, ...] = ()

    def seeds_of(self, point: GridPoint) -> tuple[int, ...]:
        """The seeds ``point`` trains with: the design's, plus the anchors' extra ones."""
        return self.seeds + (self.anchor_seeds if point in self.anchors else ())

    def fingerprint(self) -> str:
        """What the pinned numbers depend on: corpus, grid, seeds, recipe, evaluation (not
        which claims the design decides, nor the evaluation's thread count, which moves a
        value by float rounding only, inside every tolerance's floor). A pin records it; a
        pin of another design is not compared (``references.load_scaled``)."""
        import dataclasses
        import hashlib
        import json

        d = {"corpus": self.corpus.fingerprint(), "points": [p.label for p in self.points],
             "seeds": self.seeds, "anchors": [p.label for p in self.anchors],
             "anchor_seeds": self.anchor_seeds, "train": self.train,
             "eval": {k: v for k, v in dataclasses.asdict(self.eval).items() if k != "threads"},
             "fractions": self.intermediate_fractions,
             "posttrain": [self.posttrain_family, self.posttrain_seeds, self.grpo_experts]}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()
                              ).hexdigest()[:16]

    def pin(self) -> dict | None:
        """``references/scaled/<scale>.json`` if it was measured on this design, else None."""
        from optimal_sparsity.references import load_scaled

        return load_scaled(self.scale, self.fingerprint())

    def noise_prior(self) -> dict[tuple[str, str], tuple[float, float]]:
        """The seed noise pinned at ``noise_from``, if measured on that scale's design."""
        from optimal_sparsity.references import noise_prior

        if self.noise_from is None:
            return {}
        return noise_prior(self.noise_from, get_design(self.noise_from).fingerprint())

    @property
    def n_runs(self) -> int:
        return sum(len(self.seeds_of(p)) for p in self.points)

    def __post_init__(self) -> None:
        stray = [p.label for p in self.anchors if p not in self.points]
        if stray:
            raise ValueError(f"design {self.scale}: anchors {stray} are not grid points")

    def train_config(self, point: GridPoint, seed: int, corpus_dir: str) -> TrainConfig:
        scaled_config(point.d, point.E, point.k)  # validates the point
        return TrainConfig.of_model(point.name, corpus_dir, seed=seed,
                                    keep_fractions=self.intermediate_fractions,
                                    model_overrides=point.model_overrides(), **self.train)

    @property
    def posttrain_points(self) -> tuple[GridPoint, ...]:
        return tuple(p for p in self.points if p.family == self.posttrain_family)

    def gets_grpo(self, point: GridPoint) -> bool:
        return point in self.posttrain_points and (
            self.grpo_experts is None or point.E in self.grpo_experts)

    @property
    def posttrain_seed_list(self) -> tuple[int, ...]:
        return self.seeds[:self.posttrain_seeds]


FULL_TOKENS = 12_500_000  # TPP > 30 at the dense end (E = 2, k = 2) for 8,192 people
FULL_PEOPLE = 8_192  # probe (a): the dense end stores <= 70% of the base, E = 16 >= 1.5x it


def study_corpus(train_tokens: int, n_people: int) -> CorpusConfig:
    """The smoke and full corpus: values-style knowledge (``n_people``), 20% scripts, 40%
    fresh arithmetic (probe (c)), per-source validation shards (AUDIT section 5)."""
    return CorpusConfig(
        train_tokens=train_tokens, val_tokens=40_000, vocab_size=512,
        w_knowledge=0.4, w_scripts=0.2, w_arithmetic=0.4,
        knowledge=KnowledgeConfig(n_people=n_people, style="values"),
        scripts=ScriptsConfig(n_activities=100), arithmetic=ArithmeticConfig(),
        n_eval_knowledge=600, n_eval_scripts=400, n_eval_arithmetic=300, val_by_source=True)


def _family(d: int, ks: tuple[int, ...], es: tuple[int, ...], **kw) -> list[GridPoint]:
    return [GridPoint(d, e, k, **kw) for k in ks for e in es if e >= k]


# What each scale decides: the claims its calibration bounds (``study.calibration.decidable``:
# false verdicts <= 10% either way under the null, power >= 80% at the default effect), from
# `./reproduce claims --calibrate --scale S --every-claim` on the current pins (2026-12-04;
# docs/verdicts.md). The rest are reported inconclusive with what they would read.
SMOKE_DECIDES = ("C1.loss-vs-params", "C1.hellaswag-taskloss", "C1.gsm8k-taskloss-threshold",
                 "C5.reasoning-small-active-sparser", "C6.ttc-raises-accuracy")
FULL_DECIDES = ("C1.hellaswag-taskloss", "C1.gsm8k-taskloss-threshold",
                "C2.memorization-monotone", "C5.reasoning-small-active-sparser",
                "C5.reasoning-optimum-moves-dense", "C6.ttc-raises-accuracy",
                "C6.grpo-raises-accuracy", "C7.reasoning-tpp-peak", "C7.tpp-optimum-near-20",
                "C7.larger-k-better", "C10.grpo-either-set")


def _designs() -> dict[str, StudyDesign]:
    tiny_corpus = CorpusConfig(
        train_tokens=48_000, val_tokens=8_000, vocab_size=320,
        knowledge=KnowledgeConfig(n_people=100), scripts=ScriptsConfig(n_activities=20),
        arithmetic=ArithmeticConfig(max_steps=2), n_eval_knowledge=40, n_eval_scripts=40,
        n_eval_arithmetic=20, n_train_tasks=40, tokenizer_sample_docs=2000)
    tiny = StudyDesign(  # the end-to-end test: one family of three points, seconds each
        scale="tiny", corpus=tiny_corpus,
        points=tuple(_family(32, (2,), (2, 4, 8), n_layers=2)), seeds=(0,),
        train=dict(seq_len=64, micro_batch=8, train_tokens=48_000, lr=3e-3,
                   eval_sequences=8, threads=0),
        eval=EvalPlan(limit=10, batch_size=10, max_new_tokens=24, sc_problems=4,
                      sc_max_power=2, fewshot_shots=(0, 1), fewshot_limit=6,
                      grpo_overrides=(("max_steps", 2), ("eval_n", 4), ("n_prompts", 16),
                                      ("per_device_batch", 8), ("num_generations", 4))),
        posttrain_family=(32, 2), intermediate_fractions=(0.5,),
        decides=())  # 48k tokens and one seed: it checks the wiring, it decides no claim
    # smoke and full share one corpus recipe (RESULTS.md, "design record"; the probes in
    # references/probes/): values-style knowledge (single-token names and values: many bits
    # per token), 2-3 step arithmetic with a new problem per document (held-out
    # compositions), scripts for the HellaSwag proxy, 40/20/40, per-source validation CE.
    recipe = dict(seq_len=128, micro_batch=16, lr=3e-3, eval_sequences=64,
                  threads=1)  # one thread per run, runs side by side: bit-reproducible anywhere
    grpo = (("max_steps", 150), ("eval_n", 200), ("learning_rate", 5e-5), ("per_device_batch", 64))
    # smoke: the full recipe at a quarter of the tokens, one seed of the k = 2 family, with
    # few enough people (1,024) that each is seen ~100 times. Not capacity-limited (both ends
    # store >= 99.7% of a 1,024-person base: probe (a)), so it cannot decide the memorization
    # claims; it decides what a within-model comparison decides with one seed. No GRPO: on
    # one model it decides nothing (the full-scale effect is below one-seed resolution) and
    # its 2 x 2.5 min would take smoke past 15 minutes (16 min 54 s measured with it).
    smoke = StudyDesign(
        scale="smoke", corpus=study_corpus(3_000_000, 1_024),
        points=tuple(_family(64, (2,), (2, 4, 8, 16))), seeds=(0,),
        train=dict(train_tokens=3_000_000, **recipe),
        eval=EvalPlan(limit=200, sc_problems=40, sc_max_power=4, fewshot_limit=100,
                      grpo_overrides=grpo, threads=1),
        posttrain_family=(64, 2), grpo_experts=(),
        decides=SMOKE_DECIDES, noise_from="full")
    # full: k = 2 (E 2..16) and k = 4 (E 4..16) at d = 64, one budget of 12.5M tokens (TPP
    # on both sides of 20 inside each family), 8,192 people (probes (a) and (d): the dense
    # end is capacity-limited), seed 0 everywhere and seed 1 at both ends of each family.
    k2, k4 = _family(64, (2,), (2, 4, 8, 16)), _family(64, (4,), (4, 8, 16))
    full = StudyDesign(
        scale="full", corpus=study_corpus(FULL_TOKENS, FULL_PEOPLE),
        points=tuple(k2 + k4), seeds=(0,), anchors=(k2[0], k2[-1], k4[0], k4[-1]),
        anchor_seeds=(1,), train=dict(train_tokens=FULL_TOKENS, **recipe),
        eval=EvalPlan(limit=300, sc_problems=60, sc_max_power=5, fewshot_limit=150,
                      grpo_overrides=grpo, threads=1),
        posttrain_family=(64, 2), grpo_experts=(2, 8, 16),  # 3 points: a curve after GRPO
        decides=FULL_DECIDES)
    return {d.scale: d for d in (tiny, smoke, full)}


DESIGNS = _designs()


def get_design(scale: str) -> StudyDesign:
    if scale not in DESIGNS:
        raise UserError(f"unknown scale {scale!r}: one of {', '.join(SCALES)}")
    return DESIGNS[scale]


# Routers that learn -----------------------------------------------------------------------

def router_offenders(design: StudyDesign, **kw) -> list[tuple[GridPoint, float]]:
    """The MoE points (E > 1) of ``design`` whose router gets no gradient from the LM loss
    (``model.router_grad``), with their relative router gradient. E = 1 is the dense
    reference: it has no routing to learn."""
    from optimal_sparsity.model.router_grad import MIN_RELATIVE_ROUTER_GRAD, router_gradient_ratio

    out = []
    for p in design.points:
        if p.E == 1:
            continue
        ratio = router_gradient_ratio(scaled_config(p.d, p.E, p.k, n_layers=p.n_layers), **kw)
        if ratio <= MIN_RELATIVE_ROUTER_GRAD:
            out.append((p, ratio))
    return out


def corpus_vocab_size(corpus: CorpusConfig) -> int:
    """The vocabulary a corpus' models get: BPE tokens plus knowledge's dedicated tokens
    (the BPE reaches its size on the study's corpora)."""
    from optimal_sparsity.data.knowledge import KnowledgeBase

    return corpus.vocab_size + len(KnowledgeBase(corpus.knowledge, corpus.seed)
                                   .dedicated_tokens())


def design_tpp(design: StudyDesign) -> dict[GridPoint, dict[str, float]]:
    """Per point: total and active parameters and TPP (train tokens per total parameter)."""
    from optimal_sparsity.accounting import count_params

    vocab = corpus_vocab_size(design.corpus)
    tokens = design.train["train_tokens"]
    out = {}
    for p in design.points:
        pc = count_params(scaled_config(p.d, p.E, p.k, n_layers=p.n_layers, vocab_size=vocab,
                                        max_seq_len=design.train["seq_len"]))
        out[p] = {"total_params": pc.total, "active_params": pc.active,
                  "tpp": tokens / pc.total}
    return out
