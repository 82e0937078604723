"""Where the artifact keeps generated data (corpora, runs, results)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def home() -> Path:
    """``$OPTIMAL_SPARSITY_HOME``, else ``runs/`` in the checkout."""
    return Path(os.environ.get("OPTIMAL_SPARSITY_HOME", REPO / "runs"))


def corpus_cache(fingerprint: str) -> Path:
    return home() / "corpora" / fingerprint


def mode_dir(results: str | os.PathLike, mode: str, scale: str) -> Path:
    """Where one mode's figures, results table and ``run.json`` go under a results root:
    ``<scale>/`` for the retrained study, ``pull/`` for the released checkpoints (whatever
    the scale), so a pull-mode run never touches a retrain run's files."""
    return Path(results) / ("pull" if mode == "pull" else scale)


# The layout of a results root, declared once: ``report.html`` and ``report.md`` (with its
# figures in ``report_files/``) at the root; per mode (``mode_dir``) ``run.json``, the results
# table ``table/`` and one folder per figure.
REPORT_HTML, REPORT_MD, REPORT_FILES = "report.html", "report.md", "report_files"


@dataclass(frozen=True)
class FigureFiles:
    """One figure's folder: ``result.json``, ``data.csv``, ``verdicts.json`` and the plot as
    ``<id>.png``, ``.svg`` and ``.pdf``."""

    mode_dir: Path
    fig_id: str

    @property
    def dir(self) -> Path:
        return self.mode_dir / self.fig_id

    @property
    def result_json(self) -> Path:
        return self.dir / "result.json"

    @property
    def data_csv(self) -> Path:
        return self.dir / "data.csv"

    @property
    def verdicts_json(self) -> Path:
        return self.dir / "verdicts.json"

    @property
    def plot_stem(self) -> Path:
        """The plot's path without its suffix."""
        return self.dir / self.fig_id

    def outputs(self) -> dict[str, str]:
        """The figure's files, relative to its mode's folder (as a result records them)."""
        return {ext: f"{self.fig_id}/{self.fig_id}.{ext}" for ext in ("png", "svg", "pdf")} | {
            "csv": f"{self.fig_id}/data.csv"}


@dataclass(frozen=True)
class ModeFiles:
    """One mode's folder under a results root (``mode_dir``)."""

    dir: Path

    @classmethod
    def of(cls, results: str | os.PathLike, mode: str, scale: str) -> ModeFiles:
        return cls(mode_dir(results, mode, scale))

    @property
    def run_json(self) -> Path:
        return self.dir / "run.json"

    @property
    def table(self) -> Path:
        """The results table (``results.table``) of every run evaluated for this mode."""
        return self.dir / "table"

    def figure(self, fig_id: str) -> FigureFiles:
        return FigureFiles(self.dir, fig_id)
