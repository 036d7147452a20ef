"""The embedded platform: S3 + gateway + function replicas on this machine, no containers.

`EmbeddedPlatform` starts (or borrows) an S3 server, then the gateway (uvicorn on a background
thread of this process, with its own event loop), which starts each function's min replicas.
Everything listens on loopback only. `state.json` and `credentials.json` (mode 0600) in the
state dir let other processes (`python -m harness.embedded status`, the harness) find it.

    with EmbeddedPlatform(state_dir, declarations) as platform:
        platform.invoke("search", body)
        platform.scale("search", 0)
        platform.events(type="oom_kill")
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn

from base.telemetry import log
from harness.embedded.auth import BasicAuth
from harness.embedded.cgroups import CgroupError, CgroupManager, run_name
from harness.embedded.client import CREDENTIALS_FILE, STATE_FILE, GatewayClient
from harness.embedded.gateway import Gateway, GatewaySettings
from harness.embedded.models import PlatformEvent
from harness.embedded.priority import SERVICE_SHARES
from harness.embedded.s3_server import SeaweedS3
from harness.functions import Declarations, FunctionDeclaration, load

HOST = "127.0.0.1"
_S3_KEYS = (
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


class PlatformError(RuntimeError):
    pass


def s3_env_from_environ(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """An external S3 named by S3_ENDPOINT_URL & co., or None when not (fully) configured."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in _S3_KEYS if environ.get(k)}
    required = ("S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    return env if all(k in env for k in required) else None


class EmbeddedPlatform:
    def __init__(
        self,
        state_dir: Path | str,
        declarations: Declarations | Iterable[FunctionDeclaration] | None = None,
        *,
        s3: Literal["auto", "embedded"] | Mapping[str, str] = "auto",
        enforce_limits: bool = True,
        settings: GatewaySettings | None = None,
        wait_ready: bool = True,
        ready_timeout_s: float = 180.0,
    ) -> None:
        """
        declarations: the functions to run (default: manifests/functions.yaml).
        s3: "auto" uses S3_ENDPOINT_URL/S3_BUCKET/AWS_* from the environment when all are set,
            else starts SeaweedS3; "embedded" always starts SeaweedS3; a mapping is used as is.
        enforce_limits: False runs replicas without cgroups even where they would work.
        wait_ready: start() returns once every function has its min replicas ready.
        """
        self.state_dir = Path(state_dir).resolve()
        if declarations is None:
            declarations = load()
        if isinstance(declarations, Declarations):
            declarations = declarations.functions
        self.declarations = list(declarations)
        self._s3_choice = s3
        self.enforce_limits = enforce_limits
        self.settings = settings or GatewaySettings()
        self.wait_ready = wait_ready
        self.ready_timeout_s = ready_timeout_s
        self.run = run_name()
        self.auth = BasicAuth.generate()
        self._s3_server: SeaweedS3 | None = None
        self._s3_env: dict[str, str] = {}
        self._cgroups: CgroupManager | None = None
        self._gateway: Gateway | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: GatewayClient | None = None
        self.gateway_url = ""
        self.started_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmbeddedPlatform:
        began = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Replicas lead their own sessions, so nothing else would stop them if the owner of
        # this object exits without calling stop().
        atexit.register(self.stop)
        try:
            self._start_s3()
            self._cgroups = CgroupManager(self.run, enforce=self.enforce_limits)
            self._weigh_services()
            self._start_gateway()
            if self.wait_ready:
                self._wait_min_replicas()
            # Last: the file's appearance tells `up` (another process) the platform is usable.
            self._write_state()
        except BaseException:
            self.stop()
            raise
        log(
            "platform.up",
            gateway_url=self.gateway_url,
            s3_endpoint=self._s3_env.get("S3_ENDPOINT_URL"),
            limits_enforced=self.limits_enforced,
            limits_reason=self.limits_reason,
            seconds=round(time.monotonic() - began, 3),
        )
        return self

    def stop(self) -> None:
        """Stop replicas (and their cgroups), the gateway and the S3 server; idempotent."""
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            # Replicas get SIGTERM and a grace period in the gateway's lifespan shutdown.
            self._thread.join(timeout=self.settings.pool.stop_grace_s + 30)
            if self._thread.is_alive():
                log("platform.gateway_stuck", level="error")
        self._server = self._thread = None
        self._gateway = None
        if self._cgroups is not None:
            self._cgroups.cleanup()
            self._cgroups = None
        if self._s3_server is not None:
            self._s3_server.stop()
            self._s3_server = None
            # Caller-owned data dirs are kept by SeaweedS3; this one is per run.
            shutil.rmtree(self._s3_dir, ignore_errors=True)
        for name in (STATE_FILE, CREDENTIALS_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()

    def __enter__(self) -> EmbeddedPlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPlatform(state_dir={str(self.state_dir)!r}, gateway={self.gateway_url!r})"

    def _start_s3(self) -> None:
        choice = self._s3_choice
        if isinstance(choice, Mapping):
            self._s3_env = dict(choice)
            return
        external = s3_env_from_environ() if choice == "auto" else None
        if external is not None:
            self._s3_env = external
            return
        self._s3_server = SeaweedS3(data_dir=self._s3_dir).start()
        self._s3_env = self._s3_server.env()

    def _weigh_services(self) -> None:
        """Under request priority, this process (the gateway's) and the S3 server go into the
        run's services group, weighted as the oldest request (priority.SERVICE_SHARES)."""
        assert self._cgroups is not None
        if not (self._cgroups.enforced and self.settings.pool.request_priority):
            return
        pids = [os.getpid()]
        if self._s3_server is not None and self._s3_server.pid is not None:
            pids.append(self._s3_server.pid)
        try:
            group = self._cgroups.weigh_services(pids, SERVICE_SHARES)
        except CgroupError as exc:
            # A weight is a wish (as in priority.py): the platform works without it.
            log("platform.services_not_weighted", level="warning", error=str(exc))
            return
        if group is not None:
            log("platform.services_weighted", group=str(group), pids=pids, shares=SERVICE_SHARES)

    def _start_gateway(self) -> None:
        assert self._cgroups is not None
        # Bind first and hand uvicorn the socket: the port is known before any replica starts
        # (it needs GATEWAY_URL) and nothing can take it in between.
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does,
        # and without it Nagle + delayed ACKs add ~40 ms to every proxied call.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        self.gateway_url = f"http://{HOST}:{port}"
        self._gateway = Gateway(
            self.declarations,
            function_env={**self._s3_env, "GATEWAY_URL": self.gateway_url},
            # The orchestrator prewarms the chain through the scale API (orchestrator/prewarm.py).
            private_env={
                "orchestrator": {
                    "GATEWAY_AUTH_USER": self.auth.user,
                    "GATEWAY_AUTH_PASSWORD": self.auth.password,
                }
            },
            auth=self.auth,
            cgroups=self._cgroups,
            log_dir=self.state_dir / "logs" / self.run,
            settings=self.settings,
        )
        config = uvicorn.Config(
            self._gateway.app(),
            host=HOST,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise PlatformError("the gateway exited during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise PlatformError("the gateway did not start within 30 s")
            time.sleep(0.01)
        self.started_at = time.time()
        self._client = GatewayClient(self.gateway_url, self.auth)

    def _wait_min_replicas(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            functions = self.client.functions()
            pending = [
                f"{f['name']} ({f['availableReplicas']}/{f['vsearch']['min_replicas']})"
                for f in functions
                if f["availableReplicas"] < f["vsearch"]["min_replicas"] and not _idled(f)
            ]
            # Deployed means templated too: a function at zero forks its first replica from a
            # warm zygote (one that failed is given up and restarted by its replica set).
            pending += [
                f"{f['name']} (zygote {zygote['state']})"
                for f in functions
                if (zygote := f["vsearch"].get("zygote")) and zygote["state"] == "starting"
            ]
            if not pending:
                return
            failures = self.client.events(type="start_failed")
            if time.monotonic() > deadline or failures:
                detail = "; ".join(e.message for e in failures[-3:])
                raise PlatformError(
                    f"functions not ready: {', '.join(pending)}" + (f": {detail}" if detail else "")
                )
            time.sleep(0.05)

    def _write_state(self) -> None:
        state = {
            "gateway_url": self.gateway_url,
            "s3_endpoint": self._s3_env.get("S3_ENDPOINT_URL"),
            "bucket": self._s3_env.get("S3_BUCKET"),
            "pid": os.getpid(),
            "run": self.run,
            "started_at": self.started_at,
            "limits_enforced": self.limits_enforced,
            "limits_reason": self.limits_reason,
            "functions": [d.name for d in self.declarations],
        }
        credentials = {
            "gateway": {"user": self.auth.user, "password": self.auth.password},
            "s3": self._s3_env,
        }
        write_private(self.state_dir / CREDENTIALS_FILE, json.dumps(credentials, indent=2))
        # state.json after the credentials it refers to, and atomically.
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    # -- facts ---------------------------------------------------------------------------------

    def gateway_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def client(self) -> GatewayClient:
        if self._client is None:
            raise PlatformError("the platform is not running")
        return self._client

    @property
    def s3_env(self) -> dict[str, str]:
        """S3_ENDPOINT_URL, S3_BUCKET, AWS_* for a process that should use the platform's S3."""
        return dict(self._s3_env)

    @property
    def s3_server(self) -> SeaweedS3 | None:
        return self._s3_server

    @property
    def limits_enforced(self) -> bool:
        return self._cgroups is not None and self._cgroups.enforced

    @property
    def limits_reason(self) -> str:
        return self._cgroups.reason if self._cgroups is not None else "not started"

    @property
    def _s3_dir(self) -> Path:
        return self.state_dir / f"s3-{self.run}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs" / self.run

    # -- operations (thin wrappers over the HTTP API) ------------------------------------------

    def invoke(self, name: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.invoke(name, body, **kwargs)

    def scale(
        self, name: str, replicas: int, *, wait: bool = True, timeout_s: float = 120.0
    ) -> None:
        self.client.scale(name, replicas, wait=wait, timeout_s=timeout_s)

    def ready_replicas(self, name: str) -> int:
        return self.client.ready_replicas(name)

    def events(
        self, *, since: int = 0, type: str | None = None, function: str | None = None
    ) -> list[PlatformEvent]:
        return self.client.events(since=since, type=type, function=function)

    def kill_replica(
        self, name: str, replica: str | None = None, *, busy_only: bool = False
    ) -> dict[str, Any]:
        return self.client.kill_replica(name, replica, busy_only=busy_only)

    def function(self, name: str) -> dict[str, Any]:
        return self.client.function(name)


def _idled(status: dict[str, Any]) -> bool:
    """Scaled to zero after idling, which it only does after having been ready."""
    extras = status["vsearch"]
    return bool(extras["scale_to_zero_idle"]) and extras["desired_replicas"] == 0


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, without a moment where it is world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        os.write(fd, text.encode())
    finally:
        os.close(fd)
