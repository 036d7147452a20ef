"""The embedded gateway: the OpenFaaS gateway API in front of local replica processes.

Routes (OpenFaaS names and semantics unless marked "ours"):
- `/function/{name}[/{path}]` any method: proxied to the least-loaded ready replica;
- `/async-function/{name}[/{path}]`: 202 + X-Call-Id, result POSTed to a loopback X-Callback-Url;
- `/system/functions`, `/system/function/{name}`, `/system/scale-function/{name}` (0 allowed),
  `/system/info`, and ours: `/system/events`, `/system/kill-replica/{name}`,
  `/system/reset-window` (run totals and peak memory start again, for one deploy serving
  several benchmark regimes); all basic auth;
- `/healthz`, `/metrics` (Prometheus text).

Proxied answers carry X-Vsearch-Replica, X-Vsearch-Queue-Seconds and, when the call waited for
a replica process to start, X-Vsearch-Cold-Start-Seconds. A replica that dies mid-call turns
into a 502 whose code says whether the kernel OOM-killed it, so the orchestrator can retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import json
import platform as host_platform
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from base.contracts import ErrorDetail
from base.telemetry import log
from harness.embedded.auth import BasicAuth
from harness.embedded.cgroups import CgroupManager
from harness.embedded.events import EventLog
from harness.embedded.metrics import GatewayMetrics
from harness.embedded.models import (
    EventPage,
    FunctionResources,
    FunctionStatus,
    FunctionUsage,
    GatewayError,
    GatewayInfo,
    PlatformInfo,
    ProviderInfo,
    ScaleRequest,
    VersionInfo,
)
from harness.embedded.priority import CpuPriority, stamp_request_arrival
from harness.embedded.replicas import PoolError, PoolSettings, ReplicaIdle, ReplicaSet
from harness.functions import FunctionDeclaration

# httpcore 1.0 imports sniffio on every async lock set-up; sniffio is not in our lock, and a
# failed import scans all of sys.path each time: ~1 ms of CPU, several times per proxied call.
# A None entry makes the import fail at once, and httpcore and anyio then assume asyncio.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[assignment]

NAMESPACE = "openfaas-fn"
VERSION = "0.1.0"
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
# Connection-level headers describe one hop; forwarding them would corrupt the next one.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
#: Set by the gateway's own server on the way out; the replica's copies would duplicate them.
_REPLACED = frozenset({"date", "server"})


@dataclass(frozen=True)
class GatewaySettings:
    #: The proxy waits exec_timeout plus this, so the function's own 504 wins over ours.
    call_margin_s: float = 5.0
    max_body_bytes: int = 64 << 20
    max_async_pending: int = 1000
    callback_timeout_s: float = 30.0
    pool: PoolSettings = field(default_factory=PoolSettings)


@dataclass
class CallResult:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float


class Gateway:
    """Owns the replica sets, the shared HTTP client and the metrics; serves the ASGI app."""

    def __init__(
        self,
        declarations: list[FunctionDeclaration],
        *,
        function_env: Mapping[str, str],
        private_env: Mapping[str, Mapping[str, str]] | None = None,
        auth: BasicAuth,
        cgroups: CgroupManager,
        log_dir: Path,
        settings: GatewaySettings | None = None,
    ) -> None:
        self.declarations = {d.name: d for d in declarations}
        self.function_env = dict(function_env)
        #: Per function, env that is not declared (never in /system/functions' envVars): the
        #: orchestrator's gateway credentials for the scale API.
        self.private_env = {k: dict(v) for k, v in (private_env or {}).items()}
        self.auth = auth
        self.cgroups = cgroups
        self.log_dir = log_dir
        self.settings = settings or GatewaySettings()
        self.events = EventLog()
        self.metrics = GatewayMetrics()
        self.sets: dict[str, ReplicaSet] = {}
        self.started_at = time.time()
        self.ready = False
        self._client: httpx.AsyncClient | None = None
        self._async_tasks: set[asyncio.Task[None]] = set()
        self.cpu_priority = CpuPriority(
            enabled=self.settings.pool.request_priority,
            set_run_shares=cgroups.set_run_cpu_shares if cgroups.enforced else None,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        self._client = httpx.AsyncClient(
            # Idle connections are dropped before uvicorn's 5 s keep-alive ends on the replica's
            # side, or a reused connection could be closed under a request: a spurious 502.
            limits=httpx.Limits(
                max_connections=2000, max_keepalive_connections=500, keepalive_expiry=2.0
            ),
            trust_env=False,
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, decl in self.declarations.items():
            self.sets[name] = ReplicaSet(
                decl,
                env={**self.function_env, **self.private_env.get(name, {})},
                cgroups=self.cgroups,
                events=self.events,
                client=self._client,
                log_dir=self.log_dir,
                settings=self.settings.pool,
            )
        for replica_set in self.sets.values():
            await replica_set.start()
        self.ready = True
        log(
            "gateway.started",
            functions=list(self.sets),
            limits_enforced=self.cgroups.enforced,
            limits_reason=self.cgroups.reason,
        )

    async def shutdown(self) -> None:
        self.ready = False
        for task in list(self._async_tasks):
            task.cancel()
        await asyncio.gather(*self._async_tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sets.values()), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        log("gateway.stopped")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    def app(self) -> ASGIApp:
        routes = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/function/{name}", self.invoke, methods=_METHODS),
            Route("/function/{name}/{path:path}", self.invoke, methods=_METHODS),
            Route("/async-function/{name}", self.invoke_async, methods=["POST"]),
            Route("/async-function/{name}/{path:path}", self.invoke_async, methods=["POST"]),
            Route("/system/functions", self.list_functions, methods=["GET"]),
            Route("/system/functions", self.not_supported, methods=["POST", "PUT", "DELETE"]),
            Route("/system/function/{name}", self.get_function, methods=["GET"]),
            Route("/system/scale-function/{name}", self.scale_function, methods=["POST"]),
            Route("/system/info", self.info, methods=["GET"]),
            Route("/system/events", self.list_events, methods=["GET"]),
            Route("/system/kill-replica/{name}", self.kill_replica, methods=["POST"]),
            Route("/system/reset-window", self.reset_window, methods=["POST"]),
        ]
        app = Starlette(
            routes=routes,
            lifespan=self.lifespan,
            exception_handlers={404: _not_found, 405: _not_allowed},
        )
        return _SystemAuth(app, self.auth)

    # -- helpers -------------------------------------------------------------------------------

    def _set(self, name: str) -> ReplicaSet | None:
        found = self.sets.get(name)
        if found is None and name.endswith(f".{NAMESPACE}"):
            found = self.sets.get(name[: -len(NAMESPACE) - 1])
        return found

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "gateway not started"
        return self._client

    async def _read_body(self, request: Request) -> bytes | None:
        limit = self.settings.max_body_bytes
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    # -- invocation ----------------------------------------------------------------------------

    async def invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        replica_set = self._set(name)
        if replica_set is None:
            return _error(404, "function_not_found", f"function {name} is not deployed", name)
        body = await self._read_body(request)
        if body is None:
            limit = self.settings.max_body_bytes
            return _error(413, "body_too_large", f"request body over {limit} bytes", name)
        result = await self.call(
            replica_set,
            method=request.method,
            path=request.path_params.get("path", ""),
            query=request.url.query,
            headers=_forward_headers(request),
            body=body,
        )
        return Response(result.body, status_code=result.status, headers=result.headers)

    async def call(
        self,
        replica_set: ReplicaSet,
        *,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        bounded: bool = True,
    ) -> CallResult:
        """One call through the pool: slot, proxy, error mapping, metrics."""
        started = time.monotonic()
        name = replica_set.name
        headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        call_id = headers["X-Call-Id"]
        arrival = stamp_request_arrival(headers, time.time())
        try:
            lease = await replica_set.acquire(bounded=bounded, request_arrival=arrival)
        except PoolError as exc:
            return self._finish(
                name, started, exc.status, _error_body(exc.code, exc.message, name), {}, call_id
            )
        replica = lease.replica
        extra = {
            "X-Vsearch-Replica": replica.name,
            "X-Vsearch-Queue-Seconds": f"{lease.queue_s:.6f}",
        }
        if lease.cold_start_s > 0:
            extra["X-Vsearch-Cold-Start-Seconds"] = f"{lease.cold_start_s:.6f}"
        url = f"{replica.url}/{path}" + (f"?{query}" if query else "")
        timeout = replica_set.exec_timeout_s + self.settings.call_margin_s
        self.cpu_priority.begin(replica, replica.group, arrival)
        try:
            response = await self.client.request(
                method,
                url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        except httpx.TimeoutException:
            message = (
                f"function {name} replica {replica.name} did not answer within {timeout:.0f} s"
            )
            return self._finish(
                name, started, 504, _error_body("gateway_timeout", message, name), extra, call_id
            )
        except httpx.TransportError as exc:
            death = await replica_set.death_of(replica)
            if death is None:
                code, message = (
                    "bad_gateway",
                    f"function {name} replica {replica.name}: {type(exc).__name__}: {exc}",
                )
            else:
                code, message = death.cause, death.message
            log(
                "gateway.replica_failed",
                level="warning",
                function=name,
                replica=replica.name,
                code=code,
                call_id=call_id,
            )
            return self._finish(
                name, started, 502, _error_body(code, message, name), extra, call_id
            )
        finally:
            self.cpu_priority.end(replica, arrival)
            oom_kills = replica_set.release(lease)
            if oom_kills:
                extra["X-Vsearch-Oom-Kills"] = str(oom_kills)
        passed = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in _REPLACED
        }
        return self._finish(
            name, started, response.status_code, response.content, {**passed, **extra}, call_id
        )

    def _finish(
        self,
        name: str,
        started: float,
        status: int,
        body: bytes,
        headers: dict[str, str],
        call_id: str,
    ) -> CallResult:
        seconds = time.monotonic() - started
        self.metrics.observe(name, status, seconds)
        headers = {**headers, "X-Call-Id": call_id}
        if status >= 500 or status == 429:
            log(
                "gateway.call",
                level="warning" if status != 429 else "info",
                function=name,
                code=status,
                seconds=round(seconds, 4),
                replica=headers.get("X-Vsearch-Replica"),
                call_id=call_id,
            )
        return CallResult(status, body, headers, seconds)

    async def invoke_async(self, request: Request) -> Response:
        name = request.path_params["name"]
        replica_set = self._set(name)
        if replica_set is None:
            return _error(404, "function_not_found", f"function {name} is not deployed", name)
        callback = request.headers.get("X-Callback-Url")
        if callback and not is_loopback_url(callback):
            return _error(
                400,
                "callback_not_loopback",
                "X-Callback-Url must be an http(s) URL on a loopback address (local platform)",
                name,
            )
        if len(self._async_tasks) >= self.settings.max_async_pending:
            pending = self.settings.max_async_pending
            return _error(429, "overloaded", f"{pending} asynchronous calls already pending", name)
        body = await self._read_body(request)
        if body is None:
            limit = self.settings.max_body_bytes
            return _error(413, "body_too_large", f"request body over {limit} bytes", name)
        headers = _forward_headers(request)
        headers.pop("x-callback-url", None)
        call_id = headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        task = asyncio.create_task(
            self._run_async(
                replica_set,
                request.method,
                request.path_params.get("path", ""),
                request.url.query,
                headers,
                body,
                callback,
            ),
            name=f"async-{call_id}",
        )
        self._async_tasks.add(task)
        task.add_done_callback(self._async_tasks.discard)
        return Response(status_code=202, headers={"X-Call-Id": call_id})

    async def _run_async(
        self,
        replica_set: ReplicaSet,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        callback: str | None,
    ) -> None:
        # Queued, not refused: an accepted async call waits for capacity like a queue worker.
        result = await self.call(
            replica_set,
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            bounded=False,
        )
        if not callback:
            return
        out = {
            "X-Call-Id": result.headers["X-Call-Id"],
            "X-Function-Status": str(result.status),
            "X-Function-Name": replica_set.name,
            "X-Duration-Seconds": f"{result.seconds:.6f}",
            "Content-Type": result.headers.get("content-type", "application/octet-stream"),
        }
        out.update({k: v for k, v in result.headers.items() if k.startswith("X-Vsearch-")})
        try:
            await self.client.post(
                callback, content=result.body, headers=out, timeout=self.settings.callback_timeout_s
            )
        except httpx.HTTPError as exc:
            log(
                "gateway.callback_failed",
                level="warning",
                function=replica_set.name,
                call_id=out["X-Call-Id"],
                error=type(exc).__name__,
            )

    # -- system API ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        if not self.ready:
            return PlainTextResponse("starting", status_code=503)
        return PlainTextResponse("OK")

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(
            self.metrics.render(self.sets.values()),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def status(self, replica_set: ReplicaSet) -> FunctionStatus:
        decl = replica_set.decl
        labels = {
            "com.openfaas.scale.min": str(decl.min_replicas),
            "com.openfaas.scale.max": str(decl.max_replicas),
            "com.openfaas.scale.zero": str(decl.scale_to_zero_idle is not None).lower(),
            "vsearch.videosearcher": decl.videosearcher,
        }
        if decl.scale_to_zero_idle is not None:
            labels["com.openfaas.scale.zero-duration"] = f"{decl.scale_to_zero_idle:g}s"
        return FunctionStatus(
            name=decl.name,
            image=f"embedded:{decl.module}",
            namespace=NAMESPACE,
            envProcess=f"python -m {decl.module}",
            # The declared env only: S3 credentials are injected at start and never listed.
            envVars=dict(decl.env),
            labels=labels,
            annotations={
                "com.openfaas.exec_timeout": decl.exec_timeout,
                "com.openfaas.max_inflight": str(decl.max_inflight),
            },
            limits=FunctionResources(
                memory=decl.memory_limit,
                cpu=None if decl.cpu_limit is None else f"{decl.cpu_limit:g}",
            ),
            invocationCount=self.metrics.invocation_count(decl.name),
            replicas=replica_set.target,
            availableReplicas=replica_set.ready_count,
            createdAt=datetime.fromtimestamp(self.started_at, UTC).isoformat(),
            usage=FunctionUsage(
                cpu=round(replica_set.usage_cores, 4),
                totalMemoryBytes=float(replica_set.memory_bytes()),
            ),
            vsearch=replica_set.extras(),
        )

    async def list_functions(self, request: Request) -> Response:
        return JSONResponse([self.status(s).model_dump(mode="json") for s in self.sets.values()])

    async def get_function(self, request: Request) -> Response:
        name = request.path_params["name"]
        replica_set = self._set(name)
        if replica_set is None:
            return _error(404, "function_not_found", f"function {name} is not deployed", name)
        return JSONResponse(self.status(replica_set).model_dump(mode="json"))

    async def scale_function(self, request: Request) -> Response:
        name = request.path_params["name"]
        replica_set = self._set(name)
        if replica_set is None:
            return _error(404, "function_not_found", f"function {name} is not deployed", name)
        try:
            scale = ScaleRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, "invalid_request", f"{where}: {first['msg']}", name)
        if scale.serviceName not in (None, "", name, replica_set.name):
            return _error(400, "invalid_request", "serviceName does not match the path", name)
        applied = replica_set.scale(scale.replicas)
        return JSONResponse(
            {"serviceName": replica_set.name, "replicas": applied, "requested": scale.replicas},
            status_code=202,
        )

    async def info(self, request: Request) -> Response:
        version = VersionInfo(
            sha="embedded", release=VERSION, commit_message="vsearch embedded gateway"
        )
        body = GatewayInfo(
            provider=ProviderInfo(
                provider="vsearch-embedded", orchestration="processes", version=version
            ),
            version=version,
            arch=host_platform.machine(),
            vsearch=PlatformInfo(
                limits_enforced=self.cgroups.enforced,
                limits_reason=self.cgroups.reason,
                cgroup_version=self.cgroups.version,
                functions=len(self.sets),
                started_at=self.started_at,
            ),
        )
        return JSONResponse(body.model_dump(mode="json"))

    async def list_events(self, request: Request) -> Response:
        params = request.query_params
        try:
            since = int(params.get("since", "0"))
            limit = int(params.get("limit", "10000"))
        except ValueError:
            return _error(400, "invalid_request", "since and limit must be integers", None)
        events = self.events.query(
            since=since, type=params.get("type"), function=params.get("function"), limit=limit
        )
        page = EventPage(events=events, last_seq=self.events.last_seq)
        return JSONResponse(page.model_dump(mode="json"))

    async def kill_replica(self, request: Request) -> Response:
        """Ours, for fault tests: SIGKILL one replica (named by `?replica=`, else the busiest;
        `?busy=1`: only while it serves a call, else 409)."""
        name = request.path_params["name"]
        replica_set = self._set(name)
        if replica_set is None:
            return _error(404, "function_not_found", f"function {name} is not deployed", name)
        busy_only = request.query_params.get("busy") == "1"
        try:
            replica = replica_set.kill(request.query_params.get("replica"), busy_only=busy_only)
        except ReplicaIdle:
            return _error(409, "replica_idle", f"{name}'s replica is between calls", name)
        except KeyError:
            return _error(404, "replica_not_found", f"{name} has no such live replica", name)
        return JSONResponse(
            {"function": replica_set.name, "replica": replica.name, "pid": replica.pid}
        )

    async def reset_window(self, request: Request) -> Response:
        """Ours: a new measurement window for every function (counters 0, peaks from now)."""
        for replica_set in self.sets.values():
            replica_set.reset_window()
        return JSONResponse({"reset": list(self.sets), "time": time.time()})

    async def not_supported(self, request: Request) -> Response:
        return _error(
            501,
            "not_supported",
            "the embedded platform deploys the functions of manifests/functions.yaml only",
            None,
        )


class _SystemAuth:
    """Basic auth in front of every /system/* path, known or not (no route probing)."""

    def __init__(self, app: ASGIApp, auth: BasicAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/system"):
            header = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
            )
            if not self.auth.check(header):
                response = _error(401, "unauthorized", "basic auth required for /system", None)
                response.headers["WWW-Authenticate"] = 'Basic realm="vsearch embedded gateway"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _forward_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    # The function's own view of who called, as the OpenFaaS gateway passes it on.
    client = request.client.host if request.client else ""
    headers["X-Forwarded-For"] = client
    headers["X-Forwarded-Host"] = request.headers.get("host", "")
    headers["X-Start-Time"] = str(time.time_ns())
    if "x-call-id" in headers:
        headers["X-Call-Id"] = headers.pop("x-call-id")
    return headers


def _error_body(code: str, message: str, function: str | None) -> bytes:
    body = GatewayError(function=function, error=ErrorDetail(code=code, message=message))
    return json.dumps(body.model_dump(mode="json"), separators=(",", ":")).encode()


def _error(status: int, code: str, message: str, function: str | None) -> Response:
    return Response(
        _error_body(code, message, function),
        status_code=status,
        media_type="application/json",
    )


async def _not_found(request: Request, exc: Any) -> Response:
    return _error(404, "not_found", f"no route for {request.url.path}", None)


async def _not_allowed(request: Request, exc: Any) -> Response:
    return _error(405, "method_not_allowed", f"{request.method} not allowed here", None)
