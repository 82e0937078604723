"""The generation worker's JSON-lines protocol, on a CPU with the HF backend behind it: the
same completions as in-process HF ``generate``, the model's window as ``max_model_len``,
errors answered without killing the worker, a clean refusal when it cannot start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.gen_client import (
    PACKAGE_ROOT,
    VLLM_PYTHON_ENV,
    WorkerGenerator,
    model_window,
)
from optimal_sparsity.eval.generation import HFGenerator, Sampling, vllm_available

PROMPTS = ["Question: 2 + 3 = ?\nAnswer:", "Question: 7 - 4 = ?\nAnswer:"]


def test_worker_generates_what_hf_generates(tiny_hf_dir):
    local = HFGenerator(tiny_hf_dir, batch_size=8, stop=("\n",))
    greedy, sampled = Sampling(0.0, 1.0, 12), Sampling(0.6, 0.95, 12)
    with WorkerGenerator(tiny_hf_dir, backend="hf", stop=("\n",)) as worker:
        assert worker.info["max_model_len"] == model_window(tiny_hf_dir) == 256
        assert worker.generate(PROMPTS, greedy) == local.generate(PROMPTS, greedy)
        assert worker.generate(PROMPTS, sampled, n=3, seed=5) == \
            local.generate(PROMPTS, sampled, n=3, seed=5)
    assert worker.proc.returncode == 0


def _raw_worker(model_dir, *lines):
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    res = subprocess.run([sys.executable, "-m", "optimal_sparsity.eval.gen_worker",
                          "--backend", "hf", "--model", str(model_dir)],
                         input="".join(json.dumps(x) + "\n" if not isinstance(x, str) else x
                                       for x in lines),
                         capture_output=True, text=True, timeout=300, env=env)
    return res.returncode, [json.loads(x) for x in res.stdout.splitlines()]


def test_protocol_lines_bad_requests_and_close(tiny_hf_dir):
    code, out = _raw_worker(
        tiny_hf_dir, "not json\n", {"id": 1, "prompts": "one string"},
        {"id": 2, "prompts": PROMPTS[:1], "max_new_tokens": 3}, {"op": "close"},
        {"id": 3, "prompts": PROMPTS})
    assert code == 0
    hello, bad_line, bad_req, ok = out  # nothing after close; stdout holds protocol only
    assert hello == {"protocol": 1, "ready": True, "backend": "hf",
                     "model": str(tiny_hf_dir), "max_model_len": 256}
    assert bad_line["id"] is None and "bad request line" in bad_line["error"]
    assert bad_req["id"] == 1 and "list of strings" in bad_req["error"]
    assert ok["id"] == 2 and len(ok["completions"]) == 1 and len(ok["completions"][0]) == 1


def test_a_worker_that_cannot_start_says_why(tmp_path):
    code, out = _raw_worker(tmp_path)
    assert code == 2 and out[0]["ready"] is False and "max_position_embeddings" in out[0]["error"]
    with pytest.raises(UserError, match=r"did not start: .*max_position_embeddings"):
        WorkerGenerator(tmp_path, backend="hf")
    with pytest.raises(UserError, match="cannot start the vllm worker"):
        WorkerGenerator(tmp_path, backend="vllm", python=str(tmp_path / "no-python"))


def test_vllm_runs_in_its_own_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(tmp_path / "missing" / "python"))
    ok, why = vllm_available()
    assert not ok and VLLM_PYTHON_ENV in why
