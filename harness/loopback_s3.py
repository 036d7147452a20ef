"""What the harness's two S3 servers run as child processes have in common.

SeaweedFS (harness/embedded/s3_server.py: the embedded platform's store) and MinIO
(harness/cluster/minio_server.py: the cluster's store, for tests) each listen only on loopback,
with a root account generated for the run; each counts as started only once a real write went
through, and stops with its whole process group. The subclasses say what to launch and where.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
REGION = "us-east-1"
STOP_TIMEOUT_S = 10.0
PROBE_KEY = ".vsearch-readiness-probe"
LOG_TAIL_LINES = 40


class LoopbackS3Error(RuntimeError):
    """The server could not be started or did not become writable in time."""


class LoopbackS3(abc.ABC):
    """A child-process S3 server; a context manager. Subclasses define the members that raise."""

    #: The server's name in error messages.
    name = "s3"
    error: type[LoopbackS3Error] = LoopbackS3Error
    #: Probe answers that waiting will not change; any other error means "not ready yet".
    permanent_errors: frozenset[str] = frozenset()

    def __init__(self, *, bucket: str, startup_timeout: float) -> None:
        self.bucket = bucket
        self.startup_timeout = startup_timeout
        # Launch to first successful write, of the latest launch.
        self.startup_seconds: float | None = None
        # The shape harness/reliability/secrets_scan.py looks for in files.
        self._access_key = "VS" + secrets.token_hex(9).upper()
        self._secret_key = secrets.token_urlsafe(30)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    @abc.abstractmethod
    def endpoint_url(self) -> str:
        """Where clients reach the server (http://127.0.0.1:PORT)."""

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The file every launch appends its output to."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Launch the server and return once it stores objects."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server (and remove what this object created)."""

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server; extra kwargs are merged into botocore's Config."""
        # A private Session per client: boto3's default session is not thread-safe and would
        # let AWS_PROFILE and friends from the developer's shell leak into the client.
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}).merge(
                Config(**config)
            ),
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch_and_wait(
        self, command: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> None:
        """Start ``command`` logging to log_path; return once a write went through."""
        log_path = self.log_path
        # Earlier launches may share the log: error messages quote only this one's lines.
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        began = time.monotonic()
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a stop can signal everything the server spawned, and a
                # Ctrl-C in the terminal reaches only the test runner, whose teardown stops it.
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_writable(began)
        except BaseException:
            self._terminate()
            raise
        self.startup_seconds = time.monotonic() - began

    def _probe(self, client: Any) -> None:
        client.put_object(Bucket=self.bucket, Key=PROBE_KEY, Body=b"ok")
        client.delete_object(Bucket=self.bucket, Key=PROBE_KEY)

    def _wait_writable(self, began: float) -> None:
        # An S3 port may answer (weed's even lists buckets) before the server can store
        # anything (before weed's volume server registered), so only a real write proves it.
        # Short timeouts and no botocore retries keep each attempt brief, so that an early exit
        # (seen via poll()) is noticed quickly.
        probe = self.client(
            connect_timeout=1,
            read_timeout=2,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        last_error: Exception | None = None
        while time.monotonic() - began < self.startup_timeout:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise self.error(
                    f"{self.name} exited with code {self._proc.returncode} during startup:\n"
                    f"{self._log_tail()}"
                )
            try:
                self._probe(probe)
                return
            except Exception as err:  # connection refused / server initializing: not yet
                # A read timeout carries response=None, not a botocore answer.
                response = getattr(err, "response", None) or {}
                code = (response.get("Error") or {}).get("Code")
                if code in self.permanent_errors:
                    raise self.error(f"{self.name} refused the readiness probe: {err}") from err
                last_error = err
                time.sleep(0.1)
        raise self.error(
            f"{self.name} not writable after {self.startup_timeout:.0f} s "
            f"(last error: {last_error!r}):\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the latest launch's log output."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as err:
            return f"<log unavailable: {err}>"
        return "\n".join(text.splitlines()[-lines:])

    def _terminate(self) -> None:
        """Stop the process group; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the group proc leads, SIGKILL it after timeout, then reap proc."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        if not _wait_unreaped(proc, timeout):
            _signal_group(proc.pid, signal.SIGKILL)
            _wait_unreaped(proc, None)
    if proc.returncode is None:
        # Not reaped yet, so the leader's pid (= the group id) cannot have been reused:
        # anything the server left behind in the group is still ours to kill.
        _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait for proc to exit without reaping it; True if it exited within timeout."""
    if not hasattr(os, "waitid"):  # macOS before 3.13: reap, which skips the final group sweep
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere
            return True
        if info is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
