"""Names shared by the hub tests (the served repositories and the tiny grid point)."""

from optimal_sparsity.grid import scaled_config

MODEL_REPO = "test-org/optimal-sparsity-math-d32-E4-k2"
DATA_REPO = "test-org/tiny-gsm"
PICKLE_REPO = "test-org/pickled-only"
TINY = scaled_config(32, 4, 2, n_layers=2, vocab_size=96, max_seq_len=64)


def run_pull_figure(root, lock, names, tmp_path, argv):
    """Serve ``root`` as the hub, resolve ``lock``'s entries ``names`` against it, and run
    ``./reproduce FIG --mode pull ARGV`` with that lock: (exit code, stdout, stderr, rows of
    the pull results table)."""
    import contextlib
    import io
    import json

    from optimal_sparsity.cli import main
    from optimal_sparsity.hub.update import update_lock
    from optimal_sparsity.testing.local_hub import LocalHub, client_env

    with LocalHub(root) as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        report = update_lock(lock, names, endpoint=endpoint, token=False, log=lambda _: None)
        assert set(report.resolved) == set(names), report.failed
        lock_file = tmp_path / "test.lock"
        lock_file.write_text(json.dumps(report.lock.to_dict(), indent=2))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([argv[0], "--mode", "pull", "--lock", str(lock_file), "--hub-cache",
                         str(tmp_path / "cache"), "--results", str(tmp_path / "results"),
                         *argv[1:]])
    parts = tmp_path / "results" / "pull" / "table" / "parts"
    rows = [json.loads(x) for p in parts.glob("*.jsonl") for x in p.read_text().splitlines()]
    return code, out.getvalue(), err.getvalue(), rows


def tiny_released_models(root, tiny_corpus, experts, chat_template=None):
    """Lock entries of tiny released-format math models d32-E{e}-k2 served under ``root``."""
    from optimal_sparsity.hub.skeleton import model_entry
    from optimal_sparsity.testing.local_hub import write_model_repo

    entries = []
    for e in experts:
        name = f"d32-E{e}-k2"
        cfg = scaled_config(32, e, 2, n_layers=1, vocab_size=384, max_seq_len=1024)
        repo = f"test-org/optimal-sparsity-math-{name}"
        write_model_repo(root, repo, cfg, seed=e, tokenizer_dir=tiny_corpus / "tokenizer",
                         chat_template=chat_template)
        entries.append(model_entry(name, repo, cfg, family="math", source="test fixture"))
    return entries
