"""All evaluation tiers of one checkpoint -> rows of the results table.

Tiers (``TIERS``, declared in ``tiers``):

- ``pretrain``: train and validation CE (nats/token) recomputed on the corpus
  (``pretrain_loss``); task ``pretrain``, metrics ``train_loss``, ``val_loss`` and, on a
  corpus with per-source validation shards, ``val_loss_<source>``.
- ``task_loss``: the paper's task loss on the proxy tasks (``task_loss``); metrics
  ``task_loss`` (bits/token) and ``task_loss_bpb`` (bits/byte).
- ``accuracy``: lm-evaluation-harness on the proxy tasks (``harness``, project task
  definitions); ``acc``, ``acc_norm`` (HellaSwag proxy), ``acc_flexible`` and ``step_acc``
  (GSM proxies).
- ``knowledge_bits``: bits stored of a values-style knowledge base (``knowledge_bits``):
  task ``knowledge_bits``, metrics ``bits_stored``, ``bits_fraction`` (of the base),
  ``bits_per_param`` (over total parameters) and ``value_nll_bits`` (mean teacher-forced
  NLL of a value); skipped with the reason on other corpora.
- ``paper_task_loss``: task loss on the authors' own inputs (GSM8K 4-shot, HumanEval+,
  MBPP+; tasks ``gsm8k``, ``humaneval``, ``mbpp``). Meaningful for released checkpoints; on
  a scaled-down model it only exercises the code path (rows say so in ``extra.note``).
- ``paper_accuracy``: lm-eval's stock tasks in the paper's configuration (``paper_tasks``),
  by default in the authors' harness (lm-eval 0.4.7; 0.4.9 for HumanEval and MBPP; each in
  its own environment, ``paper_accuracy_run``); a task reads the pulled snapshot of its data
  set where pull mode pulled one, else the hub's data, so offline it is skipped with the
  reason. Rows record the lm-eval version that ran them (``extra.lm_eval``).
- ``sc``: self-consistency on the reasoning proxy (``selfconsistency``; task
  ``gsm8k_proxy_sc``, metrics ``maj@N`` and ``cov@N``), settings ``sc_settings()``.
- ``grpo`` / ``grpo2``: GRPO (trl) on the GSM8K-proxy / GSM-Plus-proxy training prompts,
  greedy accuracy and sampled reward before and after (``grpo``; tasks
  ``gsm8k_proxy_grpo`` and ``gsm8k_proxy_grpo_plus``), settings ``grpo_settings()``; the
  tuned checkpoint goes under ``grpo_dir``.

A checkpoint is either this project's (``checkpoint.py``; source "retrain") or a Hugging Face
Mixtral directory such as a pulled release (source "pull"). Each (checkpoint, tier) is one
part of the results table, written atomically. A tier whose part exists and was made with
the same settings is not recomputed (``force`` recomputes); a part made with other settings
is replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optimal_sparsity.checkpoint import check_corpus
from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.lm_eval_tasks import PROXY_TASKS
from optimal_sparsity.eval.paper_ttc import FEWSHOT_SHOTS
from optimal_sparsity.eval.rows import (
    checkpoint_identity,
    eval_part,
    make_rows,
    write_eval_part,
)
from optimal_sparsity.hf_export import is_hf_model_dir as is_hf_dir
from optimal_sparsity.results.table import Row, cached_part, settings_key
from optimal_sparsity.tiers import CORPUS_TIERS, DEFAULT_TIERS, TIERS

SCALED_DOWN_NOTE = ("authors' inputs on a scaled-down model: exercises the code path, "
                    "not a result")


@dataclass(frozen=True)
class EvalSettings:
    """What to measure and how much of it. ``smoke()`` is a seconds-scale setting."""

    tiers: tuple[str, ...] = DEFAULT_TIERS
    tasks: tuple[str, ...] = PROXY_TASKS  # proxy tasks of the task_loss and accuracy tiers
    limit: int | None = None  # the first N items of every task (None: all)
    batch_size: int = 16
    max_new_tokens: int | None = None  # None: each task's own max_gen_toks
    train_sequences: int = 128  # pretrain tier: training windows sampled
    val_sequences: int | None = None  # pretrain tier: validation windows (None: all)
    backend: str = "adapter"  # accuracy tier: "adapter" (MoELM) or "hf" (lm-eval hf backend)
    paper_backend: str | None = None  # paper_accuracy: "hf" or "vllm" (None: vllm iff GPU)
    device: str = "cpu"
    threads: int = 0  # torch threads while evaluating (0: leave as is)
    force: bool = False
    fewshot_shots: tuple[int, ...] = (0, 1, 2, 3)  # fewshot tier (the paper's Fig 11)
    paper_inputs: tuple[str, ...] = ()  # paper_task_loss: built inputs, "FILE:SHA256"
    paper_inputs_dir: str | None = None  # where they are (taskloss_build.default_out_dir)
    paper_code_data: tuple[str, ...] = ()  # paper_accuracy: "TASK=DIR", HumanEval+ / MBPP+
    paper_harness: str = "authors"  # paper_accuracy: "authors" (0.4.7/0.4.9) or "pinned" (ours)
    paper_task_data: tuple[str, ...] = ()  # paper_accuracy: "TASK=DIR", pulled lm-eval data
    paper_gsm8k_data: str | None = None  # paper_sc / paper_fewshot: the pulled GSM8K snapshot
    paper_sc_power: int = 7  # paper_sc: 2^7 samples per problem (the paper's)
    paper_sc_max_new_tokens: int = 1024  # paper_sc (the paper's)
    paper_fewshot_shots: tuple[int, ...] = FEWSHOT_SHOTS  # paper_fewshot (Fig 11)
    paper_math_data: str | None = None  # paper_grpo_math: the pulled MATH snapshot
    # paper_grpo / paper_grpo_math: changes to the authors' GRPO settings (eval.grpo's
    # "paper" preset), as (field, value) pairs; () runs theirs
    paper_grpo_overrides: tuple[tuple[str, Any], ...] = ()
    seed: int = 0  # sc / grpo / grpo2: the sampling (and GRPO training) seed
    sc_max_power: int = 7  # sc: N = 1, 2, ..., 2^r samples per problem
    sc_problems: int = 100  # sc: the first N held-out reasoning-proxy problems
    sc_max_new_tokens: int | None = None  # sc (None: max_new_tokens, else SCSettings')
    grpo_preset: str = "cpu"  # grpo / grpo2: eval.grpo's preset
    grpo_overrides: tuple[tuple[str, Any], ...] = ()  # grpo / grpo2: changes to the preset
    # grpo / grpo2: where the tuned checkpoints go, one directory per prompt set and
    # settings (None: ``grpo/<run>-<step>/`` beside the results table's parts)
    grpo_dir: str | None = None

    def sc_settings(self):
        """The ``sc`` tier's settings (``eval.selfconsistency.SCSettings``)."""
        from optimal_sparsity.eval.selfconsistency import SCSettings

        tokens = self.sc_max_new_tokens or self.max_new_tokens
        return SCSettings(r_max=self.sc_max_power, n_problems=self.sc_problems,
                          seed=self.seed, **({"max_new_tokens": tokens} if tokens else {}))

    def grpo_settings(self):
        """The ``grpo`` / ``grpo2`` tiers' settings (``eval.grpo.GRPOSettings``)."""
        from optimal_sparsity.eval.grpo import get_preset

        return get_preset(self.grpo_preset).replace(seed=self.seed,
                                                    **dict(self.grpo_overrides))

    @property
    def paper_code_tasks(self) -> tuple[str, ...]:
        return tuple(sorted(item.split("=", 1)[0] for item in self.paper_code_data))

    @property
    def paper_data(self) -> dict[str, str]:
        """{lm-eval paper task: its pulled snapshot} (GSM8K: else ``paper_gsm8k_data``)."""
        data = dict(item.split("=", 1) for item in self.paper_task_data)
        if self.paper_gsm8k_data and "gsm8k" not in data:
            data["gsm8k"] = self.paper_gsm8k_data
        return data

    @property
    def paper_data_tasks(self) -> tuple[str, ...]:
        return tuple(sorted(self.paper_data))

    def __post_init__(self) -> None:
        bad = [t for t in self.tiers if t not in TIERS]
        if bad:
            raise UserError(f"unknown tier(s) {', '.join(bad)}: choose from {', '.join(TIERS)}")
        bad = [t for t in self.tasks if t not in PROXY_TASKS]
        if bad:
            raise UserError(f"unknown task(s) {', '.join(bad)}: choose from "
                            f"{', '.join(PROXY_TASKS)}")
        if self.limit is not None and self.limit < 1:
            raise UserError("limit must be >= 1")
        if self.batch_size < 1 or self.train_sequences < 1:
            raise UserError("batch_size and train_sequences must be >= 1")
        if self.backend not in ("adapter", "hf"):
            raise UserError(f"backend must be 'adapter' or 'hf' (got {self.backend!r})")
        if self.paper_backend not in (None, "hf", "vllm"):
            raise UserError(f"paper_backend must be 'hf' or 'vllm' (got {self.paper_backend!r})")
        if self.paper_harness not in ("authors", "pinned"):
            raise UserError("paper_harness must be 'authors' or 'pinned' "
                            f"(got {self.paper_harness!r})")
        from optimal_sparsity.eval.paper_tasks import PAPER_TASKS

        bad = [i for i in self.paper_task_data
               if "=" not in i or i.split("=", 1)[0] not in PAPER_TASKS]
        if bad:
            raise UserError(f"paper_task_data: {', '.join(bad)}: expected TASK=DIR with TASK "
                            f"one of {', '.join(PAPER_TASKS)}")
        if "sc" in self.tiers:
            self.sc_settings()  # a bad value says so now, not after the other tiers ran
        if {"grpo", "grpo2"} & set(self.tiers):
            self.grpo_settings()

    @classmethod
    def smoke(cls, **changes: Any) -> EvalSettings:
        """A few items per task: every tier runs in seconds on a tiny model."""
        base = dict(limit=8, batch_size=8, max_new_tokens=40, train_sequences=8,
                    val_sequences=8)
        return cls(**{**base, **changes})

    def tier_key(self, tier: str) -> dict[str, Any]:
        """The settings that change a tier's numbers (stored with its rows: the cache key)."""
        if tier == "sc":  # the post-training tiers' own settings, whole
            return settings_key(self.sc_settings().to_dict())
        if tier in ("grpo", "grpo2"):
            return settings_key(self.grpo_settings().to_dict())
        keys = {"pretrain": ("train_sequences", "val_sequences"),
                "task_loss": ("tasks", "limit"),
                "accuracy": ("tasks", "limit", "max_new_tokens", "backend"),
                "fewshot": ("fewshot_shots", "limit", "max_new_tokens"),
                "knowledge_bits": (),  # every person and value, always
                "paper_task_loss": ("limit", "paper_inputs"),
                "paper_accuracy": ("limit", "paper_backend", "paper_code_tasks",
                                   "paper_harness", "paper_data_tasks"),
                "paper_sc": ("limit", "paper_backend", "paper_sc_power",
                             "paper_sc_max_new_tokens"),
                "paper_fewshot": ("limit", "paper_backend", "paper_fewshot_shots"),
                "paper_grpo": ("limit", "paper_backend", "paper_grpo_overrides"),
                "paper_grpo_math": ("limit", "paper_backend", "paper_grpo_overrides")}[tier]
        return settings_key({k: getattr(self, k) for k in keys})


