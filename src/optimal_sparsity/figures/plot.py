"""Draw a figure spec from per-point results (matplotlib), and the data behind it."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimal_sparsity.atomic import atomic_open
from optimal_sparsity.claims.registry import ClaimData
from optimal_sparsity.figures.spec import FigureSpec, Panel
from optimal_sparsity.results.points import Point, families, having
from optimal_sparsity.results.tasks import TaskSet


@dataclass
class Datum:
    panel: str
    series: str
    model: str
    x: float
    y: float
    yerr: float
    family: tuple[int, int, int] = (0, 0, 0)  # the (d, k, layers) it belongs to
    E: int = 0


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
                                 p.mean(*m), p.se(*m), fam, p.E))
    elif panel.kind == "sparsity_scatter":
        m = panel.metric(t)
        for p in having(data.checkpoints, m, t.train_loss):
            out.append(Datum(panel.title, f"{p.sparsity:.3f}", f"{p.name}@{p.step}",
                             p.mean(*t.train_loss), 1 - p.mean(*m), p.se(*m), p.family, p.E))
    elif panel.kind == "sc_curve":
        for p in points:
            ns = sorted(int(mm.split("@")[1]) for tt, mm in p.values
                        if tt == t.sc_task and mm.startswith("maj@"))
            for n in ns:
                out.append(Datum(panel.title, f"{p.name} maj", p.name, n,
                                 p.mean(t.sc_task, f"maj@{n}"), p.se(t.sc_task, f"maj@{n}"),
                                 p.family, p.E))
                if p.has(t.sc_task, f"cov@{n}"):
                    out.append(Datum(panel.title, f"{p.name} coverage", p.name, n,
                                     p.mean(t.sc_task, f"cov@{n}"),
                                     p.se(t.sc_task, f"cov@{n}"), p.family, p.E))
    elif panel.kind == "grpo":
        task = t.grpo_task if panel.y == "grpo" else t.grpo_second_task
        for fam, pts in families(having(points, (task, "acc_after"))).items():
            for p in pts:
                for when in ("before", "after"):
                    out.append(Datum(panel.title, f"{_family_label(fam)} {when}", p.name,
                                     p.total_params, p.mean(task, f"acc_{when}"),
                                     p.se(task, f"acc_{when}"), fam, p.E))
    elif panel.kind == "fewshot":
        for p in points:
            shots = sorted((int(mm.removeprefix("acc@").split("shot")[0]), mm)
                           for tt, mm in p.values if tt == t.fewshot_task)
            for n, mm in shots:
                out.append(Datum(panel.title, p.name, p.name, n, p.mean(t.fewshot_task, mm),
                                 p.se(t.fewshot_task, mm), p.family, p.E))
    return out


def family_color(family: tuple[int, int, int]) -> str:
    """The one colour of an active-parameter family (d, k, layers) in every figure: the hue
    from k (tab10, one per power of two), lighter for narrower and darker for wider models."""
    from matplotlib import colormaps, colors

    d, k, _ = family
    base = np.array(colors.to_rgb(colormaps["tab10"](round(math.log2(max(k, 1))) % 10)))
    shade = float(np.clip(math.log2(d / 64) * 0.35, -0.7, 0.7)) if d > 0 else 0.0
    rgb = base + (1 - base) * -shade if shade < 0 else base * (1 - shade)
    return colors.to_hex(rgb)


def model_color(n_experts: int) -> str:
    """The colour of one model of a family (series per model: self-consistency, few-shot):
    by its number of experts, on one sequential scale (E = 1 ... 64)."""
    from matplotlib import colormaps, colors

    return colors.to_hex(colormaps["viridis"](min(math.log2(max(n_experts, 1)) / 6, 1) * 0.9))


def _tick_text(v: float, _pos: object = None) -> str:
    """Short tick labels: 200k, 1.5M, 1/8."""
    if v <= 0:
        return f"{v:g}"
    if v < 1 and abs(1 / v - round(1 / v)) < 1e-9:
        return f"1/{round(1 / v)}"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _log_x(ax, panel: Panel, data: list[Datum]) -> None:
    """A log x axis with at least three readable labels (minor ticks unlabelled)."""
    from matplotlib import ticker

    base = 2 if panel.x in ("density", "samples") else 10
    ax.set_xscale("log", base=base)
    lo, hi = ax.get_xlim()

    def shown(loc) -> int:
        return sum(lo <= t <= hi for t in loc.tick_values(lo, hi))

    if base == 2:  # powers of two; within one octave, every data value
        loc = ticker.LogLocator(base=2)
        if shown(loc) < 3:
            loc = ticker.FixedLocator(sorted({d.x for d in data if d.x > 0}))
    else:  # the fewest 1-2-5 style subdivisions that give three labels
        for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), tuple(range(1, 10))):
            loc = ticker.LogLocator(base=10, subs=subs)
            if shown(loc) >= 3:
                break
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_tick_text))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=base, subs="auto"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _clear(boxes: list, horizontal: bool, pad: float) -> bool:
    """No two successive label boxes (sorted along the axis) overlap."""
    return all((a.x1 + pad <= b.x0) if horizontal else (a.y1 + pad <= b.y0)
               for a, b in itertools.pairwise(boxes))


def _declutter(ax, renderer, pad: float = 3.0) -> None:
    """Keep every n-th tick label (smallest n) so that no two labels overlap."""
    from matplotlib import ticker

    for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
        lo, hi = sorted(axis.get_view_interval())
        ticks = sorted((t for t in axis.get_major_ticks() if lo <= t.get_loc() <= hi
                        and t.label1.get_visible() and t.label1.get_text()),
                       key=lambda t: t.get_loc())
        boxes = [t.label1.get_window_extent(renderer) for t in ticks]
        step = next(s for s in range(1, len(ticks) + 2)
                    if _clear(boxes[::s], horizontal, pad))
        if step > 1:
            axis.set_major_locator(ticker.FixedLocator([t.get_loc() for t in ticks[::step]]))


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    import textwrap

    chars = max(20, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def build_figure(spec: FigureSpec, data: ClaimData, points: list[Point], label: str):
    """The matplotlib figure of ``spec`` and the data it plots (nothing written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(spec.panels)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    width = 4.2 * cols
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.4 * rows + 0.9), squeeze=False,
                             layout="constrained")
    all_data: list[Datum] = []
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, spec.panels, strict=False):
        d = panel_data(panel, data, points)
        all_data += d
        handles.update(_draw_panel(ax, panel, d))
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(_wrap(f"{spec.id.upper()}: {spec.title}\n{label}", width, 10), fontsize=10)
    if "optimum" in handles:  # the marker's entry after the series
        handles["optimum"] = handles.pop("optimum")
    if handles:  # one legend for the figure, below the panels: never over the data
        renderer = fig.canvas.get_renderer()
        for ncol in range(min(len(handles), 6), 0, -1):
            leg = fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                             ncol=ncol, fontsize=7, frameon=False)
            if leg.get_window_extent(renderer).width <= 0.98 * width * fig.dpi or ncol == 1:
                break
            leg.remove()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes.flat[:n]:
        _declutter(ax, renderer)
    return fig, all_data


