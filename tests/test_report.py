"""The report travels on its own: copied to another directory it shows every figure
(this run's and the pinned full-scale ones), and it flags the verdicts its scale cannot
decide. The browser check runs headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from optimal_sparsity.figures.registry import get_figure
from optimal_sparsity.figures.render import render
from optimal_sparsity.references import references_dir
from optimal_sparsity.report.build import RunInfo, write_report
from optimal_sparsity.results.tasks import PROXY_TASKS
from synthetic_results import synthetic_rows

FIGS = ("fig1", "fig11")
CHROMIUM = Path("/usr/bin/chromium")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    rows = synthetic_rows()
    figs = results / "tiny"
    out = [render(get_figure(f), rows, figs, mode="retrain", scale="tiny", tasks=PROXY_TASKS,
                  label="synthetic", decides=frozenset()) for f in FIGS]
    html, md = write_report(results, out, RunInfo("retrain", "tiny", 1.0, "./reproduce", figs))
    return html, md, out


def _pinned(fig: str) -> bool:
    return any((references_dir() / "scaled" / "figures" / s / f"{fig}.png").is_file()
               for s in ("full", "smoke"))


def test_html_carries_every_figure_inline(report, tmp_path):
    html, _, _ = report
    copy = tmp_path / "elsewhere" / "report.html"
    copy.parent.mkdir()
    shutil.copy(html, copy)
    text = copy.read_text()
    srcs = re.findall(r"<img src='([^']*)'", text)
    want = len(FIGS) + sum(_pinned(f) for f in FIGS)
    assert _pinned("fig1"), "the pinned figures are part of the checkout"
    assert len(srcs) == want
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:80]
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


def test_markdown_figures_travel_beside_it(report, tmp_path):
    _, md, _ = report
    dest = tmp_path / "copy"
    dest.mkdir()
    shutil.copy(md, dest / "report.md")
    shutil.copytree(md.parent / "report_files", dest / "report_files")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (dest / "report.md").read_text())
    assert len(links) == len(FIGS) + sum(_pinned(f) for f in FIGS)
    for link in links:
        assert (dest / link).read_bytes().startswith(PNG), link


def test_flags_verdicts_the_scale_cannot_decide(report):
    html, md, results = report
    decided = [v for r in results for v in r.verdicts.values()
               if "undecided_status" in v.details]
    assert decided, "fig1 has three points: its claims compute a verdict to withhold"
    text, md_text = html.read_text(), md.read_text()
    for v in decided:
        flag = f"not decidable at tiny scale (would read {v.details['undecided_status']})"
        assert flag in text and flag in md_text
    assert "this scale does not decide those claims" in text


def _chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package "
                    "(apt-get install -y chromium) to run the browser check")
    return CHROMIUM


def _browser(exe: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(exe), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_chromium_shows_every_image_from_a_copy(report, tmp_path):
    """Load a copy in another directory; a script appended to the copy records each
    image's naturalWidth in the DOM; a screenshot must not be blank."""
    import numpy as np
    from PIL import Image

    exe = _chromium()
    html, _, _ = report
    page = tmp_path / "mailed" / "report.html"
    page.parent.mkdir()
    probe = ("<script>window.addEventListener('load',()=>{document.body.setAttribute("
             "'data-widths',[...document.images].map(i=>i.complete?i.naturalWidth:0)"
             ".join(','));});</script></body>")
    page.write_text(html.read_text().replace("</body>", probe))
    dom = _browser(exe, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-widths="([\d,]*)"', dom.stdout)
    assert m, dom.stdout[-2000:]
    widths = [int(w) for w in m.group(1).split(",") if w]
    assert len(widths) == len(FIGS) + sum(_pinned(f) for f in FIGS)
    assert all(w > 100 for w in widths), widths
    shot = tmp_path / "shot.png"
    shutil.copy(html, page)  # the report itself, as mailed
    res = _browser(exe, tmp_path / "profile", f"--screenshot={shot}",
                   "--window-size=1280,2400", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "a blank screenshot"
    assert (pixels < 128).mean() > 0.01, "no text or figures drawn"
