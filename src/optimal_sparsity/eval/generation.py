"""Text generation for the generative evaluations (self-consistency, GRPO accuracy, code).

Two backends with one interface:

``HFGenerator`` (CPU and GPU): Hugging Face ``generate`` on a ``MixtralForCausalLM``
directory (``hf_export.export_hf``). Sampling is HF's multinomial sampling with exactly
two logit warpers: temperature, then nucleus top-p (``top_k=0``: HF's default top-k of
50 is switched off, as in vLLM and the paper). ``nucleus_filter`` is the same math,
written out, and the tests check that ``generate`` draws the same tokens as a plain loop
over it. Seeding is per call (``torch.manual_seed``), so results do not depend on what
was generated before.

``VLLMGenerator`` (GPU only; vLLM is not a dependency of this artifact): the paper's
backend, run in vLLM's own environment (``OPTIMAL_SPARSITY_VLLM_PYTHON``) as a worker
process (``eval.gen_worker``: a JSON-lines protocol), with ``max_model_len`` the model's
window. ``SamplingParams(n, temperature, top_p, max_tokens, seed)`` per prompt. vLLM's
own kernels and RNG: its samples are not bit-identical to HF's.

Our own torch model is not a sampling backend: it decodes greedily through its KV cache
(the lm-eval adapter, as fast as HF ``generate``: BENCHMARKS.md), and sampling stays on HF
``generate`` so that the sampled tokens are HF's own for the same seed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from optimal_sparsity.errors import UserError


@dataclass(frozen=True)
class Sampling:
    """Decoding settings: ``temperature == 0`` is greedy (``top_p`` then ignored)."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = Sampling(temperature=0.0, top_p=1.0)


def nucleus_filter(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Logits [B, V] after temperature and nucleus (top-p) filtering, HF's convention:
    drop the tokens whose cumulative probability, summed from the least likely up, is
    at most ``1 - top_p``; the most likely token always stays. Dropped tokens get -inf."""
    scores = logits / temperature if temperature != 1.0 else logits
    if top_p >= 1.0:
        return scores
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - top_p)
    drop_sorted[..., -1:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], sampling: Sampling, n: int = 1,
                 seed: int = 0) -> list[list[str]]:
        """``n`` completions (text after the prompt, special tokens removed) per prompt."""
        ...


def truncate_at(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class HFGenerator:
    """HF ``generate`` over an exported ``MixtralForCausalLM`` directory (or a model)."""

    def __init__(self, model_dir: str | Path | None = None, *, model=None, tokenizer=None,
                 batch_size: int = 32, device: str = "cpu",
                 stop: Sequence[str] = ()) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model is None:
            if model_dir is None:
                raise ValueError("HFGenerator needs model_dir or model")
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # one bar per model load, in every run's log
            model = AutoModelForCausalLM.from_pretrained(
                str(model_dir), dtype=torch.float32, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
        if tokenizer is None:
            raise ValueError("HFGenerator needs a tokenizer with a model")
        self.model = model.to(device).eval()
        self.tok = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.stop = tuple(stop)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id

    def _kwargs(self, sampling: Sampling) -> dict:
        kw = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id,
                  eos_token_id=self.tok.eos_token_id)
        if sampling.greedy:
            return {**kw, "do_sample": False}
        return {**kw, "do_sample": True, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "top_k": 0}

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], sampling: Sampling, n: int = 1,
                 seed: int = 0) -> list[list[str]]:
        """Prompts are batched (left-padded) up to ``batch_size`` sequences per call;
        with ``n > 1`` each prompt is its own batch of ``n`` samples (no padding)."""
        out: list[list[str]] = []
        if n > 1:
            for i, p in enumerate(prompts):
                out.append(self._run([p], sampling, n, seed + i)[0])
            return out
        for start in range(0, len(prompts), self.batch_size):
            out += self._run(prompts[start:start + self.batch_size], sampling, 1, seed + start)
        return out

    def _run(self, prompts: Sequence[str], sampling: Sampling, n: int, seed: int
             ) -> list[list[str]]:
        old_side = self.tok.padding_side
        self.tok.padding_side = "left"
        try:
            enc = self.tok(list(prompts), return_tensors="pt", padding=True)
        finally:
            self.tok.padding_side = old_side
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids",
                                                                      "attention_mask")}
        width = enc["input_ids"].shape[1]
        with _seeded(seed):
            seqs = self.model.generate(**enc, num_return_sequences=n, **self._kwargs(sampling))
        texts = self.tok.batch_decode(seqs[:, width:], skip_special_tokens=True)
        texts = [truncate_at(t, self.stop) for t in texts]
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's global RNG (what ``generate`` draws from) and restore it after."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def vllm_available() -> tuple[bool, str]:
    """Whether the vLLM backend can run here, and if not, why."""
    from optimal_sparsity.eval.gen_client import DEFAULT_VLLM_PYTHON, VLLM_PYTHON_ENV, vllm_python

    if vllm_python() is None:
        return False, (f"no vLLM environment: set {VLLM_PYTHON_ENV} to the Python of one "
                       f"(the GPU image has {DEFAULT_VLLM_PYTHON})")
    if not torch.cuda.is_available():
        return False, "vLLM needs a CUDA GPU"
    return True, ""


def vllm_sampling_params(sampling: Sampling, n: int, seed: int, stop: Sequence[str] = ()):
    """vLLM ``SamplingParams`` for these settings (the paper's TTC: n=128, T=0.6,
    top_p=0.95, max 1024 tokens)."""
    from vllm import SamplingParams

    return SamplingParams(n=n, temperature=sampling.temperature,
                          top_p=1.0 if sampling.greedy else sampling.top_p, top_k=-1,
                          max_tokens=sampling.max_new_tokens, seed=seed,
                          stop=list(stop) or None)


def VLLMGenerator(model_dir: str | Path, *, seed: int = 42, stop: Sequence[str] = (),
                  gpu_memory_utilization: float = 0.85):
    """vLLM over an exported (or released) Mixtral directory, in vLLM's environment (a
    ``gen_client.WorkerGenerator``; close it, or use it as a context manager)."""
    from optimal_sparsity.eval.gen_client import WorkerGenerator, vllm_python

    ok, why = vllm_available()
    if not ok:
        raise UserError(f"vLLM backend unavailable: {why}")
    return WorkerGenerator(model_dir, backend="vllm", python=vllm_python(), seed=seed,
                           stop=stop, gpu_memory_utilization=gpu_memory_utilization)


def make_generator(backend: str, model_dir: str | Path, **kw) -> Generator:
    if backend == "hf":
        return HFGenerator(model_dir, **kw)
    if backend == "vllm":
        return VLLMGenerator(model_dir, **kw)
    raise UserError(f"unknown generation backend {backend!r}: hf or vllm")
