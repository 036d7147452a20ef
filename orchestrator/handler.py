"""The orchestrator as a function: `POST /` runs a request, `GET /requests/{id}` reports on one.

All requests of a process share one event loop on a background thread and one pooled
httpx.AsyncClient: the runtime's worker thread hands the request's coroutine to that loop and
waits, so concurrent requests and their per-clip fan-out reuse keep-alive connections to the
gateway instead of opening new ones per call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.config import ConfigError, StorageSettings, required
from base.contracts import Event
from base.errors import DeadlineExceeded
from base.runtime import Context, Function
from base.storage import ObjectStore
from base.telemetry import log
from orchestrator.client import Deadline, GatewayClient, RetryPolicy
from orchestrator.contracts import Config, Input, Output
from orchestrator.metrics import parse_memory_limits
from orchestrator.pipeline import Pipeline, PipelineSettings
from orchestrator.prewarm import Prewarmer
from orchestrator.state import read_status, valid_request_id

T = TypeVar("T")

#: Left of the runtime's exec_timeout after the pipeline's deadline, to record the outcome.
FINISH_MARGIN_S = 5.0
#: How long a cancelled request may take to write its error state.
CANCEL_GRACE_S = 10.0


def new_request_id() -> str:
    # Time first, so ids sort by submission in listings of requests/.
    return f"r{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}"


class Engine:
    """A process-wide event loop thread owning the shared gateway connection pool."""

    def __init__(self, gateway_url: str, *, max_connections: int = 128) -> None:
        self.gateway_url = gateway_url
        self.loop = asyncio.new_event_loop()
        # S3 calls and hashing run in the loop's executor; the default (cpu + 4 threads) would
        # let a few long hashes of big uploads stall every other request's step records.
        self.loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="orch-io")
        )
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="orchestrator-loop", daemon=True
        )
        self._thread.start()

        async def make_client() -> httpx.AsyncClient:
            return httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
                # Per call the client sets a timeout from the request's remaining budget.
                timeout=httpx.Timeout(60.0),
            )

        self.http = asyncio.run_coroutine_threadsafe(make_client(), self.loop).result()

    def run(self, coro: Coroutine[Any, Any, T], cancel: threading.Event) -> T:
        """Run on the loop; if the runtime cancels the invocation, cancel the coroutine."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if cancel.is_set():
                    future.cancel()
                    with contextlib.suppress(BaseException):
                        future.result(timeout=CANCEL_GRACE_S)
                    raise DeadlineExceeded("the orchestrator's exec_timeout passed") from None

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.http.aclose(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


@dataclass
class _Process:
    engine: Engine
    store: ObjectStore
    settings: PipelineSettings
    prewarmer: Prewarmer | None = None


_process: _Process | None = None
_lock = threading.Lock()


def init() -> None:
    """Once per process: GATEWAY_URL is required; the loop and the pool are built here."""
    global _process
    with _lock:
        if _process is not None:
            return
        gateway = required("GATEWAY_URL")
        if not gateway.startswith(("http://", "https://")):
            raise ConfigError("GATEWAY_URL must be an http(s) URL")
        try:
            limits = parse_memory_limits(os.environ.get("FUNCTION_MEMORY_LIMITS"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        lease = float(os.environ.get("ORCHESTRATOR_LEASE_S", "60"))
        _process = _Process(
            engine=Engine(gateway),
            store=ObjectStore(StorageSettings.from_env()),
            settings=PipelineSettings(lease_s=lease, memory_limits=limits),
            prewarmer=Prewarmer.from_env(gateway),
        )
        log(
            "orchestrator_ready",
            gateway=gateway,
            lease_s=lease,
            prewarm=_process.prewarmer is not None,
        )


def _get_process() -> _Process:
    if _process is None:
        init()
    assert _process is not None
    return _process


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    started = time.monotonic()
    # The gateway's stamp when it gave one: then the orchestrator's own call and its stages'
    # calls are one request in the embedded gateway's age ranking, not two.
    arrived_at = ctx.request_arrival or time.time()
    proc = _get_process()
    budget = min(event.config.deadline_s, max(1.0, ctx.remaining_s() - FINISH_MARGIN_S))
    client = GatewayClient(
        proc.engine.gateway_url,
        proc.engine.http,
        RetryPolicy(max_attempts=event.config.max_attempts),
        request_arrival=arrived_at,
    )
    if proc.prewarmer is not None:
        # At arrival, beside the pipeline: every stage at zero starts now, not when first called.
        asyncio.run_coroutine_threadsafe(
            proc.prewarmer.prewarm(proc.engine.http, event.request_id), proc.engine.loop
        )
    pipeline = Pipeline(
        store=ctx.storage,
        client=client,
        request_id=event.request_id,
        video_uri=event.input.video,
        config=event.config,
        deadline=Deadline(budget),
        settings=proc.settings,
        started=started,
    )
    return proc.engine.run(pipeline.run(), ctx.cancel)


async def get_request(request: Request) -> Response:
    request_id = request.path_params["request_id"]
    if not valid_request_id(request_id):
        return _error(400, "invalid_request", "request id has an invalid format")
    store = _get_process().store
    status = await run_in_threadpool(read_status, store, request_id)
    if status is None:
        return _error(404, "not_found", f"no request {request_id}")
    return JSONResponse(status)


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse(
        {
            "status": "error",
            "function": "orchestrator",
            "error": {"code": code, "message": message},
        },
        status_code=status,
    )


@dataclass
class OrchestratorFunction(Function[Input, Config, Output]):
    """A Function whose callers may leave out request_id: the orchestrator assigns one."""

    def parse(self, body: Any) -> Event[Input, Config]:
        if isinstance(body, dict) and not body.get("request_id"):
            body["request_id"] = new_request_id()
        return super().parse(body)


FUNCTION = OrchestratorFunction(
    name="orchestrator",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    init=init,
    description="VideoSearcher driver: runs the eight stage functions through the gateway",
    routes=[Route("/requests/{request_id}", get_request, methods=["GET"])],
)
