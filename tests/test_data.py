"""The proxy corpus: determinism, no leakage, correct answers, shards, tokenizer."""

import json
import re

import numpy as np
import pytest

from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.data.arithmetic import (
    ArithmeticConfig,
    ArithmeticTask,
    parse_final,
    parse_steps,
    step_accuracy,
)
from optimal_sparsity.data.corpus import CorpusConfig, build_corpus, tokenize_files
from optimal_sparsity.data.presets import PRESETS
from optimal_sparsity.data.shards import BatchSampler, open_split
from optimal_sparsity.data.tokenizer import load_tokenizer
from optimal_sparsity.errors import IntegrityError, UserError


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def train_text(corpus):
    tok = load_tokenizer(corpus / "tokenizer")
    return tok.decode(np.asarray(open_split(corpus, "train")).tolist())


def test_same_seed_same_bytes(tiny_corpus, tmp_path):
    again = build_corpus(PRESETS["tiny"], tmp_path / "again")
    assert (again / "MANIFEST.json").read_bytes() == (tiny_corpus / "MANIFEST.json").read_bytes()
    other = build_corpus(CorpusConfig.from_dict({**PRESETS["tiny"].to_dict(), "seed": 1}),
                         tmp_path / "other")
    assert sha256_file(other / "train.bin") != sha256_file(tiny_corpus / "train.bin")


def test_no_reasoning_eval_item_in_training_text(tiny_corpus):
    text = train_text(tiny_corpus)
    for task in ("gsm8k_proxy", "gsmplus_proxy"):
        for it in read_jsonl(tiny_corpus / "eval" / f"{task}.jsonl"):
            assert it["question"] not in text, it["id"]
    # the training text does contain arithmetic problems in the same format
    assert text.count("#### ") > 100


def test_held_out_compositions_are_excluded_from_sampling():
    import random

    task = ArithmeticTask(ArithmeticConfig(), seed=3)
    held_out = task.eval_problems(300)
    held = {p.composition for p in held_out + task.perturb(held_out)}
    rng = random.Random(0)
    drawn = {task.sample(rng).composition for _ in range(20_000)}
    assert not held & drawn


def test_memorization_eval_facts_are_in_training_text(tiny_corpus):
    text = train_text(tiny_corpus)
    meta = json.loads((tiny_corpus / "corpus.json").read_text())
    items = read_jsonl(tiny_corpus / "eval" / "triviaqa_proxy.jsonl")
    found = sum((it["prompt"] + it["answer"]) in text for it in items)
    # Q/A form of the fact appears verbatim unless the person was only seen in biographies
    assert found >= 0.5 * len(items)
    assert meta["stats"]["triviaqa_eval_facts_unseen"] <= 0.05 * len(items)
    for it in read_jsonl(tiny_corpus / "eval" / "hellaswag_proxy.jsonl"):
        assert len(set(it["endings"])) == 4 and 0 <= it["label"] < 4
        assert it["endings"][it["label"]] == it["answer"]


_SENT = [
    (re.compile(r"^(\w+) has (\d+) (\w+)\.$"), None),
    (re.compile(r"^\w+ buys (\d+) more \w+\.$"), "+"),
    (re.compile(r"^\w+ gives \w+ (\d+) \w+\.$"), "+"),
    (re.compile(r"^\w+ finds (\d+) \w+\.$"), "+"),
    (re.compile(r"^\w+ gives (\d+) \w+ to \w+\.$"), "-"),
    (re.compile(r"^\w+ loses (\d+) \w+\.$"), "-"),
    (re.compile(r"^\w+ sells (\d+) \w+\.$"), "-"),
    (re.compile(r"^\w+ doubles the number of \w+\.$"), "*2"),
    (re.compile(r"^\w+ triples the number of \w+\.$"), "*3"),
]


def solve(question: str) -> int:
    """An independent solver: read the sentences, track the actor's count."""
    sents = re.findall(r"[^.?]+[.?]", question)
    actor, value, items = None, None, None
    for s in (x.strip() for x in sents[:-1]):
        m = _SENT[0][0].match(s)
        if m and actor is None:
            actor, value, items = m.group(1), int(m.group(2)), m.group(3)
            continue
        if not s.startswith(actor) and not re.match(rf"^\w+ gives {actor} ", s):
            continue  # a distractor about someone else
        for pat, op in _SENT[1:]:
            if m := pat.match(s):
                if op == "+":
                    value += int(m.group(1))
                elif op == "-":
                    value -= int(m.group(1))
                else:
                    value *= int(op[1])
                break
        else:
            raise AssertionError(f"unparsed sentence {s!r}")
    assert sents[-1].strip() == f"How many {items} does {actor} have now?"
    return value


