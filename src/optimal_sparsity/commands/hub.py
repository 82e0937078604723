"""Released-checkpoint subcommands: pull, lock."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optimal_sparsity.errors import UserError


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_pull(args: argparse.Namespace) -> int:
    from optimal_sparsity.hub.lock import load_lock
    from optimal_sparsity.hub.pull import default_cache_dir, pull

    lock = load_lock(args.lock)
    names = list(args.names)
    if args.all_math:
        names += [e.name for e in lock.models if e.family == "math"]
    if args.datasets:
        names += [e.name for e in lock.datasets]
    if not names:
        raise UserError("pull: name at least one model or data set (`./reproduce lock` lists "
                        "them), or --all-math / --datasets")
    entries = [lock.find(n) for n in dict.fromkeys(names)]  # all names checked before any pull
    cache = args.cache_dir or default_cache_dir()
    for entry in entries:
        res = pull(entry, cache, allow_unpinned=args.allow_unpinned, force=args.force, log=_err)
        print(res.path)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from optimal_sparsity.hub.lock import load_lock, lock_path
    from optimal_sparsity.hub.skeleton import skeleton
    from optimal_sparsity.hub.update import update_lock

    path = lock_path(args.lock)
    if args.write_skeleton:
        previous = load_lock(path) if path.exists() else None
        lock = skeleton(previous)
        lock.save(path)
        pinned = sum(e.pinned for e in lock.entries)
        print(f"wrote {path}: {len(lock.models)} models, {len(lock.datasets)} data sets, "
              f"{pinned} pinned")
        return 0
    lock = load_lock(path)
    if args.update:
        report = update_lock(lock, args.names or None, revision=args.revision, log=_err)
        report.lock.save(path)
        print(f"wrote {path}: {len(report.resolved)} entries pinned, {len(report.failed)} not")
        for name, why in report.failed:
            _err(f"not pinned: {name}: {why}")
        return 1 if report.failed else 0
    if args.check:
        if lock.static_view() != skeleton().static_view():
            _err(f"{path} differs from what the code defines; run `./reproduce lock "
                 "--write-skeleton` (keeps resolved pins)")
            return 1
        print(f"{path}: valid, {sum(e.pinned for e in lock.entries)}/{len(lock.entries)} "
              "entries pinned")
        return 0
    for e in lock.entries:
        state = e.revision if e.pinned else "UNPINNED"
        print(f"{e.kind:7s} {e.name:18s} {e.repo_id:60s} {state}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pull", help="download released checkpoints / data sets pinned by checkpoints.lock and "
                     "verify them (sha256, config, parameter count)")
    p.set_defaults(func=cmd_pull)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="e.g. d512-E8-k2, code-d512-E8-k2, gsm8k (see `./reproduce lock`)")
    p.add_argument("--all-math", action="store_true", help="all 65 math models (about 1.3 TB)")
    p.add_argument("--datasets", action="store_true", help="every evaluation data set")
    p.add_argument("--lock", type=Path, help="lock file (default: checkpoints.lock, or "
                   "$OPTIMAL_SPARSITY_LOCK)")
    p.add_argument("--cache-dir", type=Path, help="where verified copies go (default: "
                   "$OPTIMAL_SPARSITY_HUB_CACHE or ~/.cache/optimal-sparsity/hub)")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="pull an entry the lock has not pinned (the hub's current main; file "
                        "hashes checked against the hub's metadata, not the lock)")
    p.add_argument("--force", action="store_true",
                   help="download again even if a verified copy exists (it is replaced only "
                        "by a verified one)")

    p = sub.add_parser("lock", help="show, check, regenerate or resolve checkpoints.lock")
    p.set_defaults(func=cmd_lock)
    p.add_argument("names", nargs="*", metavar="NAME", help="with --update: only these entries")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--update", action="store_true",
                   help="resolve revisions and per-file sha256 from the hub (needs network)")
    g.add_argument("--write-skeleton", action="store_true",
                   help="rewrite the static part from code, keeping resolved pins")
    g.add_argument("--check", action="store_true",
                   help="validate the file and compare it with what the code defines")
    p.add_argument("--revision", default="main", help="with --update: branch or commit")
    p.add_argument("--lock", type=Path, help="lock file (default: checkpoints.lock)")

    register_taskloss(sub)


def cmd_taskloss_build(args: argparse.Namespace) -> int:
    from optimal_sparsity.atomic import sha256_file
    from optimal_sparsity.errors import IntegrityError
    from optimal_sparsity.eval.taskloss_build import build_file, default_out_dir
    from optimal_sparsity.hub.lock import load_lock
    from optimal_sparsity.hub.pull import default_cache_dir, pulled_dir
    from optimal_sparsity.hub.taskloss_inputs import BUILDS, find_build, harness_version

    if not args.names and not args.all:
        raise UserError("taskloss-build: name an input (" + ", ".join(
            b.removesuffix(".json") for b in BUILDS) + ") or pass --all")
    builds = list(BUILDS.values()) if args.all else [find_build(n) for n in args.names]
    lock = load_lock(args.lock)
    cache = args.cache_dir or default_cache_dir()
    out_dir = args.out or default_out_dir(cache)
    failed = 0
    for b in builds:
        data = pulled_dir(b.dataset, lock, cache, allow_unpinned=args.allow_unpinned)
        if args.harness:
            out, version = _build_in_harness(b.file, data, out_dir, args.force)
        else:
            out, version = build_file(b, data, out_dir, force=args.force, log=_err), \
                harness_version()
        got, size = sha256_file(out), out.stat().st_size
        want = lock.find_input(b.file)
        if want.built and want.sha256 != got:
            _err(f"{b.file}: sha256 {got} differs from the lock's {want.sha256} (built with "
                 f"lm-eval {want.lm_eval}; this is {version})")
            failed += 1
        elif want.built:
            _err(f"{b.file}: matches checkpoints.lock (lm-eval {version})")
        elif args.write_lock:
            lock = lock.with_input(want.with_hash(got, size, version))
        print(out)
    if args.write_lock:
        if lock.path is None:
            raise IntegrityError("no lock path to write")
        lock.save(lock.path)
        _err(f"wrote {lock.path}")
    return 1 if failed else 0


def _build_in_harness(file: str, data: Path, out_dir: Path, force: bool) -> tuple[Path, str]:
    """One build with the authors' harness (lm-eval 0.4.7, its own environment)."""
    import json

    from optimal_sparsity.errors import UserError
    from optimal_sparsity.eval.harness_env import run_in_harness

    args = ["-m", "optimal_sparsity.eval.taskloss_build", file, str(data), str(out_dir)]
    res = run_in_harness([*args, *(["--force"] if force else [])], log=_err)
    for line in res.stderr.splitlines():
        if line.startswith(("error:", "/")) or "sha256" in line:
            _err(line)
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or [f"exit status {res.returncode}"]
        raise UserError(f"{file}: the harness build failed: {tail[0]}")
    done = json.loads(res.stdout.strip().splitlines()[-1])
    return Path(done["path"]), done["lm_eval"]


def register_taskloss(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "taskloss-build", help="rebuild the authors' lm-eval task-loss inputs (GSM8K, "
                               "TriviaQA, HellaSwag 4-shot; GSM-Plus 5-shot) from pulled data sets")
    p.set_defaults(func=cmd_taskloss_build)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="gsm8k_4shot, triviaqa_4shot, hellaswag_4shot, gsm_plus_5shot_cot")
    p.add_argument("--all", action="store_true", help="all four")
    p.add_argument("--out", type=Path, help="output directory (default: <hub cache>/taskloss)")
    p.add_argument("--lock", type=Path, help="lock file (default: checkpoints.lock)")
    p.add_argument("--cache-dir", type=Path, help="hub cache of `./reproduce pull`")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="build from a data set pulled with --allow-unpinned")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--write-lock", action="store_true",
                   help="record each new file's sha256, size and lm-eval version in the lock")
    p.add_argument("--harness", action="store_true",
                   help="build with the authors' harness, lm-eval 0.4.7, in its own "
                        "environment (built on first use from docker/requirements-harness.txt)")
