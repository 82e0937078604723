"""Pull mode end to end against the local hub stand-in: `fig7 --mode pull` pulls three
tiny released-format checkpoints pinned in a lock, verifies them, evaluates them with the
authors' task-loss inputs, draws the figure and reports verdicts (inconclusive, with the
reasons: no training logs, no hub data for accuracy)."""

import contextlib
import io
import json

import torch

from optimal_sparsity.cli import main
from optimal_sparsity.grid import scaled_config
from optimal_sparsity.hub.lock import Lock
from optimal_sparsity.hub.skeleton import model_entry
from optimal_sparsity.hub.update import update_lock
from optimal_sparsity.testing.local_hub import LocalHub, client_env, write_model_repo

NAMES = [("d32-E2-k1", 2, 1), ("d32-E4-k1", 4, 1), ("d32-E4-k2", 4, 2)]


def test_fig7_pull_mode_end_to_end(tiny_corpus, tmp_path):
    root = tmp_path / "hub"
    entries = []
    for name, e, k in NAMES:
        cfg = scaled_config(32, e, k, n_layers=2, vocab_size=384, max_seq_len=1024)
        repo = f"test-org/optimal-sparsity-math-{name}"
        write_model_repo(root, repo, cfg, seed=e + k, tokenizer_dir=tiny_corpus / "tokenizer")
        entries.append(model_entry(name, repo, cfg, family="math", source="test fixture"))
    lock = Lock(models=tuple(entries), datasets=())
    with LocalHub(root) as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        report = update_lock(lock, [n for n, _, _ in NAMES], endpoint=endpoint, token=False,
                             log=lambda _: None)
        assert set(report.resolved) == {n for n, _, _ in NAMES}
        lock_file = tmp_path / "test.lock"
        lock_file.write_text(json.dumps(report.lock.to_dict(), indent=2))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["fig7", "--mode", "pull", "--lock", str(lock_file), "--hub-cache",
                         str(tmp_path / "cache"), "--limit", "3", "--results",
                         str(tmp_path / "results")])
    assert code == 0, err.getvalue()
    log = out.getvalue()
    assert log.count("pull d32-") == 3
    assert "not run" not in log
    assert ("fig7: GPU advised" in log) == (not torch.cuda.is_available())  # fig7 generates
    assert len(list((tmp_path / "cache").rglob("model.safetensors"))) == 3
    results = tmp_path / "results"
    rows = [json.loads(x) for p in (results / "pull" / "table" / "parts").glob("*.jsonl")
            for x in p.read_text().splitlines()]
    losses = {r["model"]: r["value"] for r in rows
              if r["task"] == "gsm8k" and r["metric"] == "task_loss"}
    assert set(losses) == {n for n, _, _ in NAMES} and all(v > 0 for v in losses.values())
    assert all(r["source"] == "pull" for r in rows)
    assert (results / "pull" / "fig7" / "fig7.png").stat().st_size > 0
    verdicts = json.loads((results / "pull" / "fig7" / "verdicts.json").read_text())
    # three tiny models, no seed noise: nothing can be decided
    assert {v["status"] for v in verdicts.values()} <= {"inconclusive", "not testable"}, verdicts
    assert "pull mode" in (results / "report.html").read_text()


def test_pull_mode_refuses_unpinned(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fig5", "--mode", "pull", "--results", str(tmp_path)])
    assert code == 0
    assert "--allow-unpinned" in out.getvalue()
    res = json.loads((tmp_path / "pull" / "fig5" / "result.json").read_text())
    assert "pins no revision" in res["skipped"]


def test_pull_mode_never_overwrites_a_retrain_run_json(tmp_path):
    retrain = tmp_path / "smoke" / "run.json"
    retrain.parent.mkdir(parents=True)
    retrain.write_text('{"mode": "retrain", "scale": "smoke"}\n')
    before = retrain.read_bytes()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fig5", "--mode", "pull", "--scale", "smoke", "--results", str(tmp_path)])
    assert code == 0, err.getvalue()
    assert retrain.read_bytes() == before  # the retrain run's record is untouched
    pulled = json.loads((tmp_path / "pull" / "run.json").read_text())
    assert pulled["mode"] == "pull" and pulled["figures"] == ["fig5"]


def test_pull_mode_report_shows_its_own_images(tmp_path):
    """The report of a pull run embeds (HTML) and copies (Markdown) the pull figures,
    never a retrain run's figure of the same name."""
    import base64

    from optimal_sparsity.figures.render import FigureResult
    from optimal_sparsity.report.build import RunInfo, write_report

    outputs = {"png": "fig7/fig7.png"}
    for mode_dir in ("pull", "smoke"):
        (tmp_path / mode_dir / "fig7").mkdir(parents=True)
        (tmp_path / mode_dir / "fig7" / "fig7.png").write_bytes(f"{mode_dir}-png".encode())

    def embedded(mode: str) -> tuple[str, list[bytes]]:
        html, _ = write_report(tmp_path, [FigureResult("fig7", mode, "smoke", outputs=outputs)],
                                RunInfo(mode, "smoke", 1.0, "./reproduce fig7"))
        copies = [f.read_bytes() for f in (tmp_path / "report_files").glob(f"{mode}-*fig7.png")]
        return html.read_text(), copies

    html, copies = embedded("pull")
    assert base64.b64encode(b"pull-png").decode() in html
    assert base64.b64encode(b"smoke-png").decode() not in html
    assert copies == [b"pull-png"]
    html, copies = embedded("retrain")
    assert base64.b64encode(b"smoke-png").decode() in html and copies == [b"smoke-png"]


def test_unpinned_lock_gives_each_claim_its_reason_and_never_says_not_run(tmp_path):
    """With the shipped lock (no revision pinned: no machine here reaches the hub) pull mode
    runs nothing, and says so: a claim the release can never decide gives that reason, the
    others why nothing ran; no claim reads "not run"."""
    from optimal_sparsity.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fig1", "--mode", "pull", "--hub-cache", str(tmp_path / "cache"),
                     "--results", str(tmp_path / "results")])
    assert code == 0, err.getvalue()
    result = json.loads((tmp_path / "results" / "pull" / "fig1" / "result.json").read_text())
    texts = {c: v["statistic"] for c, v in result["verdicts"].items()}
    assert all(v["status"] == "not testable" for v in result["verdicts"].values())
    assert "no training losses released" in texts["C1.loss-vs-params"]
    others = [t for c, t in texts.items() if c != "C1.loss-vs-params"]
    assert others and all(t.startswith("not testable here: checkpoints.lock pins no revision")
                          for t in others)
    assert "not run" not in out.getvalue() + err.getvalue() + json.dumps(result)
