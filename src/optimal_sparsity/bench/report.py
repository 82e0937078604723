"""Tables from a benchmark report (the JSON ``run_suite`` writes): one per kind of row,
as plain text for the terminal or as Markdown for BENCHMARKS.md."""

from __future__ import annotations

from typing import Any

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def _k(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e3:.1f}k" if x < 1e6 else f"{x / 1e6:.2f}M"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _mib(p: dict[str, Any]) -> str:
    return "-" if "peak_mib" not in p else f"{p['peak_mib']:.0f}"


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"


def _peer_cells(p: dict[str, Any], names: list[str]) -> tuple[list[str], list[str], str]:
    """Per peer: tokens/s, % of peak; and the peers' peak MiB joined in one cell."""
    return ([_k(p[n]["tokens_per_s"]) if n in p else "-" for n in names],
            [_pct(p[n]["frac_peak"]) if n in p else "-" for n in names],
            " / ".join(_mib(p[n]) for n in names if n in p))


def _load(row: dict[str, Any]) -> str:
    return _pct(row.get("other_load"))


def tables(report: dict[str, Any]) -> list[Table]:
    rows = report["rows"]
    out: list[Table] = []
    mm = [r for r in rows if r["kind"] == "matmul"]
    if mm:
        out.append(("Matmul (the machine's own peak)",
                    ["shape", "GFLOP/s", "% of 2048^3 peak", "repeats", "other load"],
                    [[r["name"], f"{r['peers']['mm']['gflops']:.0f}",
                      _pct(r["peers"]["mm"]["frac_peak"]), str(r["repeats"]), _load(r)]
                     for r in mm]))
    moe = [r for r in rows if r["kind"] == "moe_layer"]
    if moe:
        names = [n for n in ("ours", "hf-eager", "hf-grouped_mm", "megablocks")
                 if any(n in r["peers"] for r in moe)]
        body = []
        for r in moe:
            p = r["peers"]
            hf = [p[n] for n in p if n.startswith("hf-")]
            best = max(hf, key=lambda v: v["gflops"]) if hf else None
            ratio = p["ours"]["gflops"] / best["gflops"] if best else None
            tok, pk, mib = _peer_cells(p, names)
            body.append([r["name"], *tok, *pk, "-" if ratio is None else f"{ratio:.2f}x", mib,
                         f"{next(iter(r['peak_gflops'].values())):.0f}", _load(r)])
        out.append(("MoE layer, forward + backward (tokens/s; % of the row's matmul peak)",
                    ["shape", *(f"{n} tok/s" for n in names), *(f"{n} %pk" for n in names),
                     "ours / best HF", "peak MiB (" + " / ".join(names) + ")",
                     "peak GFLOP/s", "other load"], body))
    train = [r for r in rows if r["kind"] == "train_step"]
    if train:
        names = [n for n in ("ours", "ours+fused", "ours-bf16+fused", "hf-eager", "hf-grouped_mm")
                 if any(n in r["peers"] for r in train)]
        body = []
        for r in train:
            tok, pk, mib = _peer_cells(r["peers"], names)
            body.append([r["name"], *tok, *pk, mib,
                         f"{r['flops_per_call'] / r['tokens_per_call'] / 1e6:.1f}",
                         _load(r)])
        out.append(("Training step: forward + backward + AdamW (tokens/s; % of the matmul "
                    "peak of the peer's dtype)",
                    ["model, batch", *(f"{n} tok/s" for n in names),
                     *(f"{n} %pk" for n in names), "peak MiB (" + " / ".join(names) + ")",
                     "MFLOP/token", "other load"], body))
    for kind, title, peer_names in (
            ("eval_loss", "Scoring (task loss, log-likelihoods): no-grad forward + log-softmax "
             "(tokens/s; % of the fp32 matmul peak)", ("ours", "hf-eager", "hf-grouped_mm")),
            ("generate", "Greedy generation (new tokens/s; % of peak counts the FLOPs of "
             "KV-cached decoding)", ("ours", "ours-nocache", "hf-generate",
                                      "hf-generate-nocache"))):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        names = [n for n in peer_names if any(n in r["peers"] for r in sel)]
        body = []
        for r in sel:
            tok, pk, mib = _peer_cells(r["peers"], names)
            body.append([r["name"], *tok, *pk, mib, r["check"], _load(r)])
        out.append((title, ["model, batch", *(f"{n} tok/s" for n in names),
                            *(f"{n} %pk" for n in names),
                            "peak MiB (" + " / ".join(names) + ")", "check", "other load"],
                    body))
    out.extend(_study_tables(rows))
    e2e = [r for r in rows if r["kind"] == "e2e"]
    if e2e:
        out.append(("End to end (from an empty cache, timed once)",
                    ["command", "wall time", "CPU time", "peak RSS MiB (largest process)"],
                    [[r["name"], _minutes(r["peers"]["reproduce"]["median_s"]),
                      _minutes(r["peers"]["reproduce"]["cpu_s"]),
                      f"{r['peers']['reproduce']['peak_rss_mib']:.0f}"] for r in e2e]))
    tg = report.get("targets") or []
    if tg:
        out.append(("Targets", ["row", "target", "value", "met"],
                    [[t["row"], t["target"], f"{t['value']:.2f}",
                      "yes" if t["met"] else "NO"] for t in tg]))
    return out