def test_every_answer_recomputes(tiny_corpus):
    n = 0
    for task in ("gsm8k_proxy", "gsmplus_proxy"):
        for it in read_jsonl(tiny_corpus / "eval" / f"{task}.jsonl"):
            assert solve(it["question"]) == int(it["target"]), it["id"]
            assert parse_final(it["answer"]) == int(it["target"])
            assert step_accuracy(it["answer"], it["steps"]) == 1.0
            for a, op, b, c in (parse_steps(eq)[0] for eq in it["steps"]):
                assert c == (a + b if op == "+" else a - b if op == "-" else a * b)
            n += 1
    train = read_jsonl(tiny_corpus / "train_tasks" / "gsm8k_proxy_train.jsonl")
    for it in train:
        assert parse_final(it["answer"]) == int(it["target"])
    assert n == 400
    plus = read_jsonl(tiny_corpus / "train_tasks" / "gsmplus_proxy_train.jsonl")
    held_out = {it["question"] for t in ("gsm8k_proxy", "gsmplus_proxy")
                for it in read_jsonl(tiny_corpus / "eval" / f"{t}.jsonl")}
    assert len(plus) > 100
    for it in plus:  # the second GRPO prompt set: correct, and never a held-out problem
        assert solve(it["question"]) == int(it["target"])
        assert it["question"] not in held_out


def test_gsmplus_variants(tiny_corpus):
    items = read_jsonl(tiny_corpus / "eval" / "gsmplus_proxy.jsonl")
    kinds = {it["perturbation"] for it in items}
    assert kinds == {"distractor", "numbers", "extra_step"}
    base = read_jsonl(tiny_corpus / "eval" / "gsm8k_proxy.jsonl")
    for orig, d, c, e in zip(base, items[0::3], items[1::3], items[2::3], strict=True):
        assert d["target"] == orig["target"] and d["question"] != orig["question"]
        assert c["steps"] != orig["steps"]
        assert e["n_steps"] == orig["n_steps"] + 1


def test_tokenizer_roundtrip_and_hf_format(tiny_corpus):
    tok = load_tokenizer(tiny_corpus / "tokenizer")
    text = "Question: Where was Foo Bar born?\nAnswer: 12 + 3 = 15. #### 15"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token == "<|endoftext|>" and len(tok) == 384


def test_shards_verified(tiny_corpus, tmp_path):
    import shutil

    meta = json.loads((tiny_corpus / "corpus.json").read_text())
    assert meta["splits"]["train"][0]["n_tokens"] == 300_000
    assert meta["stats"]["unigram_entropy_nats"] > 3.0
    bad = tmp_path / "bad"
    shutil.copytree(tiny_corpus, bad)
    data = bytearray((bad / "val.bin").read_bytes())
    data[100] ^= 0xFF
    (bad / "val.bin").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"val\.bin: sha256 .* does not match"):
        open_split(bad, "val")
    (bad / "val.bin").write_bytes(bytes(data[:-2]))
    with pytest.raises(IntegrityError, match=r"has .* bytes, manifest says"):
        open_split(bad, "val")


def test_sampler_is_a_pure_function_of_position(tiny_corpus):
    toks = open_split(tiny_corpus, "train")
    a, b = BatchSampler(toks, 64, seed=5), BatchSampler(toks, 64, seed=5)
    x1, y1 = a.batch(10, 4)
    b.batch(0, 50)  # touching other positions changes nothing
    x2, y2 = b.batch(10, 4)
    assert (x1 == x2).all() and (y1 == y2).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()
    n = a.n_chunks
    assert not (a.batch(0, 1)[0] == a.batch(n, 1)[0]).all()  # a new epoch reshuffles


def test_tokenize_local_files(tiny_corpus, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document number {i}."}) + "\n"
                           for i in range(200)))
    out = tokenize_files([src], tiny_corpus / "tokenizer", tmp_path / "tok", val_fraction=0.1)
    train, val = open_split(out, "train"), open_split(out, "val")
    assert len(train) > len(val) > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(UserError, match="no 'text' field"):
        tokenize_files([bad], tiny_corpus / "tokenizer", tmp_path / "tok2")
