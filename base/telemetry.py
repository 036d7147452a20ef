"""Per-invocation telemetry and structured JSON logs.

`cold_start` is decided when an invocation *starts* (an atomic counter per process), not when
one finishes, so two concurrent first requests cannot both, or neither, claim it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from base.contracts import InvocationMetrics

_PAGE = 1024


class ProcessClock:
    """Facts about this process's life: when it started and how long init took."""

    def __init__(self) -> None:
        self.started_monotonic = _process_start_monotonic()
        self.ready_monotonic: float | None = None
        self._counter = itertools.count(1)
        self._inflight = 0
        self._lock = threading.Lock()

    def mark_ready(self) -> None:
        self.ready_monotonic = time.monotonic()

    @property
    def init_s(self) -> float:
        end = self.ready_monotonic or time.monotonic()
        return max(0.0, end - self.started_monotonic)

    def begin(self) -> tuple[int, bool]:
        """Number this invocation; also says whether it runs alone (exact per-call figures)."""
        with self._lock:
            self._inflight += 1
            return next(self._counter), self._inflight == 1

    def end(self) -> None:
        with self._lock:
            self._inflight -= 1


def _process_start_monotonic() -> float:
    """The process's real start (from /proc), so interpreter start-up counts as init too."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(0.0, age)
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def _reset_peak_rss() -> bool:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0), giving a per-invocation peak.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class InvocationRecorder:
    """Collects one invocation's figures; phases nest nowhere, they add up per kind."""

    def __init__(self, function: str, replica: str, clock: ProcessClock) -> None:
        self.function = function
        self.replica = replica
        self.clock = clock
        self.invocation, alone = clock.begin()
        self.scope: Literal["invocation", "process"] = (
            "invocation" if alone and _reset_peak_rss() else "process"
        )
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._cpu0 = _process_cpu()
        self.bytes_downloaded = 0
        self.bytes_uploaded = 0
        self.phases = {"download": 0.0, "compute": 0.0, "upload": 0.0}
        self._ended = False

    @contextmanager
    def phase(self, name: Literal["download", "compute", "upload"]) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] += time.monotonic() - t0

    def finish(self, children_cpu_s: float, children_peak_rss_bytes: int) -> InvocationMetrics:
        if not self._ended:
            self._ended = True
            self.clock.end()
        wall = time.monotonic() - self._t0
        measured = self.phases["download"] + self.phases["upload"]
        # Whatever is not transfer is the handler's own work (decode, model, ffmpeg).
        compute = self.phases["compute"] or max(0.0, wall - measured)
        return InvocationMetrics(
            function=self.function,
            replica=self.replica,
            pid=os.getpid(),
            invocation=self.invocation,
            cold_start=self.invocation == 1,
            process_init_s=round(self.clock.init_s, 4),
            started_at=self.started_at,
            wall_s=round(wall, 4),
            cpu_s=round(_process_cpu() - self._cpu0 + children_cpu_s, 4),
            children_cpu_s=round(children_cpu_s, 4),
            peak_rss_bytes=peak_rss_bytes(),
            peak_rss_scope=self.scope,
            children_peak_rss_bytes=children_peak_rss_bytes,
            bytes_downloaded=self.bytes_downloaded,
            bytes_uploaded=self.bytes_uploaded,
            download_s=round(self.phases["download"], 4),
            compute_s=round(compute, 4),
            upload_s=round(self.phases["upload"], 4),
        )


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system


_log_lock = threading.Lock()


def log(event: str, *, level: str = "info", **fields: Any) -> None:
    """One JSON object per line on stdout, the format log collectors expect from a function."""
    record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
    line = json.dumps(record, default=str, separators=(",", ":"))
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
