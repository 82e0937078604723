"""Results parts carry an integrity record: a damaged part is never served as cached.

Three kinds of damage (a changed digit, a part cut at a line boundary, a byte that is not
UTF-8), each checked where a part is read: the table reader, the evaluation cache and the
self-consistency cache. A damaged part is treated as missing, with a one-line warning that
names the file, and the evaluation that owns it recomputes it.
"""

from __future__ import annotations

import json
import re

import pytest

from optimal_sparsity.results.table import (
    PARTS,
    RECORD_SUFFIX,
    Row,
    read_part,
    read_rows,
    write_part,
)


def changed_digit(path):
    text = path.read_text()
    m = re.search(r'"value": (\d)', text)
    digit = m.group(1)
    path.write_text(text[:m.start(1)] + str((int(digit) + 1) % 10) + text[m.end(1):])


def cut_at_line(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


def not_utf8(path):
    data = path.read_bytes()
    path.write_bytes(data[:5] + b"\xff" + data[5:])


DAMAGES = [changed_digit, cut_at_line, not_utf8]


def _rows(n=3):
    return [Row(run="r", model="m", step=1, task="t", metric=f"acc{i}", value=0.25 + i / 8)
            for i in range(n)]


def _one_warning(capsys, name):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert name in err and "treated as missing" in err and "Traceback" not in err
    return err


def test_a_part_reads_back_with_its_record(tmp_path):
    path = write_part(tmp_path, "p.jsonl", _rows())
    record = path.with_name(path.name + RECORD_SUFFIX).read_text().split()
    assert len(record[0]) == 64 and record[1] == "p.jsonl"  # sha256sum format
    assert read_part(tmp_path, "p.jsonl") == _rows() and read_rows(tmp_path) == _rows()


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_part_is_not_served(tmp_path, capsys, damage):
    write_part(tmp_path, "good.jsonl", _rows(1))
    path = write_part(tmp_path, "bad.jsonl", _rows())
    damage(path)
    assert read_rows(tmp_path) == _rows(1)  # the damaged part's rows are left out
    _one_warning(capsys, str(path))
    assert read_part(tmp_path, "bad.jsonl") is None
    _one_warning(capsys, "bad.jsonl")


def test_part_without_record_or_after_a_crash_before_it_is_not_served(tmp_path, capsys,
                                                                      monkeypatch):
    from optimal_sparsity.results import table

    for name in ("o.jsonl", "p.jsonl"):  # e.g. a table written before records existed
        path = write_part(tmp_path, name, _rows())
        path.with_name(path.name + RECORD_SUFFIX).unlink()
    assert read_part(tmp_path, "p.jsonl") is None
    assert "no integrity record" in _one_warning(capsys, "p.jsonl")
    assert read_rows(tmp_path) == []
    assert "and 1 more" in _one_warning(capsys, "o.jsonl")  # one line for all of them
    (tmp_path / PARTS / "o.jsonl").unlink()

    write_part(tmp_path, "p.jsonl", _rows())  # now a crash between the part and its record
    real = table.write_text

    def crash(where, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(table, "write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        write_part(tmp_path, "p.jsonl", _rows(2))
    monkeypatch.setattr(table, "write_text", real)
    assert read_part(tmp_path, "p.jsonl") is None  # new rows, old record: not served
    _one_warning(capsys, "p.jsonl")


@pytest.fixture(scope="module")
def checkpoint(tiny_corpus, tmp_path_factory):
    """A random tiny model with the tiny corpus's tokenizer (no training needed)."""
    from optimal_sparsity.checkpoint import save_checkpoint
    from optimal_sparsity.data.tokenizer import load_tokenizer
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.model import build_model

    tok = load_tokenizer(tiny_corpus / "tokenizer")
    cfg = scaled_config(32, 4, 2, n_layers=2, vocab_size=len(tok), max_seq_len=64)
    return save_checkpoint(tmp_path_factory.mktemp("parts-ckpt") / "ckpt",
                           build_model(cfg, seed=0), cfg,
                           tokenizer_dir=tiny_corpus / "tokenizer",
                           meta={"step": 3, "tokens": 100})


@pytest.mark.parametrize("damage", DAMAGES)
def test_evaluation_recomputes_a_damaged_part(checkpoint, tiny_corpus, tmp_path, capsys,
                                              damage):
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint

    settings = EvalSettings.smoke(tiers=("pretrain",), threads=1)
    first = evaluate_checkpoint(checkpoint, tiny_corpus, tmp_path, settings)
    (path,) = (tmp_path / PARTS).glob("*.jsonl")
    damage(path)
    capsys.readouterr()
    statuses = []
    again = evaluate_checkpoint(checkpoint, tiny_corpus, tmp_path, settings,
                                statuses=statuses)
    assert [s.status for s in statuses] == ["measured"]  # recomputed, not "cached"
    _one_warning(capsys, path.name)
    assert [(r.metric, r.value) for r in again] == [(r.metric, r.value) for r in first]
    assert [(r.metric, r.value) for r in read_rows(tmp_path)] == \
        [(r.metric, r.value) for r in first]  # the part is whole again


class _Constant:
    """A generator that answers every problem with the same text."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, sampling, n=1, seed=0):
        self.calls += 1
        return [[" #### 3"] * n]


@pytest.mark.parametrize("damage", DAMAGES)
def test_self_consistency_recomputes_a_damaged_part(checkpoint, tiny_corpus, tmp_path, capsys,
                                                    damage):
    from optimal_sparsity.eval.selfconsistency import SCSettings, self_consistency

    s = SCSettings(r_max=1, n_problems=2)
    first = self_consistency(checkpoint, tiny_corpus, s, results=tmp_path,
                             generator=_Constant())
    (path,) = (tmp_path / PARTS).glob("*.jsonl")
    damage(path)
    capsys.readouterr()
    gen = _Constant()
    again = self_consistency(checkpoint, tiny_corpus, s, results=tmp_path, generator=gen)
    assert not again.cached and gen.calls == 2 and again.metrics == first.metrics
    _one_warning(capsys, path.name)
    rows = read_rows(tmp_path)
    assert sorted(r.metric for r in rows) == sorted(first.metrics)
    assert json.loads(path.read_text().splitlines()[0])["value"] in first.metrics.values()
