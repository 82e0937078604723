"""Typed model configuration: one dataclass, validated on construction.

A config is data: it serialises to JSON next to every checkpoint and result, and its
hash keys the results cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from optimal_sparsity.errors import UserError

# Why k = 1 MoEs are not studied (the paper's grid is k in {2, 4, 8, 16}).
K1_ROUTER_NOTE = ("k = 1 with E > 1: Mixtral's renormalisation makes the single top-1 weight "
                  "p/p = 1, so the LM loss sends the router no gradient (only the auxiliary "
                  "losses train it); the paper never trains k = 1")
_K1_WARNED: set[str] = set()

Backend = Literal["torch", "megablocks"]
BACKENDS: tuple[str, ...] = ("torch", "megablocks")


@dataclass(frozen=True)
class ModelConfig:
    """A Mixtral-style decoder whose every FFN is a dropless top-k MoE (docs/paper.md).

    ``d_model`` width d, ``n_experts`` E, ``top_k`` k, ``ffn_hidden`` the expert FFN
    width (2d in the paper). Auxiliary-loss coefficients follow the paper's recipe.
    """

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_experts: int
    top_k: int
    ffn_hidden: int
    vocab_size: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    lb_coef: float = 1e-2
    z_coef: float = 1e-3
    backend: Backend = "torch"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(f"invalid model config {self.name!r}: {msg}")

        for f in ("d_model", "n_layers", "n_heads", "n_experts", "top_k", "ffn_hidden",
                  "vocab_size", "max_seq_len"):
            v = getattr(self, f)
            need(isinstance(v, int) and not isinstance(v, bool), f"{f} must be an integer")
            need(v >= 1, f"{f} must be >= 1 (got {v})")
        need(self.top_k <= self.n_experts,
             f"top_k k={self.top_k} exceeds the number of experts E={self.n_experts}")
        need(self.d_model % self.n_heads == 0,
             f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        need((self.d_model // self.n_heads) % 2 == 0,
             f"head dim {self.d_model // self.n_heads} must be even for RoPE")
        for f in ("rope_theta", "norm_eps", "init_std"):
            need(float(getattr(self, f)) > 0, f"{f} must be > 0")
        for f in ("lb_coef", "z_coef"):
            need(float(getattr(self, f)) >= 0, f"{f} must be >= 0")
        need(self.backend in BACKENDS, f"backend must be one of {BACKENDS} (got {self.backend!r})")
        if self.top_k == 1 and self.n_experts > 1 and self.name not in _K1_WARNED:
            _K1_WARNED.add(self.name)
            print(f"warning: model config {self.name!r}: {K1_ROUTER_NOTE}", file=sys.stderr)

    # Derived quantities -----------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def sparsity(self) -> float:
        """1 - k/E (the paper's sparsity)."""
        return 1.0 - self.top_k / self.n_experts

    @property
    def density(self) -> float:
        """k/E."""
        return self.top_k / self.n_experts

    # Serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        """Hash of everything that changes the model's math (not its name or backend)."""
        d = self.to_dict()
        for k in ("name", "backend", "extra"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
