"""Open-loop load: arrival schedules and a driver that sends each request at its time.

Schedules are pure functions returning the scheduled offsets (seconds from the run's start).
:func:`run_open_loop` launches request *i* at ``t0 + offset[i]`` whatever is still in flight:
nothing waits for a free slot before sending (the coordinated-omission mistake of the prior
attempt), and latency is measured from the *scheduled* time, so a slow system shows up as
latency instead of silently lowering the offered load. A client-side cap, when configured,
turns an arrival that finds the cap full into a ``not_sent`` record at its scheduled time.

:class:`OrchestratorSender` is the ``send`` callable for the vsearch orchestrator: one POST per
request, content checks against the video's truth, no client retries unless asked for (and then
with the same request id, counted in the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import csv
import inspect
import io
import itertools
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import httpx
import numpy as np
from pydantic import BaseModel

from harness.records import (
    Attempt,
    RequestRecord,
    check_content,
    check_structure,
    classify,
    extract_result,
    invocations_from_result,
)

# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule(Sequence[float]):
    """Scheduled send offsets in seconds from the run's start, sorted; a sequence of floats."""

    offsets: tuple[float, ...]
    kind: str
    #: Per-arrival video id (trace files name one); None: the sender picks.
    videos: tuple[str | None, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(b < a for a, b in zip(self.offsets, self.offsets[1:], strict=False)):
            raise ValueError("schedule offsets must be sorted")
        if self.offsets and self.offsets[0] < 0:
            raise ValueError("schedule offsets must be >= 0")
        if self.videos is not None and len(self.videos) != len(self.offsets):
            raise ValueError("one video per arrival")

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[float]: ...
    def __getitem__(self, index: int | slice) -> float | Sequence[float]:
        return self.offsets[index]

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[float]:
        return iter(self.offsets)

    @property
    def span_s(self) -> float:
        return self.offsets[-1] - self.offsets[0] if self.offsets else 0.0

    @property
    def target_rate(self) -> float | None:
        """Arrivals per second between the first and the last; None for a burst (all at once)."""
        return _rate(self.offsets)

    def video(self, i: int) -> str | None:
        return self.videos[i] if self.videos is not None else None


def _rate(times: Sequence[float]) -> float | None:
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 1e-9 else None


def _count_or_duration(rate: float, duration: float | None, count: int | None) -> tuple[int, ...]:
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError("rate must be > 0")
    if (duration is None) == (count is None):
        raise ValueError("give exactly one of duration or count")
    if count is not None:
        if count < 0:
            raise ValueError("count must be >= 0")
        return (count,)
    assert duration is not None
    if duration < 0:
        raise ValueError("duration must be >= 0")
    return ()


def steady(rate: float, duration: float | None = None, count: int | None = None) -> Schedule:
    """One arrival every 1/rate seconds from t = 0: ``count`` of them, or all before
    ``duration``."""
    fixed = _count_or_duration(rate, duration, count)
    if fixed:
        n = fixed[0]
    else:
        assert duration is not None
        # The epsilon keeps floating point from adding an arrival exactly at `duration`.
        n = math.ceil(duration * rate - 1e-9)
    offsets = tuple(round(i / rate, 9) for i in range(n))
    return Schedule(offsets, "steady", params={"rate": rate, "duration": duration, "count": count})


def poisson(
    rate: float, duration: float | None = None, count: int | None = None, seed: int = 0
) -> Schedule:
    """A Poisson process (exponential gaps, mean 1/rate) from a seeded generator: the first
    arrival is at t = 0 (a run starts with a request), the later ones at exponential gaps."""
    fixed = _count_or_duration(rate, duration, count)
    rng = np.random.default_rng(seed)
    offsets: list[float] = []
    t = 0.0
    if fixed:
        for _ in range(fixed[0]):
            offsets.append(round(t, 9))
            t += float(rng.exponential(1.0 / rate))
    else:
        assert duration is not None
        while t < duration:
            offsets.append(round(t, 9))
            t += float(rng.exponential(1.0 / rate))
    return Schedule(
        tuple(offsets),
        "poisson",
        params={"rate": rate, "duration": duration, "count": count, "seed": seed},
    )


def burst(n: int, at: float = 0.0) -> Schedule:
    """``n`` arrivals at the same instant."""
    if n < 0 or at < 0:
        raise ValueError("n and at must be >= 0")
    return Schedule((float(at),) * n, "burst", params={"n": n, "at": at})


def ramp(start_rate: float, end_rate: float, duration: float) -> Schedule:
    """Rate rising (or falling) linearly from ``start_rate`` to ``end_rate`` over ``duration``.

    Arrival k is where the expected count N(t) = r0 t + (r1 - r0) t^2 / (2 D) reaches k.
    """
    if start_rate < 0 or end_rate < 0 or start_rate + end_rate <= 0 or duration <= 0:
        raise ValueError("rates must be >= 0 (not both 0) and duration > 0")
    r0, slope = start_rate, (end_rate - start_rate) / duration
    total = r0 * duration + slope * duration * duration / 2
    offsets: list[float] = []
    for k in range(math.ceil(total - 1e-9)):
        # Root of slope/2 t^2 + r0 t - k = 0 in the form that is stable for slope -> 0.
        t = 2 * k / (r0 + math.sqrt(r0 * r0 + 2 * slope * k)) if k else 0.0
        if t >= duration:
            break
        offsets.append(round(t, 9))
    return Schedule(
        tuple(offsets),
        "ramp",
        params={"start_rate": start_rate, "end_rate": end_rate, "duration": duration},
    )


def trace(path: str | Path) -> Schedule:
    """Arrivals from a file: CSV (``t_s,video``; header optional) or JSON lines
    (``{"t_s": 1.5, "video": "demo"}``). Blank lines and lines starting with ``#`` are skipped;
    rows are sorted by time and shifted so none is negative."""
    text = Path(path).read_text()
    rows: list[tuple[float, str | None]] = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and lines[0].lstrip().startswith("{"):
        for n, line in enumerate(lines, 1):
            obj = json.loads(line)
            if "t_s" not in obj:
                raise ValueError(f"{path}:{n}: no t_s")
            rows.append((float(obj["t_s"]), obj.get("video")))
    else:
        reader = csv.reader(io.StringIO("\n".join(lines)))
        for n, row in enumerate(reader, 1):
            if not row:
                continue
            try:
                t = float(row[0])
            except ValueError:
                if n == 1:  # header
                    continue
                raise ValueError(f"{path}:{n}: not a time: {row[0]!r}") from None
            video = row[1].strip() if len(row) > 1 and row[1].strip() else None
            rows.append((t, video))
    if any(not math.isfinite(t) or t < 0 for t, _ in rows):
        raise ValueError(f"{path}: times must be finite and >= 0")
    rows.sort(key=lambda r: r[0])
    videos = tuple(v for _, v in rows)
    return Schedule(
        tuple(t for t, _ in rows),
        "trace",
        videos=videos if any(v is not None for v in videos) else None,
        params={"file": str(path)},
    )


def make_schedule(kind: str, **params: Any) -> Schedule:
    """By name, for schedules declared as data (regimes.yaml)."""
    makers: dict[str, Callable[..., Schedule]] = {
        "steady": steady,
        "poisson": poisson,
        "burst": burst,
        "ramp": ramp,
        "trace": trace,
    }
    if kind not in makers:
        raise ValueError(f"unknown schedule kind {kind!r}; one of {sorted(makers)}")
    accepted = inspect.signature(makers[kind]).parameters
    return makers[kind](**{k: v for k, v in params.items() if k in accepted and v is not None})


# --------------------------------------------------------------------------------------------
# The open-loop driver
# --------------------------------------------------------------------------------------------


class LoadSummary(BaseModel):
    """What the load generator did, next to what it was asked to do (vSwarm-style)."""

    kind: str
    scheduled: int
    issued: int
    not_sent: int
    completed: int
    failed: int
    target_rate: float | None
    achieved_rate: float | None
    started_at_unix: float
    duration_s: float
    max_send_lag_s: float | None
    mean_send_lag_s: float | None
    client_retries: int
    max_in_flight: int | None
    peak_in_flight: int


class OpenLoopResult(BaseModel):
    load: LoadSummary
    records: list[RequestRecord]


@dataclass(frozen=True)
class Progress:
    issued: int
    completed: int
    failed: int
    not_sent: int
    in_flight: int
    elapsed_s: float
    #: Completions per second over the last ``window_s`` (or since the start, if shorter).
    completion_rate: float
    #: Sends per second over the same window.
    issue_rate: float
    scheduled: int


ProgressCallback = Callable[[Progress], Awaitable[None] | None]
SendFn = Callable[[int, float], Awaitable[RequestRecord]]


@dataclass
class _Slot:
    sent_s: float | None = None


_clock: contextvars.ContextVar[tuple[float, _Slot] | None] = contextvars.ContextVar(
    "vsearch_open_loop_clock", default=None
)


def now() -> float:
    """Seconds since the current open-loop run's start (perf_counter time outside a run)."""
    current = _clock.get()
    return time.perf_counter() - (current[0] if current else 0.0)


def mark_sent() -> float:
    """Called by a sender right before its request goes out: records the actual send time
    (otherwise the driver's launch time is used). Returns it, in run seconds."""
    t = now()
    current = _clock.get()
    if current is not None and current[1].sent_s is None:
        current[1].sent_s = t
    return t


async def run_open_loop(
    schedule: Sequence[float],
    send: SendFn,
    max_in_flight: int | None = None,
    *,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 1.0,
    rate_window_s: float = 10.0,
    request_timeout_s: float | None = None,
    drain_timeout_s: float | None = None,
    warmup: int = 0,
    record_factory: Callable[[int, float], RequestRecord] | None = None,
) -> OpenLoopResult:
    """Send request ``i`` at ``schedule[i]`` seconds after the start, never later on purpose.

    ``send(i, scheduled_at)`` (``scheduled_at`` in run seconds) returns the request's record;
    the driver fills in ``scheduled_s``, ``sent_s`` (the sender's :func:`mark_sent`, else the
    launch time), ``finished_s`` and ``latency_s`` (from the schedule). A sender that raises
    yields an ``error`` record; one that outlives ``request_timeout_s`` (or is still running
    ``drain_timeout_s`` after the last send) a ``timeout`` record. With ``max_in_flight``, an
    arrival that finds that many requests outstanding is recorded ``not_sent`` at once, never
    delayed. The first ``warmup`` records are tagged ``phase="warmup"``.
    """
    offsets = [float(t) for t in schedule]
    if any(b < a for a, b in itertools.pairwise(offsets)):
        raise ValueError("schedule must be sorted")
    if max_in_flight is not None and max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    loop = asyncio.get_running_loop()
    started_unix = time.time()
    t0 = time.perf_counter()
    token = _clock.set((t0, _Slot()))
    records: list[RequestRecord | None] = [None] * len(offsets)
    in_flight: dict[int, asyncio.Task[None]] = {}
    sent_times: list[float] = []
    finish_times: deque[float] = deque()
    counts = {"completed": 0, "failed": 0, "not_sent": 0, "peak": 0}
    all_done = asyncio.Event()

    def elapsed() -> float:
        return time.perf_counter() - t0

    def placeholder(i: int, outcome: str, **kw: Any) -> RequestRecord:
        base = (
            record_factory(i, offsets[i])
            if record_factory
            else RequestRecord(
                index=i, request_id=f"req-{i:05d}", scheduled_s=offsets[i], outcome="error"
            )
        )
        return base.model_copy(update={"outcome": outcome, **kw})

    async def one(i: int, slot: _Slot) -> None:
        _clock.set((t0, slot))
        launched = elapsed()
        try:
            if request_timeout_s is not None:
                rec = await asyncio.wait_for(send(i, offsets[i]), request_timeout_s)
            else:
                rec = await send(i, offsets[i])
        except TimeoutError:
            rec = placeholder(
                i, "timeout", error_code="client_timeout", error_message="request timed out"
            )
        except asyncio.CancelledError:
            rec = placeholder(
                i, "timeout", error_code="drain_timeout", error_message="still running at end"
            )
        except Exception as exc:  # the record says what went wrong; the run goes on
            rec = placeholder(
                i, "error", error_code=type(exc).__name__, error_message=str(exc)[:500]
            )
        finished = elapsed()
        rec = rec.model_copy(
            update={
                "index": i,
                "scheduled_s": round(offsets[i], 6),
                "sent_s": round(slot.sent_s if slot.sent_s is not None else launched, 6),
                "finished_s": round(rec.finished_s if rec.finished_s is not None else finished, 6),
            }
        ).finalize_timing()
        records[i] = rec
        counts["completed" if rec.outcome == "ok" else "failed"] += 1
        finish_times.append(finished)
        in_flight.pop(i, None)
        if not in_flight and launched_all.is_set():
            all_done.set()

    def snapshot() -> Progress:
        t = elapsed()
        window = min(rate_window_s, t) or 1e-9
        while finish_times and finish_times[0] < t - rate_window_s:
            finish_times.popleft()
        recent_sends = sum(1 for s in sent_times[-1000:] if s >= t - rate_window_s)
        return Progress(
            issued=len(sent_times),
            completed=counts["completed"],
            failed=counts["failed"],
            not_sent=counts["not_sent"],
            in_flight=len(in_flight),
            elapsed_s=t,
            completion_rate=len(finish_times) / window,
            issue_rate=recent_sends / window,
            scheduled=len(offsets),
        )

    async def report() -> None:
        if progress is None:
            return
        out = progress(snapshot())
        if inspect.isawaitable(out):
            await out

    async def ticker() -> None:
        while True:
            await asyncio.sleep(progress_interval_s)
            with contextlib.suppress(Exception):  # a broken display must not stop the run
                await report()

    launched_all = asyncio.Event()
    tick = loop.create_task(ticker()) if progress is not None else None
    try:
        for i, offset in enumerate(offsets):
            delay = offset - elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            # asyncio.sleep may wake a little early on coarse clocks; never send early.
            while (remaining := offset - elapsed()) > 0:
                await asyncio.sleep(remaining)
            if max_in_flight is not None and len(in_flight) >= max_in_flight:
                records[i] = placeholder(
                    i,
                    "not_sent",
                    error_code="client_cap",
                    error_message=f"{len(in_flight)} requests in flight (cap {max_in_flight})",
                )
                counts["not_sent"] += 1
                continue
            sent_times.append(elapsed())
            in_flight[i] = loop.create_task(one(i, _Slot()), context=contextvars.copy_context())
            counts["peak"] = max(counts["peak"], len(in_flight))
        launched_all.set()
        if in_flight:
            if drain_timeout_s is None:
                await all_done.wait()
            else:
                try:
                    await asyncio.wait_for(all_done.wait(), drain_timeout_s)
                except TimeoutError:
                    pending = list(in_flight.values())
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
    finally:
        launched_all.set()
        if tick is not None:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
        leftover = list(in_flight.values())
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        _clock.reset(token)
    with contextlib.suppress(Exception):
        await report()

    done = [r for r in records if r is not None]
    assert len(done) == len(offsets)
    for r in done[:warmup]:
        r.phase = "warmup"
    lags = [r.send_lag_s for r in done if r.send_lag_s is not None]
    end = max((r.finished_s for r in done if r.finished_s is not None), default=elapsed())
    load = LoadSummary(
        kind=getattr(schedule, "kind", "custom"),
        scheduled=len(offsets),
        issued=len(sent_times),
        not_sent=counts["not_sent"],
        completed=counts["completed"],
        failed=counts["failed"],
        target_rate=_rate(offsets),
        achieved_rate=_rate(sent_times),
        started_at_unix=started_unix,
        duration_s=round(max(end, offsets[-1] if offsets else 0.0), 6),
        max_send_lag_s=round(max(lags), 6) if lags else None,
        mean_send_lag_s=round(sum(lags) / len(lags), 6) if lags else None,
        client_retries=sum(r.client_retries for r in done),
        max_in_flight=max_in_flight,
        peak_in_flight=counts["peak"],
    )
    return OpenLoopResult(load=load, records=done)


# --------------------------------------------------------------------------------------------
# The orchestrator sender
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    """A catalogue entry: an uploaded input and (optionally) its known content."""

    id: str
    uri: str
    truth: Any = None  # harness.media.generate.VideoTruth (or its dict)
    query: str | None = None


def http_client(timeout_s: float = 600.0) -> httpx.AsyncClient:
    """A client whose pool never makes a request wait for a connection.

    httpx's default pool holds at most 100 connections and queues the rest *inside the client*,
    after the driver has marked the request sent: a hidden coordinated omission. Unbounded here.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )


def new_request_id(prefix: str = "bench") -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class OrchestratorSender:
    """``send`` for :func:`run_open_loop`: POST ``{gateway}/function/orchestrator``.

    One send per request. With ``retries > 0`` a request answered with a status in
    ``retry_statuses`` (default: 429 only) is sent again *with the same request id* after
    ``retry_backoff_s`` (so the orchestrator resumes instead of redoing work); every extra send
    is counted in ``client_retries`` and listed in ``attempts``, and latency still runs from the
    first scheduled time. Give it a client from :func:`http_client` (no connection cap).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        gateway: str,
        videos: Sequence[Video],
        *,
        query: str | None = None,
        config: Mapping[str, Any] | None = None,
        timeout_s: float = 600.0,
        retries: int = 0,
        retry_statuses: frozenset[int] = frozenset({429}),
        retry_backoff_s: float = 1.0,
        video_for: Callable[[int], str | None] | None = None,
        request_prefix: str = "bench",
        check_kwargs: Mapping[str, Any] | None = None,
        require_truth: bool = True,
    ) -> None:
        if not videos:
            raise ValueError("no videos")
        self.client = client
        self.url = gateway.rstrip("/") + "/function/orchestrator"
        self.videos = {v.id: v for v in videos}
        self.order = list(videos)
        self.query = query
        self.config = dict(config or {})
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_statuses = retry_statuses
        self.retry_backoff_s = retry_backoff_s
        self.video_for = video_for
        self.request_prefix = request_prefix
        self.check_kwargs = dict(check_kwargs or {})
        #: False: a video without truth succeeds on a well-formed result (check_structure).
        self.require_truth = require_truth

    def pick(self, i: int) -> Video:
        wanted = self.video_for(i) if self.video_for else None
        if wanted is not None:
            if wanted not in self.videos:
                raise KeyError(f"video {wanted!r} is not in the catalogue")
            return self.videos[wanted]
        return self.order[i % len(self.order)]

    def body(self, request_id: str, video: Video) -> dict[str, Any]:
        query = video.query or self.query
        if not query:
            raise ValueError(f"no query for video {video.id}")
        return {
            "request_id": request_id,
            "input": {"video": video.uri},
            "config": {**self.config, "query": query},
        }

    async def __call__(self, i: int, scheduled_at: float) -> RequestRecord:
        video = self.pick(i)
        request_id = new_request_id(self.request_prefix)
        body = self.body(request_id, video)
        attempts: list[Attempt] = []
        response: httpx.Response | None = None
        error: tuple[str, str] | None = None
        timed_out = False
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_backoff_s)
            sent = mark_sent() if attempt == 0 else now()
            response, error, timed_out = None, None, False
            try:
                response = await self.client.post(self.url, json=body, timeout=self.timeout_s)
            except httpx.TimeoutException as exc:
                timed_out, error = True, ("client_timeout", f"{type(exc).__name__}: {exc}")
            except httpx.HTTPError as exc:
                error = ("transport", f"{type(exc).__name__}: {exc}")
            status = response.status_code if response is not None else None
            attempts.append(
                Attempt(
                    sent_s=round(sent, 6),
                    finished_s=round(now(), 6),
                    http_status=status,
                    error_code=error[0] if error else None,
                )
            )
            if status not in self.retry_statuses:
                break
        finished = now()
        return self.record(i, request_id, video, response, error, timed_out, attempts, finished)

    def record(
        self,
        i: int,
        request_id: str,
        video: Video,
        response: httpx.Response | None,
        error: tuple[str, str] | None,
        timed_out: bool,
        attempts: list[Attempt],
        finished: float,
    ) -> RequestRecord:
        payload: Any = None
        if response is not None:
            with contextlib.suppress(ValueError):
                payload = response.json()
        status = response.status_code if response is not None else None
        err_code, err_msg = error if error else (None, None)
        if status is not None and status != 200 and isinstance(payload, Mapping):
            detail = payload.get("error") if isinstance(payload.get("error"), Mapping) else {}
            err_code = str(detail.get("code") or f"http_{status}")
            err_msg = str(detail.get("message") or "")[:500]
        elif status is not None and status != 200:
            err_code, err_msg = f"http_{status}", (response.text[:500] if response else None)
        checks = None
        result = extract_result(payload) if status == 200 else None
        if status == 200:
            if result is None:
                err_code, err_msg = "no_result", "200 without a result body"
                checks = []
            elif video.truth is not None:
                checks = check_content(
                    result,
                    video.truth,
                    query=body_query(result, video, self.query),
                    frame_interval_s=self.config.get("frame_interval_s", 5.0),
                    **self.check_kwargs,
                )
            elif not self.require_truth:
                checks = check_structure(result)
            else:
                checks = []
        outcome = classify(status, checks, timed_out=timed_out)
        if status == 200 and video.truth is None and result is not None and self.require_truth:
            # Nothing to check against: not a success we could vouch for.
            err_code, err_msg = "no_truth", f"video {video.id} has no ground truth"
        if outcome == "failed_content" and checks:
            failed = [c for c in checks if c.status == "fail"]
            err_code = err_code or "content"
            err_msg = err_msg or "; ".join(f"{c.name}: {c.detail}" for c in failed)[:500]
        metrics = (result or {}).get("metrics") if isinstance(result, Mapping) else None
        request_metrics = metrics.get("request") if isinstance(metrics, Mapping) else None
        return RequestRecord(
            index=i,
            request_id=request_id,
            video=video.id,
            scheduled_s=0.0,
            finished_s=round(finished, 6),
            http_status=status,
            outcome=outcome,
            error_code=err_code,
            error_message=err_msg,
            checks=checks or [],
            invocations=invocations_from_result(payload) if isinstance(payload, Mapping) else [],
            request_metrics=dict(request_metrics) if isinstance(request_metrics, Mapping) else None,
            client_retries=max(0, len(attempts) - 1),
            attempts=attempts,
        )


def body_query(result: Mapping[str, Any], video: Video, default: str | None) -> str | None:
    return video.query or default or result.get("query")
