"""End to end at the tiny scale: train three grid points, evaluate them, draw Fig 1,
compute its verdicts, write the report, pin references, and catch a perturbed result."""

import contextlib
import io
import json

from optimal_sparsity.cli import main


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_tiny_reproduction_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMAL_SPARSITY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPTIMAL_SPARSITY_REFERENCES", str(tmp_path / "refs"))
    results = tmp_path / "results"
    args = ("fig1", "--scale", "tiny", "--results", str(results))

    code, out, err = run_cli(*args)
    assert code == 0, err
    fig = results / "tiny" / "fig1"
    for name in ("fig1.png", "fig1.svg", "fig1.pdf", "data.csv", "verdicts.json"):
        assert (fig / name).stat().st_size > 0, name
    verdicts = json.loads((fig / "verdicts.json").read_text())
    assert set(verdicts) == {"C1.loss-vs-params", "C1.hellaswag-taskloss",
                             "C1.gsm8k-taskloss-threshold"}
    assert all(v["status"] in ("reproduced", "not reproduced", "inconclusive", "not testable")
               for v in verdicts.values())
    # one seed and no evaluation error on the loss: no noise estimate, so not testable
    v = verdicts["C1.loss-vs-params"]
    assert v["status"] == "not testable" and "no noise estimate" in v["statistic"]
    html = (results / "report.html").read_text()
    assert "C1.loss-vs-params" in html and "src='data:image/png;base64," in html
    # the tiny design decides no claim (the flag itself: tests/test_report.py)
    assert all(v["status"] in ("inconclusive", "not testable") for v in verdicts.values())
    assert (results / "report_files" / "retrain-tiny-fig1.png").is_file()
    assert "report_files/retrain-tiny-fig1.png" in (results / "report.md").read_text()
    assert len((fig / "data.csv").read_text().splitlines()) == 1 + 4 * 3

    code, out, err = run_cli("pin", "--scale", "tiny", "--results", str(results))
    assert code == 0, err
    ref = json.loads((tmp_path / "refs" / "scaled" / "tiny.json").read_text())
    assert ref["values"] and ref["verdicts"] and ref["provenance"]["seeds"] == [0]

    # the same run again: everything cached, compared with the references, no regression
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "0 of 3 runs" not in out and "3 of 3 runs already trained" in out

    # a doubled loss is caught, naming the value and the reference (written as a valid
    # part: a part edited by hand fails its integrity record and is recomputed instead)
    import dataclasses

    from optimal_sparsity.results.table import read_part, write_part

    table = results / "tiny" / "table"
    for part in (table / "parts").glob("*.jsonl"):
        rows = [dataclasses.replace(r, value=r.value * 2) if r.metric == "train_loss" else r
                for r in read_part(table, part.name)]
        write_part(table, part.name, rows)
    code, out, err = run_cli(*args)
    assert code == 1
    assert "regressed beyond the pinned reference" in err
    assert "pretrain/train_loss = " in err and "reference" in err