def _setup_label(p: dict[str, Any]) -> str:
    return (f"{p['jobs']} x {p['threads']} thread{'s' if p['threads'] > 1 else ''}"
            + (", freed memory kept" if p["keep_freed"] else "")
            + (f", {p['block_bytes'] >> 10} KiB MoE blocks" if p.get("block_bytes") else "")
            + "".join(f", {k}={v}" for k, v in p.get("env", {}).items()))


def _study_tables(rows: list[dict[str, Any]]) -> list[Table]:
    out: list[Table] = []
    study = [r for r in rows if r["kind"] == "study_train"]
    if study:
        body = []
        for r in study:
            p = r["peers"]
            base = p.get("today", next(iter(p.values())))["tokens_per_s"]
            for name, v in p.items():
                per = ", ".join(f"{k} {_k(x)}" for k, x in v["per_point_tokens_per_s"].items())
                body.append([r["name"], name, _setup_label(v), _k(v["tokens_per_s"]),
                             f"{v['tokens_per_s'] / base:.2f}x", per, _load(r)])
            body[-1][5] += f" ({r['check']})"
        out.append(("The study's training: every grid point of a design, trained side by "
                    "side as the setup places runs (sweep tokens/s = jobs x n / sum of "
                    "1/rate; per point: tokens/s of each run)",
                    ["design", "setup", "runs x threads", "sweep tok/s", "vs today",
                     "per point tok/s", "other load (before)"], body))
    load = [r for r in rows if r["kind"] == "under_load"]
    if load:
        out.append(("Training beside a competing CPU-bound process (tokens/s of all runs)",
                    ["point, competitor", "setup", "runs x threads", "idle tok/s",
                     "loaded tok/s", "loaded / idle", "other load (before)"],
                    [[r["name"], name, _setup_label(v), _k(v["idle_tokens_per_s"]),
                      _k(v["tokens_per_s"]), _pct(v["loaded_fraction"]), _load(r)]
                     for r in load for name, v in r["peers"].items()]))
    return out


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (f"{m['cpu']}, {m['logical_cpus']} CPUs, torch {m['torch']} "
            f"({m['torch_threads']} threads, {m['cpu_capability']}, OMP_WAIT_POLICY "
            f"{m['omp_wait_policy']}), transformers {m['transformers']}, device {m['device']}"
            + (f" ({m['gpu']})" if "gpu" in m else ""))


def to_markdown(report: dict[str, Any]) -> str:
    parts = [f"Suite `{report['suite']}`, {report['started']}, {report['wall_s']:.0f} s; "
             f"{machine_line(report)}; git {report['machine'].get('git')}."]
    for title, header, body in tables(report):
        parts.append(f"**{title}**\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + " --- |" * len(header))
        parts.extend("| " + " | ".join(row) + " |" for row in body)
        parts.append("")
    return "\n".join(parts)


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(machine_line(report))
    for title, header, body in tables(report):
        t = RichTable(title=title, title_justify="left")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right")
        for row in body:
            t.add_row(*row)
        console.print(t)
