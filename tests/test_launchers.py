"""The sweep's submitit launchers (submitit's local executor: real job processes) and the
Slurm submissions a dry run prints."""

import contextlib
import io
import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from optimal_sparsity.cli import main
from optimal_sparsity.errors import UserError
from optimal_sparsity.study.design import get_design
from optimal_sparsity.study.slurm import SlurmSettings, load_settings, time_minutes
from optimal_sparsity.study.sweep import plan_runs, train_all

TIMING = ("tok_s", "median_tokens_per_s", "wall_s_this_session", "achieved_flops", "threads")


@pytest.fixture
def sweep_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMAL_SPARSITY_HOME", str(tmp_path / "home"))
    # the job processes use as many threads as this one (bitwise-equal CPU results)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    return tmp_path


def tree(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.parent.relative_to(run_dir)): load_file(p)
            for p in sorted(run_dir.rglob("model.safetensors"))}


def assert_same_run(a: Path, b: Path) -> None:
    assert tree(a) == tree(b)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and wa
    for ck in wa:
        for name in wa[ck]:
            assert torch.equal(wa[ck][name], wb[ck][name]), (ck, name)

    def untimed(path: Path) -> list[dict]:
        recs = [json.loads(x) for x in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]

    assert untimed(a / "metrics.jsonl") == untimed(b / "metrics.jsonl")
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMING} == \
        {k: v for k, v in sb.items() if k not in TIMING}


def rows_of(run, table: Path) -> list[dict]:
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.results.table import read_rows

    evaluate_checkpoint(run.checkpoints()[-1][1], Path(run.config.corpus), table,
                        EvalSettings(tiers=("pretrain",), train_sequences=8, val_sequences=8))
    def comparable(row) -> str:  # where the checkpoint lies differs, not what it holds
        d = {k: v for k, v in vars(row).items() if k != "time"}
        d["extra"] = {**d["extra"], "checkpoint": Path(d["extra"]["checkpoint"]).relative_to(
            run.run_dir.parent).as_posix()}
        return json.dumps(d, sort_keys=True)

    rows = sorted(comparable(r) for r in read_rows(table))
    assert rows
    return rows


def test_submitit_local_equals_local_launcher(sweep_home):
    """The tiny design (its 3 points, cut to 24 steps) through submitit's local executor:
    same run directories, weights bit for bit, metrics and results rows as training in
    this process."""
    design = get_design("tiny")
    local = [few_steps(r) for r in plan_runs(design, root=sweep_home / "local")]
    jobs = [few_steps(r) for r in plan_runs(design, root=sweep_home / "jobs")]
    assert [r.run_dir.name for r in local] == [r.run_dir.name for r in jobs]
    assert len(local) == len(design.points) * len(design.seeds) == 3
    train_all(local, "local", progress=False, log=lambda _m: None)
    logs: list[str] = []
    train_all(jobs, "submitit-local", log=logs.append, folder=sweep_home / "submitit")
    assert sum("trained " in m for m in logs) == 3, logs
    for a, b in zip(local, jobs, strict=True):
        assert b.finished
        assert_same_run(a.run_dir, b.run_dir)
    assert rows_of(local[0], sweep_home / "t1") == rows_of(jobs[0], sweep_home / "t2")
    logs.clear()
    train_all(jobs, "submitit-local", log=logs.append)  # all trained: nothing submitted
    assert logs == ["3 of 3 runs already trained; training 0"]


def test_side_by_side_equals_one_at_a_time(sweep_home):
    """``--jobs 2``: the tiny design's 3 runs (one thread each, 24 steps) trained two at a
    time in worker processes give the same run directories and weights bit for bit as one
    after the other in this process; the count of side-by-side runs follows the cores and
    the threads each config names."""
    from optimal_sparsity.study.sweep import local_jobs

    design = get_design("tiny")
    one = [few_steps(r, threads=1) for r in plan_runs(design, root=sweep_home / "one")]
    two = [few_steps(r, threads=1) for r in plan_runs(design, root=sweep_home / "two")]
    train_all(one, "local", progress=False, log=lambda _m: None, jobs=1)
    logs: list[str] = []
    train_all(two, "local", log=logs.append, jobs=2)
    assert logs[1] == "training 3 runs, 2 at a time (one process each)"
    assert sum(m.startswith("trained ") for m in logs) == 3, logs
    for a, b in zip(one, two, strict=True):
        assert b.finished
        assert_same_run(a.run_dir, b.run_dir)
    cores = os.cpu_count() or 1
    assert local_jobs(two) == min(3, cores)  # one thread per run: one run per core
    assert local_jobs([few_steps(r, threads=0) for r in two]) == 1  # all cores per run
    assert local_jobs(two, jobs=5) == 3
    with pytest.raises(UserError, match="--jobs must be >= 0"):
        local_jobs(two, jobs=-1)


