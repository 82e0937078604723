"""One run identity for a run directory and its results rows: the training config with
the corpus named by fingerprint, so moving ``$OPTIMAL_SPARSITY_HOME`` (corpora and runs
with it) keeps every run trained and every row matched."""

from __future__ import annotations

import dataclasses

from optimal_sparsity.train.config import TrainConfig


def test_run_identity_names_the_corpus_by_content_not_path():
    a = TrainConfig.of_model("s-d32-E4-k2", "/old/home/corpora/abc", vocab_size=384, steps=4)
    b = a.replace(corpus="/new/home/corpora/abc")
    assert a.run_id("abc") == b.run_id("abc")  # moved: the same run
    assert a.run_id("abc") != a.run_id("abd")  # another corpus: another run
    assert a.run_id("abc") != a.replace(seed=1).run_id("abc")
    assert a.run_id(None) != b.run_id(None)  # no fingerprint recorded: the path stands in


def test_run_identity_survives_moving_home(tmp_path, monkeypatch):
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.results.table import read_rows
    from optimal_sparsity.study.design import get_design
    from optimal_sparsity.study.pipeline import rows_of
    from optimal_sparsity.study.sweep import plan_runs, train_all
    from optimal_sparsity.train.loop import Trainer

    tiny = get_design("tiny")
    design = dataclasses.replace(tiny, points=tiny.points[:1],
                                 train={**tiny.train, "train_tokens": 8 * 8 * 64, "threads": 1})
    table = tmp_path / "results" / "tiny" / "table"
    settings = EvalSettings.smoke(tiers=("pretrain",), threads=1)

    monkeypatch.setenv("OPTIMAL_SPARSITY_HOME", str(tmp_path / "home-a"))
    (run,) = plan_runs(design)
    train_all([run], progress=False, log=lambda _m: None)
    final = run.checkpoints()[-1][1]
    rows = evaluate_checkpoint(final, run.config.corpus, table, settings)
    assert rows and {r.run for r in rows} == {run.run_id} == {run.run_dir.name}

    (tmp_path / "home-a").rename(tmp_path / "home-b")
    monkeypatch.setenv("OPTIMAL_SPARSITY_HOME", str(tmp_path / "home-b"))
    (moved,) = plan_runs(design)
    assert str(tmp_path / "home-b") in moved.config.corpus  # the config names the new path
    assert moved.run_id == run.run_id and moved.finished  # nothing to train again
    assert rows_of([moved], table) == read_rows(table) == rows  # every row still matched
    statuses = []
    again = evaluate_checkpoint(moved.checkpoints()[-1][1], moved.config.corpus, table,
                                settings, statuses=statuses)
    assert [s.status for s in statuses] == ["cached"] and again == rows
    # the trainer resumes the moved run in place instead of calling it another run
    assert Trainer(moved.config, moved.run_dir, progress=False).run().status == "finished"
    # and `pin` (which keeps only the design's runs) still finds the rows
    import json

    import optimal_sparsity.study.design as designs
    from optimal_sparsity.cli import main

    monkeypatch.setattr(designs, "get_design", lambda scale: design)
    monkeypatch.setenv("OPTIMAL_SPARSITY_REFERENCES", str(tmp_path / "refs"))
    (table.parent / "run.json").write_text(json.dumps(
        {"versions": {}, "commit": "c", "hardware": "h", "time": "t", "command": "./reproduce",
         "wall_s": 1.0}))
    assert main(["pin", "--scale", "tiny", "--results", str(tmp_path / "results")]) == 0
    pinned = json.loads((tmp_path / "refs" / "scaled" / "tiny.json").read_text())
    assert {v["metric"] for v in pinned["values"]} == {"train_loss", "val_loss"}
    # a table none of whose rows this version's run ids name (e.g. an earlier version's):
    # refused in one line, the pin left as it was
    other = tmp_path / "other" / "tiny"
    (other / "table").mkdir(parents=True)
    (other / "run.json").write_text((table.parent / "run.json").read_text())
    before = (tmp_path / "refs" / "scaled" / "tiny.json").read_bytes()
    assert main(["pin", "--scale", "tiny", "--results", str(tmp_path / "other")]) == 2
    assert (tmp_path / "refs" / "scaled" / "tiny.json").read_bytes() == before


def test_train_config_holds_the_resolved_model(tiny_corpus, tmp_path):
    """The trainer trains the config's own ModelConfig (no name parsed at train time); a
    model resolved for another vocabulary is refused in one line; a config of the earlier
    format (model named) is named as such, and its checkpoints keep their run identity."""
    import json

    import pytest

    from optimal_sparsity.data.shards import read_corpus_meta
    from optimal_sparsity.errors import UserError
    from optimal_sparsity.train.config import run_id_of
    from optimal_sparsity.train.loop import Trainer

    cfg = TrainConfig.of_model("s-d32-E4-k2", tiny_corpus, steps=1, seq_len=32,
                               model_overrides={"n_layers": 1})
    vocab = read_corpus_meta(tiny_corpus)["vocab_size"]
    assert (cfg.model.n_layers, cfg.model.vocab_size, cfg.model.max_seq_len) == (1, vocab, 32)
    trainer = Trainer(cfg, tmp_path / "a", progress=False)
    assert trainer.model_cfg is cfg.model
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    other = cfg.replace(model=cfg.model.replace(vocab_size=vocab + 1))
    with pytest.raises(UserError, match="vocabulary") as err:
        Trainer(other, tmp_path / "b", progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="seq_len 64 exceeds"):
        cfg.replace(seq_len=64)
    old = {**cfg.to_dict(), "model": "s-d32-E4-k2", "model_overrides": {"n_layers": 1}}
    with pytest.raises(UserError, match="earlier version"):
        TrainConfig.from_dict(old)
    # a checkpoint written in the earlier format keeps the identity it had (the hash of its
    # training config as stored, corpus named by fingerprint)
    import hashlib
    import shutil

    from optimal_sparsity.eval.rows import checkpoint_identity
    from optimal_sparsity.train.state import list_checkpoints

    trainer.run()
    ckpt = tmp_path / "old-ckpt"
    shutil.copytree(list_checkpoints(tmp_path / "a" / "checkpoints")[-1][1], ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["train"] == cfg.to_dict()
    assert checkpoint_identity(ckpt)["run"] == cfg.run_id(meta["corpus_fingerprint"])
    meta["train"] = old
    (ckpt / "config.json").write_text(json.dumps(meta))
    was = hashlib.sha256(json.dumps({**old, "corpus": meta["corpus_fingerprint"]},
                                    sort_keys=True).encode()).hexdigest()[:16]
    assert checkpoint_identity(ckpt)["run"] == was == run_id_of(old, meta["corpus_fingerprint"])
