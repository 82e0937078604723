"""Router gradients, the candidate design and the design probes as commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimal_sparsity.grid import scaled_config
from optimal_sparsity.model.router_grad import MIN_RELATIVE_ROUTER_GRAD, router_gradient_ratio


def test_router_gets_lm_gradient_at_k2_and_none_at_k1():
    k2 = router_gradient_ratio(scaled_config(32, 4, 2, n_layers=2))
    k1 = router_gradient_ratio(scaled_config(32, 4, 1, n_layers=2))
    assert k2 > 1e-2 > MIN_RELATIVE_ROUTER_GRAD
    # Mixtral's renormalisation: p/p = 1 at k = 1; what is left is float32 round-off
    assert k1 < 1e-7 < MIN_RELATIVE_ROUTER_GRAD


def test_router_offenders_finds_the_k1_point_of_a_design():
    from dataclasses import replace

    from optimal_sparsity.grid import GridPoint
    from optimal_sparsity.study.design import DESIGNS, router_offenders

    synthetic = replace(DESIGNS["tiny"], points=(
        GridPoint(32, 1, 1, n_layers=1), GridPoint(32, 2, 2, n_layers=1),
        GridPoint(32, 4, 2, n_layers=1), GridPoint(32, 4, 1, n_layers=1)))
    bad = router_offenders(synthetic)
    assert [p for p, _ in bad] == [GridPoint(32, 4, 1, n_layers=1)]  # E = 1 is no offender
    assert bad[0][1] < MIN_RELATIVE_ROUTER_GRAD


@pytest.mark.parametrize("scale", ["tiny", "smoke", "full"])
def test_every_router_of_every_design_learns_from_the_lm_loss(scale):
    """One CE backward at every grid point of the design: the router's gradient is
    non-negligible against the experts' (no k = 1 MoE, no dense point inside a family)."""
    from optimal_sparsity.study.design import get_design, router_offenders

    design = get_design(scale)
    assert router_offenders(design) == []
    assert all(p.k >= 2 and p.k <= p.E for p in design.points)


def test_full_spans_tpp_on_both_sides_of_20_in_each_family_with_replicated_ends():
    from optimal_sparsity.study.design import FULL_PEOPLE, design_tpp, get_design

    d = get_design("full")
    assert {(p.k, p.E) for p in d.points} == {(2, 2), (2, 4), (2, 8), (2, 16),
                                             (4, 4), (4, 8), (4, 16)}
    tpp = design_tpp(d)
    k2 = [v["tpp"] for p, v in tpp.items() if p.k == 2]
    assert min(k2) < 10 and max(k2) > 30
    k4 = [v["tpp"] for p, v in tpp.items() if p.k == 4]  # k = 4: both sides of 20, not 30
    assert min(k4) < 10 and 20 < max(k4) < 30
    for k in (2, 4):  # one active budget per family; its two ends train two seeds
        fam = sorted(p for p in d.points if p.k == k)
        assert len({tpp[p]["active_params"] for p in fam}) == 1
        assert len(d.seeds_of(fam[0])) == len(d.seeds_of(fam[-1])) == 2
        assert len(d.seeds_of(fam[1])) == 1
    assert d.n_runs == 11 and d.train["threads"] == 1
    assert d.corpus.knowledge.style == "values" and d.corpus.val_by_source
    assert d.corpus.knowledge.n_people == FULL_PEOPLE
    assert abs(d.corpus.weights["arithmetic"] - 0.4) < 1e-9
    assert d.posttrain_family == (64, 2)


@pytest.fixture
def probe_home(tmp_path, monkeypatch):
    from optimal_sparsity.study import regime_probes

    monkeypatch.setenv("OPTIMAL_SPARSITY_HOME", str(tmp_path / "home"))
    quick = regime_probes.other_cores_now
    monkeypatch.setattr(regime_probes, "other_cores_now", lambda: quick(0.05))
    return tmp_path


@pytest.mark.parametrize("probe,n_rows", [("capacity", 4), ("router", 2), ("reasoning", 3),
                                           ("design", 2), ("reasoning-k4", 2),
                                           ("mix-k4", 1)])
