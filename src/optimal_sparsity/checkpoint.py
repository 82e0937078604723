"""Checkpoint directories: safetensors weights, config, tokenizer and a hash manifest.

Layout of a checkpoint directory::

    model.safetensors     weights, this project's parameter names
    config.json           {"format": ..., "model": ModelConfig, ...}
    tokenizer.json ...    the HF tokenizer the model was trained with (if any)
    <extra files>         e.g. the trainer's optimizer and RNG state
    MANIFEST.json         sha256 and size of every file above; written last

A directory is built under a temporary name and renamed into place only when complete
(``atomic.atomic_dir``), so a crash never leaves a half-written checkpoint under the
final name. Loading verifies every hash first and refuses a mismatch; weights load only
through safetensors (no pickle).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from optimal_sparsity.atomic import atomic_dir, sha256_file
from optimal_sparsity.config import ModelConfig
from optimal_sparsity.data.layout import CorpusFiles
from optimal_sparsity.errors import IntegrityError, UserError

FORMAT = "optimal-sparsity-checkpoint/1"
MANIFEST = "MANIFEST.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


@contextlib.contextmanager
def safetensors_io(path: Path) -> Iterator[None]:
    """safetensors' I/O errors (a full disk) as ``OSError`` naming the file."""
    try:
        yield
    except SafetensorError as err:
        m = re.search(r"os error (\d+)", str(err))
        code = int(m.group(1)) if m else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (writing {Path(path).name})") from err


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path,
                 metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, its I/O errors as ``OSError``."""
    with safetensors_io(path):
        save_file(dict(tensors), path, metadata=metadata)


def check_parses(directory: Path) -> None:
    """Every safetensors and JSON file of ``directory`` parses (a manifest can match a
    file that was broken before the manifest was written)."""
    for p in sorted(directory.rglob("*")):
        try:
            if p.suffix == ".safetensors":
                with safe_open(p, framework="pt") as f:
                    f.keys()
            elif p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
        except (SafetensorError, OSError, UnicodeDecodeError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise IntegrityError(f"{p} does not parse: {first}") from err


def write_manifest(directory: Path) -> dict[str, Any]:
    files = {
        p.relative_to(directory).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": FORMAT, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    cfg: ModelConfig,
    *,
    tokenizer_dir: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
    tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    json_files: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> Path:
    """Write a complete checkpoint atomically. ``tensors`` maps extra safetensors file
    names to state dicts; ``json_files`` maps extra JSON file names to objects;
    ``replace``: an earlier checkpoint at ``directory`` may be replaced."""
    directory = Path(directory)
    with atomic_dir(directory, "checkpoint", replace=replace) as tmp:
        save_tensors(_state_dict_for_save(model), tmp / WEIGHTS)
        config = {"format": FORMAT, "model": cfg.to_dict(), **(meta or {})}
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if tokenizer_dir is not None:
            copy_tokenizer(tokenizer_dir, tmp, model_max_length=cfg.max_seq_len)
        for name, sd in (tensors or {}).items():
            save_tensors({k: v.detach().contiguous().cpu() for k, v in sd.items()}, tmp / name)
        for name, obj in (json_files or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        write_manifest(tmp)
    return directory


def copy_tokenizer(src: str | Path, dst: str | Path, *, model_max_length: int) -> None:
    """Copy an HF tokenizer beside a model whose window is ``model_max_length``, in the
    form transformers 4.x and 5.x both load (``data.tokenizer.make_portable``)."""
    from optimal_sparsity.data.tokenizer import make_portable

    src = Path(src)
    found = [n for n in TOKENIZER_FILES if (src / n).is_file()]
    if "tokenizer.json" not in found:
        raise UserError(f"no HF tokenizer (tokenizer.json) in {src}")
    for n in found:
        shutil.copyfile(src / n, Path(dst) / n)
    make_portable(dst, model_max_length=model_max_length)


def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Check that ``directory`` is a complete checkpoint whose files match its manifest."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"no checkpoint directory at {directory}")
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise IntegrityError(f"{directory} is not a complete checkpoint: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise IntegrityError(f"{mpath} is corrupt: {err}") from err
    if not isinstance(files, dict):
        raise IntegrityError(f"{mpath} is corrupt: 'files' is not a mapping")
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"{mpath}: unknown format {manifest.get('format')!r}")
    for rel, want in files.items():
        p = directory / rel
        if not p.is_file():
            raise IntegrityError(f"checkpoint {directory}: {rel} is listed but missing")
        size = p.stat().st_size
        if size != want["size"]:
            raise IntegrityError(
                f"checkpoint {directory}: {rel} has {size} bytes, manifest says {want['size']}")
        got = sha256_file(p)
        if got != want["sha256"]:
            raise IntegrityError(
                f"checkpoint {directory}: {rel} sha256 {got} does not match manifest "
                f"{want['sha256']}")
    check_parses(directory)
    return manifest


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise IntegrityError(f"{path}: not an {FORMAT} checkpoint config")
    return data


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu",
                    backend: str | None = None, verify: bool = True
                    ) -> tuple[torch.nn.Module, ModelConfig]:
    """Verify and load a checkpoint's model (safetensors only)."""
    from optimal_sparsity.model import build_model

    if verify:
        verify_checkpoint(directory)
    cfg = ModelConfig.from_dict(read_config(directory)["model"])
    if backend is not None:
        cfg = cfg.replace(backend=backend)
    model = build_model(cfg, device="meta")
    state = load_tensors(Path(directory) / WEIGHTS, device)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise IntegrityError(f"{Path(directory) / WEIGHTS} does not fit its config.json: "
                             f"{str(err).splitlines()[0]}") from err
    return model.to(device), cfg


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file``, a file that does not parse as ``IntegrityError``."""
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError) as err:
        raise IntegrityError(f"{path} does not load: {str(err).splitlines()[0]}") from err


def check_corpus(ckpt: Path, corpus: Path) -> None:
    """Refuse a corpus whose tokenizer is not the checkpoint's."""
    ours, theirs = ckpt / "tokenizer.json", CorpusFiles(corpus).tokenizer_json
    if not theirs.is_file():
        raise UserError(f"{corpus} is not a corpus directory (no tokenizer/tokenizer.json)")
    if not ours.is_file():
        raise UserError(f"checkpoint {ckpt} has no tokenizer.json")
    if sha256_file(ours) != sha256_file(theirs):
        raise UserError(f"checkpoint {ckpt} was not trained with the tokenizer of corpus "
                        f"{corpus}: pass the corpus it was trained on")
