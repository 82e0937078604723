"""The benchmark code runs (one tiny shape of each kind) and writes well-formed JSON.
Speed itself is measured by `./reproduce bench`, never asserted here."""

import json
import sys

import pytest
import torch

from optimal_sparsity.bench.builders import (
    EVAL_PEERS,
    GEN_PEERS,
    TRAIN_PEERS,
    build,
    generation_flops,
    train_config,
)
from optimal_sparsity.bench.cases import (
    SUITES,
    EndToEndCase,
    GenerateCase,
    MoELayerCase,
    StudyTrainCase,
    UnderLoadCase,
    case_from_dict,
    case_to_dict,
)
from optimal_sparsity.bench.report import tables, to_markdown
from optimal_sparsity.bench.run import run_suite, targets


def test_tiny_suite_writes_well_formed_json(tmp_path):
    out = tmp_path / "bench.json"
    run_suite(SUITES["tiny"], suite="tiny", repeats=1, memory=False, peak_size=256,
              min_repeats=1, out=out, echo=False)
    report = json.loads(out.read_text())
    assert report["schema"] == 1
    assert report["machine"]["torch_threads"] == torch.get_num_threads()
    assert [r["kind"] for r in report["rows"]] == ["matmul", "moe_layer", "train_step",
                                                   "eval_loss", "generate"]
    for row in report["rows"]:
        assert row["flops_per_call"] > 0 and row["repeats"] >= 1
        assert row["peak_gflops"] and all(v > 0 for v in row["peak_gflops"].values())
        for peer in row["peers"].values():
            assert 0 < peer["min_s"] <= peer["median_s"] <= peer["max_s"]
            assert peer["gflops"] > 0 and peer["frac_peak"] > 0
    moe = report["rows"][1]
    assert set(moe["peers"]) == {"ours", "hf-eager", "hf-grouped_mm"}
    assert moe["check"].startswith("input-grad max rel. error")
    assert set(report["rows"][2]["peers"]) == set(TRAIN_PEERS)
    assert set(report["rows"][3]["peers"]) == set(EVAL_PEERS)
    assert report["rows"][3]["check"].startswith("log-prob max rel. error")
    gen = report["rows"][4]
    assert set(gen["peers"]) == set(GEN_PEERS)
    assert gen["tokens_per_call"] == 2 * 4  # batch x new tokens
    assert {t["target"] for t in report["targets"]} >= {"ours / faster HF >= 1"}
    assert report["targets"] == targets(report["rows"])
    md = to_markdown(report)
    assert "| d32-E4-k2 T=64 |" in md and len(tables(report)) == 6


def test_cases_round_trip_through_json():
    for suite in SUITES.values():
        for case in suite:
            assert case_from_dict(json.loads(json.dumps(case_to_dict(case)))) == case


def test_hf_block_gets_our_weights():
    """The like-for-like check: a wrong weight copy must fail before timing."""
    built = build(MoELayerCase(32, 4, 2, tokens=16))
    a, b = built.peers["ours"](), built.peers["hf-grouped_mm"]()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"),
                    reason="peak memory is read from Linux /proc")
def test_memory_measure_reports_peak_and_resident():
    from optimal_sparsity.bench.memory import measure

    res = measure(json.dumps(case_to_dict(MoELayerCase(32, 4, 2, tokens=64))), "ours")
    assert set(res) == {"peak_mib", "resident_mib"}
    assert res["peak_mib"] >= 0


def test_generation_peers_decode_the_same_tokens():
    """Ours (the lm-eval adapter with and without the model's KV cache) and HF generate
    (with and without its KV cache) run the same weights: their greedy continuations must
    match token for token."""
    built = build(GenerateCase("s-d32-E4-k2", batch=3, prompt_len=6, new_tokens=5,
                               n_layers=2, vocab_size=64))
    outs = {name: peer() for name, peer in built.peers.items()}
    assert all(len(seq) == 5 for seq in outs["ours"])
    assert outs["hf-generate"] == outs["ours"] == outs["hf-generate-nocache"]
    assert outs["ours-nocache"] == outs["ours"]
    assert built.check.endswith("ours-nocache 3/3, hf-generate 3/3, hf-generate-nocache 3/3")


def test_generation_flops_of_the_prompt_equal_a_forward_pass():
    from optimal_sparsity.accounting import matmul_flops_per_token

    cfg = train_config(GenerateCase("s-d64-E8-k2"))
    one_new = generation_flops(cfg, 2, 64, 1)  # the prompt only
    assert one_new == pytest.approx(2 * 64 * matmul_flops_per_token(cfg, 64, training=False))
    assert generation_flops(cfg, 2, 64, 3) > one_new


def test_end_to_end_row_times_a_process_and_reads_its_peak_memory():
    from optimal_sparsity.bench.e2e import run_e2e

    script = "import os; b = bytearray(64 * 2**20); print(os.environ['OPTIMAL_SPARSITY_HOME'])"
    row = run_e2e(EndToEndCase("tiny"), [sys.executable, "-c", script])
    peer = row["peers"]["reproduce"]
    assert peer["median_s"] > 0 and peer["peak_rss_mib"] >= 64
    assert row["kind"] == "e2e" and row["repeats"] == 1
    with pytest.raises(RuntimeError, match="exit 3"):
        run_e2e(EndToEndCase("tiny"), [sys.executable, "-c", "raise SystemExit(3)"])


def test_study_rows_train_every_point_under_each_setup_and_beside_a_competitor():
    """The study rows' workers train the tiny design's points (today's setup: one run at
    a time on all cores; the study's: one per core, one thread each) with the same
    warm-up losses, and the under-load row runs the same workers beside a competitor."""
    from optimal_sparsity.bench.study import cores, run_study_train, run_under_load
    from optimal_sparsity.study.design import get_design

    row = run_study_train(StudyTrainCase("tiny", seconds=0.2, rounds=1,
                                          setups=("today", "study")))
    labels = {p.label for p in get_design("tiny").points}
    for name, jobs, threads in (("today", 1, cores()), ("study", cores(), 1)):
        peer = row["peers"][name]
        assert (peer["jobs"], peer["threads"]) == (jobs, threads)
        assert set(peer["per_point_tokens_per_s"]) == labels
        assert all(v > 0 for v in peer["per_point_tokens_per_s"].values())
    rel = float(row["check"].rsplit(" ", 1)[1])
    assert rel < 1e-5, row["check"]  # same math; threads may reorder sums
    load = run_under_load(UnderLoadCase("tiny", "s-d32-E2-k2-L2", seconds=0.2, rounds=1,
                                        setups=("study",)))
    peer = load["peers"]["study"]
    assert peer["idle_tokens_per_s"] > 0 and peer["tokens_per_s"] > 0
    assert peer["loaded_fraction"] == peer["tokens_per_s"] / peer["idle_tokens_per_s"]
    report = {"rows": [row, load], "targets": targets([row, load])}
    assert [t["target"] for t in report["targets"]] == [
        "study / today, sweep tokens/s >= 2", "study: loaded / idle tokens/s >= 0.4"]
    titles = [t[0] for t in tables(report)]
    assert any(t.startswith("The study's training") for t in titles)
    assert any(t.startswith("Training beside a competing") for t in titles)