def test_probe_command_end_to_end(probe, n_rows, probe_home, capsys):
    from optimal_sparsity.cli import main

    out = probe_home / f"{probe}.jsonl"
    assert main(["probe", probe, "--scale-down", "--threads", "1", "--allow-busy",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == n_rows and all(r["probe"] == probe for r in rows)
    for r in rows:
        assert r["tokens"] > 0 and r["tpp"] == pytest.approx(r["tokens"] / r["total_params"])
        assert r["tok_s"] > 0 and r["load_start"] >= 0 and r["load_end"] >= 0
        assert r["other_cores_start"] >= 0 and r["other_cores_run"] >= 0
        assert r["val_loss_by_source"] and r["corpus_fingerprint"]
        assert r["provenance"]["commit"] and "torch" in r["provenance"]["versions"]
        train, evaluate = r["commands"]  # the CLI's own train and eval, as they ran
        assert train[:2] == ["./reproduce", "train"] and evaluate[:2] == ["./reproduce", "eval"]
        assert train[train.index("--layers") + 1] == "1" == str(r["n_layers"])
        run_dir = Path(train[train.index("--out") + 1])
        assert json.loads((run_dir / "summary.json").read_text())["model"]["n_layers"] == 1
        assert float(train[train.index("--lr") + 1]) == r["train"]["lr"]
        if probe.startswith("reasoning"):
            assert 0 <= r["gsm8k_proxy_acc"] <= 1 and 0 < r["gsm8k_proxy_trivial"] < 1
            assert set(r["val_loss_by_source"]) == {"arithmetic"}
        if probe in ("design", "mix-k4"):
            assert set(r["val_loss_by_source"]) == {"knowledge", "scripts", "arithmetic"}
            assert 0 <= r["gsm8k_proxy_acc"] <= 1
        if not probe.startswith("reasoning"):
            assert 0 <= r["bits_stored"] <= r["bits_total"]
            assert r["bits_per_param"] == pytest.approx(r["bits_stored"] / r["total_params"])
    if probe == "router":
        assert [r["k"] for r in rows] == [2, 1]
    if probe == "design":
        assert [r["E"] for r in rows] == [2, 16] and {r["k"] for r in rows} == {2}
    if probe == "reasoning":
        assert [r["seed"] for r in rows] == [0, 1, 2]
    if probe == "mix-k4":
        assert [(r["E"], r["k"]) for r in rows] == [(16, 4)]
    if probe == "reasoning-k4":  # the same seed at two learning rates: two runs, two rows
        assert [(r["E"], r["k"], r["train"]["lr"]) for r in rows] == [(16, 4, 3e-3),
                                                                      (16, 4, 1.5e-3)]
        assert len({r["commands"][0][r["commands"][0].index("--out") + 1] for r in rows}) == 2


def test_probe_refuses_a_busy_machine_and_foreign_files(probe_home, capsys, monkeypatch):
    from optimal_sparsity.cli import main
    from optimal_sparsity.study import regime_probes

    monkeypatch.setattr(regime_probes, "other_cores_now", lambda: 1.7)
    out = probe_home / "cap.jsonl"
    assert main(["probe", "capacity", "--scale-down", "--threads", "2", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: other processes use 1.70 cores") and "\n" not in err
    assert not out.exists()
    foreign = probe_home / "notes.jsonl"
    foreign.write_text("my own notes\n")
    assert main(["probe", "router", "--scale-down", "--out", str(foreign)]) == 2
    assert foreign.read_text() == "my own notes\n"


def test_other_cores_subtracts_this_process_and_a_rerun_keeps_clean_rows(probe_home,
                                                                           monkeypatch):
    """A sibling run that just ended (high load average) is not contention; this process's
    own CPU time is not counted; a rerun keeps clean rows and replaces busy ones."""
    from optimal_sparsity import machine_load as timing
    from optimal_sparsity.study import regime_probes

    monkeypatch.setattr(regime_probes.os, "cpu_count", lambda: 2)
    # 1,800 busy jiffies of 2,000, all of them this process's (a sibling run that just ended
    # leaves a high load average but no other process): 0 other cores
    machine = iter([(100, 1000), (1900, 3000)])
    own = iter([10, 1810])
    monkeypatch.setattr(timing, "_cpu_jiffies", lambda: next(machine))
    monkeypatch.setattr(timing, "_own_jiffies", lambda *_: next(own))
    with timing.OtherLoad() as load:
        pass
    assert regime_probes._cores(load) == 0.0
    # 2,000 busy of 2,000, half of them another process's: one other core
    machine = iter([(0, 0), (2000, 2000)])
    own = iter([0, 1000])
    with timing.OtherLoad() as load:
        pass
    assert regime_probes._cores(load) == pytest.approx(1.0)

    runs = regime_probes.plan_runs("router", True)
    out = probe_home / "router.jsonl"
    calls = []

    def fake_run_one(run, work, threads, allow_busy):
        calls.append(run.model)
        return {"probe": run.probe, "model": run.model, "seed": run.seed, "tokens": 1,
                "tpp": 1.0, "tok_s": 1.0, "load_start": 0.0, "busy": False,
                "corpus_fingerprint": run.corpus.fingerprint(),
                "train_tokens": run.train_tokens}

    monkeypatch.setattr(regime_probes, "run_one", fake_run_one)
    clean = fake_run_one(runs[0], None, 1, False) | {"tokens": runs[0].train_tokens}
    busy = fake_run_one(runs[1], None, 1, False) | {"tokens": runs[1].train_tokens,
                                                      "busy": True}
    out.write_text(json.dumps(clean) + "\n" + json.dumps(busy) + "\n")
    calls.clear()
    regime_probes.run_probe("router", out, scale_down=True, threads=1, log=lambda *_: None)
    assert calls == [runs[1].model]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"] for r in rows] == [runs[0].model, runs[1].model]
    assert len(rows) == 2 and rows[0]["busy"] is False


def test_an_interrupted_run_is_not_recorded(probe_home, monkeypatch, capsys):
    """`./reproduce train` stopped by a signal exits 130 after saving a checkpoint: its
    row (fewer tokens than planned) must not be written."""
    import subprocess

    from optimal_sparsity.cli import main
    from optimal_sparsity.study import regime_probes

    calls = []

    def stopped(argv):
        calls.append(argv[0])
        return subprocess.CompletedProcess(argv, 130, "", (
            "interrupted at step 3/10; checkpoint saved. Run the same command to resume.\n"))

    monkeypatch.setattr(regime_probes, "_cli", stopped)
    out = probe_home / "router.jsonl"
    assert main(["probe", "router", "--scale-down", "--threads", "1", "--allow-busy",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "stopped at step 3 of 10 (interrupted)" in err and "\n" not in err
    assert not out.exists()
    assert calls == ["train"]  # nothing is evaluated after an interrupted training
