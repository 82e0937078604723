"""`./reproduce lock` and `./reproduce pull` as a user runs them, against the local hub."""

from __future__ import annotations

import os
import subprocess
import sys

from optimal_sparsity.hub.lock import Lock


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "optimal_sparsity.cli", *map(str, args)],
                          capture_output=True, text=True, env=env)


def client_env(hub):
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(hub.tmp / "hf-home"),
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def test_lock_update_then_pull(hub, unpinned_lock):
    env = client_env(hub)
    lock = Lock(models=(unpinned_lock.find("tiny"),), datasets=(unpinned_lock.find("tiny-gsm"),))
    path = lock.save(hub.tmp / "test.lock")
    cache = hub.tmp / "cli-cache"

    res = run("pull", "tiny", "--lock", path, "--cache-dir", cache, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: tiny: ") and "--allow-unpinned" in res.stderr

    res = run("lock", "--update", "--lock", path, env=env)
    assert res.returncode == 0, res.stderr
    assert "2 entries pinned, 0 not" in res.stdout

    res = run("pull", "tiny", "tiny-gsm", "--lock", path, "--cache-dir", cache, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(cache / "models" / "tiny"),
                                  str(cache / "datasets" / "tiny-gsm")]

    res = run("lock", "--lock", path, env=env)
    assert hub.server.commit("test-org/optimal-sparsity-math-d32-E4-k2") in res.stdout


def test_shipped_lock_checks_clean(capsys):
    from optimal_sparsity.cli import main

    assert main(["lock", "--check"]) == 0  # in-process: parameter counts are cached
    assert "checkpoints.lock: valid" in capsys.readouterr().out
