"""The scaled-down pre-training corpus: a seeded mixture of the proxy tasks.

``build_corpus`` writes a corpus directory (atomically)::

    corpus.json                config, statistics, shards (sha256, token counts)
    tokenizer/                 byte-level BPE trained on the corpus (HF format)
    train.bin, val.bin         token shards (documents joined by EOS)
    val_<source>.bin           per-source validation shards (only with ``val_by_source``)
    eval/<task>.jsonl          held-out evaluation items of the four proxy tasks
    eval/knowledge_records.jsonl  every person's name and values (values-style knowledge)
    train_tasks/<task>.jsonl   training-split problems (GRPO prompts, few-shot examples)
    MANIFEST.json              sha256 of every file

The same config and seed give the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimal_sparsity.atomic import atomic_dir, check_replaceable
from optimal_sparsity.checkpoint import write_manifest
from optimal_sparsity.data.arithmetic import (
    ArithmeticConfig,
    ArithmeticTask,
    item,
    trivial_baselines,
)
from optimal_sparsity.data.knowledge import KnowledgeBase, KnowledgeConfig
from optimal_sparsity.data.layout import TOKENIZER_DIR, CorpusFiles
from optimal_sparsity.data.scripts import Scripts, ScriptsConfig
from optimal_sparsity.data.shards import ShardWriter, token_dtype
from optimal_sparsity.data.tokenizer import EOS, load_tokenizer, train_bpe
from optimal_sparsity.errors import UserError

SOURCES = ("knowledge", "scripts", "arithmetic")
EVAL_TASKS = ("triviaqa_proxy", "hellaswag_proxy", "gsm8k_proxy", "gsmplus_proxy")
FORMAT = "optimal-sparsity-corpus/1"
CORPUS_KIND = "corpus"  # the output marker atomic_dir writes
# Bumped whenever the generator's output for a given config changes: part of the
# fingerprint, so a cached corpus is never reused across generator versions.
GENERATOR_VERSION = 3


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    train_tokens: int = 2_000_000
    val_tokens: int = 50_000
    # token shares of the three sources (normalised)
    w_knowledge: float = 0.4
    w_scripts: float = 0.2
    w_arithmetic: float = 0.4
    vocab_size: int = 512
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    scripts: ScriptsConfig = field(default_factory=ScriptsConfig)
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    n_eval_knowledge: int = 1000
    n_eval_scripts: int = 600
    n_eval_arithmetic: int = 500
    n_train_tasks: int = 2000
    tokenizer_sample_docs: int = 20_000
    # Also write one validation shard per source (val_<source>.bin): the pretrain tier then
    # reports CE per source beside the total. Off: the corpus is byte-identical to before.
    val_by_source: bool = False

    def __post_init__(self) -> None:
        if self.train_tokens < 1 or self.val_tokens < 1:
            raise UserError("corpus: train_tokens and val_tokens must be >= 1")
        ws = (self.w_knowledge, self.w_scripts, self.w_arithmetic)
        if min(ws) < 0 or sum(ws) <= 0:
            raise UserError("corpus: mixture weights must be >= 0 and not all 0")
        if not 260 <= self.vocab_size <= 1_000_000:
            raise UserError("corpus: vocab_size must be >= 260 (bytes + specials)")

    @property
    def weights(self) -> dict[str, float]:
        total = self.w_knowledge + self.w_scripts + self.w_arithmetic
        return {"knowledge": self.w_knowledge / total, "scripts": self.w_scripts / total,
                "arithmetic": self.w_arithmetic / total}

    def to_dict(self) -> dict[str, Any]:
        """The fields; options added after a corpus format was pinned are left out at their
        defaults, so every existing corpus keeps its config record and fingerprint."""
        d = dataclasses.asdict(self)
        d["knowledge"] = self.knowledge.to_dict()
        for name in OPTIONAL_FIELDS:
            if d[name] == getattr(CorpusConfig, name):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorpusConfig:
        d = dict(d)
        subs = {"knowledge": KnowledgeConfig, "scripts": ScriptsConfig,
                "arithmetic": ArithmeticConfig}
        for k, typ in subs.items():
            if k in d and isinstance(d[k], dict):
                sub = dict(d[k])
                if "ops" in sub:
                    sub["ops"] = tuple(sub["ops"])
                d[k] = typ(**sub)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UserError(f"unknown corpus config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def fingerprint(self) -> str:
        d = {**self.to_dict(), "generator_version": GENERATOR_VERSION}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


OPTIONAL_FIELDS = ("val_by_source",)


def val_split(source: str) -> str:
    """The name of ``source``'s own validation split."""
    return f"val_{source}"


