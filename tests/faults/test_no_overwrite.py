"""`export`, `data` and `tokenize` never replace what is not their own earlier output of the
same kind; `--force` replaces only that (never a run or a checkpoint). A refusal is one line,
exit status 2, and nothing on disk changes."""

from __future__ import annotations

import shutil

import pytest

from optimal_sparsity.cli import main
from optimal_sparsity.train.state import list_checkpoints

from .conftest import snapshot


def refused(argv, root, capsys):
    before = snapshot(root)
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert snapshot(root) == before
    assert not list(root.rglob(".tmp-*"))
    return err


@pytest.fixture
def world(tiny_run, tiny_corpus, tmp_path):
    """A copy of the run (with its checkpoint) and of the corpus under one root."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    ckpt = list_checkpoints(run / "checkpoints")[-1][1]
    return tmp_path, run, ckpt, corpus


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_never_replaces_a_run_or_checkpoint(world, capsys, force):
    root, run, ckpt, corpus = world
    other = root / "other-ckpt"
    shutil.copytree(ckpt, other)
    assert "overlaps" in refused(["export", ckpt, run, *force], root, capsys)
    assert "overlaps" in refused(["export", ckpt, ckpt, *force], root, capsys)
    assert "holds a checkpoint" in refused(["export", ckpt, other, *force], root, capsys)
    assert "holds a corpus" in refused(["export", ckpt, corpus, *force], root, capsys)
    mine = root / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert "did not write" in refused(["export", ckpt, mine, *force], root, capsys)
    (root / "file").write_text("a regular file")
    assert "not a directory" in refused(["export", ckpt, root / "file", *force], root, capsys)


def test_export_force_replaces_only_an_earlier_export(world, capsys):
    root, _, ckpt, _ = world
    out = root / "hf"
    assert main(["export", str(ckpt), str(out)]) == 0
    (out / "stale").write_text("from before")
    assert "--force" in refused(["export", ckpt, out], root, capsys)
    assert main(["export", str(ckpt), str(out), "--force"]) == 0
    assert not (out / "stale").exists() and (out / "model.safetensors").is_file()
    assert not list(root.rglob(".tmp-*"))


def test_data_and_tokenize_never_replace_a_run_or_checkpoint(world, capsys, tmp_path):
    root, run, ckpt, corpus = world
    text = tmp_path / "in.txt"
    text.write_text("hello world\n")
    tok = corpus / "tokenizer"
    for out in (run, ckpt):
        for force in ([], ["--force"]):
            refused(["data", "--preset", "tiny", "--out", out, *force], root, capsys)
            refused(["tokenize", text, "--tokenizer", tok, "--out", out, *force], root, capsys)
    assert "--force" in refused(["data", "--preset", "tiny", "--out", corpus], root, capsys)


def test_tokenize_force_replaces_an_earlier_corpus(world, capsys, tmp_path):
    root, _, _, corpus = world
    text = tmp_path / "in.txt"
    text.write_text("hello world\nanother line\n")
    out = root / "tok"
    args = ["tokenize", str(text), "--tokenizer", str(corpus / "tokenizer"), "--out", str(out)]
    assert main(args) == 0
    assert "--force" in refused(args, root, capsys)
    assert main([*args, "--force"]) == 0
    assert not list(root.rglob(".tmp-*"))
