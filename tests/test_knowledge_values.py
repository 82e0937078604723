"""Values-style knowledge, bits stored and per-source validation CE."""

from __future__ import annotations

import json
import math

import pytest

from optimal_sparsity.data.corpus import CorpusConfig, build_corpus
from optimal_sparsity.data.knowledge import KnowledgeBase, KnowledgeConfig

# The corpora of the pinned designs and the presets: new corpus options must leave them as
# they are (their fingerprints key every cached corpus and every pinned reference).
PINNED_FINGERPRINTS = {
    ("design", "tiny"): "c4f45069a7483ff3",
    ("design", "smoke"): "70c8013503738f29",
    ("design", "full"): "9ca8ee02245aeedd",
    ("preset", "tiny"): "45895edd36c54c9c",
    ("preset", "default"): "2bdf90de3762031b",
}


def test_existing_corpus_fingerprints_and_records_unchanged():
    from optimal_sparsity.data.presets import PRESETS
    from optimal_sparsity.study.design import DESIGNS

    got = {("design", k): d.corpus.fingerprint() for k, d in DESIGNS.items()}
    got |= {("preset", k): c.fingerprint() for k, c in PRESETS.items()}
    assert got == PINNED_FINGERPRINTS
    for d in DESIGNS.values():  # the serialised config has no new keys at their defaults
        rec = d.corpus.to_dict()
        assert ("val_by_source" in rec) == d.corpus.val_by_source
        assert ("n_values" in rec["knowledge"]) == (
            d.corpus.knowledge.n_values != KnowledgeConfig().n_values)
        assert CorpusConfig.from_dict(rec) == d.corpus
    on = CorpusConfig(val_by_source=True, knowledge=KnowledgeConfig(style="values"))
    assert on.fingerprint() != CorpusConfig().fingerprint()
    assert CorpusConfig.from_dict(on.to_dict()) == on


def test_values_knowledge_base_information_and_items():
    cfg = KnowledgeConfig(n_people=300, style="values", n_values=256, n_value_attributes=8)
    kb = KnowledgeBase(cfg, seed=0)
    assert kb.bits == 300 * 8 * 8.0
    assert len(set(kb.people)) == 300
    items = kb.eval_items(50, seed=0)
    for it in items:
        j = kb.attributes.index(it["attribute"])
        assert it["prompt"] == kb.value_prompt(it["person"], j)
        assert it["answer"] == f" {it['target']}|" and it["target"].startswith("v")
    rec = kb.value_records()[7]
    assert rec["prefix"] + "".join(rec["values"]) == kb.value_prompt(7, 8)


@pytest.fixture(scope="module")
def values_corpus(tmp_path_factory):
    cfg = CorpusConfig(
        train_tokens=12_000, val_tokens=2_000, vocab_size=300, w_knowledge=0.5,
        w_scripts=0.25, w_arithmetic=0.25,
        knowledge=KnowledgeConfig(n_people=40, style="values", n_values=32,
                                  n_value_attributes=4),
        n_eval_knowledge=20, n_eval_scripts=8, n_eval_arithmetic=8, n_train_tasks=8,
        tokenizer_sample_docs=300, val_by_source=True)
    return cfg, build_corpus(cfg, tmp_path_factory.mktemp("values") / "c")


