"""A generation worker: one process holding one model, speaking JSON lines.

vLLM is a CUDA build that pins its own torch, so it lives in an environment of its own
(``OPTIMAL_SPARSITY_VLLM_PYTHON``; ``/opt/vllm/bin/python`` in the GPU image), never in the
project's. The evaluation talks to it through this worker, started as
``PYTHON -m optimal_sparsity.eval.gen_worker --backend vllm --model DIR`` with this
package on ``PYTHONPATH``. The same worker serves the ``hf`` backend (HF ``generate``), which
is how the protocol is tested on a CPU.

Protocol 1: one JSON object per line, UTF-8, on the worker's stdin and stdout (whatever the
backend prints goes to stderr; stdout carries protocol lines only).

- worker, first line: ``{"protocol": 1, "ready": true, "backend": "vllm", "model": DIR,
  "max_model_len": N}``, where ``N`` is the model's window (``max_position_embeddings`` of
  its config.json: vLLM refuses a longer one); or ``{"protocol": 1, "ready": false,
  "error": MESSAGE}``, then exit status 2.
- request: ``{"id": 7, "prompts": [str, ...], "n": 1, "temperature": 0.6, "top_p": 0.95,
  "max_new_tokens": 64, "seed": 0, "stop": [str, ...]}`` (``temperature`` 0: greedy).
- answer: ``{"id": 7, "completions": [[str] * n, ...]}`` (one list per prompt, the text
  after the prompt, cut at the first stop string), or ``{"id": 7, "error": MESSAGE}``: the
  worker keeps serving.
- ``{"op": "close"}`` or end of input: the worker exits with status 0.

Seeding matches the in-process generators: prompt ``i`` of a request draws with seed
``seed + i``.
"""

from __future__ import annotations

import argparse
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


# The worker side ----------------------------------------------------------------------

class _HFBackend:
    def __init__(self, model_dir: str, batch_size: int) -> None:
        from optimal_sparsity.eval.generation import HFGenerator

        self.gen = HFGenerator(model_dir, batch_size=batch_size)

    def generate(self, prompts: list[str], sampling, n: int, seed: int,
                 stop: Sequence[str]) -> list[list[str]]:
        from optimal_sparsity.eval.generation import truncate_at

        outs = self.gen.generate(prompts, sampling, n=n, seed=seed)
        return [[truncate_at(t, stop) for t in o] for o in outs]


class _VLLMBackend:
    def __init__(self, model_dir: str, seed: int, max_model_len: int,
                 gpu_memory_utilization: float) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_dir, seed=seed, max_model_len=max_model_len,
                       trust_remote_code=False, gpu_memory_utilization=gpu_memory_utilization)

    def generate(self, prompts: list[str], sampling, n: int, seed: int,
                 stop: Sequence[str]) -> list[list[str]]:
        from optimal_sparsity.eval.generation import vllm_sampling_params

        out = []
        for i, p in enumerate(prompts):
            params = vllm_sampling_params(sampling, n, seed + i, stop)
            res = self.llm.generate([p], params, use_tqdm=False)[0]
            out.append([c.text for c in res.outputs])
        return out


def _send(stream: TextIO, obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def _answer(backend, req: dict[str, Any]) -> dict[str, Any]:
    from optimal_sparsity.eval.generation import Sampling

    rid = req.get("id")
    try:
        prompts = req["prompts"]
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        sampling = Sampling(temperature=float(req.get("temperature", 0.0)),
                            top_p=float(req.get("top_p", 1.0)),
                            max_new_tokens=int(req.get("max_new_tokens", 64)))
        completions = backend.generate(prompts, sampling, int(req.get("n", 1)),
                                       int(req.get("seed", 0)), tuple(req.get("stop") or ()))
    except Exception as err:  # every failure of one request is answered
        return {"id": rid, "error": f"{type(err).__name__}: {err}"}
    return {"id": rid, "completions": completions}


def serve(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    try:
        window = model_window(args.model)
        if args.backend == "vllm":
            backend: Any = _VLLMBackend(args.model, args.seed, window,
                                        args.gpu_memory_utilization)
        else:
            backend = _HFBackend(args.model, args.batch_size)
    except Exception as err:  # reported on the protocol, then exit 2
        _send(stdout, {"protocol": PROTOCOL, "ready": False,
                       "error": f"{type(err).__name__}: {err}".splitlines()[0]})
        return 2
    _send(stdout, {"protocol": PROTOCOL, "ready": True, "backend": args.backend,
                   "model": args.model, "max_model_len": window})
    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as err:
            _send(stdout, {"id": None, "error": f"bad request line: {err}"})
            continue
        if req.get("op") == "close":
            break
        _send(stdout, _answer(backend, req))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="JSON-lines generation worker (protocol "
                                             f"{PROTOCOL}; see the module docstring)")
    ap.add_argument("--backend", choices=("hf", "vllm"), required=True)
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--seed", type=int, default=42, help="vLLM engine seed")
    ap.add_argument("--batch-size", type=int, default=8, help="hf: prompts per batch")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    args = ap.parse_args(argv)
    # Protocol lines go to a private copy of stdout; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        return serve(args, sys.stdin, proto)
    finally:
        proto.close()


# The client side ----------------------------------------------------------------------

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
            _send(self.proc.stdin, req)
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
                _send(self.proc.stdin, {"op": "close"})
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


if __name__ == "__main__":
    raise SystemExit(main())
