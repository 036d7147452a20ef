"""The platform's side of a function's zygote (base/zygote.py), driven over a socket pair.

`ZygoteProcess` starts `python -m base.zygote <module>` in the zygote's own cgroup, reads its
messages on a thread, and forks replicas through it; `ForkedProcess` is a replica forked that
way, with the surface of `FunctionProcess` (pid, url, exit status, stop, log) so the replica
manager treats both alike. The zygote is the forked replica's parent: it reaps it and reports
its exit status; if the zygote is gone first, the status is unknown but the exit is still seen
(the replica manager watches every replica with a pidfd).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from base.telemetry import log
from harness.embedded.function_process import (
    JOIN_CGROUPS,
    REPO_ROOT,
    FunctionProcess,
    FunctionStartError,
)

FD_ENV = "VSEARCH_ZYGOTE_FD"  # base.zygote.FD_ENV (the harness does not import base.zygote)


class ZygoteError(RuntimeError):
    pass


class ZygoteProcess:
    """One function's template process: start, wait until warm, fork replicas, stop."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        *,
        log_path: Path,
        cgroup_procs: list[str] | None = None,
    ) -> None:
        self.module = module
        self.log_path = log_path
        self._env = env
        self.cgroup_procs = list(cgroup_procs or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        #: Exit statuses the zygote reported for its children, by pid.
        self.exits: dict[int, int] = {}
        self.ready = False
        self.closed = False
        #: Where the zygote's own start went (process start, imports, preload), once ready.
        self.phases: dict[str, float] = {}
        self.started_monotonic = 0.0
        self.ready_after_s: float | None = None
        self.failure = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> ZygoteProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "base.zygote", self.module]
        if self.cgroup_procs:
            command = [*JOIN_CGROUPS, *self.cgroup_procs, "--", *command]
        env = {**self._env, FD_ENV: str(theirs.fileno())}
        self.started_monotonic = time.monotonic()
        with self.log_path.open("ab") as out:
            try:
                self.proc = subprocess.Popen(
                    command,
                    env=env,
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(theirs.fileno(),),
                )
            finally:
                theirs.close()
        self._sock = ours
        threading.Thread(target=self._read, name=f"zygote-{self.module}", daemon=True).start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.closed

    def usable(self) -> bool:
        return self.ready and self.alive()

    def wait_ready(self, timeout_s: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.ready or self.closed, timeout_s)
            return self.ready and not self.closed

    def spawn(
        self, env: dict[str, str], *, log_path: Path, cgroup_procs: list[str], timeout_s: float
    ) -> tuple[int, float]:
        """Fork one replica; returns (pid, seconds the fork took in the zygote)."""
        if not self.usable() or self._sock is None:
            raise ZygoteError(f"zygote of {self.module} is not ready")
        request_id = next(self._ids)
        message = {
            "op": "spawn",
            "id": request_id,
            "env": env,
            "log_path": str(log_path),
            "cwd": str(REPO_ROOT),
            "cgroup_procs": cgroup_procs,
        }
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as exc:
            raise ZygoteError(f"zygote of {self.module}: {exc}") from exc
        with self._cond:
            got = self._cond.wait_for(lambda: request_id in self._replies or self.closed, timeout_s)
            reply = self._replies.pop(request_id, None)
        if not got or reply is None:
            raise ZygoteError(f"zygote of {self.module} did not fork within {timeout_s:.0f} s")
        if reply.get("op") != "spawned":
            raise ZygoteError(f"zygote of {self.module}: {reply.get('message', reply)}")
        return int(reply["pid"]), float(reply.get("fork_s", 0.0))

    def exit_of(self, pid: int, timeout_s: float) -> int | None:
        """The exit status the zygote reported for `pid`, waiting up to timeout_s for it."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self.exits or self.closed, timeout_s)
            return self.exits.get(pid)

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop the template. Replicas it forked keep serving (the platform stops those)."""
        self.closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError), self._send_lock:
                self._sock.sendall(b'{"op":"retire"}\n')
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with self._cond:
            self._cond.notify_all()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        buffer = b""
        try:
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._on_message(json.loads(line))
        except (OSError, ValueError) as exc:
            self.failure = repr(exc)
        with self._cond:
            if not self.closed:
                self.failure = self.failure or "the zygote closed its control socket"
            self.closed = True
            self._cond.notify_all()

    def _on_message(self, message: dict[str, Any]) -> None:
        with self._cond:
            op = message.get("op")
            if op == "ready":
                self.ready = True
                self.ready_after_s = time.monotonic() - self.started_monotonic
                self.phases = dict(message.get("phases") or {})
            elif op == "exit":
                self.exits[int(message["pid"])] = int(message["returncode"])
            elif message.get("id") is not None:
                if op == "spawned":  # a reused pid must not inherit an earlier child's exit
                    self.exits.pop(int(message["pid"]), None)
                self._replies[int(message["id"])] = message
            self._cond.notify_all()


class _ForkedPopen:
    """The Popen surface the replica manager uses, for a child of the zygote."""

    def __init__(self, pid: int, zygote: ZygoteProcess) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._zygote = zygote
        self._gone = False

    def poll(self) -> int | None:
        if self.returncode is not None or self._gone:
            return self.returncode
        code = self._zygote.exits.get(self.pid)
        if code is None and not _running(self.pid):
            # Exited: the zygote reaps it at once and reports the status; wait for that.
            code = self._zygote.exit_of(self.pid, 1.0)
            self._gone = True
        self.returncode = code
        return code

    def exited(self) -> bool:
        self.poll()
        return self._gone or self.returncode is not None

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.exited():
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return self.returncode


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class ForkedProcess(FunctionProcess):
    """A replica forked from the function's zygote instead of a fresh interpreter."""

    def __init__(self, zygote: ZygoteProcess, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zygote = zygote
        self.fork_s: float | None = None

    def start(self) -> ForkedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_monotonic = time.monotonic()
        try:
            pid, self.fork_s = self.zygote.spawn(
                self._env,
                log_path=self.log_path,
                cgroup_procs=self.cgroup_procs,
                timeout_s=10.0,
            )
        except ZygoteError as exc:
            raise FunctionStartError(str(exc)) from exc
        self.proc = _ForkedPopen(pid, self.zygote)  # type: ignore[assignment]
        log("zygote.forked", module=self.module, pid=pid, fork_s=self.fork_s)
        return self

    def exited(self) -> bool:
        return isinstance(self.proc, _ForkedPopen) and self.proc.exited()
