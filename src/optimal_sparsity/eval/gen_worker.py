"""A generation worker: one process holding one model, speaking JSON lines.

vLLM is a CUDA build that pins its own torch, so it lives in an environment of its own
(``OPTIMAL_SPARSITY_VLLM_PYTHON``; ``/opt/vllm/bin/python`` in the GPU image), never in the
project's. The evaluation talks to it through this worker (the client side is ``eval.gen_client``),
started as
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
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from optimal_sparsity.eval.gen_client import PROTOCOL, model_window, send


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
        send(stdout, {"protocol": PROTOCOL, "ready": False,
                       "error": f"{type(err).__name__}: {err}".splitlines()[0]})
        return 2
    send(stdout, {"protocol": PROTOCOL, "ready": True, "backend": args.backend,
                   "model": args.model, "max_model_len": window})
    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as err:
            send(stdout, {"id": None, "error": f"bad request line: {err}"})
            continue
        if req.get("op") == "close":
            break
        send(stdout, _answer(backend, req))
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


if __name__ == "__main__":
    raise SystemExit(main())
