"""Write ``report.html`` and ``report.md`` from the figure results of one run.

Both travel on their own: ``report.html`` carries every figure inline (``data:`` URIs: one
file to mail, or to open from any directory); ``report.md`` links copies of the same
figures in ``report_files/`` beside it (copy the two together). Verdicts the run's scale
has no power to decide (the design's ``decides``, applied in ``figures.render``) are
flagged, with the verdict they would have read.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.atomic import write_bytes, write_text
from optimal_sparsity.claims.registry import CLAIMS_BY_ID
from optimal_sparsity.claims.stats import RULE_TEXT
from optimal_sparsity.figures.registry import FIGURES_BY_ID
from optimal_sparsity.figures.render import FigureResult
from optimal_sparsity.paths import REPORT_FILES, REPORT_HTML, REPORT_MD, mode_dir
from optimal_sparsity.provenance import provenance
from optimal_sparsity.references import references_dir

COLORS = {"reproduced": "#1a7f37", "not reproduced": "#cf222e", "inconclusive": "#9a6700",
          "not testable": "#57606a"}
FILES = REPORT_FILES  # beside report.md: the figures it shows


@dataclass
class RunInfo:
    mode: str
    scale: str
    wall_s: float
    command: str
    figures_dir: Path | None = None  # where the figures' outputs lie (default: paths.mode_dir)


@dataclass(frozen=True)
class Shown:
    """One figure of the report: this run's PNG and the pinned one (full scale if pinned)."""

    result: FigureResult
    png: Path | None
    pinned: Path | None


def _pinned_png(fig_id: str) -> Path | None:
    """The pinned figure of the largest scale pinned (``references/scaled/figures/<scale>/``)."""
    for scale in ("full", "smoke"):
        p = references_dir() / "scaled" / "figures" / scale / f"{fig_id}.png"
        if p.is_file():
            return p
    return None


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def undecided(result_details: dict) -> str | None:
    """The verdict a claim would have read had the run's scale the power to decide it."""
    return result_details.get("undecided_status")


def claim_rows(results: list[FigureResult]) -> list[dict[str, str]]:
    rows = []
    for res in results:
        for cid, v in res.verdicts.items():
            c = CLAIMS_BY_ID[cid]
            rows.append({"claim": cid, "figure": c.figure, "paper": c.statement,
                         "measured": v.statistic, "verdict": v.status, "label": v.label,
                         "undecided": undecided(v.details) or ""})
    return rows


def _shown(results: list[FigureResult], figures_dir: Path) -> list[Shown]:
    out = []
    for res in results:
        png = None if res.skipped else figures_dir / res.outputs["png"]
        out.append(Shown(res, png if png is not None and png.is_file() else None,
                         _pinned_png(res.figure)))
    return out


def _flag(undecided_status: str, scale: str) -> str:
    return (f"not decidable at {scale} scale (would read {undecided_status}); "
            "see the full scale")


