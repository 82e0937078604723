"""The GPU check: its plan fits 8 minutes, it refuses in one line on a CPU, and its report
and table come out of whatever the steps return (the GPU steps themselves need a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from optimal_sparsity import gpu_check as gc
from optimal_sparsity.cli import main


def test_plan_fits_eight_minutes_and_names_every_gpu_check(capsys):
    assert gc.estimate_s() <= gc.BUDGET_S == 480
    assert [s.name for s in gc.PLAN] == ["environment", "install", "megablocks_parity", "bench",
                                         "vllm_vs_hf", "pull_eval_vllm"]
    assert main(["gpu-check", "--plan"]) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[:3] == ["estimate", str(gc.estimate_s()), "s"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_refuses_in_one_line_without_a_gpu(tmp_path, capsys):
    assert main(["gpu-check", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == gc.NEEDS_GPU and "\n" not in err.strip()
    assert not (tmp_path / "r").exists()  # nothing was run or written


def test_report_and_table_from_the_steps(tmp_path):
    def ok(ctx):
        ctx.shared["x"] = 1
        return {"max_abs_diff": 2e-6, "tolerance": 1e-4, "passed": True}

    def skip(ctx):
        raise gc.StepSkipped("already installed")

    def fail(ctx):
        raise gc.StepFailed("max abs difference 0.3 > 0.0001")

    def crash(ctx):
        assert ctx.shared["x"] == 1  # steps share what they built
        raise RuntimeError("CUDA error: out of memory")

    plan = (gc.Step("a", "ok", 10, ok), gc.Step("b", "skip", 0, skip),
            gc.Step("c", "fail", 20, fail), gc.Step("d", "crash", 30, crash))
    report = gc.run_plan(plan, gc.Context(out_dir=tmp_path, work=tmp_path, log=lambda _: None))
    assert [s["status"] for s in report["steps"]] == ["passed", "skipped", "failed", "failed"]
    assert report["estimate_s"] == 60 and not report["passed"]
    assert "CUDA error" in report["steps"][3]["reason"]
    path = gc.write_report(report, tmp_path / "out")
    assert json.loads(path.read_text())["format"] == gc.REPORT_FORMAT
    t = gc.table(report)
    assert "| a | passed |" in t and "max abs diff 2e-06 (tol 0.0001)" in t
    assert "| total | FAILED |" in t


def test_nox_lists_the_gpu_session():
    out = subprocess.run([sys.executable, "-m", "nox", "-l"], capture_output=True, text=True,
                         timeout=120, cwd=gc.REPO)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("* gpu") or line.startswith("- gpu")
               for line in out.stdout.splitlines())
