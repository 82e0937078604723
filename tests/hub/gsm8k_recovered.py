"""GSM8K as far as the authors' ``gsm8k_4shot.json`` reveals it, laid out as ``openai/gsm8k``.

The file holds every test item (its question in the last block of the prompt, its answer)
and, as few-shot examples, 3,809 of the 7,473 training items. lm-eval draws a test item's
shots with ``random.Random(seed).sample(train, 4)``, one call per test item in order; the
drawn positions depend only on the seed and the size of the training split, so each
recovered example can be put back at its position. Positions never drawn hold placeholders
(no prompt shows them). A seed that does not fit (two different examples at one position)
raises: only the paper's seed, 42, fits.
"""

from __future__ import annotations

import random
from pathlib import Path

GSM8K_TRAIN_SIZE = 7473  # openai/gsm8k, config main, split train
SHOT_SEP, QUESTION, ANSWER = "\n\n", "Question: ", "\nAnswer:"

# openai/gsm8k's README front matter: the configs as `datasets` reads them.
README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
---
# GSM8K (items recovered from the authors' task-loss file)
"""


def parse_prompt(prompt: str) -> tuple[list[dict[str, str]], str]:
    """(shots as {question, answer}, the test question) of one 4-shot prompt."""
    blocks = prompt.split(SHOT_SEP + QUESTION)
    assert blocks[0].startswith(QUESTION) and blocks[-1].endswith(ANSWER)
    blocks[0] = blocks[0][len(QUESTION):]
    shots = []
    for b in blocks[:-1]:
        q, a = b.split(ANSWER + " ", 1)
        shots.append({"question": q, "answer": a})
    return shots, blocks[-1][:-len(ANSWER)]


def recover(pairs: list[tuple[str, str]], seed: int = 42, shots: int = 4
            ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, test) rows of GSM8K that reproduce ``pairs`` under lm-eval's sampler."""
    rnd = random.Random(seed)
    train: dict[int, dict[str, str]] = {}
    test = []
    for prompt, answer in pairs:
        examples, question = parse_prompt(prompt)
        assert len(examples) == shots
        for pos, ex in zip(rnd.sample(range(GSM8K_TRAIN_SIZE), shots), examples, strict=True):
            if train.setdefault(pos, ex) != ex:
                raise ValueError(f"seed {seed} does not fit: two examples at position {pos}")
        test.append({"question": question, "answer": answer})
    rows = [train.get(i, {"question": f"(train item {i}: not in the file)", "answer": "#### 0"})
            for i in range(GSM8K_TRAIN_SIZE)]
    return rows, test


def write_repo(repo: Path, train: list[dict[str, str]], test: list[dict[str, str]]) -> Path:
    """The rows as the hub repository's parquet files and README."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (repo / "main").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        table = pa.table({k: [r[k] for r in rows] for k in ("question", "answer")})
        pq.write_table(table, repo / "main" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(README)
    return repo
