"""Child processes (ffmpeg, ffprobe) that an invocation can stop, with exact resource usage.

Each child runs in its own session so a timeout kills it and anything it spawned; it is reaped
with `os.wait4`, which gives that child's own peak RSS and CPU time (no sampling, no guessing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from base.errors import DeadlineExceeded

_POLL_S = 0.02


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int

    def stderr_tail(self, limit: int = 600) -> str:
        return self.stderr.decode("utf-8", "replace").strip()[-limit:]


def _vm_hwm(pid: int) -> int:
    """A running child's own peak RSS (0 once it has exited or if /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class ProcessRunner:
    """Runs children for one invocation and stops them all when the invocation is cancelled."""

    def __init__(self, workdir: Path, cancel: threading.Event, deadline: float) -> None:
        self.workdir = workdir
        self.cancel = cancel
        self.deadline = deadline  # time.monotonic() value
        self.cpu_s = 0.0
        self.peak_rss_bytes = 0
        self._live: set[int] = set()
        self._lock = threading.Lock()

    def run(self, args: Sequence[str]) -> Completed:
        started = time.monotonic()
        with (
            tempfile.TemporaryFile(dir=self.workdir) as out,
            tempfile.TemporaryFile(dir=self.workdir) as err,
        ):
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            with self._lock:
                self._live.add(proc.pid)
            try:
                status, usage, sampled_peak = self._wait(proc.pid)
            finally:
                with self._lock:
                    self._live.discard(proc.pid)
            # We reaped it ourselves; tell Popen so it does not try again.
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            completed = Completed(
                args=tuple(args),
                returncode=proc.returncode,
                stdout=out.read(),
                stderr=err.read(),
                wall_s=time.monotonic() - started,
                cpu_s=usage.ru_utime + usage.ru_stime,
                # ru_maxrss of a child forked from this (large) process includes our RSS at
                # fork time (Linux carries the high-water mark over exec); VmHWM sampled while
                # it runs is the child's own. Children too short to sample fall back to it.
                peak_rss_bytes=sampled_peak or usage.ru_maxrss * 1024,
            )
        self.cpu_s += completed.cpu_s
        self.peak_rss_bytes = max(self.peak_rss_bytes, completed.peak_rss_bytes)
        return completed

    def _wait(self, pid: int) -> tuple[int, os.struct_rusage, int]:
        peak = 0
        while True:
            # Popen returns after exec, so this is the child's own memory, not our copy.
            peak = max(peak, _vm_hwm(pid))
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage, peak
            if self.cancel.is_set() or time.monotonic() > self.deadline:
                self._kill_group(pid)
                _, status, usage = os.wait4(pid, 0)
                raise DeadlineExceeded("the invocation's deadline passed; its process was stopped")
            time.sleep(_POLL_S)

    def kill_all(self) -> None:
        """Stop every live child now (called by the runtime when the deadline fires)."""
        with self._lock:
            pids = list(self._live)
        for pid in pids:
            self._kill_group(pid)

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
