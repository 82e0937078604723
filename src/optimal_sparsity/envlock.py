"""The hashed lock of the CPU environment (``requirements.lock``) and how it is installed.

The lock is ``uv pip compile --generate-hashes`` output (``nox -s lock`` writes it): every
distribution of the environment pinned exactly, each with the sha256 of its files, torch
as the CPU build (``torch==2.13.0+cpu``) so that no ``nvidia-*``/``triton``/CUDA package can
enter. ``install`` puts it into a virtual environment in three hash-checked steps:

1. the installer itself (pip, setuptools) from the lock;
2. torch alone, with PyTorch's CPU index added (``TORCH_CPU_INDEX``; where that index is
   unreachable pip's own configured sources are searched, and the pinned hash still decides);
3. the whole lock (torch is already there), without dependency resolution (pip's
   hash-checking mode cannot take an extra such as ``typepy[datetime]`` of a pin), then
   ``pip check``, so that a dependency missing from the lock is an error, not a download;

then the project itself, editable, without dependencies or build isolation.

Standard library only: ``./reproduce`` runs this file with the bare interpreter before
anything is installed::

    python envlock.py install VENV_PYTHON LOCK [--editable ROOT]
    python envlock.py pins LOCK [--drop NAME ...]     # plain name==version lines
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTALLER = ("pip", "setuptools")
_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)(\s*;[^-]*)?(.*)$")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>"

    def requirement(self) -> str:
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(text: str) -> Iterable[str]:
    buf = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def parse_lock(text: str) -> dict[str, Pin]:
    """Every pin of a requirements file, by canonical name; a line that is not an exact
    pin (or an option such as ``--index-url``) is an error."""
    pins: dict[str, Pin] = {}
    for line in _logical_lines(text):
        m = _REQ.match(line)
        if not m:
            raise ValueError(f"not an exact pin: {line[:80]}")
        name, _extras, version, _marker, rest = m.groups()
        hashes = tuple(re.findall(r"--hash[= ](sha256:[0-9a-f]{64})", rest))
        if rest.replace(" ", "") != "".join(f"--hash={h}" for h in hashes):
            raise ValueError(f"{name}: unexpected text after the pin: {rest.strip()[:80]}")
        pins[canonical(name)] = Pin(canonical(name), version, hashes)
    return pins


def read_lock(path: str | Path) -> dict[str, Pin]:
    return parse_lock(Path(path).read_text())


def _pip(python: str, args: Sequence[str], log: Callable[[str], None], capture: bool,
         command: str = "install") -> None:
    cmd = [python, "-m", "pip", command, "--disable-pip-version-check", *args]
    log("+ " + " ".join(cmd))
    res = subprocess.run(cmd, capture_output=capture, text=True)
    if capture:
        log(res.stdout + res.stderr)
    if res.returncode:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)


def install(python: str, lock: str | Path, *, editable: str | Path | None = None,
            log: Callable[[str], None] = print, capture: bool = False) -> None:
    """Install ``lock`` into the environment of ``python`` (see the module docstring).
    With ``capture`` pip's output goes to ``log`` and, for the failing step, into the
    ``CalledProcessError``."""
    pins = read_lock(lock)
    unhashed = sorted(p.name for p in pins.values() if not p.hashes)
    if unhashed:
        raise ValueError(f"{lock}: pins without hashes: {', '.join(unhashed)}")
    with tempfile.TemporaryDirectory(prefix="envlock-") as tmp:
        def part(name: str, names: Iterable[str]) -> str:
            path = Path(tmp) / name
            path.write_text("".join(pins[n].requirement() + "\n" for n in names if n in pins))
            return str(path)

        hashed = ["--require-hashes", "--no-deps"]
        _pip(python, [*hashed, "-r", part("installer.txt", INSTALLER)], log, capture)
        if "torch" in pins:
            _pip(python, [*hashed, "--extra-index-url", TORCH_CPU_INDEX,
                          "-r", part("torch.txt", ["torch"])], log, capture)
        _pip(python, [*hashed, "-r", str(lock)], log, capture)
    if editable is not None:
        _pip(python, ["--no-deps", "--no-build-isolation", "-e", str(editable)], log, capture)
    _pip(python, [], log, capture, command="check")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Install or read the hashed lock.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_install = sub.add_parser("install", help="install LOCK into PYTHON's environment")
    p_install.add_argument("python")
    p_install.add_argument("lock", type=Path)
    p_install.add_argument("--editable", type=Path, help="then the project at this root")
    p_pins = sub.add_parser("pins", help="print plain name==version pins")
    p_pins.add_argument("lock", type=Path)
    p_pins.add_argument("--drop", nargs="*", default=[], help="names to leave out")
    args = ap.parse_args(argv)
    try:
        pins = read_lock(args.lock)
        if args.cmd == "pins":
            drop = {canonical(n) for n in args.drop}
            for p in pins.values():
                if p.name not in drop:
                    print(f"{p.name}=={p.version}")
            return 0
        install(args.python, args.lock, editable=args.editable,
                log=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError) as err:
        print(f"envlock: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"envlock: pip failed (exit {err.returncode})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
