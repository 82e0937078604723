"""The README's claims table is the one `./reproduce claims --markdown` generates now."""

import pytest

from optimal_sparsity.errors import UserError
from optimal_sparsity.paths import REPO
from optimal_sparsity.report.claims_table import readme_table, update_readme
from optimal_sparsity.study.claims_table import claims_markdown


def test_readme_claims_table_is_current():
    readme = (REPO / "README.md").read_text()
    start, stop = readme_table(readme)  # exactly one begin and one end marker
    assert readme[start:stop].strip() == claims_markdown().strip(), (
        "README claims table is stale: run `./reproduce claims --update-readme`")


def test_update_readme_replaces_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    table = claims_markdown().strip()
    stale = table.replace("| --- |", "| old |", 1)
    readme.write_text(f"intro\n\n{stale}\n\noutro\n")
    assert update_readme(readme, table)
    assert readme.read_text() == f"intro\n\n{table}\n\noutro\n"
    assert not update_readme(readme, table)


def test_update_readme_refuses_a_duplicated_marker(tmp_path):
    readme = tmp_path / "README.md"
    table = claims_markdown()
    text = f"{table.strip()}\n\n<!-- claims-table:end -->\n"
    readme.write_text(text)
    with pytest.raises(UserError, match="exactly one claims table"):
        update_readme(readme, table)
    assert readme.read_text() == text
