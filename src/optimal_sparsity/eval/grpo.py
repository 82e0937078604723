"""GRPO post-training (the paper's Fig 6 / Fig 10 arm) with trl's ``GRPOTrainer``.

The paper runs verl on the released d=1024 models: GSM8K (or MATH) train prompts as a
single user message, 5 rollouts per prompt, max response 1024 tokens, actor LR 5e-6, KL
loss coefficient 1e-3, reward 1 when the parsed final answer equals the reference, else
0. Here the same recipe runs through trl on the exported ``MixtralForCausalLM``:

- reward (``final_answer_reward``): 1.0 if ``parse_final(completion) == int(target)``,
  else 0.0. It parses text only; model output is never executed.
- prompts: the proxy corpus's training split (``train_tasks/gsm8k_proxy_train.jsonl``,
  plain "Question: ...\\nAnswer:" text); for released checkpoints, GSM8K train questions
  as a single user message (``gsm8k_dataset``; needs the GSM8K file and a GPU).
- before/after: greedy accuracy on the held-out ``eval/gsm8k_proxy.jsonl`` (first
  ``eval_n`` items) and mean reward of sampled completions (``reward_samples`` per
  prompt, the rollout temperature) on the same items.
- the tuned model is saved as a checkpoint of this artifact (``config.json`` carries
  ``posttrain: {method: grpo, ...}``) so every evaluation can read it.

Presets (``GRPO_PRESETS``): ``cpu`` runs in minutes on 2 cores from a scaled-down
checkpoint that sometimes answers right (a model that never earns reward gets zero
advantages and learns nothing); ``paper`` is the paper's settings for a GPU with vLLM.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optimal_sparsity.data.arithmetic import parse_final
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import UserError

TASK = "gsm8k_proxy_grpo"


@dataclass(frozen=True)
class GRPOSettings:
    """What one GRPO run does. Batch fields follow trl: one optimizer step consumes
    ``per_device_batch * grad_accum`` completions, ``num_generations`` per prompt."""

    name: str = "cpu"
    max_steps: int = 80
    n_prompts: int = 2000  # training prompts available (shuffled by trl)
    num_generations: int = 8  # rollouts per prompt (the paper: 5)
    per_device_batch: int = 32  # completions per micro-step (multiple of num_generations)
    grad_accum: int = 1
    max_completion_length: int = 48  # the paper: 1024
    learning_rate: float = 5e-4  # the paper: 5e-6 (actor); 1e-3 diverged on d=64
    beta: float = 1e-3  # KL coefficient (the paper: 1e-3)
    temperature: float = 0.7  # rollouts; below verl's 1.0 so a weak model earns reward
    top_p: float = 1.0
    loss_type: str = "dapo"  # token-level mean over the batch (verl's token-mean)
    scale_rewards: str = "group"  # GRPO's per-group std normalisation
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    use_vllm: bool = False
    use_cpu: bool = True
    bf16: bool = False
    eval_n: int = 200  # held-out items for before/after
    eval_max_new_tokens: int = 48
    reward_samples: int = 4  # sampled completions per held-out prompt for the reward
    prompts: str = "proxy"  # "proxy" (plain text), "gsm8k" or "math" (single user message)
    # completions sampled per rollout batch (trl's generation_batch_size; None: one
    # optimizer step's batch). Above the step's batch, one rollout feeds several steps.
    generation_batch: int | None = None
    epochs: int = 0  # > 0: max_steps is this many passes over the prompts (``steps_for``)
    max_prompt_tokens: int = 0  # > 0: longer prompts are dropped before training
    kl_bias_correction: bool = True  # trl's importance-weighted KL (verl's low_var_kl: off)
    notes: str = ""

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(f"invalid GRPO settings {self.name!r}: {msg}")

        need(self.num_generations >= 2, "num_generations must be >= 2")
        need(self.per_device_batch % self.num_generations == 0,
             f"per_device_batch {self.per_device_batch} must be a multiple of "
             f"num_generations {self.num_generations}")
        for f in ("max_steps", "n_prompts", "grad_accum", "max_completion_length", "eval_n",
                  "eval_max_new_tokens", "reward_samples"):
            need(getattr(self, f) >= 1, f"{f} must be >= 1")
        need(self.learning_rate > 0 and self.beta >= 0, "need learning_rate > 0, beta >= 0")
        need(self.prompts in ("proxy", "gsm8k", "math"),
             "prompts must be 'proxy', 'gsm8k' or 'math'")
        step = self.per_device_batch * self.grad_accum
        need(self.generation_batch is None or self.generation_batch % step == 0,
             f"generation_batch {self.generation_batch} must be a multiple of the "
             f"optimizer step's {step} completions")
        need(self.epochs >= 0 and self.max_prompt_tokens >= 0,
             "epochs and max_prompt_tokens must be >= 0")

    def steps_for(self, n_prompts: int) -> int:
        """Optimizer steps of a run over ``n_prompts`` prompts: ``max_steps``, or with
        ``epochs`` that many passes in whole rollout batches (a partial batch is dropped,
        as verl's sampler does), each rollout batch feeding its optimizer steps."""
        if not self.epochs:
            return self.max_steps
        step = self.per_device_batch * self.grad_accum
        rollout = self.generation_batch or step
        batches = n_prompts * self.num_generations // rollout
        if batches < 1:
            raise UserError(f"GRPO settings {self.name!r}: {n_prompts} prompts fill no "
                            f"rollout batch of {rollout // self.num_generations} prompts")
        return self.epochs * batches * (rollout // step)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> GRPOSettings:
        return dataclasses.replace(self, **changes)

    def trl_config(self, output_dir: str | Path):
        from trl import GRPOConfig

        with warnings.catch_warnings():  # trl sets transformers' deprecated alias
            warnings.simplefilter("ignore", FutureWarning)
            return self._trl_config(GRPOConfig, output_dir)

    def _trl_config(self, config_cls, output_dir):
        return config_cls(
            output_dir=str(output_dir), max_steps=self.max_steps,
            per_device_train_batch_size=self.per_device_batch,
            gradient_accumulation_steps=self.grad_accum, num_generations=self.num_generations,
            max_completion_length=self.max_completion_length,
            learning_rate=self.learning_rate, beta=self.beta, temperature=self.temperature,
            top_p=self.top_p, top_k=0, loss_type=self.loss_type,
            scale_rewards=self.scale_rewards, warmup_steps=self.warmup_steps,
            lr_scheduler_type="constant_with_warmup", weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, seed=self.seed, data_seed=self.seed,
            generation_batch_size=self.generation_batch,
            use_bias_correction_kl=self.kl_bias_correction,
            use_vllm=self.use_vllm, vllm_mode="colocate", use_cpu=self.use_cpu, bf16=self.bf16,
            gradient_checkpointing=False, logging_steps=1, save_strategy="no",
            report_to="none", disable_tqdm=True, dataloader_num_workers=0,
            trust_remote_code=False)


GRPO_PRESETS: dict[str, GRPOSettings] = {
    # Minutes on 2 CPU cores, for a scaled-down (d=64, 4-layer) checkpoint.
    "cpu": GRPOSettings(),
    # The authors' verl run (rioyokotalab/optimal-sparsity, scripts/post-training/train.sh;
    # docs/pull-mode.md, "GRPO") in trl's terms: 1,024 prompts x 5 rollouts per rollout
    # batch (generation_batch 5,120), mini-batch 256 prompts (one optimizer step of 1,280
    # completions: 40 x 32 accumulated), so 4 optimizer steps per rollout batch; 15 epochs
    # (7 whole batches of 1,024 in GSM8K's 7,473 or MATH's 7,500 train prompts: 105
    # rollout batches, the released model's global step 105, = 420 optimizer steps);
    # prompt <= 512 tokens (longer ones dropped), response 1,024; LR 5e-6 constant; KL 1e-3
    # with trl's k3 estimator, which is verl's low_var_kl (without its [-10, 10] clamp),
    # the importance-weight correction off as in verl; no entropy bonus (trl has none);
    # verl's rollout temperature 1.0, clip ratio 0.2 (trl's epsilon), token-mean loss
    # (trl's dapo), grad clip 1.0, weight decay 0.01 (verl's actor default).
    "paper": GRPOSettings(
        name="paper", max_steps=420, epochs=15, n_prompts=7500, num_generations=5,
        per_device_batch=40, grad_accum=32, generation_batch=5120,
        max_completion_length=1024, max_prompt_tokens=512, learning_rate=5e-6, beta=1e-3,
        kl_bias_correction=False, temperature=1.0, weight_decay=0.01, use_vllm=True,
        use_cpu=False, bf16=True, eval_n=1319, eval_max_new_tokens=1024, reward_samples=5,
        prompts="gsm8k",
        notes="the authors' verl settings (train.sh) in trl; reward: strict '#### N' "
              "(GSM8K) or the last \\boxed{} (MATH), string-normalised, not math-verify"),
}


def parse_override(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` -> (field, value) of ``GRPOSettings``, the value read as the field's
    type (``true``/``false`` for a flag, ``none`` for an optional number)."""
    name, sep, raw = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(GRPOSettings)}
    if not sep or name not in fields or name == "name":
        raise UserError(f"{text!r}: expected FIELD=VALUE with FIELD one of "
                        f"{', '.join(n for n in fields if n != 'name')}")
    default = getattr(GRPOSettings(), name)
    kind = fields[name].type
    try:
        if raw.lower() == "none" and "None" in str(kind):
            return name, None
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return name, raw.lower() == "true"
        if "int" in str(kind) and "float" not in str(kind):
            return name, int(raw)
        if isinstance(default, float):
            return name, float(raw)
        return name, raw
    except ValueError:
        raise UserError(f"{text!r}: {name} takes a value of type {kind}") from None


def unavailable_reason(settings: GRPOSettings) -> str | None:
    """Why GRPO with ``settings`` cannot run here, or None."""
    import importlib.util

    import torch

    if not settings.use_cpu and not torch.cuda.is_available():
        return f"GRPO preset {settings.name!r} needs a CUDA GPU"
    if settings.use_vllm and importlib.util.find_spec("vllm") is None:
        return (f"GRPO preset {settings.name!r} samples its rollouts with vLLM inside trl "
                "(use_vllm), and vLLM does not import in this environment")
    return None


def get_preset(name: str) -> GRPOSettings:
    if name not in GRPO_PRESETS:
        raise UserError(f"unknown GRPO preset {name!r}: one of {', '.join(GRPO_PRESETS)}")
    return GRPO_PRESETS[name]


# Reward ------------------------------------------------------------------------------

def completion_text(completion: Any) -> str:
    """The text of a trl completion: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion
                       if isinstance(m, dict) and m.get("role", "assistant") == "assistant")
    return str(completion)


def answer_reward(text: str, target: str | int) -> float:
    """1.0 if the strict ``#### N`` answer of ``text`` equals ``target``, else 0.0."""
    try:
        want = int(str(target).replace(",", "").strip())
    except ValueError:
        return 0.0
    return 1.0 if parse_final(text.replace(",", "")) == want else 0.0


def final_answer_reward(completions: Sequence[Any], target: Sequence[str], **_: Any
                        ) -> list[float]:
    """trl reward function: ``target`` is the dataset column of reference answers."""
    return [answer_reward(completion_text(c), t)
            for c, t in zip(completions, target, strict=True)]


# Data --------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"no such file {path}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


PROMPT_SETS = {"gsm8k_proxy_train": TASK, "gsmplus_proxy_train": TASK + "_plus"}
# The evaluation tier (``tiers``) that runs GRPO on each prompt set (Fig 10's two).
TIER_PROMPT_SETS = {"grpo": "gsm8k_proxy_train", "grpo2": "gsmplus_proxy_train"}


def proxy_train_prompts(corpus: str | Path, n: int | None = None,
                        prompt_set: str = "gsm8k_proxy_train") -> list[dict[str, str]]:
    """``{"prompt", "target"}`` rows from one of the corpus's GRPO training sets:
    ``gsm8k_proxy_train`` (training problems) or ``gsmplus_proxy_train`` (their
    GSM-Plus-style variants: the second set of the paper's Fig 10)."""
    rows = _read_jsonl(CorpusFiles.at(corpus).train_problems(prompt_set))
    return [{"prompt": r["prompt"], "target": str(r["target"])} for r in rows[:n]]


def heldout_items(corpus: str | Path, n: int | None = None) -> list[dict]:
    return _read_jsonl(CorpusFiles.at(corpus).eval_items("gsm8k_proxy"))[:n]


def gsm8k_dataset(path: str | Path, n: int | None = None) -> list[dict[str, Any]]:
    """GSM8K train (``{"question", "answer": "... #### N"}`` JSONL) as single user
    messages, the paper's GRPO prompts for released checkpoints."""
    rows = _read_jsonl(Path(path))[:n]
    out = []
    for r in rows:
        if "####" not in r.get("answer", ""):
            raise UserError(f"{path}: a GSM8K row needs an answer ending in '#### N'")
        out.append({"prompt": [{"role": "user", "content": r["question"]}],
                    "target": r["answer"].rsplit("####", 1)[1].strip().replace(",", "")})
    return out


# Before/after measurements -----------------------------------------------------------

@dataclass(frozen=True)
class PolicyScore:
    acc: float  # greedy, strict "#### N"
    reward: float  # mean reward of sampled completions
    n: int


def score_policy(model, tokenizer, items: Sequence[dict], settings: GRPOSettings
                 ) -> PolicyScore:
    from optimal_sparsity.eval.generation import GREEDY, HFGenerator, Sampling

    gen = HFGenerator(model=model, tokenizer=tokenizer, batch_size=50)
    prompts = [it["prompt"] for it in items]
    greedy = gen.generate(prompts, dataclasses.replace(
        GREEDY, max_new_tokens=settings.eval_max_new_tokens))
    acc = sum(answer_reward(g[0], it["target"]) for g, it in zip(greedy, items, strict=True))
    k = settings.reward_samples
    sampled = gen.generate([p for p in prompts for _ in range(k)],  # batched across prompts
                           Sampling(settings.temperature, settings.top_p,
                                    settings.eval_max_new_tokens), seed=settings.seed + 1_000_003)
    reward = sum(answer_reward(s[0], items[i // k]["target"]) for i, s in enumerate(sampled))
    model.train()
    n = len(items)
    return PolicyScore(acc / n, reward / (n * settings.reward_samples), n)


# The run -----------------------------------------------------------------------------

@dataclass
class GRPOResult:
    settings: GRPOSettings
    before: PolicyScore
    after: PolicyScore
    train_reward_first: float  # mean training reward over the first quarter of steps
    train_reward_last: float  # ... and the last quarter
    wall_s: float
    checkpoint: Path | None
    log_history: list[dict] = dataclasses.field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        return {"acc_before": self.before.acc, "acc_after": self.after.acc,
                "reward_before": self.before.reward, "reward_after": self.after.reward}


def _load_hf(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-load bars in a sweep's log
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                 trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def build_trainer(model, tokenizer, rows: list[dict], settings: GRPOSettings,
                  output_dir: str | Path, reward_funcs: Sequence[Callable] | None = None):
    """A trl ``GRPOTrainer`` over ``rows`` (``prompt``, ``target``)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    if not rows:
        raise UserError("GRPO needs at least one training prompt")
    from transformers.trainer_callback import PrinterCallback

    trainer = GRPOTrainer(model=model, reward_funcs=list(reward_funcs or [final_answer_reward]),
                          args=settings.trl_config(output_dir),
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # per-step dicts stay in state.log_history
    # trl 1.16 calls transformers' deprecated is_gradient_checkpointing on every step.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                            category=FutureWarning)
    return trainer


def _mean_reward(history: list[dict], first: bool) -> float:
    vals = [h["reward"] for h in history if "reward" in h]
    if not vals:
        return math.nan
    k = max(1, len(vals) // 4)
    part = vals[:k] if first else vals[-k:]
    return sum(part) / len(part)


def _steps_progress(total: int):
    """GRPO steps done / total with rate and ETA (trl's own bar is off: see ``_trl_config``)."""
    from transformers import TrainerCallback

    from optimal_sparsity.progress import Progress

    class StepsProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = Progress(total, "GRPO", "steps")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update()

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return StepsProgress()


def run_grpo(checkpoint: str | Path, corpus: str | Path, out: str | Path,
             settings: GRPOSettings | None = None, *, train_rows: list[dict] | None = None,
             reward_funcs: Sequence[Callable] | None = None, results: str | Path | None = None,
             save: bool = True, log: Callable[[str], None] | None = None,
             prompt_set: str = "gsm8k_proxy_train") -> GRPOResult:
    """GRPO from a checkpoint of this artifact: export, score, train, score, save.
    Results rows go to task ``PROMPT_SETS[prompt_set]``."""
    from transformers import set_seed

    from optimal_sparsity.checkpoint import read_config, save_checkpoint, verify_checkpoint
    from optimal_sparsity.config import ModelConfig
    from optimal_sparsity.hf_export import export_hf, import_hf

    settings = settings or GRPO_PRESETS["cpu"]
    say = log or (lambda _msg: None)
    checkpoint, out = Path(checkpoint), Path(out)
    verify_checkpoint(checkpoint)
    rows = train_rows if train_rows is not None else proxy_train_prompts(
        corpus, settings.n_prompts, prompt_set)
    items = heldout_items(corpus, settings.eval_n)
    if not items:
        raise UserError(f"no held-out items in {corpus}/eval/gsm8k_proxy.jsonl")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grpo-") as tmp:
        tmp = Path(tmp)
        export_hf(checkpoint, tmp / "hf")
        set_seed(settings.seed)
        model, tok = _load_hf(tmp / "hf")
        before = score_policy(model, tok, items, settings)
        say(f"before: greedy acc {before.acc:.3f}, sampled reward {before.reward:.3f} "
            f"(n={before.n})")
        set_seed(settings.seed)
        trainer = build_trainer(model, tok, rows, settings, tmp / "trl", reward_funcs)
        trainer.add_callback(_steps_progress(settings.max_steps))
        trainer.train()
        history = list(trainer.state.log_history)
        tuned = trainer.model
        after = score_policy(tuned, tok, items, settings)
        say(f"after:  greedy acc {after.acc:.3f}, sampled reward {after.reward:.3f}")
        wall = time.monotonic() - start
        saved = None
        if save:
            tuned.save_pretrained(tmp / "tuned", safe_serialization=True)
            tok.save_pretrained(tmp / "tuned")
            model_ours, _ = import_hf(tmp / "tuned")
            base = read_config(checkpoint)
            cfg = ModelConfig.from_dict(base["model"])  # same grid point and name
            meta = {k: v for k, v in base.items() if k not in ("format", "model")}
            meta["posttrain"] = {
                "method": "grpo", "settings": settings.to_dict(),
                "base_checkpoint": str(checkpoint.resolve()),
                "base_manifest_sha256": _sha(checkpoint / "MANIFEST.json"),
                "metrics": {"before": dataclasses.asdict(before),
                            "after": dataclasses.asdict(after)}}
            saved = save_checkpoint(out / "checkpoint", model_ours, cfg,
                                    tokenizer_dir=checkpoint, meta=meta, replace=True)
    result = GRPOResult(settings, before, after, _mean_reward(history, True),
                        _mean_reward(history, False), wall, saved, history)
    _write_summary(out, checkpoint, result)
    if results is not None:
        write_grpo_rows(results, checkpoint, result, PROMPT_SETS[prompt_set])
    return result


def _sha(path: Path) -> str:
    from optimal_sparsity.atomic import sha256_file

    return sha256_file(path)


def _write_summary(out: Path, checkpoint: Path, r: GRPOResult) -> None:
    from optimal_sparsity.atomic import write_json

    write_json(out / "grpo.json", {
        "base_checkpoint": str(checkpoint), "settings": r.settings.to_dict(),
        "metrics": r.metrics(), "n_eval": r.before.n, "wall_s": round(r.wall_s, 1),
        "train_reward_first_quarter": r.train_reward_first,
        "train_reward_last_quarter": r.train_reward_last,
        "checkpoint": str(r.checkpoint) if r.checkpoint else None,
        "log_history": r.log_history})


def tier_for_task(task: str) -> str:
    """The tier whose rows land in results task ``task`` (``grpo`` or ``grpo2``)."""
    return next(t for t, ps in TIER_PROMPT_SETS.items() if PROMPT_SETS[ps] == task)


def row_extra(r: GRPOResult) -> dict[str, Any]:
    """What a GRPO row records beside its tier and settings."""
    return {"wall_s": round(r.wall_s, 1), "train_reward_first": r.train_reward_first,
            "train_reward_last": r.train_reward_last}


def write_grpo_rows(results: str | Path, checkpoint: str | Path, r: GRPOResult,
                    task: str = TASK) -> Path:
    """Write (or replace) the part of this GRPO run, the part its tier (``grpo`` or
    ``grpo2``) of ``eval.evaluate`` reads and writes: rows from older settings never stay
    beside the new ones."""
    from optimal_sparsity.eval.rows import checkpoint_identity, make_rows, write_eval_part

    ident = checkpoint_identity(checkpoint)
    tier = tier_for_task(task)
    rows = make_rows(ident, task, r.metrics(), n=r.before.n,
                     extra={"tier": tier, "settings": r.settings.to_dict(),
                            "checkpoint": str(checkpoint), **row_extra(r)})
    return write_eval_part(results, ident, "retrain", tier, rows)


def cached_grpo(results: str | Path, checkpoint: str | Path, settings: GRPOSettings,
                task: str = TASK) -> bool:
    """True if the table holds this GRPO run's rows, made with these settings."""
    from optimal_sparsity.eval.rows import checkpoint_identity, eval_part
    from optimal_sparsity.results.table import cached_part

    part = eval_part(checkpoint_identity(checkpoint), "retrain", tier_for_task(task))
    return cached_part(results, part, settings.to_dict()) is not None
