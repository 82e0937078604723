"""The README's claims table is the one `./reproduce claims --markdown` generates now."""

from optimal_sparsity.claims.table import claims_markdown
from optimal_sparsity.paths import REPO


def test_readme_claims_table_is_current():
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- claims-table:begin", "<!-- claims-table:end -->"
    assert readme.count(begin) == 1 and readme.count(end) == 1, (
        "README must hold exactly one claims table (one begin and one end marker)")
    start = readme.index(begin)
    stop = readme.index(end, start) + len(end)
    assert readme[start:stop].strip() == claims_markdown().strip(), (
        "README claims table is stale: replace it with `./reproduce claims --markdown`")
