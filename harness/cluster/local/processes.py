"""Detached host processes with pid files, logs and readiness waits.

Each program runs in its own session (``setsid``), its stdout and stderr appended to
``<state>/logs/<name>.log``; ``<state>/run/<name>.pid`` holds its pid and the kernel's start
time of that pid, so a recycled pid is never taken for ours. ``stop`` signals only that pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger("vsearch.cluster")


class ProcessError(RuntimeError):
    """A program did not start or did not become ready (the message names its log)."""


class PidRecord(BaseModel):
    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat
    argv: list[str]
    log: Path


def start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    state = fields[0]
    if state in ("Z", "X"):
        return None
    return int(fields[19])


class Supervisor:
    """The processes of one cluster, recorded under ``run`` with logs under ``logs``."""

    def __init__(self, run: Path, logs: Path) -> None:
        self.run_dir, self.logs = run, logs

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def record(self, name: str) -> PidRecord | None:
        path = self.pid_file(name)
        if not path.is_file():
            return None
        try:
            return PidRecord.model_validate_json(path.read_text())
        except ValueError:
            return None

    def alive(self, name: str) -> PidRecord | None:
        rec = self.record(name)
        if rec is not None and start_ticks(rec.pid) == rec.start_ticks:
            return rec
        return None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> PidRecord:
        """Start ``argv`` detached unless the recorded process is still running."""
        running = self.alive(name)
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"\n=== {stamp} start\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        ticks = None
        for _ in range(50):
            ticks = start_ticks(proc.pid)
            if ticks is not None or proc.poll() is not None:
                break
            time.sleep(0.01)
        if ticks is None:
            raise ProcessError(f"{name} exited at once (exit {proc.poll()}); see {log_path}")
        rec = PidRecord(name=name, pid=proc.pid, start_ticks=ticks, argv=list(argv), log=log_path)
        self.pid_file(name).write_text(rec.model_dump_json() + "\n")
        log.info(json.dumps({"event": "cluster_process_started", "name": name, "pid": proc.pid}))
        return rec

    def stop(self, name: str, *, timeout: float = 15.0) -> bool:
        """SIGTERM the recorded process, SIGKILL after ``timeout``; True if one was running."""
        rec = self.alive(name)
        if rec is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        os.kill(rec.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and start_ticks(rec.pid) == rec.start_ticks:
            _reap(rec.pid)
            time.sleep(0.1)
        if start_ticks(rec.pid) == rec.start_ticks:
            os.kill(rec.pid, signal.SIGKILL)
            for _ in range(50):
                _reap(rec.pid)
                if start_ticks(rec.pid) != rec.start_ticks:
                    break
                time.sleep(0.1)
        self.pid_file(name).unlink(missing_ok=True)
        log.info(json.dumps({"event": "cluster_process_stopped", "name": name, "pid": rec.pid}))
        return True

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _reap(pid: int) -> None:
    """Collect our own child's exit status (a child started in this process stays a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    supervisor: Supervisor | None = None,
    name: str = "",
    interval: float = 0.5,
) -> float:
    """Poll ``check`` until it holds; seconds taken, or ProcessError naming the log's tail."""
    began = time.monotonic()
    while True:
        if supervisor is not None and name and supervisor.alive(name) is None:
            raise ProcessError(f"{name} exited while waiting for {what}:\n{supervisor.tail(name)}")
        try:
            if check():
                return time.monotonic() - began
        except (OSError, ValueError):
            pass
        if time.monotonic() - began > timeout:
            tail = supervisor.tail(name) if supervisor is not None and name else ""
            raise ProcessError(f"{what}: not ready after {timeout:.0f} s\n{tail}")
        time.sleep(interval)


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def http_ok(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (OSError, ValueError):
        return False


def http_text(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
        return resp.read().decode()
