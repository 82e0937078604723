"""The training process's allocator setting: applied on glibc, never over the user's own."""

from __future__ import annotations

import os
import platform

import pytest

from optimal_sparsity.train import allocator


def test_user_malloc_settings_win(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    monkeypatch.setattr(allocator, "_libc", lambda: pytest.fail("mallopt must not be called"))
    assert allocator.keep_freed_memory() is False


def test_without_glibc_nothing_changes(monkeypatch):
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    assert allocator.keep_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_every_setting(monkeypatch):
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    calls = []
    libc = allocator._libc()
    assert libc is not None

    class Spy:
        def mallopt(self, opt, val):
            calls.append((opt, val))
            return libc.mallopt(opt, val)

    monkeypatch.setattr(allocator, "_libc", Spy)
    assert allocator.keep_freed_memory() is True
    assert dict(calls) == {allocator.M_MMAP_THRESHOLD: allocator.MMAP_THRESHOLD_MAX,
                           allocator.M_TRIM_THRESHOLD: allocator.NO_TRIM,
                           allocator.M_TOP_PAD: allocator.TOP_PAD}