def _job_pids() -> list[int]:
    """Processes below this one that run a submitit job (the task, not its controller)."""
    out, stack = [], [os.getpid()]
    while stack:
        pid = stack.pop()
        children = []  # a child belongs to the thread that started it
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                children += (task / "children").read_text().split()
        for c in map(int, children):
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"submitit.core._submit" in cmd:
                out.append(c)
            stack.append(c)
    return out


EVAL_TIERS = ("pretrain", "task_loss", "accuracy", "knowledge_bits")


def evaluate_in_worker(table: str, run) -> None:
    """What the pool runs after a training: one thread, as the pipeline's evaluation there
    (study.pipeline.evaluate_for_figures); it notes the process it ran in."""
    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint

    torch.set_num_threads(1)
    evaluate_checkpoint(run.checkpoints()[-1][1], Path(run.config.corpus), Path(table),
                        EvalSettings(tiers=EVAL_TIERS, limit=6, batch_size=6,
                                     max_new_tokens=16, train_sequences=8, val_sequences=8))
    Path(table, f"evaluated-{run.run_id}").write_text(str(os.getpid()))


def test_evaluation_beside_training_equals_evaluation_after_it(sweep_home):
    """``after``: each run is evaluated in the training pool once it is trained (a run
    trained before: at once), in the pool's processes, and the values equal those of
    evaluating the same checkpoints afterwards in this process on one thread (as the
    study's designs evaluate); trainings start longest first."""
    from functools import partial

    from optimal_sparsity.eval.evaluate import EvalSettings, evaluate_checkpoint
    from optimal_sparsity.results.table import read_rows
    from optimal_sparsity.study.sweep import longest_first

    design = get_design("tiny")
    runs = [few_steps(r, threads=1) for r in plan_runs(design, root=sweep_home / "runs")]
    train_all(runs[:1], "local", progress=False, log=lambda _m: None, jobs=1)  # trained before
    pool_table = sweep_home / "pool"
    pool_table.mkdir()
    logs: list[str] = []
    train_all(runs, "local", log=logs.append, jobs=2, after=partial(evaluate_in_worker,
                                                                      str(pool_table)))
    assert sum(m.startswith("evaluated ") for m in logs) == 3, logs
    pids = {(pool_table / f"evaluated-{r.run_id}").read_text() for r in runs}
    assert str(os.getpid()) not in pids  # in the pool's workers
    here = sweep_home / "here"
    for r in runs:
        evaluate_checkpoint(r.checkpoints()[-1][1], Path(r.config.corpus), here,
                            EvalSettings(tiers=EVAL_TIERS, limit=6, batch_size=6,
                                         max_new_tokens=16, train_sequences=8,
                                         val_sequences=8, threads=1))

    def values(table):
        return {(r.run, r.task, r.metric): r.value for r in read_rows(table)}

    assert values(pool_table) == values(here) and len(values(here)) > 20
    order = [r.point.E for r in longest_first(runs)]
    assert order == sorted(order, reverse=True)  # one k, one budget: most experts first


def few_steps(run, steps: int = 24, **changes):
    """A tiny-design run cut to a few steps (the test's time budget)."""
    return replace(run, config=run.config.replace(train_tokens=None, steps=steps, **changes))


def _short_run(design, root: Path):
    (run,) = plan_runs(design, points=design.points[:1], root=root)
    return few_steps(run, ckpt_interval=2)