class TierSkipped(Exception):  # a reason, not a failure
    """A tier that cannot run here; the message says why."""


# Checkpoints ----------------------------------------------------------------------------

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def hf_identity(directory: Path) -> dict[str, Any]:
    """Identity of an HF Mixtral directory (a released checkpoint)."""
    from optimal_sparsity.accounting import count_params
    from optimal_sparsity.eval.paper_tasks import PAPER_STEPS
    from optimal_sparsity.grid import PAPER_TOKENS, GridPoint, paper_models
    from optimal_sparsity.hf_export import config_from_hf

    raw = (directory / "config.json").read_bytes()
    cfg = config_from_hf(json.loads(raw), name=directory.name)
    m = re.search(r"d(\d+)-E(\d+)-k(\d+)", directory.name)
    d, e, k = map(int, m.groups()) if m else (cfg.d_model, cfg.n_experts, cfg.top_k)
    name = GridPoint(d, e, k).short
    if name != GridPoint.of(cfg).short:
        raise UserError(f"{directory}: its name says {name} but config.json says "
                        f"{GridPoint.of(cfg).short}")
    released = any((pm.d, pm.E, pm.k) == (d, e, k) for pm in paper_models()) and m is not None
    pc = count_params(cfg)
    tokens = PAPER_TOKENS if released else 0
    run = hashlib.sha256(directory.name.encode() + b"\0" + raw).hexdigest()[:16]
    return {"run": run, "model": name, "seed": 0,
            "step": PAPER_STEPS if released else 0, "tokens": tokens, "d": d, "E": e, "k": k,
            "n_layers": cfg.n_layers, "total_params": pc.total, "active_params": pc.active,
            "tpp": tokens / pc.total if tokens else 0.0,
            "config_hash": cfg.replace(name=name).fingerprint(), "corpus": ""}


