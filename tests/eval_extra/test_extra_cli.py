"""The posttrain subcommands as a user runs them."""

from __future__ import annotations

import pytest
import torch

from optimal_sparsity.cli import main


def test_selfconsistency_command(tiny_lm_checkpoint, tiny_corpus, tmp_path, capsys):
    rc = main(["selfconsistency", str(tiny_lm_checkpoint), "--corpus", str(tiny_corpus),
               "--r-max", "1", "--problems", "2", "--max-new-tokens", "4",
               "--results", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].startswith("N\tmaj@N\tcov@N") and [x.split("\t")[0] for x in out[1:]] == \
        ["1", "2"]
    rc = main(["selfconsistency", str(tiny_lm_checkpoint), "--corpus", str(tiny_corpus),
               "--r-max", "1", "--problems", "2", "--max-new-tokens", "4",
               "--results", str(tmp_path)])
    assert rc == 0 and "(cached)" in capsys.readouterr().out


def test_paper_grpo_preset_needs_a_gpu(tiny_lm_checkpoint, tiny_corpus, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the paper preset is runnable")
    rc = main(["grpo", str(tiny_lm_checkpoint), "--corpus", str(tiny_corpus),
               "--out", str(tmp_path / "out"), "--preset", "paper"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "needs a CUDA GPU" in err
    assert not (tmp_path / "out").exists()


def test_code_eval_refuses_a_file_without_tests(tiny_lm_checkpoint, tmp_path, capsys):
    path = tmp_path / "mbppplus_test.json"
    path.write_text('[{"prompt": "Write a function.", "answer": "def f(): pass"}]')
    rc = main(["code-eval", str(tiny_lm_checkpoint), "--task", "mbpp", "--mbpp", str(path)])
    assert rc == 2 and "no test cases" in capsys.readouterr().err
