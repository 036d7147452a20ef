"""One function replica as a real OS process: `python -m <module>` serving on a loopback port.

Used by the embedded gateway for its replicas and by function tests, so a test talks to a
function exactly as the platform does: over HTTP, in another process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FunctionStartError(RuntimeError):
    pass


def process_env(env: dict[str, str], drop_inherited: Sequence[str] = ()) -> dict[str, str]:
    """A function process's environment: ours minus `drop_inherited` prefixes, plus `env`.

    Variables with those prefixes are not inherited (e.g. a developer's AWS_PROFILE or session
    token would silently change which S3 the function talks to).
    """
    prefixes = tuple(drop_inherited)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {
        **inherited,
        **env,
        "HOST": "127.0.0.1",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }


#: `sh -c PRELUDE join-cgroups <procs files...> -- <command...>`: write the shell's pid (which
#: becomes the command's after exec) into each file, refusing to run outside its limits.
JOIN_CGROUPS = [
    "/bin/sh",
    "-c",
    'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"',
    "join-cgroups",
]


class FunctionProcess:
    """Start, wait for readiness, stop; the log goes to a file so a failure can show it."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        *,
        log_path: Path,
        port: int | None = None,
        preexec_cgroup: str | None = None,
        cgroup_procs: Sequence[str] = (),
        drop_inherited: Sequence[str] = (),
    ) -> None:
        self.module = module
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {**process_env(env, drop_inherited), "PORT": str(self.port)}
        #: `cgroup.procs` files the process joins before it execs Python (one per hierarchy).
        self.cgroup_procs = [*cgroup_procs, *([preexec_cgroup] if preexec_cgroup else [])]
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_monotonic = 0.0
        self.ready_after_s: float | None = None

    def start(self) -> FunctionProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", self.module]
        if self.cgroup_procs:
            # Join the cgroups before exec, so the interpreter's own start-up is limited and
            # counted too. A shell prelude rather than preexec_fn: the gateway starts replicas
            # from a threaded process, where running Python between fork and exec can deadlock.
            command = [*JOIN_CGROUPS, *self.cgroup_procs, "--", *command]
        self.started_monotonic = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            env=self._env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Block until `/_/ready` answers 200; returns seconds since start (the cold start)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exited():
                raise FunctionStartError(
                    f"{self.module} exited with {self.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            try:
                response = httpx.get(f"{self.url}/_/ready", timeout=1.0)
                # Only this process's answer counts: another one may hold the port (a port
                # picked free can be taken by a parallel test before this process binds it).
                if response.status_code == 200 and _pid_of(response) in (None, self.pid):
                    self.ready_after_s = time.monotonic() - self.started_monotonic
                    return self.ready_after_s
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise FunctionStartError(f"{self.module} not ready after {timeout_s:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and not self.exited()

    def exited(self) -> bool:
        """The process has ended (a forked replica's status may then still be unknown)."""
        return self.proc is not None and self.proc.poll() is not None

    @property
    def returncode(self) -> int | None:
        """Exit code, or minus the killing signal; None while running or when unknown."""
        return self.proc.poll() if self.proc is not None else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> FunctionProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pid_of(response: httpx.Response) -> int | None:
    """The pid a runtime's /_/ready names (None from one that names none; -1 for non-JSON)."""
    try:
        pid = response.json().get("pid")
    except (ValueError, AttributeError):
        return -1
    return pid if isinstance(pid, int) else None