@dataclass
class _Job:
    ckpt: Path
    corpus: Path | None
    settings: EvalSettings
    source: str  # "retrain" | "pull"
    identity: dict[str, Any]
    log: Callable[[str], None]
    root: Path  # the results table
    _loaded: tuple[Any, Any, Any] | None = field(default=None, repr=False)

    def load(self) -> tuple[torch.nn.Module, Any, Any]:
        """(model, tokenizer, ModelConfig), loaded once."""
        if self._loaded is None:
            from optimal_sparsity.data.tokenizer import load_tokenizer

            if self.source == "pull":
                from optimal_sparsity.hf_export import import_hf

                model, cfg = import_hf(self.ckpt)
            else:
                from optimal_sparsity.checkpoint import load_checkpoint

                model, cfg = load_checkpoint(self.ckpt)
            model = model.to(self.settings.device).eval()
            self._loaded = (model, load_tokenizer(self.ckpt), cfg)
        return self._loaded

    def need_corpus(self, tier: str) -> Path:
        if tier not in CORPUS_TIERS:
            raise AssertionError(f"tier {tier} reads the corpus: declare it in tiers.py")
        if self.corpus is None:
            raise UserError(f"tier {tier} needs the proxy corpus: pass --corpus DIR")
        return self.corpus

    def rows(self, task: str, metrics: dict[str, float], n: int, tier: str,
             stderr: dict[str, float] | None = None, extra: dict[str, Any] | None = None
             ) -> list[Row]:
        ex = {"tier": tier, "settings": self.settings.tier_key(tier),
              "checkpoint": str(self.ckpt), **(extra or {})}
        return make_rows(self.identity, task, metrics, n, stderr=stderr, source=self.source,
                         extra=ex)