def write_report(out_dir: Path, results: list[FigureResult], info: RunInfo) -> tuple[Path, Path]:
    prov = provenance()
    label = f"{info.mode} mode, {info.scale} scale"
    rows = claim_rows(results)
    counts = {s: sum(r["verdict"] == s for r in rows) for s in COLORS}
    n_flagged = sum(bool(r["undecided"]) for r in rows)
    flagged_note = (f"{n_flagged} of {len(rows)} verdicts are flagged: this scale does not "
                    "decide those claims (its one seed lacks the power, as the study design "
                    "declares), so they read inconclusive with the verdict they would read."
                    if n_flagged else "")
    regressions = [(r.figure, g) for r in results for g in r.regressions]
    shown = _shown(results, info.figures_dir or mode_dir(out_dir, info.mode, info.scale))

    # Markdown (figures copied beside it) ------------------------------------------------
    md = [f"# optimal-sparsity: claim-by-claim report ({label})", "",
          f"Paper: arXiv 2508.18672. Commit `{prov['commit']}`, {prov['time']}, "
          f"{prov['hardware']}. Wall time {info.wall_s / 60:.1f} min. Command: "
          f"`{info.command}`.", "",
          "Verdicts: " + ", ".join(f"{n} {s}" for s, n in counts.items()), "",
          f"Rule: {RULE_TEXT}", ""]
    if flagged_note:
        md += [flagged_note, ""]
    md += ["| claim | figure | paper says | we measured | verdict |",
           "| --- | --- | --- | --- | --- |"]
    md += [f"| {r['claim']} | {r['figure']} | {r['paper']} | {r['measured']} | "
           f"**{r['label']}**"
           + (f" ({_flag(r['undecided'], info.scale)})" if r["undecided"] else "") + " |"
           for r in rows]
    md += ["", "## Regression check against the pinned references", ""]
    if regressions:
        md += [f"- {fig}: {g}" for fig, g in regressions]
    else:
        compared = sum(r.compared for r in results)
        md.append(f"No regressions ({compared} values compared)." if compared
                  else "No reference values for this scale and mode.")
    md += ["", "## Figures", ""]
    for s in shown:
        res = s.result
        spec = FIGURES_BY_ID[res.figure]
        md += [f"### {res.figure}: {spec.title}", "", f"Paper: {spec.paper}", ""]
        if res.skipped:
            md += [f"Skipped: {res.skipped}", ""]
        elif s.png is not None:
            name = f"{FILES}/{info.mode}-{info.scale}-{res.figure}.png"
            write_bytes(out_dir / name, s.png.read_bytes())
            md += [f"![{res.figure}, this run]({name})", ""]
        if s.pinned is not None:
            name = f"{FILES}/pinned-full-{res.figure}.png"
            write_bytes(out_dir / name, s.pinned.read_bytes())
            md += ["Pinned full-scale reference:", "", f"![{res.figure}, full scale]({name})",
                   ""]
    md += ["## Environment", "", *(f"- {k}: {v}" for k, v in prov["versions"].items())]
    md_path = out_dir / REPORT_MD
    write_text(md_path, "\n".join(md) + "\n")

    # HTML (figures inline) ----------------------------------------------------------------
    def esc(s: object) -> str:
        return html.escape(str(s))

    trs = "\n".join(
        f"<tr{' class=flagged' if r['undecided'] else ''}><td><code>{esc(r['claim'])}</code>"
        f"</td><td>{esc(r['figure'])}</td><td>{esc(r['paper'])}</td>"
        f"<td>{esc(r['measured'])}</td>"
        f"<td><span class='v' style='background:{COLORS[r['verdict']]}'>{esc(r['label'])}"
        "</span>" + (f"<div class='flag'>{esc(_flag(r['undecided'], info.scale))}</div>"
                     if r["undecided"] else "") + "</td></tr>" for r in rows)
    figs = []
    for s in shown:
        res = s.result
        spec = FIGURES_BY_ID[res.figure]
        body = (f"<p class='skip'>Skipped: {esc(res.skipped)}</p>" if res.skipped else
                f"<figure><img src='{_data_uri(s.png)}' alt='{esc(res.figure)}, this run'>"
                f"<figcaption>This run ({esc(label)})</figcaption></figure>"
                if s.png is not None else "<p class='skip'>No figure was written.</p>")
        if s.pinned is not None:
            body += (f"<figure><img src='{_data_uri(s.pinned)}' alt='{esc(res.figure)}, "
                     f"pinned {s.pinned.parent.name} scale'><figcaption>Pinned reference: "
                     f"{s.pinned.parent.name} scale, from references/</figcaption></figure>")
        figs.append(f"<section><h3>{esc(res.figure)}: {esc(spec.title)}</h3>"
                    f"<p class='paper'>Paper: {esc(spec.paper)}</p><div class='figs'>{body}"
                    "</div></section>")
    regs = ("<ul>" + "".join(f"<li>{esc(f)}: {esc(g)}</li>" for f, g in regressions) + "</ul>"
            if regressions else f"<p>No regressions ({sum(r.compared for r in results)} values "
            "compared with the pinned references).</p>")
    env = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in prov["versions"].items())
    summary = " ".join(f"<span class='v' style='background:{c}'>{counts[s]} {esc(s)}</span>"
                       for s, c in COLORS.items())
    flagged_html = f"<p class='flag'>{esc(flagged_note)}</p>" if flagged_note else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>optimal-sparsity report ({esc(label)})</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#1f2328;
line-height:1.4;padding:0 1rem}}
table{{border-collapse:collapse;width:100%;font-size:.88rem}}
th,td{{border:1px solid #d0d7de;padding:.35rem .5rem;vertical-align:top;text-align:left}}
th{{background:#f6f8fa}} tr.flagged{{background:#fff8c5}}
.v{{color:#fff;border-radius:1rem;padding:.1rem .55rem;white-space:nowrap;font-size:.8rem}}
.flag{{color:#7d4e00;font-size:.8rem}}
.figs{{display:flex;flex-wrap:wrap;gap:1rem}} figure{{margin:0}}
img{{max-width:100%;border:1px solid #d0d7de}} .paper{{color:#57606a}} .skip{{color:#9a6700}}
figcaption{{font-size:.8rem;color:#57606a}}
</style></head><body>
<h1>Optimal Sparsity of MoE LMs for Reasoning: claim-by-claim report</h1>
<p>{esc(label)} &middot; commit <code>{esc(prov['commit'])}</code> &middot; {esc(prov['time'])}
&middot; {esc(prov['hardware'])} &middot; wall time {info.wall_s / 60:.1f} min &middot;
command <code>{esc(info.command)}</code></p>
<p>{summary}</p>{flagged_html}
<h2>Claims</h2>
<p>{esc(RULE_TEXT)}</p>
<table><thead><tr><th>claim</th><th>figure</th><th>paper says</th><th>we measured
(90% interval under seed noise)</th><th>verdict</th></tr></thead><tbody>
{trs}
</tbody></table>
<h2>Regression check</h2>{regs}
<h2>Figures</h2>
{''.join(figs)}
<h2>Environment</h2><ul>{env}</ul>
</body></html>
"""
    html_path = out_dir / REPORT_HTML
    write_text(html_path, page)
    return html_path, md_path
