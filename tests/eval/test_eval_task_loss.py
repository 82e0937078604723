"""Task loss against values computed by hand, its edge cases, and the authors' inputs."""

from __future__ import annotations

import gzip
import json
import math
import shutil

import numpy as np
import pytest
import torch

from optimal_sparsity.errors import IntegrityError
from optimal_sparsity.eval import taskloss_data
from optimal_sparsity.eval.task_loss import split_answer, task_loss
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.model import build_model

PAIRS = [("Question: Which city did Ana visit?\nAnswer:", " Lorvik"),
         ("Question: Ana has 3 cards. Ana finds 4 cards. How many cards?\nAnswer:",
          " 3 + 4 = 7. #### 7")]


@pytest.fixture(scope="module")
def tok(tiny_corpus):
    from optimal_sparsity.data.tokenizer import load_tokenizer

    return load_tokenizer(tiny_corpus / "tokenizer")


def make_model(vocab: int, seed: int = 0):
    return build_model(scaled_config(32, 4, 2, n_layers=1, vocab_size=vocab, max_seq_len=128),
                       seed=seed).eval()


def bigram_model(vocab: int):
    """Attention and experts write zeros into the residual stream: the logits at position t
    are lm_head(RMSNorm(embed(token_t))), computable by hand."""
    model = make_model(vocab, seed=1)
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.moe.experts.mlp.w2.zero_()
    return model


def hand_bigram_nll(model, ids: list[int], n_prompt: int) -> float:
    """Summed NLL (nats) of ids[n_prompt:] under the bigram model, with numpy only."""
    emb = model.embed_tokens.weight.detach().double().numpy()
    head = model.lm_head.weight.detach().double().numpy()
    eps = model.cfg.norm_eps
    nll = 0.0
    for t in range(n_prompt, len(ids)):
        e = emb[ids[t - 1]]
        logits = head @ (e / np.sqrt(np.mean(e * e) + eps))
        lse = logits.max() + np.log(np.exp(logits - logits.max()).sum())
        nll += lse - logits[ids[t]]
    return float(nll)


def test_uniform_model_is_log2_vocab_bits_per_token(tok):
    """All-zero weights: every next-token distribution is uniform over V, so the task loss
    is exactly log2(V) bits/token, and bits/byte = n_tokens * log2(V) / n_bytes."""
    vocab = len(tok)
    model = make_model(vocab)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    r = task_loss(model, tok, PAIRS, batch_size=2)
    assert r.n == 2 and r.n_skipped == 0 and r.n_prefix_mismatch == 0
    assert r.bits_per_token == pytest.approx(math.log2(vocab), abs=1e-5)
    per_byte = []
    for prompt, answer in PAIRS:
        n_tok = len(tok.encode(prompt + answer)) - len(tok.encode(prompt))
        per_byte.append(n_tok * math.log2(vocab) / len(answer.encode()))
    assert r.bits_per_byte == pytest.approx(sum(per_byte) / 2, abs=1e-5)


def test_bigram_model_matches_hand_computation(tok):
    model = bigram_model(len(tok))
    expect_bpt, expect_bpb = [], []
    for prompt, answer in PAIRS:
        p, full = tok.encode(prompt), tok.encode(prompt + answer)
        assert full[:len(p)] == p
        nll = hand_bigram_nll(model, full, len(p))
        expect_bpt.append(nll / math.log(2) / (len(full) - len(p)))
        expect_bpb.append(nll / math.log(2) / len(answer.encode()))
    for batch_size in (1, 2):  # right padding must not change anything
        r = task_loss(model, tok, PAIRS, batch_size=batch_size)
        assert r.item_bits_per_token == pytest.approx(expect_bpt, rel=1e-5)
        assert r.item_bits_per_byte == pytest.approx(expect_bpb, rel=1e-5)
        assert r.bits_per_token == pytest.approx(np.mean(expect_bpt), rel=1e-5)
        assert r.stderr_bits_per_token == pytest.approx(
            np.std(expect_bpt, ddof=1) / math.sqrt(2), rel=1e-4)
    # the bigram model is not uniform: its value differs from log2 V
    assert abs(r.bits_per_token - math.log2(len(tok))) > 1e-3


