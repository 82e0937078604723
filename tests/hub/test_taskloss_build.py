"""The task-loss builder: lm-eval's GSM8K 4-shot prompts, from a data set pulled through the
lock, equal the authors' ``gsm8k_4shot.json`` byte for byte."""

from __future__ import annotations

import gzip

import pytest
from gsm8k_recovered import recover, write_repo

from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.errors import IntegrityError, UserError
from optimal_sparsity.eval.taskloss_build import build_file, build_items, stock_yaml
from optimal_sparsity.eval.taskloss_data import TASKLOSS_DIR, _registry, load_authors_inputs
from optimal_sparsity.hub.lock import Lock
from optimal_sparsity.hub.pull import pull, pulled_dir
from optimal_sparsity.hub.skeleton import DATASETS, dataset_entry
from optimal_sparsity.hub.taskloss_inputs import BUILDS, find_build
from optimal_sparsity.hub.update import update_lock
from optimal_sparsity.testing.local_hub import LocalHub, client_env

GSM8K = next(s for s in DATASETS if s.name == "gsm8k")


@pytest.fixture(scope="module")
def gsm8k_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsm8k-hub")
    train, test = recover(load_authors_inputs("gsm8k"))
    write_repo(root / "datasets" / GSM8K.repo_id, train, test)
    return root


def test_only_the_papers_seed_fits_the_authors_file():
    pairs = load_authors_inputs("gsm8k")
    with pytest.raises(ValueError, match="does not fit"):
        recover(pairs, seed=1234)  # lm-eval's default fewshot seed


def test_gsm8k_4shot_rebuilt_byte_for_byte(gsm8k_hub, tmp_path):
    with LocalHub(gsm8k_hub) as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        report = update_lock(Lock(models=(), datasets=(dataset_entry(GSM8K),)), ["gsm8k"],
                             endpoint=endpoint, token=False, log=lambda _: None)
        assert report.resolved == ("gsm8k",), report.failed
        pull(report.lock.find("gsm8k"), tmp_path / "cache", token=False, log=lambda _: None)
        data = pulled_dir("gsm8k", report.lock, tmp_path / "cache")
    logs: list[str] = []
    out = build_file(BUILDS["gsm8k_4shot.json"], data, tmp_path / "built",
                     cache_dir=tmp_path / "ds-cache", log=logs.append)
    authors = gzip.decompress((TASKLOSS_DIR / "gsm8k_4shot.json.gz").read_bytes())
    assert out.read_bytes() == authors
    assert sha256_file(out) == _registry()["gsm8k_4shot.json"]["sha256"]
    assert "1319 items" in logs[0] and "seed 42" in logs[0]
    # a file with other content is not overwritten
    out.write_text("[]")
    with pytest.raises(UserError, match="exists with other content"):
        build_file(BUILDS["gsm8k_4shot.json"], data, tmp_path / "built",
                   cache_dir=tmp_path / "ds-cache")
    assert out.read_text() == "[]"


