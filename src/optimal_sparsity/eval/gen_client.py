"""The client side of the generation worker (``eval.gen_worker``, whose docstring holds the
protocol): where the vLLM environment is, and ``WorkerGenerator``, a ``Generator`` whose
model lives in a worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

PROTOCOL = 1
VLLM_PYTHON_ENV = "OPTIMAL_SPARSITY_VLLM_PYTHON"
DEFAULT_VLLM_PYTHON = "/opt/vllm/bin/python"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding optimal_sparsity/


def model_window(model_dir: str | Path) -> int:
    """``max_position_embeddings`` of an HF model directory."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
        return int(cfg["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{model_dir}: no readable max_position_embeddings in config.json "
                         f"({err})") from None


def vllm_python() -> str | None:
    """The Python of the vLLM environment, if there is one here."""
    path = os.environ.get(VLLM_PYTHON_ENV) or DEFAULT_VLLM_PYTHON
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def send(stream: TextIO, obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


class WorkerGenerator:
    """A ``Generator`` whose model lives in a worker process (``python`` runs it)."""

    def __init__(self, model_dir: str | Path, *, backend: str, python: str | None = None,
                 seed: int = 42, batch_size: int = 8, gpu_memory_utilization: float = 0.85,
                 stop: Sequence[str] = ()) -> None:
        from optimal_sparsity.errors import UserError

        self.python = python or sys.executable
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        cmd = [self.python, "-m", "optimal_sparsity.eval.gen_worker", "--backend", backend,
               "--model", str(Path(model_dir).resolve()), "--seed", str(seed),
               "--batch-size", str(batch_size),
               "--gpu-memory-utilization", str(gpu_memory_utilization)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, encoding="utf-8", env=env)
        except OSError as err:
            raise UserError(f"cannot start the {backend} worker with {self.python}: {err}"
                            ) from None
        self.stop = tuple(stop)
        self._next = 0
        hello = self._read()
        if not hello.get("ready"):
            self.proc.wait(timeout=60)
            raise UserError(f"the {backend} worker ({self.python}) did not start: "
                            f"{hello.get('error', hello)}")
        if hello.get("protocol") != PROTOCOL:
            self.close()
            raise UserError(f"the {backend} worker speaks protocol {hello.get('protocol')}, "
                            f"this client {PROTOCOL}")
        self.info = hello

    def _read(self) -> dict[str, Any]:
        from optimal_sparsity.errors import UserError

        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=60)
            raise UserError(f"the generation worker ({self.python}) exited with status {code} "
                            "(its stderr says why)")
        return json.loads(line)

    def generate(self, prompts: Sequence[str], sampling, n: int = 1,
                 seed: int = 0) -> list[list[str]]:
        from optimal_sparsity.errors import UserError

        self._next += 1
        req = {"id": self._next, "prompts": list(prompts), "n": n,
               "temperature": sampling.temperature, "top_p": sampling.top_p,
               "max_new_tokens": sampling.max_new_tokens, "seed": seed,
               "stop": list(self.stop)}
        assert self.proc.stdin is not None
        try:
            send(self.proc.stdin, req)
        except BrokenPipeError:
            self._read()  # raises with the exit status
        res = self._read()
        if res.get("id") != self._next or "error" in res:
            raise UserError(f"generation worker: {res.get('error', res)}")
        return res["completions"]

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                send(self.proc.stdin, {"op": "close"})
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> WorkerGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            self.close()
