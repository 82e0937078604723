"""Sampling backends: HF ``generate`` draws exactly what temperature + nucleus sampling
should (no hidden top-k), deterministically per seed; vLLM is GPU-only."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.generation import (
    GREEDY,
    HFGenerator,
    Sampling,
    VLLMGenerator,
    nucleus_filter,
    truncate_at,
    vllm_available,
)

PROMPTS = ["Question: Lira has 7 shells.\nAnswer:", "Question: How many?\nAnswer:"]


@pytest.mark.parametrize(("temperature", "top_p"), [(0.6, 0.95), (1.0, 0.5), (0.3, 1.0),
                                                    (2.0, 0.01)])
def test_nucleus_filter_is_hf_warpers(temperature, top_p):
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(1)) * 3
    ids = torch.zeros(5, 1, dtype=torch.long)
    want = TemperatureLogitsWarper(temperature)(ids, logits.clone())
    if top_p < 1.0:
        want = TopPLogitsWarper(top_p)(ids, want)
    got = nucleus_filter(logits, temperature, top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got[~torch.isinf(got)], want[~torch.isinf(want)])
    kept = (~torch.isinf(got)).sum(-1)
    assert (kept >= 1).all()
    if top_p < 1.0:  # the kept set is the smallest one with mass >= top_p
        probs = torch.softmax(logits / temperature, -1)
        mass = (probs * (~torch.isinf(got))).sum(-1)
        assert (mass >= top_p - 1e-6).all()


def test_generate_draws_what_the_sampling_math_says(tiny_hf_dir):
    """HF generate with our settings == a plain loop: logits -> nucleus_filter ->
    softmax -> multinomial, from the same seed (so no top-k 50, no other warper)."""
    gen = HFGenerator(tiny_hf_dir)
    s = Sampling(temperature=0.6, top_p=0.95, max_new_tokens=10)
    n, seed = 6, 123
    got = gen.generate([PROMPTS[0]], s, n=n, seed=seed)[0]

    model = AutoModelForCausalLM.from_pretrained(str(tiny_hf_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_hf_dir))
    ids = tok(PROMPTS[0], return_tensors="pt").input_ids.repeat(n, 1)
    width = ids.shape[1]
    done = torch.zeros(n, dtype=torch.bool)
    torch.manual_seed(seed)
    with torch.no_grad():
        for _ in range(s.max_new_tokens):
            logits = model(ids).logits[:, -1].float()
            probs = torch.softmax(nucleus_filter(logits, s.temperature, s.top_p), -1)
            nxt = torch.multinomial(probs, 1).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == tok.eos_token_id
            if done.all():
                break
    want = tok.batch_decode(ids[:, width:], skip_special_tokens=True)
    assert got == want
    assert len(set(got)) > 1  # it really sampled


def test_sampling_is_deterministic_per_seed(tiny_hf_dir):
    gen = HFGenerator(tiny_hf_dir)
    s = Sampling(max_new_tokens=8)
    a = gen.generate(PROMPTS, s, n=4, seed=5)
    torch.rand(10)  # global RNG state outside must not matter
    assert gen.generate(PROMPTS, s, n=4, seed=5) == a
    assert gen.generate(PROMPTS, s, n=4, seed=6) != a
    # a problem's samples do not depend on the other problems
    assert gen.generate(PROMPTS[:1], s, n=4, seed=5)[0] == a[0]


def test_batched_greedy_equals_one_by_one(tiny_hf_dir):
    """Left padding in a batch does not change greedy completions."""
    gen = HFGenerator(tiny_hf_dir, batch_size=8)
    g = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=8)
    batched = gen.generate(PROMPTS, g)
    assert batched == [gen.generate([p], g)[0] for p in PROMPTS]
    assert GREEDY.greedy and not Sampling().greedy


def test_stop_strings_and_settings_validation():
    assert truncate_at("a = 1\ndef g():\n", ("\ndef",)) == "a = 1"
    assert truncate_at("no stop", ("\ndef",)) == "no stop"
    with pytest.raises(UserError):
        Sampling(top_p=0)
    with pytest.raises(UserError):
        Sampling(temperature=-1)


def test_vllm_backend_is_gpu_only():
    ok, why = vllm_available()
    if ok:
        pytest.skip("vLLM is available here: covered on the GPU")
    assert why
    with pytest.raises(UserError, match="vLLM backend unavailable"):
        VLLMGenerator("/nonexistent")


def test_vllm_sampling_params_follow_the_settings():
    pytest.importorskip("vllm", reason="vllm is a GPU-only dependency, not installed here")
    from optimal_sparsity.eval.generation import vllm_sampling_params

    p = vllm_sampling_params(Sampling(0.6, 0.95, 1024), n=128, seed=42)
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.seed) == (128, 0.6, 0.95, 1024, 42)
