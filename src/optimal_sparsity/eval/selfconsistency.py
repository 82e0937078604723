"""Test-time compute: zero-shot self-consistency (the paper's Fig 6).

For each held-out problem, N = 2^r_max completions are sampled from the zero-shot prompt
"Question: {q}\\nAnswer:" (the proxy items' ``prompt``) at temperature 0.6, top-p 0.95,
and each answer is parsed with the strict ``#### N`` rule (``parse_final``). For every
N = 1, 2, 4, ..., 2^r_max, over the *first* N samples:

- ``maj@N``: the majority answer is right. Completions without an answer abstain; ties
  go to the answer seen first; a problem whose N samples all abstain counts as wrong.
- ``cov@N``: at least one of the N answers is right (coverage, pass@N).

Samples for one problem are drawn in one seeded call (seed = settings.seed + problem
index), so a result does not depend on which other problems ran. Rows go to the
results table (task ``gsm8k_proxy_sc``) in the part of the checkpoint's ``sc`` tier
(``eval.evaluate`` runs this as that tier), with the settings in every row: a part made
with the same settings is the cache, one made with other settings is replaced.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.data.arithmetic import parse_final
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import UserError

TASK = "gsm8k_proxy_sc"


@dataclass(frozen=True)
class SCSettings:
    r_max: int = 7  # N = 1, 2, ..., 2^r_max samples per problem (the paper: 2^7 = 128)
    n_problems: int = 100  # first n held-out problems (the paper: all 1,319 of GSM8K)
    max_new_tokens: int = 64  # proxy answers are under 40 tokens (the paper: 1024)
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 0
    backend: str = "hf"  # "hf" (CPU/GPU) or "vllm" (GPU)

    def __post_init__(self) -> None:
        if not 0 <= self.r_max <= 12:
            raise UserError(f"r_max must be in 0..12 (got {self.r_max})")
        if self.n_problems < 1 or self.max_new_tokens < 1:
            raise UserError("n_problems and max_new_tokens must be >= 1")
        if self.backend not in ("hf", "vllm"):
            raise UserError(f"backend must be hf or vllm (got {self.backend!r})")

    @property
    def n_samples(self) -> int:
        return 2 ** self.r_max

    @property
    def sizes(self) -> list[int]:
        return [2 ** r for r in range(self.r_max + 1)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def majority_vote(answers: Sequence[int | None]) -> int | None:
    """Most frequent non-None answer; ties go to the one that occurs first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def sc_metrics(answers: Sequence[Sequence[int | None]], targets: Sequence[int],
               sizes: Sequence[int]) -> dict[str, float]:
    """``maj@N`` and ``cov@N`` for each N in ``sizes`` (answers: per problem, per sample)."""
    if len(answers) != len(targets) or not answers:
        raise ValueError("need one answer list per target, and at least one problem")
    out: dict[str, float] = {}
    for n in sizes:
        if any(len(a) < n for a in answers):
            raise ValueError(f"fewer than {n} samples for some problem")
        maj = sum(majority_vote(a[:n]) == t for a, t in zip(answers, targets, strict=True))
        cov = sum(t in a[:n] for a, t in zip(answers, targets, strict=True))
        out[f"maj@{n}"] = maj / len(targets)
        out[f"cov@{n}"] = cov / len(targets)
    return out


@dataclass
class SCResult:
    settings: SCSettings
    metrics: dict[str, float]
    n: int
    wall_s: float
    answers: list[list[int | None]] = dataclasses.field(default_factory=list)
    completions: list[list[str]] = dataclasses.field(default_factory=list)
    cached: bool = False


def _items(corpus: str | Path, n: int) -> list[dict]:
    path = CorpusFiles.at(corpus).eval_items("gsm8k_proxy")
    if not path.is_file():
        raise UserError(f"no reasoning-proxy eval set at {path}")
    with open(path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    return items[:n]


def sample_answers(generator, items: Sequence[dict], settings: SCSettings,
                   progress: Callable[[int, int], None] | None = None
                   ) -> tuple[list[list[str]], list[list[int | None]]]:
    from optimal_sparsity.eval.generation import Sampling
    from optimal_sparsity.progress import Progress

    sampling = Sampling(settings.temperature, settings.top_p, settings.max_new_tokens)
    texts: list[list[str]] = []
    bar = Progress(len(items), "self-consistency", "problems", mode="off" if progress else None)
    for i, it in enumerate(items):
        texts += generator.generate([it["prompt"]], sampling, n=settings.n_samples,
                                    seed=settings.seed + i)
        if progress:
            progress(i + 1, len(items))
        bar.update()
    bar.close()
    return texts, [[parse_final(t) for t in ts] for ts in texts]


def self_consistency(checkpoint: str | Path, corpus: str | Path,
                     settings: SCSettings | None = None, *, results: str | Path | None = None,
                     force: bool = False, generator=None,
                     progress: Callable[[int, int], None] | None = None) -> SCResult:
    """Self-consistency of one checkpoint of this artifact on the reasoning proxy."""
    import tempfile

    from optimal_sparsity.checkpoint import check_corpus, verify_checkpoint
    from optimal_sparsity.eval.rows import (
        checkpoint_identity,
        eval_part,
        make_rows,
        write_eval_part,
    )
    from optimal_sparsity.results.table import cached_part

    settings = settings or SCSettings()
    verify_checkpoint(checkpoint)
    check_corpus(Path(checkpoint), Path(corpus))  # as eval does: same tokenizer or refuse
    ident = checkpoint_identity(checkpoint)
    part = eval_part(ident, "retrain", "sc")  # the part of eval.evaluate's sc tier
    rows = None if results is None or force else cached_part(results, part,
                                                             settings.to_dict())
    if rows:
        return SCResult(settings, {r.metric: r.value for r in rows}, rows[0].n, 0.0,
                        cached=True)
    items = _items(corpus, settings.n_problems)
    start = time.monotonic()
    if generator is not None:
        texts, answers = sample_answers(generator, items, settings, progress)
    else:
        from optimal_sparsity.eval.generation import make_generator
        from optimal_sparsity.hf_export import export_hf

        with tempfile.TemporaryDirectory(prefix="sc-") as tmp:
            export_hf(checkpoint, Path(tmp) / "hf")
            gen = make_generator(settings.backend, Path(tmp) / "hf")
            texts, answers = sample_answers(gen, items, settings, progress)
    wall = time.monotonic() - start
    targets = [int(it["target"]) for it in items]
    metrics = sc_metrics(answers, targets, settings.sizes)
    if results is not None:
        write_eval_part(results, ident, "retrain", "sc", make_rows(
            ident, TASK, metrics, n=len(items),
            extra={"tier": "sc", "settings": settings.to_dict(),
                   "checkpoint": str(checkpoint), "wall_s": round(wall, 1)}))
    return SCResult(settings, metrics, len(items), wall, answers, texts)