# Tiers ----------------------------------------------------------------------------------

def _tier_pretrain(job: _Job) -> list[Row]:
    from optimal_sparsity.checkpoint import read_config
    from optimal_sparsity.eval.pretrain_loss import pretrain_loss

    if job.source == "pull":
        raise TierSkipped("the paper's pre-training data (and its held-out 1%) is not "
                          "available; the released checkpoints' losses cannot be recomputed")
    corpus = job.need_corpus("pretrain")
    model, _, cfg = job.load()
    seq_len = int((read_config(job.ckpt).get("train") or {}).get("seq_len") or cfg.max_seq_len)
    s = job.settings
    r = pretrain_loss(model, corpus, seq_len, n_train=s.train_sequences,
                      n_val=s.val_sequences, batch_size=s.batch_size, device=s.device)
    extra = {"seq_len": r.seq_len, "unit": "nats/token"}
    rows = (job.rows("pretrain", {"train_loss": r.train_loss}, r.n_train, "pretrain",
                     extra={**extra, "split": "train"})
            + job.rows("pretrain", {"val_loss": r.val_loss}, r.n_val, "pretrain",
                       extra={**extra, "split": "val"}))
    from optimal_sparsity.data.corpus import val_split

    for source, ce in r.val_by_source.items():
        rows += job.rows("pretrain", {f"val_loss_{source}": ce}, r.n_val_by_source[source],
                         "pretrain", extra={**extra, "split": val_split(source)})
    return rows


def _tier_knowledge_bits(job: _Job) -> list[Row]:
    from optimal_sparsity.accounting import count_params
    from optimal_sparsity.data.shards import read_corpus_meta
    from optimal_sparsity.eval.knowledge_bits import (
        CAPACITY_ANCHOR_BITS_PER_PARAM,
        knowledge_bits,
        load_records,
    )

    corpus = job.need_corpus("knowledge_bits")
    kcfg = (read_corpus_meta(corpus).get("config") or {}).get("knowledge") or {}
    if kcfg.get("style") != "values":
        raise TierSkipped("the corpus' knowledge is not values-style: no per-value NLL")
    model, tok, cfg = job.load()
    from optimal_sparsity.data.knowledge import KnowledgeConfig

    n_values = int(kcfg.get("n_values", KnowledgeConfig.n_values))
    r = knowledge_bits(model, tok, load_records(corpus), n_values,
                       batch_size=job.settings.batch_size, device=job.settings.device)
    total = count_params(cfg).total
    metrics = {"bits_stored": r.bits_stored, "bits_fraction": r.fraction,
               "bits_per_param": r.bits_stored / total, "value_nll_bits": r.mean_value_nll_bits}
    return job.rows("knowledge_bits", metrics, r.n_people * r.n_values, "knowledge_bits",
                    extra={"bits_total": r.bits_total, "n_people": r.n_people,
                           "values_per_person": r.n_values, "n_values": n_values,
                           "anchor_bits_per_param": list(CAPACITY_ANCHOR_BITS_PER_PARAM)})


def _task_loss_rows(job: _Job, tier: str, task: str, pairs: list[tuple[str, str]],
                    extra: dict[str, Any]) -> list[Row]:
    from optimal_sparsity.eval.task_loss import task_loss

    model, tok, cfg = job.load()
    r = task_loss(model, tok, pairs, batch_size=job.settings.batch_size,
                  max_length=cfg.max_seq_len, device=job.settings.device)
    if r.n == 0:  # e.g. the authors' code answers on a 128-token scaled-down model
        job.log(f"{tier}: {task}: no answer fits the model's {cfg.max_seq_len}-token window "
                f"({r.n_skipped} items skipped): no rows")
        return []
    return job.rows(task, {"task_loss": r.bits_per_token, "task_loss_bpb": r.bits_per_byte},
                    r.n, tier, stderr={"task_loss": r.stderr_bits_per_token,
                                       "task_loss_bpb": r.stderr_bits_per_byte},
                    extra={**r.extra(), **extra})


