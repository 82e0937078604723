"""Every figure kind drawn at tiny scale from a synthetic results table (no training):
readable ticks, pinned accuracy axes, titles and legends inside the figure and off the
data, and one colour per family across figures."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from optimal_sparsity.claims.registry import ClaimData
from optimal_sparsity.figures.plot import build_figure
from optimal_sparsity.figures.registry import FIGURES
from optimal_sparsity.results.tasks import PROXY_TASKS
from synthetic_results import synthetic_rows

matplotlib.use("Agg")
DRAWN = [f for f in FIGURES if "code" not in f.tiers]  # Fig 8 needs the code models
LABEL = "scaled-down retrain, tiny scale (6 grid points x 1 seed(s), 0.048M tokens each)"


def _figure(spec, acc=None):
    data = ClaimData(synthetic_rows(acc), PROXY_TASKS)
    fig, plotted = build_figure(spec, data, data.final, LABEL)
    fig.canvas.draw()
    return fig, plotted, fig.canvas.get_renderer()


def _panels(fig, spec):
    axes = [ax for ax in fig.axes if ax.get_title()]  # colour bars have no title
    assert [ax.get_title() for ax in axes] == [p.title for p in spec.panels]
    return list(zip(axes, spec.panels, strict=True))


def _labels(axis, renderer):
    """The tick labels shown: in view, with text; (text, bbox) sorted along the axis."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = [t for t in axis.get_major_ticks()
             if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]
    return [(t.label1.get_text(), t.label1.get_window_extent(renderer))
            for t in sorted(ticks, key=lambda t: t.get_loc())]


def _inside(inner, outer, tol=1.0):
    return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol
            and inner.x1 <= outer.x1 + tol and inner.y1 <= outer.y1 + tol)


@pytest.fixture(scope="module")
def drawn():
    import matplotlib.pyplot as plt

    out = {spec.id: (spec, *_figure(spec)) for spec in DRAWN}
    yield out
    for _, fig, _, _ in out.values():
        plt.close(fig)


@pytest.mark.parametrize("fig_id", [f.id for f in DRAWN])
def test_ticks_titles_and_legends(drawn, fig_id):
    spec, fig, plotted, renderer = drawn[fig_id]
    assert plotted, "the synthetic table has data for every panel"
    fig_box = fig.bbox
    assert _inside(fig._suptitle.get_window_extent(renderer), fig_box), "suptitle clipped"
    for ax, panel in _panels(fig, spec):
        assert _inside(ax.title.get_window_extent(renderer), fig_box)
        for axis in (ax.xaxis, ax.yaxis):
            shown = _labels(axis, renderer)
            assert len(shown) >= 2, (panel.title, [t for t, _ in shown])
            for (ta, a), (tb, b) in itertools.pairwise(shown):
                assert not a.overlaps(b), (fig_id, panel.title, ta, tb)
            for _, box in shown:
                assert _inside(box, fig_box), (fig_id, panel.title)
        xs = [t for t, _ in _labels(ax.xaxis, renderer)]
        if panel.log_x:  # a log axis reads with three labels or more
            assert len(xs) >= 3, (fig_id, panel.title, xs)
        if panel.x in ("shots", "samples"):
            assert all(t.isdigit() for t in xs), (fig_id, panel.title, xs)
        if panel.unit_interval:
            lo, hi = ax.get_ylim()
            assert -0.05 <= lo <= 0 and 1 <= hi <= 1.05, (fig_id, panel.title, lo, hi)
    for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        box = leg.get_window_extent(renderer)
        assert _inside(box, fig_box), (fig_id, "legend clipped")
        for ax, _ in _panels(fig, spec):
            for line in ax.get_lines():
                for x, y in ax.transData.transform(line.get_xydata()):
                    assert not box.contains(x, y), (fig_id, "legend over data")


@pytest.mark.parametrize("fig_id", ["fig1", "fig3", "fig6", "fig11"])
def test_all_zero_accuracies_keep_the_unit_axis(fig_id):
    spec = next(f for f in DRAWN if f.id == fig_id)
    fig, _, _ = _figure(spec, acc=0.0)
    for ax, panel in _panels(fig, spec):
        if panel.unit_interval:
            lo, hi = ax.get_ylim()
            assert -0.05 <= lo <= 0 and 1 <= hi <= 1.05, (fig_id, panel.title, lo, hi)
            ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
            assert min(ticks) == 0 and max(ticks) == 1, ticks


def test_one_colour_per_family_across_figures(drawn):
    colours: dict[str, set[str]] = {}
    for spec, fig, _, _ in drawn.values():
        for ax, panel in _panels(fig, spec):
            if panel.kind not in ("lines", "grpo"):
                continue
            for c in ax.containers:
                family = " ".join(c.get_label().split()[:2])  # "d32 k2 [before|after]"
                colours.setdefault(family, set()).add(
                    matplotlib.colors.to_hex(c.lines[0].get_color()))
    assert {"d32 k1", "d32 k2"} <= set(colours)
    assert all(len(c) == 1 for c in colours.values()), colours
    assert colours["d32 k1"] != colours["d32 k2"]
