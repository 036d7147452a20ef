"""glibc malloc settings from a function's environment, applied in a running process too.

glibc reads MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, ... once, when a program starts. A
replica forked from a zygote (base/zygote.py) never starts: it inherits the zygote's malloc
state and only then takes its own environment. `apply_env` gives such a replica the settings
its environment asks for, through mallopt(3), so a forked replica and a fresh process of the
same function allocate alike.

Why a function sets them (transcribe, manifests/functions.yaml): by default glibc serves blocks
above a dynamic threshold with mmap and returns freed heap tops to the kernel, so a call that
allocates tens of MiB of buffers faults every page in again on each call, and inside a replica's
memory-limited cgroup each fault is also charged. Keeping those blocks in the heap trades a few
tens of MiB of resident memory for that CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Mapping
from functools import cache

from base.telemetry import log

#: Environment variable -> mallopt(3) parameter (glibc's malloc.h numbers).
PARAMETERS: dict[str, int] = {
    "MALLOC_TRIM_THRESHOLD_": -1,  # M_TRIM_THRESHOLD
    "MALLOC_TOP_PAD_": -2,  # M_TOP_PAD
    "MALLOC_MMAP_THRESHOLD_": -3,  # M_MMAP_THRESHOLD
    "MALLOC_MMAP_MAX_": -4,  # M_MMAP_MAX
    "MALLOC_ARENA_MAX": -8,  # M_ARENA_MAX
}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # Not glibc (musl, macOS): no mallopt with these parameters; the settings do not apply.
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def available() -> bool:
    return _libc() is not None


def apply_env(env: Mapping[str, str]) -> dict[str, int]:
    """Apply the MALLOC_* settings present in `env` with mallopt; returns what was applied.

    A value that is not an integer, or that glibc refuses, is logged and skipped: a bad tuning
    value must not stop a replica from serving.
    """
    wanted = {k: env[k] for k in PARAMETERS if env.get(k)}
    libc = _libc() if wanted else None
    applied: dict[str, int] = {}
    for key, raw in wanted.items():
        try:
            value = int(raw)
        except ValueError:
            log("malloc.ignored", level="warning", setting=key, value=raw, reason="not an integer")
            continue
        if libc is None:
            log("malloc.ignored", level="warning", setting=key, reason="not glibc")
            continue
        if libc.mallopt(PARAMETERS[key], value) != 1:
            log("malloc.ignored", level="warning", setting=key, value=value, reason="refused")
            continue
        applied[key] = value
    return applied


def mmapped_blocks() -> int | None:
    """How many blocks malloc currently serves with their own mmap (mallinfo2's hblks)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblks)