def _tier_task_loss(job: _Job) -> list[Row]:
    from optimal_sparsity.eval.taskloss_data import load_proxy_items

    corpus = job.need_corpus("task_loss")
    rows = []
    for task in job.settings.tasks:
        items = load_proxy_items(corpus, task)[:job.settings.limit]
        pairs = [(it["prompt"], it["answer"]) for it in items]
        rows += _task_loss_rows(job, "task_loss", task, pairs, {"unit": "bits/token"})
    return rows


@contextlib.contextmanager
def _exported(job: _Job) -> Iterator[Path]:
    """The checkpoint as an HF directory (itself when it already is one)."""
    if job.source == "pull":
        yield job.ckpt
        return
    from optimal_sparsity.hf_export import export_hf

    with tempfile.TemporaryDirectory(prefix="eval-export-") as tmp:
        yield export_hf(job.ckpt, Path(tmp) / "hf")


def _tier_accuracy(job: _Job) -> list[Row]:
    from optimal_sparsity.eval.harness import run_proxy_tasks

    corpus = job.need_corpus("accuracy")
    s = job.settings
    gen = {"max_gen_toks": s.max_new_tokens} if s.max_new_tokens else None
    if s.backend == "adapter":
        from optimal_sparsity.eval.lm_adapter import MoELM

        model, tok, _ = job.load()
        res = run_proxy_tasks(MoELM(model, tok, batch_size=s.batch_size, device=s.device),
                              corpus, s.tasks, limit=s.limit, gen_kwargs=gen)
    else:
        from lm_eval.models.huggingface import HFLM

        with _exported(job) as hf_dir:
            lm = HFLM(pretrained=str(hf_dir), dtype="float32", device=s.device,
                      batch_size=s.batch_size, trust_remote_code=False, use_safetensors=True)
            res = run_proxy_tasks(lm, corpus, s.tasks, limit=s.limit, gen_kwargs=gen)
    rows = []
    for task in s.tasks:
        rows += job.rows(task, res.metrics[task], res.n[task], "accuracy",
                         stderr=res.stderr[task], extra={"backend": s.backend})
    return rows


def _tier_fewshot(job: _Job) -> list[Row]:
    """GSM8K-proxy accuracy with 0, 1, 2, ... shots (task ``gsm8k_proxy_fewshot``,
    metrics ``acc@{n}shot``)."""
    from optimal_sparsity.eval.harness import FEWSHOT_TASK, run_fewshot
    from optimal_sparsity.eval.lm_adapter import MoELM

    corpus = job.need_corpus("fewshot")
    s = job.settings
    model, tok, _ = job.load()
    gen = {"max_gen_toks": s.max_new_tokens} if s.max_new_tokens else None
    res = run_fewshot(MoELM(model, tok, batch_size=s.batch_size, device=s.device), corpus,
                      tuple(s.fewshot_shots), limit=s.limit, gen_kwargs=gen)
    metrics = {f"acc@{n}shot": acc for n, (acc, _, _) in res.items()}
    stderr = {f"acc@{n}shot": se for n, (_, se, _) in res.items() if se is not None}
    n_items = min(n for _, _, n in res.values())
    return job.rows(FEWSHOT_TASK, metrics, n_items, "fewshot", stderr=stderr)


def _tier_paper_task_loss(job: _Job) -> list[Row]:
    from optimal_sparsity.eval.taskloss_data import paper_inputs

    rows = []
    for inp in paper_inputs(job.settings.paper_inputs, job.settings.paper_inputs_dir,
                            log=job.log):
        pairs = inp.pairs[:job.settings.limit]
        extra: dict[str, Any] = {"inputs": inp.file, "inputs_sha256": inp.sha256,
                                 "unit": "bits/token"}
        if job.source != "pull":
            extra["note"] = SCALED_DOWN_NOTE
        rows += _task_loss_rows(job, "paper_task_loss", inp.task, pairs, extra)
    return rows


