"""Two sweeps on the same run and results directories at once: a lock serialises them;
nothing is trained twice, duplicated or corrupted."""

import json
import os
import subprocess
import sys

from optimal_sparsity.results.table import read_rows

SWEEP = r"""
import sys
from optimal_sparsity.data.presets import PRESETS
from optimal_sparsity.grid import GridPoint
from optimal_sparsity.study.design import StudyDesign
from optimal_sparsity.study.sweep import plan_runs, train_all

design = StudyDesign(scale="test", corpus=PRESETS["tiny"], points=(GridPoint(32, 2, 1, 2),),
                     seeds=(0,), train=dict(steps=16, seq_len=64, micro_batch=4, threads=1,
                                            eval_sequences=4))
runs = plan_runs(design)
train_all(runs, log=lambda m: print(m, flush=True))
print("RUN", runs[0].run_dir)
"""

WRITER = r"""
import sys
from optimal_sparsity.results.table import Row, write_part
root, who = sys.argv[1], sys.argv[2]
for i in range(40):
    rows = [Row(run=f"r{i % 10}", model="m", step=i, task="t", metric=f"m{j}",
                value=float(i * 100 + j), extra={"writer": who}) for j in range(20)]
    write_part(root, f"part-{i % 10}.jsonl", rows)
"""


def test_two_sweeps_train_once(tmp_path):
    env = {**os.environ, "OPTIMAL_SPARSITY_HOME": str(tmp_path / "home")}
    # build the corpus first so that both sweeps race on the training run itself
    subprocess.run([sys.executable, "-c", "from optimal_sparsity.data.cache import "
                    "ensure_corpus; from optimal_sparsity.data.presets import PRESETS; "
                    "ensure_corpus(PRESETS['tiny'])"], env=env, check=True)
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    run_dirs = {line.split(" ", 1)[1] for o, _ in outs for line in o.splitlines()
                if line.startswith("RUN ")}
    assert len(run_dirs) == 1
    run = run_dirs.pop()
    with open(os.path.join(run, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 17))


def test_concurrent_result_writers(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), w])
             for w in ("a", "b")]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    rows = read_rows(tmp_path)
    assert len(rows) == 10 * 20  # ten parts, each complete: the last writer's version
    by_part = {}
    for r in rows:
        by_part.setdefault(r.run, set()).add((r.step, r.extra["writer"]))
    assert all(len(v) == 1 for v in by_part.values())  # no part mixes two writes