def test_killed_job_is_resubmitted_and_resumes(sweep_home):
    """SIGKILL the job process mid-run: the launcher resubmits it, it resumes from its
    last checkpoint and ends bit for bit where an uninterrupted run ends."""
    design = get_design("tiny")
    ref = _short_run(design, sweep_home / "ref")
    train_all([ref], "local", progress=False, log=lambda _m: None)
    run = _short_run(design, sweep_home / "jobs")
    logs: list[str] = []
    errors: list[BaseException] = []

    def launch():
        try:
            train_all([run], "submitit-local", log=logs.append, retries=2,
                      folder=sweep_home / "submitit")
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=launch)
    t.start()
    killed = False
    deadline = time.time() + 120
    while time.time() < deadline and t.is_alive():
        done = [s for s, _ in run.checkpoints("all")]
        pids = _job_pids()
        if done and max(done) >= 4 and pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed = max(done) < 24
            break
        time.sleep(0.02)
    t.join(timeout=240)
    assert not t.is_alive() and not errors, errors
    assert killed, "the job finished before it could be killed"
    assert any("resubmitting (attempt 2 of 3)" in m for m in logs), logs
    assert run.finished
    a, b = weights(ref.run_dir), weights(run.run_dir)
    final = max(a)
    for name in a[final]:
        assert torch.equal(a[final][name], b[final][name]), name


def test_failing_job_is_one_line_naming_run_and_log(sweep_home):
    design = get_design("tiny")
    run = _short_run(design, sweep_home / "jobs")
    bad = replace(run, config=run.config.replace(corpus=str(sweep_home / "no-corpus")))
    with pytest.raises(UserError) as info:
        train_all([bad], "submitit-local", log=lambda _m: None, folder=sweep_home / "sub")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"training {run.point.label} seed 0 failed (job ")
    assert "attempt 1 of 3" in msg and "no-corpus" in msg  # not resubmitted: it would fail again
    log = Path(msg.rsplit("log: ", 1)[1])
    assert log.is_file() and log.parent == sweep_home / "sub"


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_slurm_dry_run_prints_one_submission_per_grid_point(sweep_home):
    cfg = sweep_home / "cluster.toml"
    cfg.write_text('[slurm]\npartition = "gpu"\naccount = "proj"\ntime = "2-00:00:00"\n'
                   'cpus_per_task = 8\nextra = ["--qos=high", "--exclusive"]\n')
    code, out, err = run_cli("all", "--scale", "tiny", "--launcher", "slurm", "--dry-run",
                             "--slurm-config", str(cfg), "--slurm-mem", "16G",
                             "--slurm-partition", "debug")
    assert code == 0, err
    scripts = out.split("#!/bin/bash")[1:]
    design = get_design("tiny")
    assert len(scripts) == len(design.points) * len(design.seeds)
    for point, script in zip(design.points, scripts, strict=True):
        for line in ("--partition=debug", "--account=proj", f"--time={2 * 1440}",
                     "--cpus-per-task=8", "--mem=16G", "--qos=high", "--exclusive",
                     f"--job-name={point.label}-seed0", "--signal=USR2@90"):
            assert f"#SBATCH {line}\n" in script, (line, script)
        assert "srun" in script and "submitit.core._submit" in script
    assert "nothing was submitted" in err
    assert not (sweep_home / "home" / "runs").exists()  # nothing trained


@pytest.mark.parametrize("text,msg", [
    ('[slurm]\nnodes = "two"\n', "nodes must be an integer"),
    ('[slurm]\npartiton = "gpu"\n', "unknown [slurm] key(s) partiton"),
    ('[slurm]\ntime = "soon"\n', "is not minutes"),
    ('[slurm]\nextra = ["qos high"]\n', "must look like --name"),
    ('[slurm\n', "not valid TOML"),
])
def test_bad_slurm_config_is_one_line(tmp_path, text, msg):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=msg.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_settings(path)
    code, _, err = run_cli("all", "--launcher", "slurm", "--dry-run", "--slurm-config",
                           str(path))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_slurm_times_and_options():
    assert [time_minutes(t) for t in ("90", "1:30:00", "2-00:00:00", "1-12", "0:00:30")] == \
        [90, 90, 2880, 2160, 1]
    s = load_settings(None, partition="gpu", nodes=4, gpus_per_node=8, extra=("--qos=x",))
    assert s == SlurmSettings(partition="gpu", nodes=4, gpus_per_node=8, extra=("--qos=x",))
    lines = s.sbatch_lines("job", "/logs/%j.out")
    assert "#SBATCH --nodes=4" in lines and "#SBATCH --gpus-per-node=8" in lines
    assert "#SBATCH --qos=x" in lines and "#SBATCH --partition=gpu" in lines