def _tier_paper_accuracy(job: _Job) -> list[Row]:
    from optimal_sparsity.eval import paper_tasks as pt

    s = job.settings
    backend = s.paper_backend or pt.default_backend()
    data = s.paper_data
    blocked = pt.blocked_tasks(backend, tuple(pt.PAPER_TASKS), tuple(data))  # type: ignore[arg-type]
    if s.paper_harness == "authors":
        blocked |= _harness_unbuilt(job, [t for t in pt.PAPER_TASKS
                                          if not any(t in b for b in blocked.values())])
    runnable = {t: data.get(t) for t in pt.PAPER_TASKS
                if not any(t in b for b in blocked.values())}
    if not runnable and not s.paper_code_data:
        raise TierSkipped("; ".join(blocked))
    rows = []
    with _exported(job) as hf_dir:
        for why, tasks in blocked.items():
            job.log(f"paper_accuracy: lm-eval tasks skipped ({', '.join(tasks)}): {why}")
        if s.paper_harness == "authors":
            from optimal_sparsity.eval.paper_accuracy_run import run_in_authors_harness

            records = run_in_authors_harness(hf_dir, backend, runnable, limit=s.limit,
                                             batch_size=s.batch_size, log=job.log)
        else:
            from optimal_sparsity.eval.paper_accuracy_run import run_task

            records = [run_task(t, hf_dir, backend, d, limit=s.limit, batch_size=s.batch_size)
                       for t, d in runnable.items()]
        for r in records:
            if "skipped" in r:
                job.log(f"paper_accuracy: lm-eval tasks skipped ({r['task']}): {r['skipped']}")
                blocked[r["skipped"]] = (r["task"],)
                continue
            rows += job.rows(r["task"], r["metrics"], r["n"], "paper_accuracy",
                             stderr=r["stderr"],
                             extra={"backend": backend, "lm_eval": r["lm_eval"],
                                    "harness": s.paper_harness, "data": r["data"],
                                    "num_fewshot": pt.PAPER_TASKS[r["task"]].num_fewshot})
        rows += _evalplus_rows(job, hf_dir, backend)
    if not rows:
        raise TierSkipped("; ".join(blocked))
    return rows


def _harness_unbuilt(job: _Job, tasks: list[str]) -> dict[str, tuple[str, ...]]:
    """{why: tasks} for the authors' harness environments that cannot be built here."""
    from optimal_sparsity.eval.harness_env import harness_python, pinned_version
    from optimal_sparsity.eval.paper_tasks import PAPER_TASKS

    out: dict[str, tuple[str, ...]] = {}
    for req in dict.fromkeys(PAPER_TASKS[t].harness for t in tasks):
        try:
            harness_python(req, log=job.log)
        except (UserError, OSError) as err:
            out[f"the authors' harness (lm-eval {pinned_version(req)}) cannot be built here "
                f"({err}); --paper-harness pinned runs the project's lm-eval"] = tuple(
                t for t in tasks if PAPER_TASKS[t].harness == req)
    return out


def _lm_eval_version() -> str:
    """The harness version that made a row (its prompts, and its metrics where it scores)."""
    from optimal_sparsity.hub.taskloss_inputs import harness_version

    return harness_version()


def _evalplus_rows(job: _Job, hf_dir: Path, backend: str) -> list[Row]:
    """HumanEval+ / MBPP+ pass@1, generated code run in this project's sandbox."""
    if not job.settings.paper_code_data:
        return []
    from optimal_sparsity.eval.code_tasks import PLUS_TASKS, run_plus_task
    from optimal_sparsity.eval.generation import make_generator

    kw = {"batch_size": job.settings.batch_size} if backend == "hf" else {}
    generator = make_generator(backend, hf_dir, **kw)
    rows = []
    try:
        for item in job.settings.paper_code_data:
            task, data_dir = item.split("=", 1)
            res = run_plus_task(task, generator, data_dir, limit=job.settings.limit,
                                max_new_tokens=job.settings.max_new_tokens)
            rows += job.rows(task, {"pass@1": res.pass_at_1}, res.n, "paper_accuracy",
                             extra={"backend": backend, "executed_in": "sandbox",
                                    "lm_eval": _lm_eval_version(),
                                    "num_fewshot": PLUS_TASKS[task].num_fewshot,
                                    "statuses": res.counts()})
    finally:
        if hasattr(generator, "close"):  # a worker process (vLLM)
            generator.close()
    return rows


def _paper_gsm8k(job: _Job, tier: str) -> str:
    data = job.settings.paper_gsm8k_data
    if not data:
        raise TierSkipped(f"{tier} reads GSM8K's test split: no GSM8K snapshot was pulled "
                          "(its checkpoints.lock entry; pull mode pulls it)")
    return data


def _tier_paper_sc(job: _Job) -> list[Row]:
    """Self-consistency on GSM8K with the paper's settings (``eval.paper_ttc``)."""
    from optimal_sparsity.eval import paper_tasks as pt
    from optimal_sparsity.eval.generation import make_generator
    from optimal_sparsity.eval.paper_ttc import SC_TASK, PaperSC, gsm8k_problems
    from optimal_sparsity.eval.paper_ttc import self_consistency as sample

    s = job.settings
    backend = s.paper_backend or pt.default_backend()
    if reason := pt.backend_unavailable(backend):  # type: ignore[arg-type]
        raise TierSkipped(reason)
    problems = gsm8k_problems(_paper_gsm8k(job, "paper_sc"), s.limit)
    sc = PaperSC(r_max=s.paper_sc_power, max_new_tokens=s.paper_sc_max_new_tokens)
    with _exported(job) as hf_dir:
        generator = make_generator(backend, hf_dir)
        try:
            metrics = sample(generator, problems, sc)
        finally:
            if hasattr(generator, "close"):  # a worker process (vLLM)
                generator.close()
    return job.rows(SC_TASK, metrics, len(problems), "paper_sc",
                    extra={"backend": backend, "temperature": sc.temperature,
                           "top_p": sc.top_p, "prompt": "Question: {question}\nAnswer:"})


