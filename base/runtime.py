"""The function runtime: a typed handler behind a standard HTTP server (Starlette + uvicorn).

It honours the OpenFaaS watchdog contract, so one function image runs behind the OpenFaaS
gateway and behind our embedded gateway alike:
- `POST /` invokes; `GET /_/health` answers as soon as the port is open, `/_/ready` once init
  (model load) is done, and a call that arrives during init waits for it;
- `exec_timeout` answers 504 and stops the work (child processes killed, handler cancelled);
- `max_inflight` answers 429 when every slot is busy and `max_queued` calls already wait for one
  (they get freed slots in arrival order);
- every response carries `X-Duration-Seconds`; errors are JSON without stack traces.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import uvicorn
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.config import RuntimeSettings, StorageSettings
from base.contracts import (
    REQUEST_ARRIVAL_HEADER,
    ErrorDetail,
    ErrorResult,
    Event,
    InvocationResult,
    parse_request_arrival,
)
from base.errors import (
    DeadlineExceeded,
    FunctionError,
    InputTooLarge,
    InvalidRequest,
    Overloaded,
)
from base.processes import Completed, ProcessRunner
from base.storage import ObjectStore, request_key
from base.telemetry import InvocationRecorder, ProcessClock, log

#: When this module was imported: the end of interpreter start-up for `python -m stages.<name>`
#: (its __main__ imports the runtime first), the start of the function's own imports.
RUNTIME_IMPORTED = time.monotonic()

InputT = TypeVar("InputT", bound=BaseModel)
ConfigT = TypeVar("ConfigT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)

#: A per-call deadline the caller may set below exec_timeout (seconds from receipt).
DEADLINE_HEADER = "X-Timeout-Seconds"


class Context:
    """What a handler may use: its scratch directory, storage, child processes, the clock."""

    def __init__(
        self,
        *,
        function: str,
        request_id: str,
        fanout: int | None,
        workdir: Path,
        storage: ObjectStore,
        settings: RuntimeSettings,
        recorder: InvocationRecorder,
        deadline: float,
        cancel: threading.Event,
        request_arrival: float | None = None,
    ) -> None:
        self.function = function
        self.request_id = request_id
        self.fanout = fanout
        self.workdir = workdir
        self.storage = storage
        self.settings = settings
        self.recorder = recorder
        self.deadline = deadline
        self.cancel = cancel
        #: When the request this call serves arrived (Unix seconds), as stamped by the caller
        #: or the platform's gateway (REQUEST_ARRIVAL_HEADER); None without a usable stamp.
        self.request_arrival = request_arrival
        self.runner = ProcessRunner(workdir, cancel, deadline)

    # -- time ----------------------------------------------------------------------------------
    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check_cancelled(self) -> None:
        """Long pure-Python loops call this between steps so a timeout really stops them."""
        if self.cancel.is_set() or time.monotonic() > self.deadline:
            raise DeadlineExceeded("the invocation's deadline passed")

    # -- processes -----------------------------------------------------------------------------
    def run(self, args: list[str]) -> Completed:
        self.check_cancelled()
        with self.recorder.phase("compute"):
            return self.runner.run(args)

    # -- storage -------------------------------------------------------------------------------
    def download(self, uri: str, name: str | None = None) -> Path:
        """Fetch an input object into this invocation's scratch dir (size limit enforced)."""
        self.check_cancelled()
        key = self.storage.key_of(uri)
        dest = self.workdir / "in" / (name or Path(key).name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.recorder.phase("download"):
            size = self.storage.download(key, dest, max_bytes=self.settings.max_input_bytes)
        self.recorder.bytes_downloaded += size
        return dest

    def output_key(self, name: str) -> str:
        return request_key(self.request_id, self.function, name)

    def upload(self, path: Path, name: str, *, content_type: str | None = None) -> str:
        """Store an output under this request's and function's prefix; returns its URI."""
        self.check_cancelled()
        key = self.output_key(name)
        with self.recorder.phase("upload"):
            self.recorder.bytes_uploaded += self.storage.upload(
                path, key, content_type=content_type
            )
        return self.storage.uri(key)

    def upload_json(self, value: Any, name: str) -> str:
        key = self.output_key(name)
        with self.recorder.phase("upload"):
            body = json.dumps(value, separators=(",", ":")).encode()
            self.storage.put_bytes(key, body, content_type="application/json")
        self.recorder.bytes_uploaded += len(body)
        return self.storage.uri(key)

    def scratch(self, name: str) -> Path:
        path = self.workdir / "out" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Function(Generic[InputT, ConfigT, OutputT]):
    """A function as its author declares it: names, typed models, a handler and an init."""

    name: str
    input_model: type[InputT]
    config_model: type[ConfigT]
    output_model: type[OutputT]
    handle: Callable[[Event[InputT, ConfigT], Context], OutputT]
    #: Loads what every invocation shares (models); runs once per process before serving.
    init: Callable[[], None] | None = None
    #: The fork-safe part of the warm-up, run once in the function's zygote (base/zygote.py)
    #: before it forks replicas: imports, files read, models without threads. It must start
    #: no thread; `init` still runs in every replica and reuses what preload left loaded.
    preload: Callable[[], None] | None = None
    description: str = ""
    #: Extra HTTP routes beside `POST /` (the orchestrator serves results by id this way).
    routes: list[Route] = field(default_factory=list)
    _event_model: type[BaseModel] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._event_model = Event[self.input_model, self.config_model]  # type: ignore[name-defined]

    def parse(self, body: Any) -> Event[InputT, ConfigT]:
        if isinstance(body, dict):
            body.setdefault("config", {})
        return self._event_model.model_validate(body)  # type: ignore[return-value]


class FunctionServer:
    """Owns the process-wide state: settings, storage client, slots, the cold-start clock."""

    def __init__(
        self,
        function: Function[Any, Any, Any],
        settings: RuntimeSettings,
        storage: ObjectStore,
        clock: ProcessClock | None = None,
        *,
        imported_monotonic: float | None = None,
        origin: dict[str, Any] | None = None,
    ) -> None:
        self.function = function
        #: When the function's imports were done (a forked replica: when it took over).
        self.imported_monotonic = imported_monotonic
        #: Where this process came from (a zygote fork says so), reported in /_/ready.
        self.origin = dict(origin or {})
        self.settings = settings
        self.storage = storage
        self.clock = clock or ProcessClock()
        self.executor = ThreadPoolExecutor(
            max_workers=settings.max_inflight, thread_name_prefix=function.name
        )
        self._slots = threading.BoundedSemaphore(settings.max_inflight)
        #: Calls waiting for a slot, oldest first; a freed slot is handed to the first of them.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: The server's loop (releases from worker threads go there; None: called in-process).
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = False
        self._ready_event = threading.Event()
        #: Seconds of the cold start by phase, once ready (also in /_/ready).
        self.startup: dict[str, Any] = {}

    def init(self) -> None:
        init_started = time.monotonic()
        if self.function.init is not None:
            self.function.init()
        self.ready = True
        self._ready_event.set()
        self.clock.mark_ready()
        # Where the cold start went: interpreter start, the function's imports, its init
        # (model load); the first call's own cost is in its invocation record (cold_start).
        # A replica forked from a zygote starts at its fork (/proc's start time) and its
        # imports were done in the zygote: process_start_s is then fork to taking over.
        first = RUNTIME_IMPORTED if self.imported_monotonic is None else self.imported_monotonic
        imported = max(self.clock.started_monotonic, min(first, init_started))
        self.startup = {
            "process_start_s": round(imported - self.clock.started_monotonic, 3),
            "imports_s": round(max(0.0, init_started - imported), 3),
            "model_load_s": round(time.monotonic() - init_started, 3),
            "from_zygote": bool(self.origin.get("from_zygote")),
            **{k: v for k, v in self.origin.items() if k != "from_zygote"},
        }
        log(
            "ready",
            function=self.function.name,
            init_s=round(self.clock.init_s, 3),
            **self.startup,
        )

    def init_in_background(self) -> None:
        """Load models while the port is already open; a failed init ends the process."""

        def run() -> None:
            try:
                self.init()
            except BaseException as exc:  # the platform must see a dead replica, not a hang
                log("init_failed", level="error", function=self.function.name, error=repr(exc))
                os._exit(3)

        threading.Thread(target=run, name=f"{self.function.name}-init", daemon=True).start()

    # -- HTTP ----------------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.invoke, methods=["POST"]),
                Route("/_/health", self.health, methods=["GET"]),
                Route("/_/ready", self.readiness, methods=["GET"]),
                *self.function.routes,
            ]
        )

    async def health(self, request: Request) -> Response:
        """Liveness: the process serves HTTP (OpenFaaS CE probes only this path, from 2 s on)."""
        state = "ok" if self.ready else "starting"
        return JSONResponse({"status": state, "function": self.function.name})

    async def readiness(self, request: Request) -> Response:
        """Readiness: init (model load) is done, so an invocation starts work at once."""
        # The pid lets a platform tell its own replica from another process that took the port.
        body = {"function": self.function.name, "pid": os.getpid()}
        if not self.ready:
            return JSONResponse({"status": "starting", **body}, 503)
        return JSONResponse({"status": "ok", **body, "startup": self.startup})

    async def invoke(self, request: Request) -> Response:
        received = time.monotonic()
        if not self.ready:
            # Like the of-watchdog: a call that arrives during init waits for it (bounded).
            loaded = await asyncio.get_running_loop().run_in_executor(
                None, self._ready_event.wait, self.settings.exec_timeout_s
            )
            if not loaded:
                error = DeadlineExceeded(f"{self.function.name} was still starting")
                return self._error(error, None, received)
        if not await self._take_slot(received + self.settings.exec_timeout_s):
            return self._error(Overloaded(self._overloaded_message()), None, received)
        # The slot is released by the worker thread when the work has really stopped, not when
        # a 504 is sent, so a timed-out call cannot let a second one overfill the replica.
        handed_off = False
        try:
            body = await self._read_json(request)
            event = self._parse(body)
            budget = self.settings.exec_timeout_s
            header = request.headers.get(DEADLINE_HEADER)
            if header:
                try:
                    budget = min(budget, max(0.0, float(header)))
                except ValueError:
                    raise InvalidRequest(f"{DEADLINE_HEADER} must be a number") from None
            deadline = received + budget
            arrival = parse_request_arrival(request.headers.get(REQUEST_ARRIVAL_HEADER))
            cancel = threading.Event()
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self.executor, self._work, event, deadline, cancel, arrival
            )
            handed_off = True
            try:
                result: tuple[int, BaseModel, Context | None] = await asyncio.wait_for(
                    asyncio.shield(future), timeout=max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                cancel.set()
                error = DeadlineExceeded(
                    f"{self.function.name} did not finish within {budget:.1f} s; work stopped"
                )
                log(
                    "timeout",
                    function=self.function.name,
                    request_id=event.request_id,
                    budget_s=budget,
                )
                return self._error(error, event.request_id, received)
            status, payload, _ = result
            return self._json(payload, status, received)
        except FunctionError as exc:
            return self._error(exc, None, received)
        finally:
            if not handed_off:
                self._release_slot()

    def _overloaded_message(self) -> str:
        if self.settings.max_queued:
            return (
                f"all max_inflight slots are busy and {self.settings.max_queued} calls "
                "already wait for one"
            )
        return "all max_inflight slots are busy"

    async def _take_slot(self, wait_until: float) -> bool:
        """A free slot now, or after waiting in line among at most max_queued callers: first
        come, first served, and a newcomer never takes a freed slot from one already waiting."""
        # Known before any slot is taken, so every release from a worker thread goes through
        # the loop and sees the line as it is.
        self._loop = asyncio.get_running_loop()
        if not self._waiters and self._slots.acquire(blocking=False):
            return True
        if len(self._waiters) >= self.settings.max_queued:
            return False
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        got = False
        try:
            # wait_for returns normally if the slot was handed over just as the time ran out.
            await asyncio.wait_for(waiter, max(0.0, wait_until - time.monotonic()))
            got = True
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if not got and waiter.done() and not waiter.cancelled():
                # Handed a slot just as this caller went away (a disconnect): pass it on.
                self._pass_slot()
        return got

    def _release_slot(self) -> None:
        """Any thread: the slot goes to the first caller in line, else back to the pool."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(self._pass_slot)
                return
        self._slots.release()

    def _pass_slot(self) -> None:
        """On the event loop: hand the freed slot over (it stays taken), or put it back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots.release()

    async def _read_json(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise InputTooLarge(f"request body over {limit} bytes", code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InputTooLarge(f"request body over {limit} bytes", code="body_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise InvalidRequest("request body is not valid JSON", code="bad_json") from None
        except RecursionError:
            raise InvalidRequest("request body is nested too deeply", code="bad_json") from None

    def _parse(self, body: Any) -> Event[Any, Any]:
        try:
            return self.function.parse(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise InvalidRequest(f"invalid request: {problems}") from None

    def call_here(
        self, body: Any, *, deadline: float, cancel: threading.Event | None = None
    ) -> tuple[int, BaseModel]:
        """Invoke in the calling thread, without HTTP: the same parse, handler, metrics and
        error envelope as `POST /` (the in-process baseline calls every stage this way)."""
        if not self.ready:
            self.init()
        event = self._parse(body)
        self._slots.acquire()  # released by _work
        status, payload, _ = self._work(event, deadline, cancel or threading.Event())
        return status, payload

    # -- the work, on a worker thread -----------------------------------------------------------
    def _work(
        self,
        event: Event[Any, Any],
        deadline: float,
        cancel: threading.Event,
        request_arrival: float | None = None,
    ) -> tuple[int, BaseModel, Context | None]:
        name = self.function.name
        recorder = InvocationRecorder(name, self.settings.replica, self.clock)
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        ctx = Context(
            function=name,
            request_id=event.request_id,
            fanout=event.fanout,
            workdir=workdir,
            storage=self.storage,
            settings=self.settings,
            recorder=recorder,
            deadline=deadline,
            cancel=cancel,
            request_arrival=request_arrival,
        )
        # Kill children the moment the deadline passes, even while the handler is in Python.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire, [ctx])
        watchdog.daemon = True
        watchdog.start()
        try:
            output = self.function.handle(event, ctx)
            outputs = self.function.output_model.model_validate(output).model_dump(mode="json")
            metrics = recorder.finish(ctx.runner.cpu_s, ctx.runner.peak_rss_bytes)
            log(
                "invocation",
                function=name,
                request_id=event.request_id,
                fanout=event.fanout,
                status="ok",
                **metrics.model_dump(exclude={"function"}),
            )
            return (
                200,
                InvocationResult(
                    function=name,
                    request_id=event.request_id,
                    fanout=event.fanout,
                    outputs=outputs,
                    metrics=metrics,
                ),
                ctx,
            )
        except Exception as exc:  # every failure becomes a JSON error, never a trace
            error = exc if isinstance(exc, FunctionError) else None
            if error is None:
                log(
                    "crash",
                    level="error",
                    function=name,
                    request_id=event.request_id,
                    error=repr(exc)[:500],
                    trace=traceback.format_exc()[-4000:],
                )
                error = FunctionError(f"{name} failed: {type(exc).__name__}")
            metrics = recorder.finish(ctx.runner.cpu_s, ctx.runner.peak_rss_bytes)
            log(
                "invocation",
                function=name,
                request_id=event.request_id,
                fanout=event.fanout,
                status="error",
                code=error.code,
                message=error.message[:500],
                **metrics.model_dump(exclude={"function"}),
            )
            return (
                error.status,
                ErrorResult(
                    function=name,
                    request_id=event.request_id,
                    error=ErrorDetail(code=error.code, message=error.message),
                    metrics=metrics,
                ),
                ctx,
            )
        finally:
            watchdog.cancel()
            shutil.rmtree(workdir, ignore_errors=True)
            self._release_slot()

    @staticmethod
    def _expire(ctx: Context) -> None:
        ctx.cancel.set()
        ctx.runner.kill_all()

    # -- responses -----------------------------------------------------------------------------
    def _json(self, payload: BaseModel, status: int, received: float) -> Response:
        return JSONResponse(
            payload.model_dump(mode="json"),
            status_code=status,
            headers={"X-Duration-Seconds": f"{time.monotonic() - received:.6f}"},
        )

    def _error(self, exc: FunctionError, request_id: str | None, received: float) -> Response:
        body = ErrorResult(
            function=self.function.name,
            request_id=request_id,
            error=ErrorDetail(code=exc.code, message=exc.message),
        )
        return self._json(body, exc.status, received)


def serve(
    function: Function[Any, Any, Any],
    *,
    imported_monotonic: float | None = None,
    origin: dict[str, Any] | None = None,
) -> None:
    """Entry point of `python -m stages.<name>` (and of a replica a zygote forked): configure
    from env, init, then listen."""
    settings = RuntimeSettings.from_env()
    server = FunctionServer(
        function,
        settings,
        ObjectStore(StorageSettings.from_env()),
        imported_monotonic=imported_monotonic,
        origin=origin,
    )
    # The port opens at once and init runs beside it: OpenFaaS CE kills a pod whose /_/health
    # does not answer within seconds, and a model load can take longer. /_/ready says when
    # init is done; an invocation that arrives earlier waits for it.
    server.init_in_background()
    uvicorn.run(
        server.app(),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        # One connection per in-flight slot plus headroom for health checks.
        limit_concurrency=settings.max_inflight + 16,
    )