def draw(spec: FigureSpec, data: ClaimData, points: list[Point], out_stem: Path,
         label: str) -> list[Datum]:
    """Write ``out_stem``.png/.svg/.pdf and return the plotted data."""
    import matplotlib.pyplot as plt

    fig, all_data = build_figure(spec, data, points, label)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg", "pdf"):
        with atomic_open(out_stem.with_suffix(f".{ext}"), "wb") as f:
            fig.savefig(f, dpi=150, format=ext)
    plt.close(fig)
    return all_data


X_LABELS = {"total_params": "total parameters", "active_params": "active parameters",
            "train_loss": "pre-training loss (train, nats)", "tpp": "tokens per parameter (TPP)",
            "density": "density k/E", "samples": "samples per problem (N)",
            "shots": "few-shot examples"}
UNIT_MARGIN = 0.02  # [0, 1] axes show markers at 0 and 1 whole


def _draw_panel(ax, panel: Panel, data: list[Datum]) -> dict[str, object]:
    """Draw one panel; return its legend entries (label -> handle)."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel(X_LABELS.get(panel.x, panel.x), fontsize=8)
    ax.set_ylabel(panel.y_label, fontsize=8)
    ax.tick_params(labelsize=7)
    if panel.unit_interval:
        ax.set_ylim(-UNIT_MARGIN, 1 + UNIT_MARGIN)
        ax.yaxis.set_major_locator(ticker.MultipleLocator(0.25))
    if not data:
        ax.text(0.5, 0.5, "no data at this scale", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="grey")
        return {}
    handles: dict[str, object] = {}
    if panel.kind == "sparsity_scatter":
        xs = np.array([d.x for d in data])
        ys = np.array([d.y for d in data])
        cs = np.array([float(d.series) for d in data])
        sc = ax.scatter(xs, ys, c=cs, cmap="viridis", s=18, vmin=0, vmax=1)
        plt.colorbar(sc, ax=ax, label="sparsity 1-k/E")
    else:
        for series in dict.fromkeys(d.series for d in data):
            pts = [d for d in data if d.series == series]
            style = "--" if series.endswith(("before", "coverage")) else "-"
            color = (model_color(pts[0].E) if panel.kind in ("sc_curve", "fewshot")
                     else family_color(pts[0].family))
            h = ax.errorbar([d.x for d in pts], [d.y for d in pts],
                            yerr=[0 if not math.isfinite(d.yerr) else d.yerr for d in pts],
                            fmt=style + "o", ms=3, lw=1, capsize=2, label=series, color=color)
            handles[series] = h
            if panel.x == "density" and len(pts) >= 2:  # the paper's black circle: optimum
                best = (min if "loss" in panel.y_label or "bits" in panel.y_label else max)(
                    pts, key=lambda d: d.y)
                handles["optimum"], = ax.plot(best.x, best.y, "o", mfc="none", mec="black",
                                              ms=9, mew=1.5, label="optimum")
    if panel.log_x:
        _log_x(ax, panel, data)
    if panel.x in ("shots", "samples") and not panel.log_x:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    return handles