def test_every_build_names_a_locked_data_set_and_a_stock_lm_eval_task():
    import yaml

    locked = {s.name: s for s in DATASETS}
    for b in BUILDS.values():
        assert b.dataset in locked and locked[b.dataset].shots == b.num_fewshot, b
        text = stock_yaml(b.yaml).read_text()
        assert yaml.safe_load(text.replace("!function", "")).get("task") == b.task, b
    assert find_build("hellaswag").file == "hellaswag_4shot.json"
    with pytest.raises(UserError, match="no task-loss input"):
        find_build("mmlu")


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_the_other_builds_follow_their_stock_prompts(tmp_path):
    """TriviaQA, HellaSwag and GSM-Plus on a few made-up rows (their authors' files are not
    in this artifact: here only the prompt layout and the answer field are checked)."""
    trivia = tmp_path / "trivia"
    for split in ("train", "validation"):
        _parquet(trivia / "rc.nocontext" / f"{split}-00000-of-00001.parquet",
                 [{"question": f"{split} q{i}", "answer": {"aliases": [f"a{i}", f"b{i}"],
                                                           "value": f"A{i}"}}
                  for i in range(6)])
    (trivia / "README.md").write_text(
        "---\nconfigs:\n- config_name: rc.nocontext\n  data_files:\n  - split: train\n"
        "    path: rc.nocontext/train-*\n  - split: validation\n"
        "    path: rc.nocontext/validation-*\n---\n")
    items = build_items(find_build("triviaqa"), trivia, cache_dir=tmp_path / "c")
    assert len(items) == 6 and items[2]["answer"] == "a2"
    assert items[2]["prompt"].endswith("\n\nQuestion: validation q2?\nAnswer:")
    assert items[2]["prompt"].count("Question: train q") == 4

    hs = tmp_path / "hellaswag"
    for split in ("train", "validation"):
        _parquet(hs / "data" / f"{split}-00000-of-00001.parquet",
                 [{"activity_label": "Cooking", "ctx_a": f"{split} {i} a.", "ctx_b": "then",
                   "endings": [f"e{j} [title] x" for j in range(4)], "label": str(i % 4)}
                  for i in range(6)])
    items = build_items(find_build("hellaswag"), hs, cache_dir=tmp_path / "c")
    assert items[1]["answer"] == "e1. x"  # lm-eval's preprocessing of the gold ending
    assert items[1]["prompt"].endswith("Cooking: validation 1 a. Then")
    assert items[1]["prompt"].count("Cooking: train") == 4

    gp = tmp_path / "gsm_plus"
    _parquet(gp / "data" / "test-00000-of-00001.parquet",
             [{"question": f"q{i}", "solution": f"s{i}\n#### {i}"} for i in range(8)])
    items = build_items(find_build("gsm_plus"), gp, cache_dir=tmp_path / "c")
    assert items[3]["answer"] == "s3\n#### 3"
    shots = items[3]["prompt"].split("\n\n")
    assert len(shots) == 6 and shots[-1] == "Question: q3\nAnswer:"
    assert "Question: q3\n" not in "\n\n".join(shots[:-1])  # the item is not its own shot


