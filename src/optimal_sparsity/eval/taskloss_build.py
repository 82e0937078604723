"""The authors' lm-eval task-loss inputs, rebuilt from the harness's task definitions.

The authors' task loss (docs/paper.md; their ``taskloss-eval``) scores JSON lists of
``{"prompt", "answer"}`` items. Four of their six inputs are lm-evaluation-harness prompts:
``prompt`` is the context lm-eval builds for a test document (its few-shot examples, drawn by
lm-eval's sampler with the paper's seed, then the document's question) and ``answer`` is the
document's target as lm-eval writes it after a few-shot question (GSM8K: the full chain of
thought ending in ``#### N``; TriviaQA: the first alias; HellaSwag: the gold ending), without
the target delimiter.

``build_items`` makes them with lm-eval's own task objects (the stock task YAML of the
installed harness, its sampler, ``fewshot_context``, ``doc_to_target``), loading the data set
from a verified pull of its ``checkpoints.lock`` entry (a snapshot of the hub repository, read
by ``datasets`` as the hub's copy would be). ``dumps`` writes the file byte for byte as the
authors' files are written (``json.dumps(indent=2, ensure_ascii=False)``, no final newline).

Rebuilt from GSM8K, ``gsm8k_4shot.json`` equals the authors' file byte for byte (a test
serves the GSM8K items recoverable from that file through the local hub). The other three
cannot be checked against the authors' files here (this artifact does not have them); their
sha256 goes into ``checkpoints.lock`` (``taskloss_inputs``) once built where the data is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimal_sparsity.errors import UserError
from optimal_sparsity.hub.taskloss_inputs import (
    BUILDS,
    SEED,
    TaskLossBuild,
    carried_hashes,
    find_build,
    harness_version,
)


def stock_yaml(yaml_path: str) -> Path:
    """The installed harness's task YAML ``yaml_path`` (relative to ``lm_eval/tasks/``)."""
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / yaml_path
    if not path.is_file():
        raise UserError(f"lm-eval {harness_version()} has no task file {yaml_path}")
    return path


def local_task_config(yaml_path: str, data_dir: str | Path, name: str,
                      cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The YAML of task ``name``: lm-eval's stock task ``yaml_path`` included as it is, reading
    its data set from ``data_dir`` (and caching its Arrow copy in ``cache_dir``)."""
    config: dict[str, Any] = {"include": str(stock_yaml(yaml_path)), "task": name,
                              "dataset_path": str(Path(data_dir).resolve())}
    if cache_dir is not None:
        config["dataset_kwargs"] = {"cache_dir": str(Path(cache_dir).resolve())}
    return config


def load_stock_task(yaml_path: str, data_dir: str | Path, cache_dir: str | Path | None = None,
                    *, what: str = ""):
    """lm-eval's stock task ``yaml_path`` reading its data set from ``data_dir`` (a pulled
    snapshot of the hub repository; ``datasets`` caches its Arrow copy in ``cache_dir``,
    default the ``datasets`` cache). The stock YAML is included as it is; only
    ``dataset_path`` (and the cache) change."""
    import tempfile

    import datasets
    import yaml
    from lm_eval.tasks import TaskManager, get_task_dict

    name = "local_" + Path(yaml_path).stem
    config = local_task_config(yaml_path, data_dir, name, cache_dir)
    with tempfile.TemporaryDirectory(prefix="lm-eval-task-") as tmp:
        Path(tmp, f"{name}.yaml").write_text(yaml.safe_dump(config))
        try:
            tasks = get_task_dict([name], TaskManager(include_path=tmp, include_defaults=False))
        except (OSError, ValueError, KeyError, datasets.exceptions.DatasetGenerationError) as err:
            first = str(err).splitlines()[0] if str(err) else repr(err)
            raise UserError(f"{what or yaml_path}: cannot load lm-eval task {yaml_path} from "
                            f"{data_dir}: {first}") from None
    return tasks[name]


def load_task(build: TaskLossBuild, data_dir: str | Path, cache_dir: str | Path | None = None):
    """lm-eval's stock task of ``build`` on the data set in ``data_dir``."""
    return load_stock_task(build.yaml, data_dir, cache_dir, what=build.file)


def fewshot_answer(task, doc: dict[str, Any]) -> str:
    """The document's target as lm-eval writes it after a few-shot question."""
    target = task.doc_to_target(doc)
    if task.config.doc_to_choice is not None and isinstance(target, int):
        return task.doc_to_choice(doc)[target]
    if isinstance(target, list):
        return target[0]
    return str(target)


