"""The code sandbox: each kind of bad program is contained and classified, and an
evaluation goes on after it. Every test runs in each mode this machine permits (the
hostile programs that try to escape are in tests/faults/test_sandbox_escapes.py)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from optimal_sparsity.eval.sandbox import (
    CONTAINED_MODES,
    SandboxLimits,
    run_many,
    run_python,
    unavailable_reason,
)

CONTAINED = [m for m in CONTAINED_MODES if unavailable_reason(m) is None]
MODES = [*CONTAINED, "unconfined"]
FAST = SandboxLimits(timeout_s=2.0, memory_bytes=512 << 20)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture(params=CONTAINED or [pytest.param(None, marks=pytest.mark.skip(
    reason="; ".join(str(unavailable_reason(m)) for m in CONTAINED_MODES)))])
def contained_mode(request):
    return request.param


def _uid(result) -> int | None:
    for layer in result.isolation:
        if layer.startswith("uid="):
            return int(layer.split("=")[1])
    return None


def _live_pids_of(uid: int) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
        if int(fields["Uid"].split()[0]) == uid and "Z" not in fields["State"]:
            pids.append(int(status.parent.name))
    return pids


def test_passing_program(mode):
    r = run_python("print(sum(range(10)))\nassert True", FAST, mode=mode)
    assert r.status == "passed" and r.returncode == 0
    assert r.stdout_tail.strip() == "45"
    assert r.isolation  # the layers that applied are reported


def test_failing_assertion(mode):
    r = run_python("def f():\n    return 1\nassert f() == 2, 'wrong'\n", FAST, mode=mode)
    assert r.status == "failed"
    assert "AssertionError: wrong" in r.stderr_tail


def test_infinite_loop_times_out(mode):
    r = run_python("while True:\n    pass\n", FAST, mode=mode)
    assert r.status == "timeout"
    assert r.duration_s < FAST.timeout_s + 5


def test_sleeping_program_times_out(mode):
    r = run_python("import time\ntime.sleep(600)\n", FAST, mode=mode)
    assert r.status == "timeout"


def test_fork_bomb_is_contained(mode):
    bomb = "import os\nwhile True:\n    os.fork()\n"
    start = time.monotonic()
    r = run_python(bomb, FAST, mode=mode)
    assert r.status != "passed"
    assert time.monotonic() - start < FAST.timeout_s + 10
    if os.geteuid() == 0:  # dropped to a uid of its own: nothing of it is left
        time.sleep(0.2)
        assert _live_pids_of(_uid(r)) == []
    assert run_python("print('still fine')", FAST, mode=mode).passed


def test_children_that_leave_the_process_group_are_killed(mode):
    if os.geteuid() != 0:
        pytest.skip("needs root (a uid per run) to find escaped children")
    code = ("import os, time\n"
            "for _ in range(3):\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        time.sleep(60)\n"
            "        os._exit(0)\n"
            "print('parent exits')\n")
    r = run_python(code, FAST, mode=mode)
    assert r.status == "passed"
    time.sleep(0.2)
    assert _live_pids_of(_uid(r)) == []


def test_huge_allocation_fails(mode):
    r = run_python("x = bytearray(8 << 30)\nprint('allocated')\n", FAST, mode=mode)
    assert r.status == "failed"
    assert "allocated" not in r.stdout_tail
    assert "MemoryError" in r.stderr_tail or (r.returncode or 0) < 0


def test_write_outside_the_work_dir_is_refused(contained_mode, tmp_path):
    target = tmp_path / f"escaped-{uuid.uuid4().hex}.txt"
    code = f"open({str(target)!r}, 'w').write('x')\n"
    r = run_python(code, FAST, mode=contained_mode)
    assert r.status == "failed"
    assert not target.exists()


def test_own_directory_is_writable(mode):
    assert run_python("open('ok.txt', 'w').write('x')\nprint(open('ok.txt').read())",
                      FAST, mode=mode).stdout_tail.strip() == "x"


def test_write_to_host_tmp_is_refused(contained_mode):
    """The host's /tmp stays untouched: in namespaces and bwrap mode the program's /tmp is
    its own tmpfs (the write succeeds there), in landlock mode the write is refused."""
    target = Path("/tmp") / f"escaped-{uuid.uuid4().hex}.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('x')\nprint('wrote')\n", FAST,
                   mode=contained_mode)
    assert not target.exists()
    if contained_mode == "landlock":
        assert r.status == "failed" and "Permission denied" in r.stderr_tail, r
    else:
        assert r.passed and r.stdout_tail.strip() == "wrote", r  # into its private /tmp


def test_network_is_refused(mode):
    """A server listening on the host's loopback gets no connection from the program."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = ("import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')\n")
    try:
        r = run_python(code, FAST, mode=mode)
        server.setblocking(False)  # a completed connection would wait in the backlog
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
    assert r.status == "failed"
    assert "connected" not in r.stdout_tail


def test_evaluation_continues_after_bad_programs(mode):
    programs = ["print(1)", "while True: pass", "raise SystemExit(3)",
                "import os\nwhile True: os.fork()", "x = bytearray(8 << 30)", "print(2)"]
    if mode == "unconfined":
        results = [run_python(p, FAST, mode=mode) for p in programs]
    else:
        results = run_many(programs, FAST)
    assert [r.status for r in results] == ["passed", "timeout", "failed", "failed", "failed",
                                           "passed"]
    assert results[-1].stdout_tail.strip() == "2"
