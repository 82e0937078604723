"""``./reproduce`` and ``optimal-sparsity``: one entry point, one subcommand per job.

Errors a user can act on (``UserError``) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from optimal_sparsity.errors import UserError

# Each module registers its subcommands: ``register(subparsers)`` adds parsers whose
# defaults carry ``func`` (the handler, ``argparse.Namespace -> int | None``).
COMMAND_MODULES: tuple[str, ...] = (
    "optimal_sparsity.commands.core",
    "optimal_sparsity.commands.train",
    "optimal_sparsity.commands.figures",
    "optimal_sparsity.commands.hub",
    "optimal_sparsity.commands.eval",
    "optimal_sparsity.commands.posttrain",
    "optimal_sparsity.commands.bench",
    "optimal_sparsity.commands.probe",
)


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``error: ...``), exit status 2, no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="reproduce",
        description="Reproducibility artifact for 'Optimal Sparsity of Mixture-of-Experts "
                    "Language Models for Reasoning Tasks' (arXiv 2508.18672).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def _printable_streams() -> None:
    """Paths that are not UTF-8 (bytes kept as surrogates) print escaped, never raise."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse paths that are not UTF-8 text up front: tokenizers and safetensors (Rust)
    cannot open them, and failing there would leave partial outputs."""
    paths: list[Path] = []
    for value in vars(args).values():
        values = value if isinstance(value, list) else [value]
        paths += [v for v in values if isinstance(v, Path)]
    for p in paths:
        try:
            str(p.absolute()).encode("utf-8")
        except UnicodeEncodeError:
            shown = str(p).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UserError(f"{shown}: the path is not UTF-8 text, which the tokenizer and "
                            "safetensors libraries cannot open; rename it") from None


def main(argv: Sequence[str] | None = None) -> int:
    _printable_streams()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("--") and argv[0] not in ("--help", "--version")):
        argv = ["all", *argv]  # `./reproduce [--scale ...]`: every figure
    args = parser.parse_args(argv)
    try:
        _check_paths(args)
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `./reproduce grid --csv | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if os.environ.get("OPTIMAL_SPARSITY_DEBUG"):
            raise
        where = f"{os.fsdecode(err.filename)}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