def build_items(build: TaskLossBuild, data_dir: str | Path, *, limit: int | None = None,
                seed: int = SEED, cache_dir: str | Path | None = None) -> list[dict[str, str]]:
    """``{"prompt", "answer"}`` for every evaluation document, in the task's order."""
    task = load_task(build, data_dir, cache_dir)
    task.set_fewshot_seed(seed=seed)
    items = []
    for i, doc in enumerate(task.eval_docs):
        if limit is not None and i >= limit:
            break
        prompt = task.fewshot_context(doc, build.num_fewshot)
        items.append({"prompt": prompt, "answer": fewshot_answer(task, doc)})
    return items


def dumps(items: list[dict[str, str]]) -> str:
    """The authors' file layout."""
    return json.dumps(items, indent=2, ensure_ascii=False)


def build_file(build: TaskLossBuild, data_dir: str | Path, out_dir: str | Path, *,
               force: bool = False, cache_dir: str | Path | None = None,
               log: Callable[[str], None] = print) -> Path:
    """Build ``build.file`` into ``out_dir`` (atomic). An existing file with other content
    is replaced only with ``force``."""
    from optimal_sparsity.atomic import sha256_bytes, write_text

    text = dumps(build_items(build, data_dir, cache_dir=cache_dir))
    out = Path(out_dir) / build.file
    if out.exists() and not force and out.read_bytes() != text.encode("utf-8"):
        raise UserError(f"{out} exists with other content; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    log(f"{out}: {len(json.loads(text))} items, sha256 {sha256_bytes(text.encode('utf-8'))} "
        f"(lm-eval {harness_version()}, seed {SEED})")
    return out


def default_out_dir(hub_cache: str | Path | None = None) -> Path:
    """Built inputs live beside the pulled data sets: ``<hub cache>/taskloss/``."""
    from optimal_sparsity.hub.pull import default_cache_dir

    return Path(hub_cache or default_cache_dir()) / "taskloss"


def load_built_input(file: str, lock, out_dir: str | Path) -> list[tuple[str, str]]:
    """The ``(prompt, answer)`` pairs of a built input, after checking its sha256 against the
    lock (an input the lock has no hash for is refused: build it with ``--write-lock``)."""
    from optimal_sparsity.atomic import sha256_bytes
    from optimal_sparsity.errors import IntegrityError

    want = lock.find_input(file)
    path = Path(out_dir) / file
    if not want.built:
        raise UserError(f"{file}: {want.unresolved_reason}")
    if not path.is_file():
        raise UserError(f"{file} has not been built into {out_dir}: run `./reproduce "
                        f"taskloss-build {file.removesuffix('.json')}`")
    raw = path.read_bytes()
    if sha256_bytes(raw) != want.sha256:
        raise IntegrityError(f"{path}: sha256 {sha256_bytes(raw)} is not the lock's "
                             f"{want.sha256} (built with lm-eval {want.lm_eval})")
    return [(it["prompt"], it["answer"]) for it in json.loads(raw)]


def usable_inputs(lock, out_dir: str | Path, *, allow_unhashed: bool = False,
                  log: Callable[[str], None] = print) -> tuple[str, ...]:
    """``FILE:SHA256`` of each built input in ``out_dir`` whose hash the lock pins (or, with
    ``allow_unhashed``, that the lock has no hash for yet: logged as unpinned). Inputs this
    artifact carries (GSM8K 4-shot) are scored from the carried file instead."""
    from optimal_sparsity.atomic import sha256_file
    out = []
    for b in BUILDS.values():
        path = Path(out_dir) / b.file
        if b.file in carried_hashes() or not path.is_file():  # the carried copy is scored
            continue
        want, got = lock.find_input(b.file), sha256_file(path)
        if want.built and want.sha256 != got:
            log(f"{b.file}: not used: sha256 {got} is not the lock's {want.sha256}")
        elif not want.built and not allow_unhashed:
            log(f"{b.file}: not used: the lock has no hash for it ({want.unresolved_reason})")
        else:
            if not want.built:
                log(f"{b.file}: UNPINNED: the lock has no hash for it; used as built ({got})")
            out.append(f"{b.file}:{got}")
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m optimal_sparsity.eval.taskloss_build FILE DATA_DIR OUT_DIR``: one build in
    this interpreter's harness (how ``taskloss-build --harness`` runs lm-eval 0.4.7); the
    last stdout line is ``{"path", "sha256", "lm_eval"}``."""
    import argparse
    import sys

    from optimal_sparsity.atomic import sha256_file

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("file")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    try:
        out = build_file(find_build(args.file), args.data_dir, args.out_dir, force=args.force,
                         log=lambda m: print(m, file=sys.stderr))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"path": str(out), "sha256": sha256_file(out),
                      "lm_eval": harness_version()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