class Mixture:
    """Draws training documents from the three sources in the configured token shares."""

    def __init__(self, cfg: CorpusConfig) -> None:
        self.cfg = cfg
        self.kb = KnowledgeBase(cfg.knowledge, cfg.seed)
        self.scripts = Scripts(cfg.scripts, cfg.seed)
        self.arith = ArithmeticTask(cfg.arithmetic, cfg.seed)
        # Held-out problems first: their compositions are then excluded from training.
        self.eval_problems = self.arith.eval_problems(cfg.n_eval_arithmetic)
        self.plus_problems = self.arith.perturb(self.eval_problems)
        # Document probabilities so that *characters* (~tokens) follow the weights.
        rng = random.Random(f"mixture-calibration/{cfg.seed}")
        mean_chars = {s: np.mean([len(self._draw(s, rng)[0]) for _ in range(300)])
                      for s in SOURCES}
        self._set_doc_probs(mean_chars)

    def _set_doc_probs(self, mean_len: dict[str, float]) -> None:
        raw = {s: self.cfg.weights[s] / mean_len[s] for s in SOURCES}
        total = sum(raw.values())
        self.doc_probs = [raw[s] / total for s in SOURCES]

    def calibrate_tokens(self, tok) -> None:
        """Document probabilities so that *tokens* follow the weights. Values-style
        knowledge packs several characters into each dedicated token, so characters are
        no proxy for its tokens; the other styles keep the character calibration."""
        rng = random.Random(f"mixture-token-calibration/{self.cfg.seed}")
        docs = {s: [self._draw(s, rng)[0] for _ in range(300)] for s in SOURCES}
        self._set_doc_probs({s: 1.0 + np.mean([len(e.ids) for e in
                                                tok.backend_tokenizer.encode_batch(d)])
                             for s, d in docs.items()})

    def _draw(self, source: str, rng: random.Random) -> tuple[str, int | None]:
        if source == "knowledge":
            return self.kb.document(rng)
        if source == "scripts":
            return self.scripts.document(rng)
        return self.arith.document(rng), None

    def documents(self, stream: str, only: str | None = None):
        """Endless (source, text, entity) documents for ``stream`` ('train', 'val', ...);
        ``only``: documents of that source alone."""
        rng = random.Random(f"mixture/{stream}/{self.cfg.seed}")
        while True:
            source = only or rng.choices(SOURCES, weights=self.doc_probs)[0]
            text, entity = self._draw(source, rng)
            yield source, text, entity

    def eval_sets(self) -> dict[str, list[dict]]:
        cfg = self.cfg
        return {
            "triviaqa_proxy": self.kb.eval_items(cfg.n_eval_knowledge, cfg.seed),
            "hellaswag_proxy": self.scripts.eval_items(cfg.n_eval_scripts, cfg.seed),
            "gsm8k_proxy": [item(p, "gsm8k_proxy", i) for i, p in enumerate(self.eval_problems)],
            "gsmplus_proxy": [item(p, "gsmplus_proxy", i)
                              for i, p in enumerate(self.plus_problems)],
        }

    def train_tasks_plus(self) -> list[dict]:
        """GSM-Plus-style variants of training problems (a second GRPO prompt set)."""
        rng = random.Random(f"arithmetic-train-tasks-plus/{self.cfg.seed}")
        held_out = {p.composition for p in self.eval_problems + self.plus_problems}
        n = max(1, self.cfg.n_train_tasks // 3)
        base = [self.arith.sample(rng) for _ in range(n)]
        variants = [p for p in self.arith.perturb(base, rng) if p.composition not in held_out]
        return [item(p, "gsmplus_proxy_train", i) for i, p in enumerate(variants)]

    def train_tasks(self) -> list[dict]:
        rng = random.Random(f"arithmetic-train-tasks/{self.cfg.seed}")
        pool = self.arith.train_pool()
        out = []
        for i in range(self.cfg.n_train_tasks):
            if pool is not None:
                doc = pool[i % len(pool)]
                prompt, answer = doc.split("\nAnswer:", 1)
                prompt += "\nAnswer:"
                target = answer.rsplit("#### ", 1)[1]
                out.append({"id": f"gsm8k_proxy_train-{i}", "task": "gsm8k_proxy_train",
                            "prompt": prompt, "answer": answer, "target": target})
            else:
                p = self.arith.sample(rng)
                out.append(item(p, "gsm8k_proxy_train", i))
        return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def _write_split(mixture: Mixture, tok, eos_id: int, stream: str, budget: int, path: Path,
                 dtype: np.dtype, counters: dict, only: str | None = None) -> dict:
    writer = ShardWriter(path, dtype)
    docs = mixture.documents(stream, only)
    source_tokens: Counter = Counter()
    entity_docs: Counter = Counter()
    script_docs: Counter = Counter()
    while writer.n_tokens < budget:
        batch = [next(docs) for _ in range(2048)]
        encs = tok.backend_tokenizer.encode_batch([t for _, t, _ in batch])
        for (source, _, entity), enc in zip(batch, encs, strict=True):
            if writer.n_tokens >= budget:
                break
            ids = np.asarray([*enc.ids, eos_id][: budget - writer.n_tokens])
            writer.write(ids)
            source_tokens[source] += len(ids)
            if source == "knowledge":
                entity_docs[entity] += 1
            elif source == "scripts":
                script_docs[entity] += 1
    counters[stream] = {"source_tokens": dict(source_tokens), "entity_docs": entity_docs,
                        "script_docs": script_docs}
    return writer.close()


def unigram_entropy(path: Path, dtype: np.dtype) -> float:
    """Entropy (nats/token) of the split's unigram distribution: the loss of a model that
    ignores context, the floor a trained model must beat."""
    counts = np.bincount(np.fromfile(path, dtype=dtype)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _exposure_stats(mixture: Mixture, counts: Counter) -> dict[str, float]:
    """Expected training exposures per knowledge fact (biography or Q/A mention)."""
    kcfg = mixture.cfg.knowledge
    n_attr = len(mixture.kb.attributes)
    per_doc = 1.0 if kcfg.style != "prose" else (
        (1 - kcfg.qa_fraction) + kcfg.qa_fraction * min(kcfg.facts_per_qa_doc, n_attr) / n_attr)
    exp = np.array([counts.get(i, 0) for i in range(len(mixture.kb.people))]) * per_doc
    return {"mean": float(exp.mean()), "min": float(exp.min()), "max": float(exp.max()),
            "people_never_seen": int((exp == 0).sum())}


def build_corpus(cfg: CorpusConfig, out_dir: str | Path, progress: bool = False, *,
                 replace: bool = False) -> Path:
    """Generate, tokenize and write the corpus for ``cfg`` (see the module docstring);
    ``replace``: an earlier corpus at ``out_dir`` may be replaced."""
    out_dir = Path(out_dir)
    check_replaceable(out_dir, CORPUS_KIND, replace=replace)
    mixture = Mixture(cfg)
    with atomic_dir(out_dir, CORPUS_KIND, replace=replace) as tmp:
        files = CorpusFiles(tmp)
        sample = mixture.documents("tokenizer")
        train_bpe((next(sample)[1] for _ in range(cfg.tokenizer_sample_docs)),
                  cfg.vocab_size, files.tokenizer_dir, added=mixture.kb.dedicated_tokens())
        tok = load_tokenizer(files.tokenizer_dir)
        eos_id = tok.convert_tokens_to_ids(EOS)
        dtype = token_dtype(len(tok))
        if cfg.knowledge.style == "values":
            mixture.calibrate_tokens(tok)
        counters: dict = {}
        splits = {
            "train": [_write_split(mixture, tok, eos_id, "train", cfg.train_tokens,
                                   files.shard("train"), dtype, counters)],
            "val": [_write_split(mixture, tok, eos_id, "val", cfg.val_tokens,
                                 files.shard("val"), dtype, counters)],
        }
        if cfg.val_by_source:
            for s in SOURCES:
                if cfg.weights[s] > 0:
                    splits[val_split(s)] = [_write_split(
                        mixture, tok, eos_id, f"val/{s}", cfg.val_tokens,
                        files.shard(val_split(s)), dtype, counters, only=s)]
        evals = mixture.eval_sets()
        for task, rows in evals.items():
            _write_jsonl(files.eval_items(task), rows)
        if cfg.knowledge.style == "values":
            _write_jsonl(files.knowledge_records, mixture.kb.value_records())
        _write_jsonl(files.train_problems("gsm8k_proxy_train"), mixture.train_tasks())
        _write_jsonl(files.train_problems("gsmplus_proxy_train"), mixture.train_tasks_plus())
        train_counts = counters["train"]
        src = train_counts["source_tokens"]
        seen = train_counts["entity_docs"]
        stats = {
            "source_token_share": {s: src.get(s, 0) / cfg.train_tokens for s in SOURCES},
            "unigram_entropy_nats": unigram_entropy(files.shard("train"), dtype),
            "knowledge_bits": mixture.kb.bits,
            "knowledge_facts": len(mixture.kb.people) * len(mixture.kb.attributes),
            "fact_exposures": _exposure_stats(mixture, train_counts["entity_docs"]),
            "script_exposures_mean": float(np.mean(
                [train_counts["script_docs"].get(a, 0)
                 for a in range(len(mixture.scripts.activities))])),
            "arithmetic_trivial_baselines": trivial_baselines(evals["gsm8k_proxy"]),
            "eval_items": {k: len(v) for k, v in evals.items()},
            "triviaqa_eval_facts_unseen": sum(seen.get(r["person"], 0) == 0
                                              for r in evals["triviaqa_proxy"]),
        }
        meta = {"format": FORMAT, "kind": "proxy", "config": cfg.to_dict(),
                "fingerprint": cfg.fingerprint(), "tokenizer": TOKENIZER_DIR,
                "vocab_size": len(tok), "eos_id": eos_id, "token_dtype": dtype.name,
                "splits": splits, "stats": stats}
        files.manifest.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_manifest(tmp)
    return out_dir


def tokenize_files(inputs: list[Path], tokenizer: str | Path, out_dir: str | Path,
                   val_fraction: float = 0.01, text_field: str = "text", seed: int = 0, *,
                   replace: bool = False) -> Path:
    """Tokenize local text (one document per file, or per blank-line-free line of .txt)
    or JSONL (``text_field``) into the same shard format; every ``1/val_fraction``-th
    document (by a seeded draw) goes to validation."""
    if not 0 < val_fraction < 1:
        raise UserError("--val-fraction must be in (0, 1)")
    check_replaceable(out_dir, CORPUS_KIND, replace=replace)
    tok = load_tokenizer(tokenizer)
    eos_id = tok.eos_token_id
    if eos_id is None:
        raise UserError(f"tokenizer {tokenizer} has no EOS token")
    dtype = token_dtype(len(tok))
    rng = random.Random(f"tokenize/{seed}")
    out_dir = Path(out_dir)

    def docs():
        for path in inputs:
            if not path.is_file():
                raise UserError(f"no such input file {path}")
            with open(path, "rb") as f:
                for n, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as err:
                        raise UserError(f"{path}:{n}: not UTF-8 text ({err.reason} at byte "
                                        f"{err.start} of the line)") from None
                    if path.suffix == ".jsonl":
                        try:
                            text = json.loads(line)[text_field]
                        except (json.JSONDecodeError, KeyError, TypeError) as err:
                            raise UserError(f"{path}:{n}: no {text_field!r} field ({err})") from err
                        if not isinstance(text, str):
                            raise UserError(f"{path}:{n}: {text_field!r} is a "
                                            f"{type(text).__name__}, not a string")
                    else:
                        text = line.rstrip("\n")
                    if text:
                        yield text

    with atomic_dir(out_dir, CORPUS_KIND, replace=replace) as tmp:
        files = CorpusFiles(tmp)
        tok.save_pretrained(files.tokenizer_dir)
        writers = {s: ShardWriter(files.shard(s), dtype) for s in ("train", "val")}
        for text in docs():
            split = "val" if rng.random() < val_fraction else "train"
            writers[split].write(np.asarray([*tok(text)["input_ids"], eos_id]))
        splits = {k: [w.close()] for k, w in writers.items()}
        meta = {"format": FORMAT, "kind": "tokenized", "inputs": [str(p) for p in inputs],
                "tokenizer": TOKENIZER_DIR, "vocab_size": len(tok), "eos_id": eos_id,
                "token_dtype": dtype.name, "splits": splits}
        files.manifest.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_manifest(tmp)
    return out_dir
