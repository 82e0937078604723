"""Token shards: flat memmap files of token ids with a manifest, and a deterministic,
resumable batch sampler over them.

A split is one or more ``.bin`` files (uint16, or uint32 for vocabularies over 65,535
tokens) of concatenated documents separated by the EOS token. ``corpus.json`` records
each shard's sha256 and token count and the tokenizer's hash; ``open_split`` verifies
them before use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optimal_sparsity.atomic import sha256_file
from optimal_sparsity.data.layout import CORPUS_FILE
from optimal_sparsity.errors import IntegrityError, UserError


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65_535 else np.dtype(np.uint32)


class ShardWriter:
    """Append token arrays to ``path`` (opened for writing, plain file)."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = path
        self.dtype = dtype
        self.n_tokens = 0
        self._f = open(path, "wb")  # noqa: SIM115 (closed in close())

    def write(self, ids: np.ndarray) -> None:
        self._f.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.n_tokens += int(ids.size)

    def close(self) -> dict:
        self._f.close()
        return {"path": self.path.name, "n_tokens": self.n_tokens,
                "sha256": sha256_file(self.path)}


def read_corpus_meta(corpus_dir: str | Path) -> dict:
    path = Path(corpus_dir) / CORPUS_FILE
    if not path.is_file():
        raise UserError(f"{corpus_dir} is not a corpus directory (no {CORPUS_FILE}); "
                        "build one with `./reproduce data` or `./reproduce tokenize`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise IntegrityError(f"{path} is corrupt: {err}") from err


def open_split(corpus_dir: str | Path, split: str, verify: bool = True) -> np.ndarray:
    """All tokens of a split as one array (memmapped when it is a single shard)."""
    corpus_dir = Path(corpus_dir)
    meta = read_corpus_meta(corpus_dir)
    if split not in meta.get("splits", {}):
        raise UserError(f"corpus {corpus_dir} has no split {split!r}")
    dtype = np.dtype(meta["token_dtype"])
    arrays = []
    for shard in meta["splits"][split]:
        path = corpus_dir / shard["path"]
        if not path.is_file():
            raise IntegrityError(f"token shard {path} is missing")
        size = path.stat().st_size
        if size != shard["n_tokens"] * dtype.itemsize:
            raise IntegrityError(f"token shard {path} has {size} bytes, manifest says "
                                 f"{shard['n_tokens'] * dtype.itemsize}")
        if verify and (got := sha256_file(path)) != shard["sha256"]:
            raise IntegrityError(f"token shard {path}: sha256 {got} does not match the "
                                 f"manifest {shard['sha256']}")
        arrays.append(np.memmap(path, dtype=dtype, mode="r"))
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass
class BatchSampler:
    """Fixed-length windows of ``seq_len + 1`` tokens, shuffled per epoch from a seed.

    Sample ``i`` of the run is chunk ``perm_{epoch}[i % n_chunks]`` with
    ``epoch = i // n_chunks``, so the data position is one integer and a resumed run
    sees exactly the batches an uninterrupted one would.
    """

    tokens: np.ndarray
    seq_len: int
    seed: int

    def __post_init__(self) -> None:
        self.n_chunks = len(self.tokens) // (self.seq_len + 1)
        if self.n_chunks < 1:
            raise UserError(f"split has {len(self.tokens)} tokens, fewer than one sequence "
                            f"of {self.seq_len + 1}")
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_chunks)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def chunk(self, i: int) -> np.ndarray:
        c = int(self._permutation(i // self.n_chunks)[i % self.n_chunks])
        w = self.seq_len + 1
        return np.asarray(self.tokens[c * w:(c + 1) * w], dtype=np.int64)

    def batch(self, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``start .. start+size-1`` -> (inputs [B, S], labels [B, S])."""
        rows = np.stack([self.chunk(i) for i in range(start, start + size)])
        t = torch.from_numpy(rows)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def fixed_batches(tokens: np.ndarray, seq_len: int, n_sequences: int, batch_size: int
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n_sequences`` windows in order (a fixed validation set)."""
    w = seq_len + 1
    n = min(n_sequences, len(tokens) // w)
    if n < 1:
        raise UserError(f"split has {len(tokens)} tokens, fewer than one sequence of {w}")
    rows = torch.from_numpy(np.asarray(tokens[: n * w], dtype=np.int64).reshape(n, w))
    return [(rows[i:i + batch_size, :-1], rows[i:i + batch_size, 1:])
            for i in range(0, n, batch_size)]
