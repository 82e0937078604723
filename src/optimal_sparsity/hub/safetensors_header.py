"""Safetensors headers: structure checks and parameter counts without loading a tensor.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON mapping
each tensor name to ``{dtype, shape, data_offsets}``, then the data. ``read_header`` checks
that every tensor's byte range matches its dtype and shape, that the ranges tile the data
area exactly, and that the file size agrees, so a truncated or padded file is refused
before anything maps it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from optimal_sparsity.errors import IntegrityError

MAX_HEADER_BYTES = 100_000_000
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
_EXPERT = re.compile(r"(\.block_sparse_moe\.experts\.\d+\.|\.mlp\.experts\.)")
_ROUTER = re.compile(r"(\.block_sparse_moe\.gate\.weight|\.mlp\.gate\.weight)$")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Parse and check the header of one safetensors file (reads the header only)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise IntegrityError(f"{path.name}: {size} bytes is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise IntegrityError(f"{path.name}: header length {n} does not fit the file "
                                 f"({size} bytes): not safetensors, or truncated")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IntegrityError(f"{path.name}: safetensors header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise IntegrityError(f"{path.name}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    tensors: dict[str, TensorInfo] = {}
    spans = []
    for name, t in header.items():
        try:
            dtype, shape, (begin, end) = t["dtype"], tuple(t["shape"]), t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"{path.name}: tensor {name} has a malformed entry") from None
        if dtype not in DTYPE_BYTES or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise IntegrityError(f"{path.name}: tensor {name} has dtype {dtype!r} shape {shape}")
        info = TensorInfo(dtype, shape)
        if not (isinstance(begin, int) and isinstance(end, int)
                and end - begin == info.numel * DTYPE_BYTES[dtype]):
            raise IntegrityError(f"{path.name}: tensor {name} byte range [{begin}, {end}) does "
                                 f"not match {dtype}{list(shape)}")
        tensors[name] = info
        spans.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise IntegrityError(f"{path.name}: tensor {name} starts at byte {begin}, expected "
                                 f"{pos} (overlapping or gapped data)")
        pos = end
    if 8 + n + pos != size:
        raise IntegrityError(f"{path.name}: header describes {8 + n + pos} bytes, the file has "
                             f"{size} (truncated or padded)")
    return tensors


@dataclass(frozen=True)
class HeaderCount:
    total: int
    active: int
    expert: int
    router: int
    tensors: int


def count_params(files: Iterable[str | Path], n_experts: int, top_k: int) -> HeaderCount:
    """Total and active parameters of a Mixtral checkpoint from its headers.

    Active follows the released names' convention (``accounting``): each expert's FFN
    matrices and its router row count for k of the E experts.
    """
    total = expert = router = count = 0
    seen: dict[str, str] = {}
    for path in files:
        for name, info in read_header(path).items():
            if name in seen:
                raise IntegrityError(f"tensor {name} appears in both {seen[name]} and "
                                     f"{Path(path).name}")
            seen[name] = Path(path).name
            count += 1
            total += info.numel
            if _EXPERT.search(name):
                expert += info.numel
            elif _ROUTER.search(name):
                router += info.numel
    per_expert = expert + router
    if (per_expert * top_k) % n_experts:
        raise IntegrityError(f"expert and router parameters ({per_expert}) are not divisible "
                             f"into E={n_experts} experts")
    active = total - per_expert + per_expert * top_k // n_experts
    return HeaderCount(total=total, active=active, expert=expert, router=router, tensors=count)
