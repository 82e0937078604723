"""Data files the package carries (see PROVENANCE.md)."""

from pathlib import Path

RESOURCES = Path(__file__).parent