def _tier_paper_fewshot(job: _Job) -> list[Row]:
    """GSM8K strict-match accuracy at each shot count (``eval.paper_ttc``; metrics
    ``acc@{n}shot``, as the proxy sweep's)."""
    from optimal_sparsity.eval import paper_tasks as pt
    from optimal_sparsity.eval.paper_ttc import FEWSHOT_TASK, fewshot_sweep

    s = job.settings
    backend = s.paper_backend or pt.default_backend()
    reason = pt.backend_unavailable(backend)  # type: ignore[arg-type]
    if reason:  # the data is the pulled snapshot: being offline is no obstacle
        raise TierSkipped(reason)
    data = _paper_gsm8k(job, "paper_fewshot")
    with _exported(job) as hf_dir:
        res = fewshot_sweep(hf_dir, data, backend, s.paper_fewshot_shots, limit=s.limit,
                            batch_size=s.batch_size)
    metrics = {f"acc@{n}shot": acc for n, (acc, _, _) in res.items()}
    stderr = {f"acc@{n}shot": se for n, (_, se, _) in res.items() if se is not None}
    return job.rows(FEWSHOT_TASK, metrics, min(n for _, _, n in res.values()),
                    "paper_fewshot", stderr=stderr,
                    extra={"backend": backend, "lm_eval": _lm_eval_version()})


def _paper_grpo(job: _Job, train_set: str) -> list[Row]:
    """GRPO with the authors' settings on GSM8K or MATH train; GSM8K accuracy before and
    after (``eval.paper_grpo``)."""
    from optimal_sparsity.eval import paper_grpo as pg
    from optimal_sparsity.eval import paper_tasks as pt
    from optimal_sparsity.eval.grpo import get_preset, unavailable_reason

    s = job.settings
    tier = "paper_grpo" if train_set == "gsm8k" else "paper_grpo_math"
    settings = get_preset("paper").replace(prompts=train_set, **dict(s.paper_grpo_overrides))
    backend = s.paper_backend or pt.default_backend()
    if reason := pt.backend_unavailable(backend) or unavailable_reason(settings):  # type: ignore[arg-type]
        raise TierSkipped(reason)
    gsm8k = _paper_gsm8k(job, tier)
    if train_set == "gsm8k":
        rows = pg.gsm8k_train_rows(gsm8k, settings.n_prompts)
    elif s.paper_math_data:
        rows = pg.math_train_rows(s.paper_math_data, settings.n_prompts)
    else:
        raise TierSkipped(f"{tier} trains on MATH: no MATH snapshot was pulled (its "
                          "checkpoints.lock entry; pull mode pulls it)")
    with _exported(job) as hf_dir:
        r = pg.run_paper_grpo(hf_dir, rows, gsm8k, settings, backend=backend, limit=s.limit,
                              batch_size=s.batch_size, log=job.log)
    extra = {"backend": backend, "grpo": settings.replace(max_steps=r.steps).to_dict(),
             "train_set": train_set, "prompts": r.n_prompts, "eval_shots": pg.EVAL_SHOTS,
             "lm_eval": _lm_eval_version(), "wall_s": round(r.wall_s, 1),
             "train_reward_first": pg.finite(r.train_reward_first),
             "train_reward_last": pg.finite(r.train_reward_last)}
    return job.rows(pg.TASKS[train_set], r.metrics, r.n_eval, tier, extra=extra)


def _tier_paper_grpo(job: _Job) -> list[Row]:
    return _paper_grpo(job, "gsm8k")


def _tier_paper_grpo_math(job: _Job) -> list[Row]:
    return _paper_grpo(job, "math")


def _retrain_only(job: _Job, tier: str, pull_tier: str) -> None:
    """A post-training tier of the proxy tasks: skipped on a released checkpoint."""
    if job.source == "pull":
        raise TierSkipped(f"{tier} runs on the proxy tasks of a retrained model; a released "
                          f"checkpoint gets {pull_tier}")


def _tier_sc(job: _Job) -> list[Row]:
    from optimal_sparsity.eval.selfconsistency import TASK, self_consistency

    _retrain_only(job, "sc", "paper_sc")
    corpus = job.need_corpus("sc")
    res = self_consistency(job.ckpt, corpus, job.settings.sc_settings())
    return job.rows(TASK, res.metrics, res.n, "sc", extra={"wall_s": round(res.wall_s, 1)})


