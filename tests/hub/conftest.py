"""A local hub serving a tiny released-format model and data set, and a lock pinning them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_helpers import DATA_REPO, MODEL_REPO, PICKLE_REPO, TINY

from optimal_sparsity.hub.lock import Lock
from optimal_sparsity.hub.skeleton import DatasetSpec, dataset_entry, model_entry
from optimal_sparsity.testing.local_hub import LocalHub, client_env, write_model_repo


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    write_model_repo(root, MODEL_REPO, TINY, seed=0)
    data = root / "datasets" / DATA_REPO
    (data / "main").mkdir(parents=True)
    rows = [{"question": f"{i} + {i} = ?", "answer": f"#### {2 * i}"} for i in range(20)]
    (data / "main" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "main" / "train.parquet").write_bytes(bytes(range(256)) * 40)  # an LFS-type file
    (data / "other").mkdir()
    (data / "other" / "unused.jsonl").write_text("{}\n")
    (data / "README.md").write_text("# tiny-gsm\n")
    pickled = root / "models" / PICKLE_REPO
    pickled.mkdir(parents=True)
    (pickled / "config.json").write_text((root / "models" / MODEL_REPO / "config.json")
                                         .read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return root


def tiny_lock() -> Lock:
    """Unpinned entries for the served repos (what `lock --write-skeleton` gives)."""
    model = model_entry("tiny", MODEL_REPO, TINY, family="test", source="test fixture")
    pickled = model_entry("pickled", PICKLE_REPO, TINY, family="test", source="test fixture")
    data = dataset_entry(DatasetSpec("tiny-gsm", DATA_REPO, "gsm8k", "main", "test", 4,
                                     include=("main/*", "README.md")))
    return Lock(models=(model, pickled), datasets=(data,))


@dataclass
class Hub:
    server: LocalHub
    endpoint: str
    tmp: Path

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def gets(self, path_suffix: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.server.requests if r[0] == "GET" and r[1].endswith(path_suffix)]

    def pinned(self, lock: Lock | None = None) -> Lock:
        from optimal_sparsity.hub.update import update_lock

        report = update_lock(lock or tiny_lock(), ["tiny", "tiny-gsm"], endpoint=self.endpoint,
                             token=False, log=lambda _: None)
        assert report.resolved == ("tiny", "tiny-gsm"), report.failed
        return report.lock


@pytest.fixture
def hub(hub_root, tmp_path) -> Hub:
    server = LocalHub(hub_root)
    with server as endpoint, client_env(endpoint, tmp_path / "hf-home"):
        yield Hub(server=server, endpoint=endpoint, tmp=tmp_path)




@pytest.fixture
def unpinned_lock() -> Lock:
    return tiny_lock()


@pytest.fixture
def pinned_lock(hub) -> Lock:
    return hub.pinned()
