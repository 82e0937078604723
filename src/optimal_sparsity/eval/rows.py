"""Build results-table rows for one checkpoint, with its identity and provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from optimal_sparsity.accounting import count_params
from optimal_sparsity.checkpoint import read_config
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.provenance import provenance
from optimal_sparsity.results.table import Row, part_name, remove_part, write_part


def checkpoint_identity(checkpoint: str | Path) -> dict[str, Any]:
    """Identity fields of a checkpoint written by the trainer (or an imported one)."""
    meta = read_config(checkpoint)
    cfg = ModelConfig.from_dict(meta["model"])
    pc = count_params(cfg)
    train = meta.get("train") or {}
    tokens = int(meta.get("tokens") or 0)
    from optimal_sparsity.train.config import run_id_of

    fp = meta.get("corpus_fingerprint")
    run = run_id_of(train, fp) if train else cfg.fingerprint()
    post = meta.get("posttrain")
    if post:  # e.g. GRPO-tuned: a run of its own, so its rows and caches never mix with the base
        digest = hashlib.sha256(json.dumps(post.get("settings", post), sort_keys=True)
                                .encode()).hexdigest()[:8]
        run = f"{run}+{post.get('method', 'posttrain')}-{digest}"
    return {"run": run, "model": cfg.name, "seed": int(train.get("seed", 0)),
            "step": int(meta.get("step") or 0), "tokens": tokens, "d": cfg.d_model,
            "E": cfg.n_experts, "k": cfg.top_k, "n_layers": cfg.n_layers,
            "total_params": pc.total, "active_params": pc.active,
            "tpp": tokens / pc.total if tokens else 0.0, "config_hash": cfg.fingerprint(),
            "corpus": str(fp or "")}


def make_rows(identity: dict[str, Any], task: str, metrics: dict[str, float], n: int,
              stderr: dict[str, float] | None = None, source: str = "retrain",
              extra: dict[str, Any] | None = None) -> list[Row]:
    prov = provenance()
    return [Row(task=task, metric=m, value=float(v), n=n,
                stderr=(stderr or {}).get(m), source=source, commit=str(prov["commit"]),
                hardware=str(prov["hardware"]), time=str(prov["time"]),
                versions=dict(prov["versions"]), extra=dict(extra or {}), **identity)
            for m, v in metrics.items()]


def eval_part(identity: dict[str, Any], source: str, tier: str) -> str:
    """The results part of one checkpoint's tier: one name convention for every tier
    (``eval.evaluate``'s driver, and the ``selfconsistency`` and ``grpo`` commands)."""
    return part_name("eval", identity["run"], identity["model"], identity["step"], source, tier)



# Tiers whose rows a table written before they joined the driver holds in a part per
# (run, step, task): that part goes when the tier's own part is written.
_FORMERLY_PER_TASK = frozenset({"sc", "grpo", "grpo2"})


def write_eval_part(root: str | Path, identity: dict[str, Any], source: str, tier: str,
                    rows: list[Row]) -> Path:
    """Write (or replace) the part of one checkpoint's tier (``eval_part``)."""
    path = write_part(root, eval_part(identity, source, tier), rows)
    if tier in _FORMERLY_PER_TASK:
        for task in {r.task for r in rows}:
            remove_part(root, part_name(identity["run"], identity["step"], task))
    return path
