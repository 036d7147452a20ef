"""Schedules, and the open-loop driver against a real local HTTP server with scripted delays.

The central property: a slow server must not delay the scheduled sends (no coordinated
omission). Latency from the schedule grows while the send lag stays near zero.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from harness import workload as wl
from harness.records import RequestRecord
from harness.synthetic import broken, demo_truth, envelope, good_result

# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def test_steady_by_count_and_duration() -> None:
    s = wl.steady(rate=4, count=10)
    assert len(s) == 10 and s[0] == 0.0
    assert s[-1] == pytest.approx(9 / 4)
    assert s.target_rate == pytest.approx(4.0)
    d = wl.steady(rate=0.1, duration=40)
    assert list(d) == pytest.approx([0, 10, 20, 30])  # nothing at t = duration
    with pytest.raises(ValueError):
        wl.steady(rate=1)
    with pytest.raises(ValueError):
        wl.steady(rate=0, count=3)


def test_poisson_is_reproducible_with_seed() -> None:
    a = wl.poisson(rate=5, count=2000, seed=7)
    b = wl.poisson(rate=5, count=2000, seed=7)
    c = wl.poisson(rate=5, count=2000, seed=8)
    assert list(a) == list(b)
    assert list(a) != list(c)
    assert len(a) == 2000 and a[0] == 0.0
    assert all(y >= x for x, y in itertools.pairwise(a))
    # The mean rate of 2000 exponential gaps is within a few percent of the target.
    assert a.target_rate == pytest.approx(5.0, rel=0.08)
    by_time = wl.poisson(rate=2, duration=100, seed=1)
    assert max(by_time) < 100
    assert 150 < len(by_time) < 250


def test_burst_and_ramp() -> None:
    b = wl.burst(3)
    assert list(b) == [0.0, 0.0, 0.0] and b.target_rate is None
    r = wl.ramp(start_rate=1, end_rate=3, duration=10)
    # Expected count: integral of the rate = (1 + 3) / 2 * 10 = 20.
    assert len(r) == 20
    assert max(r) < 10
    gaps = [y - x for x, y in itertools.pairwise(r)]
    assert gaps[0] > gaps[-1]  # arrivals get denser
    down = wl.ramp(start_rate=4, end_rate=0, duration=5)
    assert len(down) == 10
    up_from_zero = wl.ramp(start_rate=0, end_rate=2, duration=4)
    assert up_from_zero[0] == 0.0 and len(up_from_zero) == 4


def test_trace_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("t_s,video\n# comment\n2.5,b\n0,a\n1,\n")
    t = wl.trace(csv_file)
    assert list(t) == [0.0, 1.0, 2.5]
    assert t.videos == ("a", None, "b")
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"t_s": 1, "video": "demo"}\n\n{"t_s": 0.5}\n')
    j = wl.trace(jl)
    assert list(j) == [0.5, 1.0] and j.video(1) == "demo"
    bad = tmp_path / "bad.csv"
    bad.write_text("0\n-1\n")
    with pytest.raises(ValueError):
        wl.trace(bad)


def test_make_schedule_by_name() -> None:
    assert len(wl.make_schedule("steady", rate=2, count=4, seed=3)) == 4
    assert len(wl.make_schedule("burst", n=5)) == 5
    with pytest.raises(ValueError):
        wl.make_schedule("zipf")


# --------------------------------------------------------------------------------------------
# A real HTTP server with scripted behaviour
# --------------------------------------------------------------------------------------------


@dataclass
class Script:
    """What the test server does; mutate between tests."""

    serial_delay_s: float = 0.0  # one request at a time, each taking this long
    parallel_delay_s: float = 0.0  # every request takes this long, concurrently
    seen: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)  # video uri -> statuses to give


class Server:
    def __init__(self) -> None:
        self.script = Script()
        self.lock: asyncio.Lock | None = None
        app = Starlette(
            routes=[
                Route("/work", self.work, methods=["POST"]),
                Route("/function/orchestrator", self.orchestrator, methods=["POST"]),
            ]
        )
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    async def _delay(self) -> None:
        if self.script.parallel_delay_s:
            await asyncio.sleep(self.script.parallel_delay_s)
        if self.script.serial_delay_s:
            if self.lock is None:
                self.lock = asyncio.Lock()
            async with self.lock:
                await asyncio.sleep(self.script.serial_delay_s)

    async def work(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.script.seen.append({**body, "arrived": time.perf_counter()})
        await self._delay()
        return JSONResponse({"ok": True, "i": body.get("i")})

    async def orchestrator(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.script.seen.append(body)
        await self._delay()
        uri = body["input"]["video"]
        queue = self.script.answers.get(uri)
        status = queue.pop(0) if queue else 200
        if status != 200:
            return JSONResponse(
                {"status": "error", "error": {"code": f"code{status}", "message": "scripted"}},
                status_code=status,
            )
        result = good_result(demo_truth(), query=body["config"]["query"])
        result["request_id"] = body["request_id"]
        if "wrong" in uri:
            result = broken(result, "dummy_transcripts")
        return JSONResponse(envelope(result))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


@pytest.fixture
def script(server: Server) -> Iterator[Script]:
    server.script = Script()
    server.lock = None
    # These tests time the generator's sends. A fresh-clone CI run once saw the client's and the
    # server's event loops (two threads) stall 0.55 s together, a process-wide pause such as a
    # full collection of a long pytest run's heap: collect now, and not while timing.
    gc.collect()
    gc.disable()
    try:
        yield server.script
    finally:
        gc.enable()


def _plain_sender(client: httpx.AsyncClient, url: str):  # type: ignore[no-untyped-def]
    async def send(i: int, scheduled_at: float) -> RequestRecord:
        wl.mark_sent()
        response = await client.post(url + "/work", json={"i": i}, timeout=30)
        return RequestRecord(
            index=i,
            request_id=f"t-{i}",
            scheduled_s=scheduled_at,
            http_status=response.status_code,
            outcome="ok" if response.status_code == 200 else "error",
        )

    return send


async def _run(schedule, send, **kw):  # type: ignore[no-untyped-def]
    return await wl.run_open_loop(schedule, send, **kw)


def test_slow_server_does_not_delay_scheduled_sends(server: Server, script: Script) -> None:
    # The server handles one request at a time (0.25 s each) while 8 arrive 0.05 s apart: a
    # closed-loop generator would wait and under-report; open loop keeps sending on time.
    script.serial_delay_s = 0.25
    schedule = wl.steady(rate=20, count=8)

    async def main() -> wl.OpenLoopResult:
        async with httpx.AsyncClient() as client:
            return await _run(schedule, _plain_sender(client, server.url))

    res = asyncio.run(main())
    recs = res.records
    assert [r.outcome for r in recs] == ["ok"] * 8
    lags = [r.send_lag_s for r in recs]
    assert max(lags) < 0.1, lags  # type: ignore[type-var]
    # Sends really left on schedule: the server saw them arrive ~0.05 s apart, not 0.25 s.
    arrivals = sorted(s["arrived"] for s in script.seen)
    assert arrivals[-1] - arrivals[0] < 0.35 + 0.15
    latencies = [r.latency_s for r in recs]
    assert latencies == sorted(latencies)  # type: ignore[type-var]
    # Request i finishes at ~0.25 (i + 1) but was scheduled at 0.05 i: latency grows by 0.2/req.
    assert latencies[-1] - latencies[0] > 1.2  # type: ignore[operator]
    assert latencies[-1] >= 8 * 0.25 - 0.35 - 0.05  # type: ignore[operator]
    load = res.load
    assert load.scheduled == load.issued == 8 and load.completed == 8 and load.failed == 0
    assert load.target_rate == pytest.approx(20.0)
    assert load.achieved_rate == pytest.approx(20.0, rel=0.25)
    assert load.peak_in_flight >= 5
    assert load.max_send_lag_s is not None and load.max_send_lag_s < 0.1


def test_achieved_rate_tracks_target(server: Server, script: Script) -> None:
    script.parallel_delay_s = 0.3
    schedule = wl.steady(rate=25, count=20)

    async def main() -> wl.OpenLoopResult:
        async with httpx.AsyncClient() as client:
            return await _run(schedule, _plain_sender(client, server.url))

    res = asyncio.run(main())
    assert res.load.achieved_rate == pytest.approx(25.0, rel=0.15)
    assert all(0.3 <= r.latency_s < 1.0 for r in res.records)  # type: ignore[operator]
    assert res.load.duration_s >= schedule[-1] + 0.3


def test_client_cap_records_not_sent_instead_of_waiting(server: Server, script: Script) -> None:
    script.parallel_delay_s = 0.4
    schedule = wl.burst(5)

    async def main() -> wl.OpenLoopResult:
        async with httpx.AsyncClient() as client:
            return await _run(schedule, _plain_sender(client, server.url), max_in_flight=2)

    started = time.perf_counter()
    res = asyncio.run(main())
    assert time.perf_counter() - started < 1.5  # the three extra were not queued behind the two
    outcomes = [r.outcome for r in res.records]
    assert outcomes.count("ok") == 2 and outcomes.count("not_sent") == 3
    for r in res.records:
        if r.outcome == "not_sent":
            assert r.sent_s is None and r.scheduled_s == 0.0 and r.error_code == "client_cap"
    assert res.load.issued == 2 and res.load.not_sent == 3
    assert len(script.seen) == 2


def test_sender_errors_and_timeouts_become_records() -> None:
    async def send(i: int, scheduled_at: float) -> RequestRecord:
        if i == 0:
            raise RuntimeError("boom")
        await asyncio.sleep(5 if i == 1 else 0.01)
        return RequestRecord(index=i, request_id=f"x{i}", scheduled_s=scheduled_at, outcome="ok")

    res = asyncio.run(wl.run_open_loop(wl.burst(3), send, request_timeout_s=0.3))
    by_index = {r.index: r for r in res.records}
    assert by_index[0].outcome == "error" and by_index[0].error_message == "boom"
    assert by_index[1].outcome == "timeout" and by_index[1].latency_s == pytest.approx(0.3, abs=0.2)
    assert by_index[2].outcome == "ok"
    assert res.load.completed == 1 and res.load.failed == 2


def test_drain_timeout_cancels_stragglers() -> None:
    async def send(i: int, scheduled_at: float) -> RequestRecord:
        await asyncio.sleep(10 if i else 0)
        return RequestRecord(index=i, request_id=f"x{i}", scheduled_s=scheduled_at, outcome="ok")

    started = time.perf_counter()
    res = asyncio.run(wl.run_open_loop(wl.burst(2), send, drain_timeout_s=0.2))
    assert time.perf_counter() - started < 2
    assert [r.outcome for r in res.records] == ["ok", "timeout"]


def test_progress_and_warmup() -> None:
    seen: list[wl.Progress] = []

    async def send(i: int, scheduled_at: float) -> RequestRecord:
        await asyncio.sleep(0.15)
        return RequestRecord(index=i, request_id=f"x{i}", scheduled_s=scheduled_at, outcome="ok")

    res = asyncio.run(
        wl.run_open_loop(
            wl.steady(rate=20, count=6),
            send,
            progress=seen.append,
            progress_interval_s=0.05,
            warmup=2,
        )
    )
    assert seen, "progress never reported"
    assert any(p.in_flight > 0 for p in seen)
    assert seen[-1].completed == 6 and seen[-1].in_flight == 0 and seen[-1].scheduled == 6
    assert any(p.completion_rate > 0 for p in seen)
    assert [r.phase for r in res.records] == ["warmup"] * 2 + ["measure"] * 4


def test_unsorted_schedule_refused() -> None:
    async def send(i: int, scheduled_at: float) -> RequestRecord:
        raise AssertionError

    with pytest.raises(ValueError):
        asyncio.run(wl.run_open_loop([1.0, 0.0], send))


# --------------------------------------------------------------------------------------------
# The orchestrator sender
# --------------------------------------------------------------------------------------------

VIDEOS = [
    wl.Video("demo", "s3://b/videos/demo.mp4", truth=demo_truth()),
    wl.Video("wrong", "s3://b/videos/wrong.mp4", truth=demo_truth()),
    wl.Video("busy", "s3://b/videos/busy.mp4", truth=demo_truth()),
    wl.Video("notruth", "s3://b/videos/notruth.mp4"),
]


def _orchestrator_run(server: Server, schedule: wl.Schedule, **kw: Any) -> wl.OpenLoopResult:
    ids = [v.id for v in VIDEOS]

    async def main() -> wl.OpenLoopResult:
        async with httpx.AsyncClient() as client:
            sender = wl.OrchestratorSender(
                client,
                server.url,
                VIDEOS,
                query="flour",
                video_for=lambda i: ids[i % len(ids)],
                **kw,
            )
            return await wl.run_open_loop(schedule, sender)

    return asyncio.run(main())


def test_orchestrator_sender_judges_content(server: Server, script: Script) -> None:
    script.answers["s3://b/videos/busy.mp4"] = [429]
    res = _orchestrator_run(server, wl.burst(4))
    by_video = {r.video: r for r in res.records}
    ok = by_video["demo"]
    assert ok.outcome == "ok" and ok.http_status == 200
    assert ok.checks and all(c.status != "fail" for c in ok.checks)
    assert {s.function for s in ok.invocations} >= {"transcribe", "orchestrator"}
    assert ok.request_metrics and ok.request_metrics["end_to_end_s"] == 12.0
    wrong = by_video["wrong"]
    assert wrong.http_status == 200 and wrong.outcome == "failed_content"
    assert wrong.error_code == "content" and "wer" in (wrong.error_message or "")
    busy = by_video["busy"]
    assert busy.outcome == "refused" and busy.error_code == "code429"
    assert busy.client_retries == 0 and len(busy.attempts) == 1
    assert by_video["notruth"].outcome == "failed_content"
    assert by_video["notruth"].error_code == "no_truth"
    sent = {b["request_id"] for b in script.seen}
    assert sent == {r.request_id for r in res.records}  # one POST per request, no re-sends
    body = script.seen[0]
    assert body["config"]["query"] == "flour" and body["input"]["video"].startswith("s3://")


def test_orchestrator_sender_retries_only_when_asked_and_counts_them(
    server: Server, script: Script
) -> None:
    script.answers["s3://b/videos/demo.mp4"] = [429, 429]
    res = _orchestrator_run(server, wl.burst(1), retries=3, retry_backoff_s=0.01)
    rec = res.records[0]
    assert rec.outcome == "ok"
    assert rec.client_retries == 2 and [a.http_status for a in rec.attempts] == [429, 429, 200]
    # Every attempt carried the same request id (the orchestrator resumes, never duplicates).
    assert {b["request_id"] for b in script.seen} == {rec.request_id}
    assert res.load.client_retries == 2
    assert rec.latency_s is not None and rec.latency_s >= rec.attempts[-1].sent_s - 0.001


def test_orchestrator_sender_timeout(server: Server, script: Script) -> None:
    script.parallel_delay_s = 1.0
    res = _orchestrator_run(server, wl.burst(1), timeout_s=0.2)
    rec = res.records[0]
    assert rec.outcome == "timeout" and rec.error_code == "client_timeout"
    assert json.dumps(rec.model_dump(mode="json"))  # serialisable
