"""base.malloc: MALLOC_* settings from the environment reach a running process's allocator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from base import malloc

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not malloc.available() or malloc.mmapped_blocks() is None,
    reason="mallopt/mallinfo2 are glibc's (>= 2.33); this libc has neither",
)


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_apply_env_keeps_big_blocks_in_the_heap_of_a_running_process() -> None:
    # A fresh interpreter without MALLOC_* in its environment: glibc's defaults serve a 40 MiB
    # block with its own mmap (above the dynamic threshold's 32 MiB cap); after apply_env the
    # same request comes from the heap, as if the variable had been set at exec.
    out = _run(
        """
        from base import malloc
        from base.tests.sample_function import _big_block_mmapped
        before = _big_block_mmapped()
        applied = malloc.apply_env({"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "HOME": "/x"})
        print(before, applied, _big_block_mmapped())
        """
    )
    assert out == "True {'MALLOC_MMAP_THRESHOLD_': 67108864} False"


def test_values_that_are_not_integers_are_skipped_not_fatal() -> None:
    assert malloc.apply_env({"MALLOC_TOP_PAD_": "lots", "MALLOC_ARENA_MAX": ""}) == {}
    assert malloc.apply_env({"PATH": "/usr/bin"}) == {}
