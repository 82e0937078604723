"""The paper's grid of 65 released math models, and the scaled-down ladder for CPUs.

Names: paper points are ``d{d}-E{E}-k{k}`` (or the full HF id
``llm-jp/optimal-sparsity-math-d512-E8-k2-320M-A170M``); scaled-down points are
``s-d{d}-E{E}-k{k}`` (4 layers, expert FFN 2d, head dim 32, vocab set by the corpus).
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from typing import Any

from optimal_sparsity.config import ModelConfig
from optimal_sparsity.errors import UserError
from optimal_sparsity.resources import RESOURCES

PAPER_TOKENS = 125_000_000_000  # 29,803 steps x 1024 sequences x 4096 tokens (rounded)
PAPER_LAYERS = 16

# Scaled-down ladder (CPU). Ratios kept from the paper: expert FFN = 2d, E and k sweeps
# with k <= E. The paper's head dim is 128; at these widths the head dim is 32, which
# keeps >= 2 heads at d=64 (the paper's smallest width has 4 heads).
SCALED_WIDTHS: tuple[int, ...] = (32, 64, 96, 128, 192, 256)
SCALED_EXPERTS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
SCALED_TOPK: tuple[int, ...] = (1, 2, 4, 8, 16)
SCALED_LAYERS = 4
SCALED_HEAD_DIM = 32
SCALED_VOCAB = 512
SCALED_SEQ_LEN = 256


_PAPER_RE = re.compile(
    r"^(?:llm-jp/optimal-sparsity-math-)?d(\d+)-E(\d+)-k(\d+)(?:-[\d.]+[MB]-A[\d.]+[MB])?$")
_SCALED_RE = re.compile(r"^s-d(\d+)-E(\d+)-k(\d+)$")


@dataclass(frozen=True, order=True)
class GridPoint:
    """A point of a grid: width d, E experts, top-k routing, n_layers layers: the study's
    designs, the lock's released models, the planner's candidates, the results' points.

    ``short`` is the paper's name (``d512-E8-k2``), ``name`` the scaled-down model's
    (``s-d64-E8-k2``); ``parse`` reads either (or a released model's HF id)."""

    d: int
    E: int
    k: int
    n_layers: int = SCALED_LAYERS

    @property
    def short(self) -> str:
        return f"d{self.d}-E{self.E}-k{self.k}"

    @property
    def name(self) -> str:
        return f"s-{self.short}"

    @property
    def layers_suffix(self) -> str:
        """``-L{n}`` when the depth is not the scaled-down ladder's, else empty."""
        return f"-L{self.n_layers}" if self.n_layers != SCALED_LAYERS else ""

    @property
    def label(self) -> str:
        return self.name + self.layers_suffix

    @property
    def family(self) -> tuple[int, int]:
        """The active-parameter family (d, k): E varies within it."""
        return self.d, self.k

    @property
    def density(self) -> float:
        """k/E (1 - the paper's sparsity)."""
        return self.k / self.E

    def model_overrides(self) -> dict[str, Any]:
        return {} if self.n_layers == SCALED_LAYERS else {"n_layers": self.n_layers}

    @classmethod
    def of(cls, cfg: ModelConfig) -> GridPoint:
        return cls(cfg.d_model, cfg.n_experts, cfg.top_k, cfg.n_layers)

    @classmethod
    def parse(cls, name: str) -> tuple[GridPoint, bool] | None:
        """(point, scaled) for a scaled-down name, a paper name or a released HF id (the
        point gets the ladder's or the paper's depth); None for anything else."""
        if m := _SCALED_RE.match(name):
            return cls(*map(int, m.groups())), True
        if m := _PAPER_RE.match(name):
            return cls(*map(int, m.groups()), n_layers=PAPER_LAYERS), False
        return None


@dataclass(frozen=True)
class PaperModel:
    """A released model: its grid point and the sizes written in its name."""

    hf_repo: str
    d: int
    E: int
    k: int
    total_name: str  # e.g. "320M"
    active_name: str  # e.g. "170M"

    @property
    def name(self) -> str:
        return GridPoint(self.d, self.E, self.k, PAPER_LAYERS).short

    def config(self) -> ModelConfig:
        return paper_config(self.d, self.E, self.k)


def paper_config(d: int, n_experts: int, top_k: int, **overrides) -> ModelConfig:
    """The paper's architecture at grid point (d, E, k)."""
    fields = dict(
        name=GridPoint(d, n_experts, top_k, PAPER_LAYERS).short, d_model=d,
        n_layers=PAPER_LAYERS, n_heads=d // 128,
        n_experts=n_experts, top_k=top_k, ffn_hidden=2 * d, vocab_size=99_584,
        max_seq_len=4096,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


@functools.cache
def paper_models() -> tuple[PaperModel, ...]:
    with open(RESOURCES / "paper_grid_math.csv", newline="") as f:
        return tuple(
            PaperModel(hf_repo=r["hf_repo"], d=int(r["d"]), E=int(r["E"]), k=int(r["k"]),
                       total_name=r["total_params_name"], active_name=r["active_params_name"])
            for r in csv.DictReader(f)
        )


def scaled_config(d: int, n_experts: int, top_k: int, *, n_layers: int = SCALED_LAYERS,
                  vocab_size: int = SCALED_VOCAB, max_seq_len: int = SCALED_SEQ_LEN,
                  **overrides) -> ModelConfig:
    """A scaled-down point with the paper's ratios (see the module docstring)."""
    fields = dict(
        name=GridPoint(d, n_experts, top_k).name, d_model=d, n_layers=n_layers,
        n_heads=max(1, d // SCALED_HEAD_DIM), n_experts=n_experts, top_k=top_k,
        ffn_hidden=2 * d, vocab_size=vocab_size, max_seq_len=max_seq_len,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def scaled_ladder() -> list[ModelConfig]:
    return [scaled_config(d, e, k) for d in SCALED_WIDTHS for e in SCALED_EXPERTS
            for k in SCALED_TOPK if k <= e]


def get_config(name: str, **overrides) -> ModelConfig:
    """Resolve a model name to its config; unknown names are a clear error."""
    parsed = GridPoint.parse(name)
    if parsed is not None and parsed[1]:
        d, e, k = parsed[0].d, parsed[0].E, parsed[0].k
        if d not in SCALED_WIDTHS or e not in SCALED_EXPERTS or k not in SCALED_TOPK or k > e:
            raise UserError(
                f"unknown scaled-down model {name!r}: d in {SCALED_WIDTHS}, E in "
                f"{SCALED_EXPERTS}, k in {SCALED_TOPK}, k <= E")
        return scaled_config(d, e, k, **overrides)
    if parsed is not None:
        point = parsed[0]
        for pm in paper_models():
            if (pm.d, pm.E, pm.k) == (point.d, point.E, point.k) and (
                    name.count("/") == 0 or name == pm.hf_repo):
                return pm.config().replace(**overrides) if overrides else pm.config()
    raise UserError(
        f"unknown model name {name!r}: use a released model (e.g. d512-E8-k2, see "
        "`./reproduce grid`) or a scaled-down one (e.g. s-d64-E8-k2)")


def format_size(n: float) -> str:
    """The names' convention: 2 significant figures, M below 1e9 else B (1 decimal)."""
    if n >= 1e9:
        b = n / 1e9
        return f"{b:.1f}B" if b < 100 else f"{b:.0f}B"
    m = n / 1e6
    return f"{float(f'{m:.2g}'):g}M"
