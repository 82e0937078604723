"""Task loss, as the paper defines it (docs/paper.md; the authors' ``taskloss-eval`` package).

For one ``{prompt, answer}`` item:

- tokenize ``prompt`` and ``prompt + answer`` (the tokenizer's default special tokens, e.g.
  a BOS, as the authors' ``encode(..., add_special_tokens=True)``);
- the answer tokens are the suffix of ``tokens(prompt + answer)`` after the first
  ``len(tokens(prompt))`` tokens;
- task loss = summed NLL of the answer tokens given everything before them, in bits
  (nats / ln 2), divided by the number of answer tokens (bits/token) or by the UTF-8 bytes
  of ``answer`` (bits/byte).

The reported value is the mean over items (``bits_per_token``; ``bits_per_byte``).

Edge cases, handled explicitly:

- *Prefix mismatch*: ``tokens(prompt)`` is not a prefix of ``tokens(prompt + answer)`` when
  a merge crosses the boundary (e.g. a prompt ending in a space: "Answer: " + "Janet" tokenizes
  as "Answer:" + " Janet"). The authors' code splits by count regardless; so does this one,
  and ``n_prefix_mismatch`` counts such items.
- *No answer tokens* (``len(tokens(prompt + answer)) <= len(tokens(prompt))``): the ratio is
  undefined; the item is skipped and counted in ``n_skipped``.
- *Empty tokenized prompt* (no BOS): the prefix token (BOS, else EOS) is prepended so the
  first answer token has a context, as lm-evaluation-harness does.
- *Longer than the model's window*: the prompt is truncated from the left so that
  ``prompt + answer`` fits ``max_length + 1`` tokens (counted in ``n_prompt_truncated``); an
  answer longer than ``max_length`` tokens is skipped (``n_skipped``).

Batches are right-padded: the model is causal, so padding after a sequence never changes
the logits of its tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


@dataclass(frozen=True)
class AnswerSplit:
    ids: list[int]  # tokens(prompt + answer)
    n_prompt: int  # the first n_prompt ids are context; the rest are the answer tokens
    prefix_ok: bool  # tokens(prompt) == ids[:n_prompt]


def split_answer(tokenizer, prompt: str, answer: str) -> AnswerSplit:
    p = tokenizer.encode(prompt, add_special_tokens=True)
    full = tokenizer.encode(prompt + answer, add_special_tokens=True)
    prefix_ok = full[:len(p)] == p
    n_prompt = len(p)
    if n_prompt == 0 and full:
        prefix = tokenizer.bos_token_id
        prefix = tokenizer.eos_token_id if prefix is None else prefix
        full, n_prompt = [prefix, *full], 1
    return AnswerSplit(list(full), n_prompt, prefix_ok)


@dataclass(frozen=True)
class TaskLossResult:
    bits_per_token: float  # mean over scored items
    bits_per_byte: float
    n: int  # scored items
    stderr_bits_per_token: float
    stderr_bits_per_byte: float
    n_prefix_mismatch: int = 0
    n_prompt_truncated: int = 0
    n_skipped: int = 0
    item_bits_per_token: list[float] = field(default_factory=list, repr=False)
    item_bits_per_byte: list[float] = field(default_factory=list, repr=False)

    def extra(self) -> dict[str, int]:
        return {"n_prefix_mismatch": self.n_prefix_mismatch,
                "n_prompt_truncated": self.n_prompt_truncated, "n_skipped": self.n_skipped}


def _mean_stderr(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(xs) / n
    if n == 1:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, math.sqrt(var / n)


def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, S, V] of our MoECausalLM or any HF causal LM (both return ``.logits``)."""
    return model(input_ids).logits


@torch.no_grad()
def answer_nll(model, splits: Sequence[AnswerSplit], batch_size: int = 16,
               device: str | torch.device = "cpu") -> list[float]:
    """Summed NLL (nats) of each split's answer tokens; the splits must fit the model."""
    from optimal_sparsity.progress import Progress

    out = [0.0] * len(splits)
    order = sorted(range(len(splits)), key=lambda i: -len(splits[i].ids))
    bar = Progress(len(splits), "task loss", "items")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(splits[i].ids) for i in idx) - 1
        x = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids = splits[i].ids[:-1]
            x[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        logits = _logits(model, x.to(device))
        for row, i in enumerate(idx):
            s = splits[i]
            # position t predicts token t + 1: the answer tokens from position n_prompt - 1 on
            pos = torch.arange(s.n_prompt - 1, len(s.ids) - 1, device=logits.device)
            target = torch.tensor(s.ids[s.n_prompt:], device=logits.device)
            logp = F.log_softmax(logits[row, pos].float(), dim=-1)
            out[i] = float(-logp.gather(1, target[:, None]).sum())
        bar.update(len(idx))
    bar.close()
    return out


def task_loss(model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16,
              max_length: int | None = None, device: str | torch.device = "cpu"
              ) -> TaskLossResult:
    """Task loss (bits/token and bits/byte, mean over items) of ``(prompt, answer)`` pairs."""
    splits: list[AnswerSplit] = []
    n_bytes: list[int] = []
    mismatch = truncated = skipped = 0
    for prompt, answer in pairs:
        s = split_answer(tokenizer, prompt, answer)
        mismatch += not s.prefix_ok
        n_answer = len(s.ids) - s.n_prompt
        if n_answer <= 0 or (max_length is not None and n_answer > max_length):
            skipped += 1
            continue
        if max_length is not None and len(s.ids) > max_length + 1:
            cut = len(s.ids) - (max_length + 1)
            s = AnswerSplit(s.ids[cut:], s.n_prompt - cut, s.prefix_ok)
            truncated += 1
        splits.append(s)
        n_bytes.append(len(answer.encode("utf-8")))
    nll = answer_nll(model, splits, batch_size=batch_size, device=device)
    bpt = [v / LN2 / (len(s.ids) - s.n_prompt) for v, s in zip(nll, splits, strict=True)]
    bpb = [v / LN2 / b for v, b in zip(nll, n_bytes, strict=True)]
    m_t, se_t = _mean_stderr(bpt)
    m_b, se_b = _mean_stderr(bpb)
    return TaskLossResult(bits_per_token=m_t, bits_per_byte=m_b, n=len(splits),
                          stderr_bits_per_token=se_t, stderr_bits_per_byte=se_b,
                          n_prefix_mismatch=mismatch, n_prompt_truncated=truncated,
                          n_skipped=skipped, item_bits_per_token=bpt, item_bits_per_byte=bpb)
