"""The MoELM adapter (this project's fast path) agrees with lm-eval's own ``hf`` backend
running the exported MixtralForCausalLM, request by request and in the scores."""

from __future__ import annotations

import math

import pytest
from lm_eval.api.instance import Instance

from optimal_sparsity.checkpoint import load_checkpoint
from optimal_sparsity.data.tokenizer import load_tokenizer
from optimal_sparsity.eval.harness import run_proxy_tasks
from optimal_sparsity.eval.lm_adapter import MoELM
from optimal_sparsity.eval.task_loss import task_loss
from optimal_sparsity.eval.taskloss_data import load_proxy_items

LIMIT = 4
GEN = {"until": ["\n\n", "Question:"], "do_sample": False, "max_gen_toks": 24}
# stop strings this little model does produce: exercises the cut at a stop sequence
GEN_STOP = {"until": ["####", ","], "do_sample": False, "max_gen_toks": 16}


@pytest.fixture(scope="module")
def adapter(eval_run):
    model, _ = load_checkpoint(eval_run.ckpt)
    return MoELM(model, load_tokenizer(eval_run.ckpt), batch_size=8)


@pytest.fixture(scope="module")
def hflm(eval_hf_dir):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(eval_hf_dir), dtype="float32", device="cpu", batch_size=4)


def requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def scoring_pairs(corpus) -> list[tuple[str, str]]:
    hs = load_proxy_items(corpus, "hellaswag_proxy")[:3]
    qa = load_proxy_items(corpus, "triviaqa_proxy")[:3]
    return ([(it["context"], e) for it in hs for e in it["endings"]]
            + [(it["prompt"] + " ", it["target"]) for it in qa]  # trailing space moves
            + [("", qa[0]["prompt"])])  # empty context: the prefix token


def test_loglikelihoods_agree(adapter, hflm, eval_run, one_thread):
    reqs = scoring_pairs(eval_run.corpus)
    ours = adapter.loglikelihood(requests("loglikelihood", reqs))
    theirs = hflm.loglikelihood(requests("loglikelihood", reqs))
    for (a, ga), (b, gb) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=2e-4)
        assert ga == gb


def test_generations_agree_and_do_not_depend_on_batching(adapter, hflm, eval_run, one_thread):
    prompts = [it["prompt"] for t in ("triviaqa_proxy", "gsm8k_proxy")
               for it in load_proxy_items(eval_run.corpus, t)[:4]]

    def reqs():
        return requests("generate_until", [(p, dict(g)) for g in (GEN, GEN_STOP)
                                           for p in prompts])

    ours = adapter.generate_until(reqs())
    assert ours == hflm.generate_until(reqs())
    assert MoELM(adapter.model, adapter.tokenizer, batch_size=1).generate_until(reqs()) == ours
    cut = ours[len(prompts):]
    assert all("####" not in s and "," not in s for s in cut)
    assert any(len(s) < len(full) for s, full in zip(cut, ours[:len(prompts)], strict=True))


def test_rolling_loglikelihood_is_the_sum_over_tokens(adapter, eval_run, one_thread):
    text = load_proxy_items(eval_run.corpus, "triviaqa_proxy")[0]["prompt"]
    (rolling,) = adapter.loglikelihood_rolling(requests("loglikelihood_rolling", [(text,)]))
    (whole, _), = adapter.loglikelihood(requests("loglikelihood", [("", text)]))
    assert rolling == pytest.approx(whole, abs=1e-4)


def test_adapter_loglikelihood_is_task_loss(adapter, eval_run, one_thread):
    """Two implementations of the same quantity: -loglikelihood(prompt, answer) equals the
    task loss's summed answer NLL (bits/token x tokens x ln 2)."""
    items = load_proxy_items(eval_run.corpus, "gsm8k_proxy")[:3]
    pairs = [(it["prompt"], it["answer"]) for it in items]
    r = task_loss(adapter.model, adapter.tokenizer, pairs, max_length=adapter.max_length)
    ll = adapter.loglikelihood(requests("loglikelihood", pairs))
    tok = adapter.tokenizer
    for (p, a), bpt, (lp, _) in zip(pairs, r.item_bits_per_token, ll, strict=True):
        n = len(tok.encode(p + a)) - len(tok.encode(p))
        assert -lp == pytest.approx(bpt * n * math.log(2), rel=1e-4)


def test_scores_agree_on_every_proxy_task(adapter, hflm, eval_run, one_thread):
    a = run_proxy_tasks(adapter, eval_run.corpus, limit=LIMIT, gen_kwargs={"max_gen_toks": 32})
    b = run_proxy_tasks(hflm, eval_run.corpus, limit=LIMIT, gen_kwargs={"max_gen_toks": 32})
    assert a.metrics == b.metrics
    assert a.responses == b.responses
    for task in a.lm_eval_results:
        assert a.n[task] == b.n[task] == LIMIT