def _grpo_tier(job: _Job, tier: str, corpus: Path) -> list[Row]:
    from optimal_sparsity.eval.grpo import (
        PROMPT_SETS,
        TIER_PROMPT_SETS,
        row_extra,
        run_grpo,
        unavailable_reason,
    )
    settings = job.settings.grpo_settings()
    if reason := unavailable_reason(settings):
        raise TierSkipped(reason)
    prompt_set = TIER_PROMPT_SETS[tier]
    key = json.dumps([prompt_set, settings.to_dict()], sort_keys=True)
    base = (Path(job.settings.grpo_dir) if job.settings.grpo_dir else
            job.root / "grpo" / f"{job.identity['run']}-{job.identity['step']}")
    r = run_grpo(job.ckpt, corpus, base / hashlib.sha256(key.encode()).hexdigest()[:12],
                 settings, log=job.log, prompt_set=prompt_set)
    return job.rows(PROMPT_SETS[prompt_set], r.metrics(), r.before.n, tier,
                    extra=row_extra(r))


def _tier_grpo(job: _Job) -> list[Row]:
    _retrain_only(job, "grpo", "paper_grpo")
    return _grpo_tier(job, "grpo", job.need_corpus("grpo"))


def _tier_grpo2(job: _Job) -> list[Row]:
    _retrain_only(job, "grpo2", "paper_grpo_math")
    return _grpo_tier(job, "grpo2", job.need_corpus("grpo2"))


TIER_FUNCS: dict[str, Callable[[_Job], list[Row]]] = {
    "pretrain": _tier_pretrain, "task_loss": _tier_task_loss, "accuracy": _tier_accuracy,
    "fewshot": _tier_fewshot, "knowledge_bits": _tier_knowledge_bits,
    "paper_task_loss": _tier_paper_task_loss, "paper_accuracy": _tier_paper_accuracy,
    "paper_sc": _tier_paper_sc, "paper_fewshot": _tier_paper_fewshot,
    "paper_grpo": _tier_paper_grpo, "paper_grpo_math": _tier_paper_grpo_math,
    "sc": _tier_sc, "grpo": _tier_grpo, "grpo2": _tier_grpo2,
}


# Driver ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TierStatus:
    tier: str
    status: str  # "measured" | "cached" | "skipped"
    rows: int
    seconds: float = 0.0
    reason: str = ""


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` while inside (0: left as they are)."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def evaluate_checkpoint(ckpt: str | Path, corpus: str | Path | None,
                        results_root: str | Path, settings: EvalSettings | None = None,
                        log: Callable[[str], None] | None = None,
                        statuses: list[TierStatus] | None = None) -> list[Row]:
    """Evaluate ``ckpt`` on ``settings.tiers``; write one results part per tier; return all
    rows of those tiers (measured now or cached). ``statuses`` (if given) receives one
    ``TierStatus`` per tier."""
    import time

    settings = settings or EvalSettings()
    ckpt, root = Path(ckpt), Path(results_root)
    corpus = Path(corpus) if corpus is not None else None
    log = log or (lambda _msg: None)
    if is_hf_dir(ckpt):
        if not any((ckpt / n).is_file() for n in HF_TOKENIZER_FILES):
            names = " or ".join(HF_TOKENIZER_FILES)
            raise UserError(f"HF directory {ckpt} has no tokenizer ({names}): copy the "
                            "model's tokenizer files beside its weights")
        source, identity = "pull", hf_identity(ckpt)
    else:
        from optimal_sparsity.checkpoint import verify_checkpoint

        verify_checkpoint(ckpt)
        source, identity = "retrain", checkpoint_identity(ckpt)
        if corpus is not None and CORPUS_TIERS & set(settings.tiers):
            check_corpus(ckpt, corpus)
    job = _Job(ckpt, corpus, settings, source, identity, log, root)
    out: list[Row] = []
    with torch_threads(settings.threads):
        for tier in settings.tiers:
            name = eval_part(identity, source, tier)
            cached = None if settings.force else cached_part(root, name,
                                                             settings.tier_key(tier))
            if cached is not None:
                log(f"{tier}: cached ({len(cached)} rows)")
                out += cached
                if statuses is not None:
                    statuses.append(TierStatus(tier, "cached", len(cached)))
                continue
            t0 = time.perf_counter()
            try:
                rows = TIER_FUNCS[tier](job)
            except TierSkipped as why:
                log(f"{tier}: skipped: {why}")
                if statuses is not None:
                    statuses.append(TierStatus(tier, "skipped", 0, reason=str(why)))
                continue
            write_eval_part(root, identity, source, tier, rows)
            dt = time.perf_counter() - t0
            log(f"{tier}: {len(rows)} rows in {dt:.1f} s")
            if statuses is not None:
                statuses.append(TierStatus(tier, "measured", len(rows), dt))
            out += rows
    return out
