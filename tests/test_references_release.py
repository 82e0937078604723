"""The release-derived reference values (references/release/) match the accounting code."""

import csv
import json

from optimal_sparsity.accounting import count_params
from optimal_sparsity.grid import PAPER_TOKENS, paper_models
from optimal_sparsity.references import references_dir


def test_release_grid_reference_matches_the_accounting():
    ref_dir = references_dir() / "release"
    meta = json.loads((ref_dir / "grid_math.json").read_text())
    with open(ref_dir / meta["file"], newline="") as f:
        ref = {r["name"]: r for r in csv.DictReader(f)}
    models = paper_models()
    assert len(ref) == len(models) == 65
    for pm in models:
        row, pc = ref[pm.name], count_params(pm.config())
        assert (int(row["d"]), int(row["E"]), int(row["k"])) == (pm.d, pm.E, pm.k)
        assert int(row["total_params"]) == pc.total, pm.name
        assert int(row["active_params"]) == pc.active, pm.name
        assert float(row["density"]) == pm.k / pm.E
        assert float(row["tpp"]) == float(f"{PAPER_TOKENS / pc.total:.4g}")
