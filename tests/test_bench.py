"""The benchmark code runs (one tiny shape of each kind) and writes well-formed JSON.
Speed itself is measured by `./reproduce bench`, never asserted here."""

import json

import pytest
import torch

from optimal_sparsity.bench.builders import TRAIN_PEERS, build
from optimal_sparsity.bench.cases import SUITES, MoELayerCase, case_from_dict, case_to_dict
from optimal_sparsity.bench.report import tables, to_markdown
from optimal_sparsity.bench.run import run_suite, targets


def test_tiny_suite_writes_well_formed_json(tmp_path):
    out = tmp_path / "bench.json"
    run_suite(SUITES["tiny"], suite="tiny", repeats=1, memory=False, peak_size=256,
              min_repeats=1, out=out, echo=False)
    report = json.loads(out.read_text())
    assert report["schema"] == 1
    assert report["machine"]["torch_threads"] == torch.get_num_threads()
    assert [r["kind"] for r in report["rows"]] == ["matmul", "moe_layer", "train_step"]
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
    assert {t["target"] for t in report["targets"]} >= {"ours / faster HF >= 1"}
    assert report["targets"] == targets(report["rows"])
    md = to_markdown(report)
    assert "| d32-E4-k2 T=64 |" in md and len(tables(report)) == 4


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
