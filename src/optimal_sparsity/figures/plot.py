"""Draw a figure spec from per-point results (matplotlib), and the data behind it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimal_sparsity.atomic import atomic_open
from optimal_sparsity.claims.data import Point, families, having
from optimal_sparsity.claims.registry import ClaimData, TaskSet
from optimal_sparsity.figures.spec import FigureSpec, Panel


@dataclass
class Datum:
    panel: str
    series: str
    model: str
    x: float
    y: float
    yerr: float


def _x(p: Point, axis: str, tasks: TaskSet) -> float:
    if axis == "train_loss":
        return p.mean(*tasks.train_loss)
    return float({"total_params": p.total_params, "active_params": p.active_params,
                  "tpp": p.tpp, "density": p.density}[axis])


def _family_label(fam: tuple[int, int, int]) -> str:
    d, k, n_layers = fam
    return f"d{d} k{k}" + (f" L{n_layers}" if n_layers != 4 else "")


def panel_data(panel: Panel, data: ClaimData, points: list[Point]) -> list[Datum]:
    t = data.tasks
    out: list[Datum] = []
    if panel.kind == "lines":
        m = panel.metric(t)
        need = [m] + ([t.train_loss] if panel.x == "train_loss" else [])
        for fam, pts in families(having(points, *need)).items():
            for p in sorted(pts, key=lambda p: _x(p, panel.x, t)):
                out.append(Datum(panel.title, _family_label(fam), p.name, _x(p, panel.x, t),
                                 p.mean(*m), p.se(*m)))
    elif panel.kind == "sparsity_scatter":
        m = panel.metric(t)
        for p in having(data.checkpoints, m, t.train_loss):
            out.append(Datum(panel.title, f"{p.sparsity:.3f}", f"{p.name}@{p.step}",
                             p.mean(*t.train_loss), 1 - p.mean(*m), p.se(*m)))
    elif panel.kind == "sc_curve":
        for p in points:
            ns = sorted(int(mm.split("@")[1]) for tt, mm in p.values
                        if tt == t.sc_task and mm.startswith("maj@"))
            for n in ns:
                out.append(Datum(panel.title, f"{p.name} maj", p.name, n,
                                 p.mean(t.sc_task, f"maj@{n}"), p.se(t.sc_task, f"maj@{n}")))
                if p.has(t.sc_task, f"cov@{n}"):
                    out.append(Datum(panel.title, f"{p.name} coverage", p.name, n,
                                     p.mean(t.sc_task, f"cov@{n}"),
                                     p.se(t.sc_task, f"cov@{n}")))
    elif panel.kind == "grpo":
        task = t.grpo_task if panel.y == "grpo" else t.grpo_second_task
        for fam, pts in families(having(points, (task, "acc_after"))).items():
            for p in pts:
                for when in ("before", "after"):
                    out.append(Datum(panel.title, f"{_family_label(fam)} {when}", p.name,
                                     p.total_params, p.mean(task, f"acc_{when}"),
                                     p.se(task, f"acc_{when}")))
    elif panel.kind == "fewshot":
        for p in points:
            shots = sorted((int(mm.removeprefix("acc@").split("shot")[0]), mm)
                           for tt, mm in p.values if tt == t.fewshot_task)
            for n, mm in shots:
                out.append(Datum(panel.title, p.name, p.name, n, p.mean(t.fewshot_task, mm),
                                 p.se(t.fewshot_task, mm)))
    return out


def draw(spec: FigureSpec, data: ClaimData, points: list[Point], out_stem: Path,
         label: str) -> list[Datum]:
    """Write ``out_stem``.png/.svg/.pdf and return the plotted data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(spec.panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    all_data: list[Datum] = []
    for ax, panel in zip(axes.flat, spec.panels, strict=False):
        d = panel_data(panel, data, points)
        all_data += d
        _draw_panel(ax, panel, d)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{spec.id.upper()}: {spec.title}\n{label}", fontsize=10)
    fig.tight_layout()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg", "pdf"):
        with atomic_open(out_stem.with_suffix(f".{ext}"), "wb") as f:
            fig.savefig(f, dpi=150, format=ext)
    plt.close(fig)
    return all_data


def _draw_panel(ax, panel: Panel, data: list[Datum]) -> None:
    import matplotlib.pyplot as plt

    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel({"total_params": "total parameters", "active_params": "active parameters",
                   "train_loss": "pre-training loss (train, nats)",
                   "tpp": "tokens per parameter (TPP)", "density": "density k/E",
                   "samples": "samples per problem (N)", "shots": "few-shot examples"}
                  .get(panel.x, panel.x), fontsize=8)
    ax.set_ylabel(panel.y_label, fontsize=8)
    ax.tick_params(labelsize=7)
    if not data:
        ax.text(0.5, 0.5, "no data at this scale", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="grey")
        return
    if panel.log_x:
        ax.set_xscale("log", base=2 if panel.x in ("density", "samples") else 10)
        from matplotlib import ticker

        # Plain numbers, no crowded minor labels when the data span less than a decade.
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        xs = [d.x for d in data if d.x > 0]
        if xs and max(xs) / min(xs) < 30 and panel.x not in ("density", "samples"):
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
    if panel.kind == "sparsity_scatter":
        xs = np.array([d.x for d in data])
        ys = np.array([d.y for d in data])
        cs = np.array([float(d.series) for d in data])
        sc = ax.scatter(xs, ys, c=cs, cmap="viridis", s=18, vmin=0, vmax=1)
        plt.colorbar(sc, ax=ax, label="sparsity 1-k/E")
        return
    for series in dict.fromkeys(d.series for d in data):
        pts = [d for d in data if d.series == series]
        style = "--" if series.endswith(("before", "coverage")) else "-"
        ax.errorbar([d.x for d in pts], [d.y for d in pts],
                    yerr=[0 if not math.isfinite(d.yerr) else d.yerr for d in pts],
                    fmt=style + "o", ms=3, lw=1, capsize=2, label=series)
        if panel.x == "density" and len(pts) >= 2:  # the paper's black circle: optimum
            best = (min if "loss" in panel.y_label or "bits" in panel.y_label else max)(
                pts, key=lambda d: d.y)
            ax.plot(best.x, best.y, "o", mfc="none", mec="black", ms=9, mew=1.5)
    ax.legend(fontsize=6, ncol=1 if len({d.series for d in data}) < 6 else 2)
