"""A MinIO server built by harness.cluster.builder, run as a child process on loopback.

For tests that must hold against the cluster's S3 server (the embedded platform uses
SeaweedFS): one single-drive server in a fresh data dir, listening only on 127.0.0.1, with a
root account generated for this run, the console, update checks and telemetry off.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

from harness.loopback_s3 import HOST, LoopbackS3, LoopbackS3Error


class MinioServerError(LoopbackS3Error):
    """minio could not be started or did not become writable in time."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class MinioServer(LoopbackS3):
    """``minio server`` on a private loopback port; a context manager."""

    name = "minio"
    error = MinioServerError
    # Answers that waiting will not change (a server still starting answers 503 or refuses).
    permanent_errors = frozenset({"InvalidBucketName", "AccessDenied", "InvalidAccessKeyId"})

    def __init__(
        self, binary: str | os.PathLike[str], *, bucket: str, startup_timeout: float = 60.0
    ) -> None:
        super().__init__(bucket=bucket, startup_timeout=startup_timeout)
        self.binary = str(binary)
        self.port = 0
        self.data_dir: Path | None = None

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

    def start(self) -> Self:
        root = Path(tempfile.mkdtemp(prefix="vsearch-minio-"))
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        self.port, console = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_CALLHOME_ENABLE="off",
        )
        command = [self.binary, "server", str(self.data_dir), "--quiet",
                   "--address", f"{HOST}:{self.port}",
                   "--console-address", f"{HOST}:{console}"]  # fmt: skip
        try:
            self._launch_and_wait(command, env)
        except BaseException:
            self.stop()
            raise
        return self

    def _probe(self, client: Any) -> None:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=self.bucket)
        super()._probe(client)

    def stop(self) -> None:
        self._terminate()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
            self.data_dir = None

    def __repr__(self) -> str:  # never the secret
        return (
            f"MinioServer(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, "
            f"access_key={self.access_key!r}, pid={self.pid})"
        )

    __str__ = __repr__
