"""Slurm job parameters: one declaration, read from a TOML file and the command line.

The same ``SlurmSettings`` feed the sweep's ``--launcher slurm`` (one submitit job per
run) and the paper-scale submission (``./reproduce scale-out``: one torchrun job across
nodes). A config file holds a ``[slurm]`` table::

    [slurm]
    partition = "gpu"
    account = "my-project"
    time = "7-00:00:00"          # or minutes, e.g. 90
    nodes = 4
    gpus_per_node = 8
    cpus_per_task = 64
    mem = "0"                    # Slurm's --mem (0: all of the node's memory)
    extra = ["--qos=high", "--exclusive"]   # further #SBATCH lines

Command-line values (``--slurm-partition`` ...) override the file's.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimal_sparsity.errors import UserError

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    time: str = "1-00:00:00"  # Slurm's --time: minutes, H:M:S or D-H:M:S
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem: str | None = None  # Slurm's --mem, e.g. "64G" ("0": the whole node)
    extra: tuple[str, ...] = ()  # further sbatch options, e.g. "--qos=high"

    def __post_init__(self) -> None:
        time_minutes(self.time)  # validates
        for f in ("nodes", "cpus_per_task"):
            if getattr(self, f) < 1:
                raise UserError(f"slurm: {f} must be >= 1 (got {getattr(self, f)})")
        if self.gpus_per_node < 0:
            raise UserError(f"slurm: gpus_per_node must be >= 0 (got {self.gpus_per_node})")
        if self.mem is not None and not re.fullmatch(r"\d+[KMGT]?B?", self.mem):
            raise UserError(f"slurm: mem must look like 64G or 0 (got {self.mem!r})")
        for line in self.extra:
            if not re.fullmatch(r"--?[A-Za-z][\w-]*(=\S.*)?", line):
                raise UserError(f"slurm: extra sbatch option {line!r} must look like "
                                "--name or --name=value")

    @property
    def extra_options(self) -> dict[str, Any]:
        """The extra lines as sbatch options: ``--qos=high`` -> {"qos": "high"}."""
        out: dict[str, Any] = {}
        for line in self.extra:
            name, _, value = line.lstrip("-").partition("=")
            out[name] = value if value else True
        return out

    def sbatch_lines(self, job_name: str, output: str) -> list[str]:
        """``#SBATCH`` lines of a hand-written batch script (the paper-scale job)."""
        opts: dict[str, Any] = {"job-name": job_name, "nodes": self.nodes,
                                "ntasks-per-node": 1, "cpus-per-task": self.cpus_per_task,
                                "time": self.time, "output": output, "open-mode": "append"}
        for name, value in (("partition", self.partition), ("account", self.account),
                            ("mem", self.mem)):
            if value is not None:
                opts[name] = value
        if self.gpus_per_node:
            opts["gpus-per-node"] = self.gpus_per_node
        opts.update(self.extra_options)
        return [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={v}" for k, v in opts.items()]

    def submitit_parameters(self, job_name: str) -> dict[str, Any]:
        """Parameters of ``submitit.SlurmExecutor`` (and of its sbatch template)."""
        params: dict[str, Any] = {"job_name": job_name, "time": time_minutes(self.time),
                                  "nodes": self.nodes, "ntasks_per_node": 1,
                                  "cpus_per_task": self.cpus_per_task}
        for name in ("partition", "account", "mem"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.extra:
            params["additional_parameters"] = self.extra_options
        return params


def time_minutes(text: str | int) -> int:
    """Slurm's --time (minutes, M:S is not accepted here; H:M:S, D-H, D-H:M, D-H:M:S)."""
    s = str(text).strip()
    m = _TIME.match(s)
    if not m:
        raise UserError(f"slurm: time {text!r} is not minutes, H:M:S or D-H:M:S")
    days, a, b, c = m.groups()
    if days is None and b is None:
        minutes = int(a)
    elif days is None:
        h, mi, se = int(a), int(b), int(c or 0)
        minutes = h * 60 + mi + (se > 0)
    else:
        minutes = int(days) * 1440 + int(a) * 60 + int(b or 0) + (int(c or 0) > 0)
    if minutes < 1:
        raise UserError(f"slurm: time {text!r} must be at least one minute")
    return minutes


FIELDS = {f.name for f in dataclasses.fields(SlurmSettings)}


def load_settings(path: Path | None = None, **overrides: Any) -> SlurmSettings:
    """The file's ``[slurm]`` table (if given), then the non-None overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as err:
            raise UserError(f"cannot read the Slurm config {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{path} is not valid TOML: {err}") from None
        table = data.get("slurm", data)
        if not isinstance(table, dict):
            raise UserError(f"{path}: [slurm] must be a table")
        unknown = set(table) - FIELDS
        if unknown:
            raise UserError(f"{path}: unknown [slurm] key(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(FIELDS))}")
        values.update(table)
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    if "extra" in values:
        if isinstance(values["extra"], str) or not all(isinstance(x, str)
                                                       for x in values["extra"]):
            raise UserError("slurm: extra must be a list of sbatch options (strings)")
        values["extra"] = tuple(values["extra"])
    for f in ("time", "mem", "partition", "account"):
        if f in values:
            if isinstance(values[f], bool) or not isinstance(values[f], str | int):
                raise UserError(f"slurm: {f} must be a string (got {values[f]!r})")
            values[f] = str(values[f])
    for f in ("nodes", "gpus_per_node", "cpus_per_task"):
        if f in values and (not isinstance(values[f], int) or isinstance(values[f], bool)):
            raise UserError(f"slurm: {f} must be an integer (got {values[f]!r})")
    return SlurmSettings(**values)


def add_slurm_options(p: argparse.ArgumentParser) -> None:
    """``--slurm-config FILE`` and one ``--slurm-<field>`` per setting."""
    g = p.add_argument_group("Slurm (with --launcher slurm; file values, then these)")
    g.add_argument("--slurm-config", type=Path, metavar="TOML",
                   help="a TOML file with a [slurm] table (see docs/scale-out.md)")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-account")
    g.add_argument("--slurm-time", help="minutes, H:M:S or D-H:M:S")
    g.add_argument("--slurm-nodes", type=int)
    g.add_argument("--slurm-gpus-per-node", type=int)
    g.add_argument("--slurm-cpus-per-task", type=int)
    g.add_argument("--slurm-mem", help="e.g. 64G (0: the whole node)")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="OPTION",
                   help="a further #SBATCH option, e.g. --slurm-extra=--qos=high (repeatable)")


def settings_from_args(args: argparse.Namespace) -> SlurmSettings:
    extra = tuple(args.slurm_extra or ())
    overrides = {f: getattr(args, f"slurm_{f}") for f in FIELDS if f != "extra"}
    if extra:
        overrides["extra"] = extra
    return load_settings(args.slurm_config, **overrides)