def test_values_tokens_are_single_tokens_of_the_exported_tokenizer(values_corpus):
    from transformers import AutoTokenizer

    cfg, corpus = values_corpus
    tok = AutoTokenizer.from_pretrained(str(corpus / "tokenizer"))  # plain transformers
    kb = KnowledgeBase(cfg.knowledge, cfg.seed)
    for t in kb.dedicated_tokens():
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    rec = json.loads((corpus / "eval" / "knowledge_records.jsonl").read_text().splitlines()[0])
    ids = tok(rec["prefix"] + "".join(rec["values"]), add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 + 4  # first, last, ":", 4 values
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["vocab_size"] == len(tok) > 300
    assert meta["stats"]["knowledge_bits"] == 40 * 4 * 5.0
    # token shares follow the weights (token-calibrated for values-style knowledge)
    assert abs(meta["stats"]["source_token_share"]["knowledge"] - 0.5) < 0.15
    for s in ("knowledge", "scripts", "arithmetic"):
        assert meta["splits"][f"val_{s}"][0]["n_tokens"] == 2_000


def test_existing_corpus_is_byte_identical_with_the_option_off(tiny_corpus):
    from optimal_sparsity.data.presets import PRESETS

    meta = json.loads((tiny_corpus / "corpus.json").read_text())
    assert set(meta["splits"]) == {"train", "val"}
    assert meta["config"] == json.loads(json.dumps(PRESETS["tiny"].to_dict()))
    assert "val_by_source" not in meta["config"]
    assert not (tiny_corpus / "eval" / "knowledge_records.jsonl").exists()


def _model(cfg, corpus):
    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model.transformer import build_model

    tok = load_tokenizer(corpus / "tokenizer")
    mcfg = scaled_config(32, 2, 2, n_layers=1, vocab_size=len(tok), max_seq_len=64)
    return build_model(mcfg, seed=0), tok


def _oracle(tok, records, half: bool):
    """A model that knows every record: after a name and earlier values it predicts the
    next value (with probability 1/2 beside a decoy when ``half``)."""
    import torch

    nxt = {rec["prefix"] + "".join(rec["values"][:j]):
           tok.convert_tokens_to_ids(tok.tokenize(rec["values"][j])[0])
           for rec in records for j in range(len(rec["values"]))}

    class Oracle(torch.nn.Module):
        def forward(self, x):
            logits = torch.full((*x.shape, len(tok)), -1e9)
            for b, row in enumerate(x.tolist()):
                for t in range(len(row)):
                    key = tok.decode(row[:t + 1])
                    if key in nxt:
                        logits[b, t, nxt[key]] = 0.0
                        if half:
                            logits[b, t, (nxt[key] + 1) % len(tok)] = 0.0
            return type("Out", (), {"logits": logits})()

    return Oracle()


def test_bits_stored_is_chance_corrected_teacher_forced_nll(values_corpus):

    from optimal_sparsity.eval.knowledge_bits import knowledge_bits, load_records

    cfg, corpus = values_corpus
    model, tok = _model(cfg, corpus)
    records = load_records(corpus)
    r = knowledge_bits(model, tok, records, n_values=32)
    assert r.n_people == 40 and r.n_values == 4 and r.bits_total == 40 * 4 * 5.0
    # an untrained model over the whole vocabulary is worse than chance: ~nothing stored
    assert r.mean_value_nll_bits > 5.0 and r.bits_stored < 0.05 * r.bits_total

    # An oracle that puts 1/2 on each true value: NLL 1 bit, 4 of 5 bits stored per value.
    o = knowledge_bits(_oracle(tok, records, half=True), tok, records, n_values=32)
    assert math.isclose(o.mean_value_nll_bits, 1.0, rel_tol=1e-4)
    assert math.isclose(o.bits_stored, 40 * 4 * 4.0, rel_tol=1e-4)
    assert math.isclose(o.fraction, 0.8, rel_tol=1e-4)


def test_pretrain_loss_reports_ce_per_source(values_corpus):
    from optimal_sparsity.eval.pretrain_loss import pretrain_loss

    cfg, corpus = values_corpus
    model, _ = _model(cfg, corpus)
    r = pretrain_loss(model, corpus, 32, n_train=4, n_val=4, batch_size=4)
    assert set(r.val_by_source) == {"knowledge", "scripts", "arithmetic"}
    assert all(v > 0 for v in r.val_by_source.values())
    assert r.n_val_by_source == {"knowledge": 4, "scripts": 4, "arithmetic": 4}


def test_triviaqa_proxy_lm_eval_task_scores_values_exact_match(values_corpus):
    """The paper's metric on values-style knowledge: greedy generation through lm-eval stops
    at the value's "|", and exact match of the stripped text scores the value."""
    from optimal_sparsity.eval.harness import run_proxy_tasks
    from optimal_sparsity.eval.knowledge_bits import load_records
    from optimal_sparsity.eval.lm_adapter import MoELM

    cfg, corpus = values_corpus
    _, tok = _model(cfg, corpus)
    records = load_records(corpus)
    knows = run_proxy_tasks(MoELM(_oracle(tok, records, half=False), tok, batch_size=8),
                            corpus, ("triviaqa_proxy",), limit=6)
    assert knows.metrics["triviaqa_proxy"]["acc"] == 1.0
    wrong = [{**r, "values": r["values"][1:] + r["values"][:1]} for r in records]
    guesses = run_proxy_tasks(MoELM(_oracle(tok, wrong, half=False), tok, batch_size=8),
                              corpus, ("triviaqa_proxy",), limit=6)
    assert guesses.metrics["triviaqa_proxy"]["acc"] < 0.5


def test_knowledge_bits_tier_and_per_source_rows(values_corpus, tmp_path):
    from optimal_sparsity.eval.evaluate import EvalSettings, TierStatus, evaluate_checkpoint
    from optimal_sparsity.train.config import TrainConfig
    from optimal_sparsity.train.loop import Trainer
    from optimal_sparsity.train.state import list_checkpoints

    _, corpus = values_corpus
    cfg = TrainConfig.of_model("s-d32-E2-k2", corpus=str(corpus), steps=3, seq_len=32,
                      micro_batch=4, eval_sequences=4, keep_fractions=(),
                      model_overrides={"n_layers": 1}, threads=1)
    res = Trainer(cfg, tmp_path / "run", progress=False).run()
    ckpt = list_checkpoints(res.out / "checkpoints")[-1][1]
    settings = EvalSettings.smoke(tiers=("pretrain", "knowledge_bits"))
    statuses: list[TierStatus] = []
    rows = evaluate_checkpoint(ckpt, corpus, tmp_path / "results", settings,
                               statuses=statuses)
    by = {(r.task, r.metric): r for r in rows}
    kb = {m: by["knowledge_bits", m].value for m in
          ("bits_stored", "bits_fraction", "bits_per_param", "value_nll_bits")}
    assert 0 <= kb["bits_stored"] <= 800 and kb["value_nll_bits"] > 0
    assert kb["bits_per_param"] == pytest.approx(
        kb["bits_stored"] / by["knowledge_bits", "bits_stored"].total_params)
    assert by["knowledge_bits", "bits_stored"].n == 40 * 4
    assert by["knowledge_bits", "bits_stored"].extra["bits_total"] == 800
    for s in ("knowledge", "scripts", "arithmetic"):
        assert by["pretrain", f"val_loss_{s}"].extra["split"] == f"val_{s}"
    assert [s.status for s in statuses] == ["measured", "measured"]
    again: list[TierStatus] = []
    evaluate_checkpoint(ckpt, corpus, tmp_path / "results", settings, statuses=again)
    assert [s.status for s in again] == ["cached", "cached"]


def test_knowledge_bits_tier_skips_other_corpora(tiny_corpus, tmp_path):
    from optimal_sparsity.eval.evaluate import EvalSettings, TierStatus, evaluate_checkpoint
    from optimal_sparsity.train.config import TrainConfig
    from optimal_sparsity.train.loop import Trainer
    from optimal_sparsity.train.state import list_checkpoints

    cfg = TrainConfig.of_model("s-d32-E2-k2", corpus=str(tiny_corpus), steps=1, seq_len=32,
                      micro_batch=2, eval_sequences=2, keep_fractions=(),
                      model_overrides={"n_layers": 1}, threads=1)
    res = Trainer(cfg, tmp_path / "run", progress=False).run()
    ckpt = list_checkpoints(res.out / "checkpoints")[-1][1]
    statuses: list[TierStatus] = []
    rows = evaluate_checkpoint(ckpt, tiny_corpus, tmp_path / "results",
                               EvalSettings.smoke(tiers=("pretrain", "knowledge_bits")),
                               statuses=statuses)
    assert statuses[1].status == "skipped" and "values-style" in statuses[1].reason
    assert {r.metric for r in rows} == {"train_loss", "val_loss"}  # as before
