"""An lm-evaluation-harness model (``lm_eval.api.model.LM``) over this project's MoECausalLM.

The fast CPU path of the evaluation pipeline: no export, no HF model, batched. It follows
lm-eval's ``hf`` backend request by request, so both give the same scores
(``tests/eval/test_lm_adapter.py`` checks it on an exported checkpoint):

- tokenization: ``tokenizer.encode`` with the tokenizer's default special tokens (none when
  the text already starts with the BOS text);
  (context, continuation) pairs split as lm-eval's ``TemplateLM._encode_pair`` (trailing
  spaces of the context move to the continuation; continuation = tokens(context +
  continuation) after len(tokens(context))); an empty context becomes the prefix token
  (BOS, else EOS);
- log-likelihood: inputs ``(context + continuation)[-(max_length + 1):][:-1]``, the
  continuation's log-probabilities summed; ``is_greedy`` when every continuation token is
  the argmax;
- generation: greedy (argmax, first index on ties), contexts left-truncated to
  ``max_length - max_gen_toks`` tokens, at most ``max_gen_toks`` new tokens, stopping at EOS
  or once a stop string appears; the text (special tokens skipped) is cut at the first stop
  string (lm-eval's ``postprocess_generated_text``).

Progress: each request type shows requests done / total with rate and ETA (a bar on a
terminal, a line every few seconds elsewhere; ``optimal_sparsity.progress``) unless lm-eval
passes ``disable_tqdm=True``.

Scoring batches are right-padded (the model is causal: padding after a sequence never
changes its logits) and sorted by length. Generation left-pads each batch, runs the prompt
once and then one token per step through the model's KV cache
(``MoECausalLM.forward_cached``), and drops finished rows from the batch; a model without
a cache (any ``model(input_ids).logits``) re-runs the forward pass over the growing rows.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from optimal_sparsity.progress import Progress

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's hf backend default


class MoELM(TemplateLM):
    """lm-eval LM over an in-memory causal LM whose ``model(input_ids).logits`` is [B, S, V]."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 16,
                 max_length: int | None = None, device: str | torch.device = "cpu",
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, progress: str | None = None,
                 progress_interval: float | None = None) -> None:
        """``progress``: a ``Progress`` mode (None: a bar on a terminal, else log lines)."""
        super().__init__()
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self._device = torch.device(device)
        self.batch_size = int(batch_size)
        cfg = getattr(model, "cfg", None)
        self.max_length = int(max_length or getattr(cfg, "max_seq_len", 0) or 2048)
        self.max_gen_toks = int(max_gen_toks)
        self._prefix_text = tokenizer.decode(self.prefix_token_id) or "\0"
        self._progress_mode, self._progress_interval = progress, progress_interval
        self._stream = sys.stderr  # now: lm-eval runs may redirect stderr while evaluating
        self._name = getattr(cfg, "name", None) or type(model).__name__

    def _progress(self, total: int, what: str, disable_tqdm: bool) -> Progress:
        return Progress(total, f"{self._name} {what}", "requests",
                        mode="off" if disable_tqdm else self._progress_mode,
                        stream=self._stream, interval=self._progress_interval)

    # Tokenizer --------------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None,
                   left_truncate_len: int | None = None, **kwargs: Any) -> list[int]:
        kw = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and string.startswith(self._prefix_text):
            kw = {"add_special_tokens": False}  # the text already starts with BOS (as hf)
        ids = self.tokenizer.encode(string, **kw)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # Scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Log-softmax [B, S, V] (fp32) of right-padded rows."""
        width = max(len(r) for r in rows)
        x = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return F.log_softmax(self.model(x.to(self._device)).logits.float(), dim=-1)

    def _score(self, pairs: list[tuple[list[int], list[int]]], bar: Progress | None = None
               ) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), is_greedy) per (context, continuation)."""
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        inputs = []
        for ctx, cont in pairs:
            inp = (ctx + cont)[-(self.max_length + 1):][:-1]
            inputs.append((inp, cont[-self.max_length:] if len(cont) > self.max_length
                           else cont))
        order = sorted(range(len(pairs)), key=lambda i: (-len(inputs[i][0]), i))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            logp = self._logits([inputs[i][0] for i in idx])
            for row, i in enumerate(idx):
                inp, cont = inputs[i]
                lp = logp[row, len(inp) - len(cont):len(inp)]
                target = torch.tensor(cont, device=lp.device)
                greedy = bool((lp.argmax(dim=-1) == target).all())
                out[i] = (float(lp.gather(1, target[:, None]).sum()), greedy)
            if bar is not None:
                bar.update(len(idx))
        return out  # type: ignore[return-value]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any
                              ) -> list[tuple[float, bool]]:
        with self._progress(len(requests), "loglikelihood", disable_tqdm) as bar:
            res = self._score([(ctx, cont) for _, ctx, cont in requests], bar)
        for (key, _, _), r in zip(requests, res, strict=True):
            self.cache_hook.add_partial("loglikelihood", key, r)
        return res

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        with self._progress(len(requests), "loglikelihood_rolling", disable_tqdm) as bar:
            for (string,) in [req.args for req in requests]:
                windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)]
                total = sum(lp for lp, _ in self._score(windows))
                self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
                out.append(total)
                bar.update()
        return out

    # Generation -------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(repr(sorted(req.args[1].items())), []).append(i)
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        with self._progress(len(requests), "generate_until", disable_tqdm) as bar:
            for idx in groups.values():
                self._generate_group(requests, idx, eos, out, bar)
        return out  # type: ignore[return-value]

    def _finished(self, new: list[int], until: list[str]) -> bool:
        if new[-1] == self.eot_token_id:
            return True
        text = self.tok_decode(new)
        return any(s and s in text for s in until)
    def _generate_group(self, requests, idx: list[int], eos: str, out: list[str | None],
                        bar: Progress) -> None:
        """Generate for the requests ``idx`` that share one set of generation kwargs."""
        kwargs = normalize_gen_kwargs(copy.deepcopy(requests[idx[0]].args[1]),
                                      self.max_gen_toks)
        if kwargs.get("do_sample"):
            raise ValueError("MoELM generates greedily only (do_sample=True was requested)")
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen = int(kwargs.pop("max_gen_toks"))
        if max_gen >= self.max_length:
            raise ValueError(f"max_gen_toks ({max_gen}) must be less than the model's "
                             f"maximum length ({self.max_length})")
        contexts = [self.tok_encode(requests[i].args[0],
                                    left_truncate_len=self.max_length - max_gen)
                    for i in idx]
        order = sorted(range(len(idx)), key=lambda j: (-len(contexts[j]), j))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            texts = self._greedy([contexts[j] for j in chunk], max_gen, until)
            for j, text in zip(chunk, texts, strict=True):
                out[idx[j]] = text
                self.cache_hook.add_partial("generate_until", requests[idx[j]].args, text)
            bar.update(len(chunk))

    def _greedy(self, contexts: list[list[int]], max_gen: int, until: list[str]) -> list[str]:
        if hasattr(self.model, "forward_cached") and all(contexts):
            new = self._greedy_cached(contexts, max_gen, until)
        else:
            new = self._greedy_recompute(contexts, max_gen, until)
        return self._texts(new, until)

    def _greedy_recompute(self, contexts: list[list[int]], max_gen: int, until: list[str]
                          ) -> list[list[int]]:
        rows = [list(c) for c in contexts]
        new: list[list[int]] = [[] for _ in contexts]
        active = list(range(len(rows)))
        for _ in range(max_gen):
            if not active:
                break
            logp = self._logits([rows[i] for i in active])
            still = []
            for row, i in enumerate(active):
                tok = int(logp[row, len(rows[i]) - 1].argmax())
                rows[i].append(tok)
                new[i].append(tok)
                if not self._finished(new[i], until):
                    still.append(i)
            active = still
        return new

    @torch.no_grad()
    def _greedy_cached(self, contexts: list[list[int]], max_gen: int, until: list[str]
                       ) -> list[list[int]]:
        from optimal_sparsity.model.transformer import KVCache

        width = max(len(c) for c in contexts)
        ids = torch.zeros((len(contexts), width), dtype=torch.long)
        valid = torch.zeros((len(contexts), width), dtype=torch.bool)
        for i, c in enumerate(contexts):  # left padding: every row's last slot is real
            ids[i, width - len(c):] = torch.tensor(c, dtype=torch.long)
            valid[i, width - len(c):] = True
        ids, valid = ids.to(self._device), valid.to(self._device)
        cache = KVCache.empty(len(self.model.layers), len(contexts), self._device,
                              capacity=width + max_gen)
        logits = self.model.forward_cached(ids, valid, cache)[:, -1]
        new: list[list[int]] = [[] for _ in contexts]
        active = list(range(len(contexts)))
        for step in range(max_gen):
            toks = F.log_softmax(logits.float(), dim=-1).argmax(dim=-1).tolist()
            still = []
            for row, i in enumerate(active):
                new[i].append(toks[row])
                if not self._finished(new[i], until):
                    still.append(row)
            if not still or step == max_gen - 1:
                break
            keep = torch.tensor(still, dtype=torch.long, device=self._device)
            if len(still) < len(active):
                cache.select(keep)
            active = [active[r] for r in still]
            nxt = torch.tensor([[new[i][-1]] for i in active], device=self._device)
            logits = self.model.forward_cached(
                nxt, torch.ones_like(nxt, dtype=torch.bool), cache)[:, -1]
        return new

    def _texts(self, new: list[list[int]], until: list[str]) -> list[str]:
        eot = self.eot_token_id
        texts = []
        for toks in new:
            if eot in toks:
                toks = toks[:toks.index(eot)]
            texts.append(postprocess_generated_text(self.tok_decode(toks), until, None))
        return texts
