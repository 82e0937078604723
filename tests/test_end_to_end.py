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
    assert "C1.loss-vs-params" in html and "tiny/fig1/fig1.png" in html
    assert (results / "report.md").is_file()
    assert len((fig / "data.csv").read_text().splitlines()) == 1 + 4 * 3

    code, out, err = run_cli("pin", "--scale", "tiny", "--results", str(results))
    assert code == 0, err
    ref = json.loads((tmp_path / "refs" / "scaled" / "tiny.json").read_text())
    assert ref["values"] and ref["verdicts"] and ref["provenance"]["seeds"] == [0]

    # the same run again: everything cached, compared with the references, no regression
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "0 of 3 runs" not in out and "3 of 3 runs already trained" in out

    # a doubled loss is caught, naming the value and the reference
    for part in (results / "tiny" / "table" / "parts").glob("*.jsonl"):
        rows = [json.loads(x) for x in part.read_text().splitlines()]
        for r in rows:
            if r["metric"] == "train_loss":
                r["value"] *= 2
        part.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_cli(*args)
    assert code == 1
    assert "regressed beyond the pinned reference" in err
    assert "pretrain/train_loss = " in err and "reference" in err