def test_cli_builds_from_a_pull_and_records_the_hash(tmp_path, capsys, tiny_corpus):
    from optimal_sparsity.cli import main
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.eval.taskloss_build import load_built_input, usable_inputs
    from optimal_sparsity.grid import scaled_config
    from optimal_sparsity.hub.lock import load_lock
    from optimal_sparsity.hub.skeleton import built_inputs
    from optimal_sparsity.testing.local_hub import write_model_repo

    spec = next(s for s in DATASETS if s.name == "gsm_plus")
    root = tmp_path / "hub"
    _parquet(root / "datasets" / spec.repo_id / "data" / "test-00000-of-00001.parquet",
             [{"question": f"q{i}", "solution": f"s{i}\n#### {i}"} for i in range(8)])
    built = next(b for b in built_inputs() if b.file == "gsm_plus_5shot_cot.json")
    assert not built.built and "taskloss-build gsm_plus_5shot_cot --write-lock" in \
        built.unresolved_reason
    lock_file, cache = tmp_path / "checkpoints.lock", tmp_path / "cache"
    args = ["taskloss-build", "gsm_plus_5shot_cot", "--lock", str(lock_file),
            "--cache-dir", str(cache)]
    with LocalHub(root) as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        lock = Lock(models=(), datasets=(dataset_entry(spec),), taskloss_inputs=(built,))
        lock = update_lock(lock, ["gsm_plus"], endpoint=endpoint, token=False,
                           log=lambda _: None).lock
        lock.save(lock_file)
        assert main(args) == 2  # not pulled yet: one line, no traceback
        assert "has not been pulled" in capsys.readouterr().err
        pull(lock.find("gsm_plus"), cache, token=False, log=lambda _: None)
    assert main([*args, "--write-lock"]) == 0
    out = cache / "taskloss" / "gsm_plus_5shot_cot.json"
    assert capsys.readouterr().out.strip() == str(out)
    rec = load_lock(lock_file).find_input("gsm_plus_5shot_cot.json")
    assert (rec.sha256, rec.size) == (sha256_file(out), out.stat().st_size)
    assert rec.lm_eval and rec.unresolved_reason is None
    pairs = load_built_input("gsm_plus_5shot_cot.json", load_lock(lock_file), out.parent)
    assert len(pairs) == 8 and pairs[0][1] == "s0\n#### 0"
    assert main(args) == 0 and "matches checkpoints.lock" in capsys.readouterr().err

    # the paper_task_loss tier scores it beside the carried inputs
    usable = usable_inputs(load_lock(lock_file), out.parent, log=print)
    assert usable == (f"gsm_plus_5shot_cot.json:{rec.sha256}",)
    cfg = scaled_config(32, 4, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
    model = write_model_repo(tmp_path / "m", "test-org/optimal-sparsity-math-d32-E4-k2", cfg,
                             tokenizer_dir=tiny_corpus / "tokenizer")
    logs: list[str] = []
    settings = EvalSettings(tiers=("paper_task_loss",), limit=2, paper_inputs=usable,
                            paper_inputs_dir=str(out.parent))
    rows = evaluate_checkpoint(model, None, tmp_path / "table", settings, log=logs.append)
    scored = {r.task: r.extra["inputs"] for r in rows if r.metric == "task_loss"}
    assert scored == {"gsm8k": "gsm8k_4shot.json", "humaneval": "humanevalplus_test.json",
                      "mbpp": "mbppplus_test.json", "gsm_plus": "gsm_plus_5shot_cot.json"}
    assert any("not scored" in m and "triviaqa_4shot.json" in m for m in logs)
    out.write_text(out.read_text().replace("s0", "s9"))
    with pytest.raises(IntegrityError, match="is not the lock's"):
        load_built_input("gsm_plus_5shot_cot.json", load_lock(lock_file), out.parent)
    assert main(["taskloss-build", "mmlu", "--lock", str(lock_file)]) == 2


def test_gsm8k_4shot_rebuilt_with_the_authors_harness(gsm8k_hub, tmp_path, harness_env):
    """The same byte-for-byte rebuild with lm-eval 0.4.7, the authors' harness (its
    environment built on first use; skipped only without PyPI)."""
    harness_env()
    import json

    from optimal_sparsity.eval.harness_env import run_in_harness

    data = gsm8k_hub / "datasets" / GSM8K.repo_id
    res = run_in_harness(["-m", "optimal_sparsity.eval.taskloss_build", "gsm8k_4shot.json",
                          str(data), str(tmp_path / "out")])
    assert res.returncode == 0, res.stderr[-2000:]
    done = json.loads(res.stdout.strip().splitlines()[-1])
    assert done["lm_eval"] == "0.4.7"
    assert done["sha256"] == _registry()["gsm8k_4shot.json"]["sha256"]


def _other_sets(root):
    """TriviaQA, HellaSwag and GSM-Plus layouts with 40 made-up rows each."""
    trivia, hs, gp = root / "trivia", root / "hellaswag", root / "gsm_plus"
    for split in ("train", "validation"):
        _parquet(trivia / "rc.nocontext" / f"{split}-00000-of-00001.parquet",
                 [{"question": f"{split} q{i}", "answer": {"aliases": [f"a{i}"], "value": "A"}}
                  for i in range(40)])
        _parquet(hs / "data" / f"{split}-00000-of-00001.parquet",
                 [{"activity_label": "Cooking", "ctx_a": f"{split} {i} a.", "ctx_b": "then",
                   "endings": [f"e{j}" for j in range(4)], "label": str(i % 4)}
                  for i in range(40)])
    (trivia / "README.md").write_text(
        "---\nconfigs:\n- config_name: rc.nocontext\n  data_files:\n  - split: train\n"
        "    path: rc.nocontext/train-*\n  - split: validation\n"
        "    path: rc.nocontext/validation-*\n---\n")
    _parquet(gp / "data" / "test-00000-of-00001.parquet",
             [{"question": f"q{i}", "solution": f"s{i}\n#### {i}"} for i in range(40)])
    return {"triviaqa": trivia, "hellaswag": hs, "gsm_plus": gp}


def test_the_other_builds_are_the_same_under_the_authors_harness(tmp_path, harness_env):
    """lm-eval 0.4.7 and the project's 0.4.13 build the same TriviaQA, HellaSwag and GSM-Plus
    prompts (40 items each, shots drawn by each version's own sampler)."""
    harness_env()
    import json

    from optimal_sparsity.eval.harness_env import run_in_harness

    sets = _other_sets(tmp_path)
    ours = {n: build_items(find_build(n), d, cache_dir=tmp_path / "c") for n, d in sets.items()}
    script = ("import json, sys; from optimal_sparsity.eval.taskloss_build import build_items, "
              "find_build; sets = json.loads(sys.argv[1]); print(json.dumps({n: build_items("
              "find_build(n), d, cache_dir=sys.argv[2]) for n, d in sets.items()}))")
    res = run_in_harness(["-c", script, json.dumps({n: str(d) for n, d in sets.items()}),
                          str(tmp_path / "c047")])
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == ours
