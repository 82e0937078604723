"""What ``checkpoints.lock`` holds before anything is resolved, generated from code.

The static part of the lock: the paper's released models (the grid's names and repos, the
parameter counts ``accounting.count_params`` gives the paper's architecture), the code models
with a public name, the evaluation data sets, and the task-loss inputs built from them.
``./reproduce lock --write-skeleton`` writes it; a test checks that the shipped file equals it.
"""

from __future__ import annotations

from dataclasses import dataclass

from optimal_sparsity.accounting import count_params
from optimal_sparsity.grid import GridPoint, paper_config, paper_models
from optimal_sparsity.hub.lock import BuiltInput, Entry, Expected, Lock
from optimal_sparsity.hub.taskloss_inputs import BUILDS, SEED, carried_hashes, harness_version

UNRESOLVED_OFFLINE = (
    "not resolved yet: the machines that built this artifact cannot reach the Hugging Face "
    "hub; run `./reproduce lock --update` on a machine that can")

# Code models: the full list is not public (docs/paper.md). Only names seen in a public source.
CODE_MODELS: tuple[tuple[int, int, int, str, str, str], ...] = (
    (512, 8, 2, "320M", "170M",
     "rioyokotalab/optimal-sparsity scripts/lm-evaluation-harness/code_eval.sh "
     "(commit a0815d0bfc211d828f4536ae2ce13e8b4f75c7b8)"),
)


@dataclass(frozen=True)
class DatasetSpec:
    """An evaluation data set the pull mode uses (lm-evaluation-harness's ``dataset_path``)."""

    name: str
    repo_id: str
    task: str
    config: str | None
    split: str
    shots: int
    include: tuple[str, ...] | None = None  # glob patterns of the files to pull (None: all)
    source: str = ""  # where the repo id comes from ("": DATASET_SOURCE)


# Repo ids as in lm-evaluation-harness 0.4.13's task configs (the version this project pins).
# TriviaQA's repo is several GB; only its rc.nocontext folder is pulled (the parquet layout of
# huggingface.co/datasets/mandarjoshi/trivia_qa/discussions/8). `lock --update` fails loudly
# if an include pattern matches nothing.
DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("gsm8k", "openai/gsm8k", "gsm8k", "main", "test", 4),
    DatasetSpec("triviaqa", "mandarjoshi/trivia_qa", "triviaqa", "rc.nocontext", "validation",
                4, include=("rc.nocontext/*",)),
    DatasetSpec("hellaswag", "Rowan/hellaswag", "hellaswag", None, "validation", 4),
    DatasetSpec("gsm_plus", "qintongli/GSM-Plus", "gsm_plus", None, "test", 5),
    DatasetSpec("humaneval", "openai/openai_humaneval", "humaneval", None, "test", 0),
    DatasetSpec("humaneval_plus", "evalplus/humanevalplus", "humaneval_plus", None, "test", 0),
    DatasetSpec("mbpp", "google-research-datasets/mbpp", "mbpp", "full", "test", 3),
    DatasetSpec("mbpp_plus", "evalplus/mbppplus", "mbpp_plus", None, "test", 3),
    # GRPO's second training set (Fig 10): MATH train, as verl's MATH preprocessing reads it
    DatasetSpec("math", "DigitalLearningGmbH/MATH-lighteval", "math_grpo", "default", "train",
                0, source="verl's examples/data_preprocess/math_dataset.py (the authors' GRPO "
                          "preprocessing), MATH train for GRPO (Fig 10)"),
)
DATASET_SOURCE = "lm-evaluation-harness 0.4.13 task config (dataset_path of the task)"

NOT_BUILT = ("not built yet: pull the data set (`./reproduce pull {dataset}`), then run "
             "`./reproduce taskloss-build {name} --write-lock` where it is")


def model_entry(name: str, repo_id: str, cfg, *, family: str, source: str,
                total_name: str = "", active_name: str = "") -> Entry:
    """An unresolved model entry for ``cfg`` (a ModelConfig); counts from ``count_params``."""
    pc = count_params(cfg)
    return Entry(kind="model", name=name, repo_id=repo_id, family=family,
                 grid=GridPoint(cfg.d_model, cfg.n_experts, cfg.top_k, cfg.n_layers),
                 expected=Expected(pc.total, pc.active, total_name, active_name),
                 source=source, revision=None, unresolved_reason=UNRESOLVED_OFFLINE, files=None)


def dataset_entry(spec: DatasetSpec) -> Entry:
    return Entry(kind="dataset", name=spec.name, repo_id=spec.repo_id, task=spec.task,
                 config=spec.config, split=spec.split, shots=spec.shots, include=spec.include,
                 source=spec.source or DATASET_SOURCE, revision=None,
                 unresolved_reason=UNRESOLVED_OFFLINE, files=None)


def skeleton(previous: Lock | None = None) -> Lock:
    """The lock the code defines. Resolved pins of ``previous`` are kept for entries whose
    static fields did not change."""
    models = [model_entry(pm.name, pm.hf_repo, pm.config(), family="math",
                          source="paper grid (src/optimal_sparsity/resources/paper_grid_math.csv)",
                          total_name=pm.total_name, active_name=pm.active_name)
              for pm in paper_models()]
    for d, e, k, tot, act, src in CODE_MODELS:
        point = GridPoint(d, e, k).short
        models.append(model_entry(
            f"code-{point}", f"llm-jp/optimal-sparsity-code-{point}-{tot}-A{act}",
            paper_config(d, e, k), family="code", source=src, total_name=tot, active_name=act))
    lock = Lock(models=tuple(models), datasets=tuple(dataset_entry(s) for s in DATASETS),
                taskloss_inputs=built_inputs())
    if previous is not None:
        old = {e.name: e for e in previous.entries}
        for e in lock.entries:
            prev = old.get(e.name)
            if prev is not None and prev.pinned and prev.static_dict() == e.static_dict():
                lock = lock.with_entry(prev)
        old_inputs = {b.file: b for b in previous.taskloss_inputs}
        for b in lock.taskloss_inputs:
            prev_b = old_inputs.get(b.file)
            if prev_b is not None and prev_b.built and prev_b.static_dict() == b.static_dict():
                lock = lock.with_input(prev_b)
    return lock


def built_inputs() -> tuple[BuiltInput, ...]:
    """The builder's inputs. One of the authors' files that this artifact carries
    (``resources/taskloss``; GSM8K 4-shot) has its hash from the start: the builder
    reproduces it byte for byte (tests/hub/test_taskloss_build.py)."""
    carried = carried_hashes()
    out = []
    for b in BUILDS.values():
        entry = BuiltInput(b.file, b.task, b.dataset, b.num_fewshot, SEED,
                           source=f"lm-evaluation-harness task {b.task} ({b.yaml}), "
                                  f"{b.num_fewshot}-shot, fewshot seed {SEED}",
                           unresolved_reason=NOT_BUILT.format(dataset=b.dataset,
                                                              name=b.file.removesuffix(".json")))
        if b.file in carried:
            entry = entry.with_hash(*carried[b.file], harness_version())
        out.append(entry)
    return tuple(out)
