"""Bits stored: how much of a values-style knowledge base a model holds.

For every person and every value (attributes in their fixed order), the teacher-forced NLL
of the value token given the name and the earlier values, in bits, over the whole
vocabulary. A value the model knows costs ~0 bits; chance over ``n_values`` costs
``log2(n_values)``. Bits stored = sum over people and values of
``max(0, log2(n_values) - NLL_bits)``: chance-corrected, at most the base's information
content. Knowledge-capacity studies (Allen-Zhu & Li, arXiv 2404.05405) put GPT-style models
at about 1 bit per parameter after 100 exposures and 2 after 1,000: ``bits_per_param``
(over total parameters) is reported against that anchor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import UserError

CAPACITY_ANCHOR_BITS_PER_PARAM = (1.0, 2.0)  # 100 and 1,000 exposures (arXiv 2404.05405)


@dataclass(frozen=True)
class KnowledgeBits:
    bits_stored: float
    bits_total: float
    mean_value_nll_bits: float
    n_people: int
    n_values: int  # values per person

    @property
    def fraction(self) -> float:
        return self.bits_stored / self.bits_total


def load_records(corpus: str | Path) -> list[dict]:
    files = CorpusFiles.at(corpus)
    path = files.knowledge_records
    if not path.is_file():
        raise UserError(f"corpus {corpus} has no {path.relative_to(files.root)}: its "
                        "knowledge is not "
                        "values-style (KnowledgeConfig(style='values'))")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@torch.no_grad()
def knowledge_bits(model, tok, records: list[dict], n_values: int, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> KnowledgeBits:
    """Bits stored by ``model`` over ``records`` (``{"prefix", "values"}``, values being
    single tokens); ``n_values``: the size of the value vocabulary (chance level)."""
    chance = math.log2(n_values)
    seqs, n_vals = [], None
    for r in records:
        value_ids = [tok(v, add_special_tokens=False)["input_ids"] for v in r["values"]]
        if any(len(v) != 1 for v in value_ids):
            raise UserError(f"value tokens of {r['prefix']!r} are not single tokens of this "
                            "tokenizer: the checkpoint was not trained on this corpus")
        prefix = tok(r["prefix"], add_special_tokens=False)["input_ids"]
        seqs.append((prefix + [v[0] for v in value_ids], len(value_ids)))
        n_vals = len(value_ids) if n_vals is None else n_vals
    was_training = model.training
    model.eval()
    nll: list[torch.Tensor] = []
    by_len: dict[int, list[list[int]]] = {}
    for ids, _ in seqs:
        by_len.setdefault(len(ids), []).append(ids)
    for rows in by_len.values():
        for s in range(0, len(rows), batch_size):
            ids = torch.tensor(rows[s:s + batch_size], device=device)
            logits = model(ids[:, :-1]).logits.float()
            logp = torch.log_softmax(logits[:, -n_vals:], -1)
            target = ids[:, -n_vals:]
            nll.append(-logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) / math.log(2))
    model.train(was_training)
    bits = torch.cat(nll) if nll else torch.zeros(0, n_vals or 0)
    stored = float((chance - bits).clamp(min=0).sum())
    return KnowledgeBits(bits_stored=stored, bits_total=len(seqs) * (n_vals or 0) * chance,
                         mean_value_nll_bits=float(bits.mean()) if bits.numel() else 0.0,
                         n_people=len(seqs), n_values=n_vals or 0)