def test_left_truncation_scores_the_answer_with_the_last_context_tokens(tok):
    model = bigram_model(len(tok))
    prompt, answer = PAIRS[1]
    p, full = tok.encode(prompt), tok.encode(prompt + answer)
    n_ans = len(full) - len(p)
    max_length = n_ans + 3
    r = task_loss(model, tok, [(prompt, answer)], max_length=max_length)
    assert r.n_prompt_truncated == 1 and r.n == 1
    cut = len(full) - (max_length + 1)
    # a bigram model only sees the previous token: truncation leaves the value unchanged
    nll = hand_bigram_nll(model, full[cut:], len(p) - cut)
    assert r.bits_per_token == pytest.approx(nll / math.log(2) / n_ans, rel=1e-5)
    # an answer longer than the window is skipped, not silently shortened
    r = task_loss(model, tok, [(prompt, answer)], max_length=n_ans - 1)
    assert r.n == 0 and r.n_skipped == 1


def test_prefix_mismatch_is_counted_and_split_by_count(tok):
    """'Answer: ' + '7' tokenizes as 'Answer:' + ' 7': the prompt's tokens are not a prefix.
    As in the authors' code the answer tokens are those after len(tokens(prompt))."""
    prompt, answer = "Question: How many?\nAnswer: ", "17"
    s = split_answer(tok, prompt, answer)
    p = tok.encode(prompt)
    assert not s.prefix_ok and s.n_prompt == len(p)
    assert s.ids == tok.encode(prompt + answer)
    model = bigram_model(len(tok))
    r = task_loss(model, tok, [(prompt, answer), PAIRS[0]])
    assert r.n_prefix_mismatch == 1 and r.n == 2
    nll = hand_bigram_nll(model, s.ids, s.n_prompt)
    assert r.item_bits_per_token[0] == pytest.approx(
        nll / math.log(2) / (len(s.ids) - s.n_prompt), rel=1e-5)


def test_empty_answer_is_skipped_and_empty_prompt_gets_a_prefix(tok):
    model = bigram_model(len(tok))
    r = task_loss(model, tok, [("Question: x?\nAnswer:", ""), PAIRS[0]])
    assert r.n == 1 and r.n_skipped == 1
    s = split_answer(tok, "", " Lorvik")
    assert s.n_prompt == 1 and s.ids[0] == tok.eos_token_id  # BOS is EOS in this tokenizer


def test_authors_inputs_load_and_verify():
    gsm = taskloss_data.load_authors_inputs("gsm8k")
    assert len(gsm) == 1319
    assert gsm[0][0].startswith("Question:") and gsm[0][1].rstrip().endswith("#### 18")
    assert len(taskloss_data.load_authors_inputs("humaneval")) == 164
    assert len(taskloss_data.load_authors_inputs("mbpp")) == 378
    reg = json.loads((taskloss_data.TASKLOSS_DIR / "SHA256.json").read_text())
    for name, want in reg.items():  # the .gz bytes are the ones recorded too
        from optimal_sparsity.atomic import sha256_file

        assert sha256_file(taskloss_data.TASKLOSS_DIR / f"{name}.gz") == want["gz_sha256"]


def test_authors_inputs_refuse_tampered_bytes(tmp_path, monkeypatch):
    shutil.copytree(taskloss_data.TASKLOSS_DIR, tmp_path / "taskloss")
    path = tmp_path / "taskloss" / "humanevalplus_test.json.gz"
    items = json.loads(gzip.decompress(path.read_bytes()))
    items[0]["answer"] += " "
    path.write_bytes(gzip.compress(json.dumps(items).encode()))
    monkeypatch.setattr(taskloss_data, "TASKLOSS_DIR", tmp_path / "taskloss")
    with pytest.raises(IntegrityError, match="sha256"):
        taskloss_data.load_authors_inputs("humaneval")
