"""A MinIO server built by harness.cluster.builder, run as a child process on loopback.

For tests that must hold against the cluster's S3 server (the embedded platform uses
SeaweedFS): one single-drive server in a fresh data dir, listening only on 127.0.0.1, with a
root account generated for this run, the console, update checks and telemetry off.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
REGION = "us-east-1"
STOP_TIMEOUT_S = 10.0
PROBE_KEY = ".vsearch-readiness-probe"
# Answers that waiting will not change (a server still starting answers 503 or refuses).
PERMANENT_ERRORS = {"InvalidBucketName", "AccessDenied", "InvalidAccessKeyId"}


class MinioServerError(RuntimeError):
    """minio could not be started or did not become writable in time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MinioServer:
    """``minio server`` on a private loopback port; a context manager."""

    def __init__(
        self, binary: str | os.PathLike[str], *, bucket: str, startup_timeout: float = 60.0
    ) -> None:
        self.binary = str(binary)
        self.bucket = bucket
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self.access_key = "VS" + secrets.token_hex(9).upper()
        self._secret_key = secrets.token_urlsafe(30)
        self.port = 0
        self.data_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise MinioServerError("server has not been started")
        return self.data_dir.parent / "minio.log"

    def version(self) -> str:
        """``minio --version``'s first line."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]

    def client(self, **config: Any) -> Any:
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self._secret_key,
            region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}).merge(
                Config(**config)
            ),
        )

    def start(self) -> Self:
        root = Path(tempfile.mkdtemp(prefix="vsearch-minio-"))
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        self.port, console = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self._secret_key,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_CALLHOME_ENABLE="off",
        )
        command = [self.binary, "server", str(self.data_dir), "--quiet",
                   "--address", f"{HOST}:{self.port}",
                   "--console-address", f"{HOST}:{console}"]  # fmt: skip
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_writable(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_writable(self, began: float) -> None:
        probe = self.client(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1})
        last: Exception | None = None
        while time.monotonic() - began < self.startup_timeout:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise MinioServerError(
                    f"minio exited with code {self._proc.returncode} during startup:\n"
                    f"{self._log_tail()}"
                )
            try:
                with contextlib.suppress(probe.exceptions.BucketAlreadyOwnedByYou):
                    probe.create_bucket(Bucket=self.bucket)
                probe.put_object(Bucket=self.bucket, Key=PROBE_KEY, Body=b"ok")
                probe.delete_object(Bucket=self.bucket, Key=PROBE_KEY)
                return
            except Exception as err:  # connection refused / server initializing: not yet
                code = getattr(err, "response", {}).get("Error", {}).get("Code")
                if code in PERMANENT_ERRORS:
                    raise MinioServerError(f"minio refused the readiness probe: {err}") from err
                last = err
                time.sleep(0.2)
        raise MinioServerError(
            f"minio not writable after {self.startup_timeout:.0f} s (last error: {last!r}):\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:  # never the secret
        return (
            f"MinioServer(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, "
            f"access_key={self.access_key!r}, pid={self._proc.pid if self._proc else None})"
        )

    __str__ = __repr__
