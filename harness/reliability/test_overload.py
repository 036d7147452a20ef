"""Overload: open-loop arrivals at 2x and 4x the measured capacity, for a bounded time.

The shared platform admits 2 orchestrations at once and queues 2 more (conftest.py); beyond
that the gateway answers 429 at once. What must hold: every admitted request succeeds (content
checked), the excess is refused with 429 or waits in the bounded queue, no function exceeds its
memory limit or dies, and afterwards the platform is healthy and as fast as before.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.records import RequestRecord
from harness.reliability.conftest import SHARED_OVERRIDES, SHARED_QUEUE_LIMIT
from harness.reliability.media import QUERY, Media
from harness.reliability.support import Figure, RequestRow, Rig, figure
from harness.workload import OrchestratorSender, Video, http_client, run_open_loop, steady

#: Arrivals per phase, by factor. The window is count / rate, so it scales with the measured
#: capacity: at 4x, 12 arrivals exceed what 2 slots + 2 queue places and the completions within
#: the window can take (12 > 4 + 12/4) whatever the capacity is; at 2x the queue may absorb all.
FACTORS = {2.0: 6, 4.0: 12}
#: The slow variant: a minute of arrivals at each factor.
SLOW_WINDOW_S = 60.0
SLOTS = int(SHARED_OVERRIDES["orchestrator"]["max_inflight"]) * int(
    SHARED_OVERRIDES["orchestrator"]["max_replicas"]
)


@dataclass
class Sampler:
    """Polls the orchestrator's slots and queue while the load runs."""

    rig: Rig
    interval_s: float = 0.2
    inflight: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            extras = self.rig.platform.function("orchestrator")["vsearch"]
            self.inflight.append(int(extras["inflight"]))
            self.queued.append(int(extras["queued"]))
            self._stop.wait(self.interval_s)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def _closed_loop(
    rig: Rig, video: Video, workers: int, each: int
) -> list[tuple[RequestRecord, float]]:
    """`workers` clients each sending `each` requests back to back (the capacity probe)."""
    async with http_client(timeout_s=600) as client:
        sender = OrchestratorSender(client, rig.gateway_url, [video], request_prefix="cap")

        async def worker(w: int) -> list[tuple[RequestRecord, float]]:
            out = []
            for i in range(each):
                t0 = time.monotonic()
                record = await sender(w * each + i, 0.0)
                out.append((record, time.monotonic() - t0))
            return out

        batches = await asyncio.gather(*(worker(w) for w in range(workers)))
    return [r for batch in batches for r in batch]


async def _open_loop(rig: Rig, video: Video, rate: float, count: int) -> list[RequestRecord]:
    async with http_client(timeout_s=600) as client:
        sender = OrchestratorSender(client, rig.gateway_url, [video], request_prefix="over")
        result = await run_open_loop(steady(rate, count=count), sender)
    return result.records


def _counters(rig: Rig) -> dict[str, dict[str, int]]:
    return {
        name: {
            "oom_kills": f["vsearch"]["oom_kills"],
            "replica_deaths": f["vsearch"]["replica_deaths"],
            "peak": f["vsearch"]["peak_memory_bytes"],
            "limit": f["vsearch"]["memory_limit_bytes"],
        }
        for name, f in rig.functions().items()
    }


@dataclass
class Capacity:
    rps: float
    latency_s: float


def measure_capacity(rig: Rig, video: Video) -> Capacity:
    # Warm-up first: the first concurrent requests start extra replicas (cold starts).
    asyncio.run(_closed_loop(rig, video, workers=SLOTS, each=1))
    t0 = time.monotonic()
    timed = asyncio.run(_closed_loop(rig, video, workers=SLOTS, each=2))
    elapsed = time.monotonic() - t0
    failed = [(r.outcome, r.error_message) for r, _ in timed if r.outcome != "ok"]
    assert not failed, f"the capacity probe failed below capacity: {failed}"
    return Capacity(len(timed) / elapsed, statistics.median(s for _, s in timed))


def overload(rig: Rig, media: Media, fig: Figure, window_s: float | None) -> dict[str, Any]:
    """Both phases; `window_s` None: FACTORS' arrival counts, else arrivals for that long."""
    video = Video("short", rig.upload(media.short.path), media.short, QUERY)
    capacity = measure_capacity(rig, video)
    fig.measured["capacity"] = {
        "requests_per_s": round(capacity.rps, 3),
        "median_latency_s": round(capacity.latency_s, 2),
        "orchestrations_at_once": SLOTS,
        "queue_limit": SHARED_QUEUE_LIMIT,
    }
    phases: dict[str, Any] = {}
    for factor, least in FACTORS.items():
        rig.wait_idle()
        before = _counters(rig)
        rate = factor * capacity.rps
        count = least if window_s is None else max(least, round(rate * window_s))
        with Sampler(rig) as sampler:
            records = asyncio.run(_open_loop(rig, video, rate, count))
        after = _counters(rig)
        admitted = [r for r in records if r.outcome != "refused"]
        refused = [r for r in records if r.outcome == "refused"]
        for record in records:
            ok = record.outcome == "ok"
            clean = record.outcome == "refused" and record.error_code == "overloaded"
            fig.add(
                RequestRow(
                    request_id=record.request_id,
                    label=f"{factor:g}x",
                    http_status=record.http_status,
                    error_code=record.error_code,
                    verdict="ok" if ok else ("failed_cleanly" if clean else "lost"),
                    seconds=record.latency_s,
                    note="" if ok or clean else (record.error_message or "")[:200],
                )
            )
        latency = [r.latency_s for r in admitted if r.latency_s is not None]
        phases[f"{factor:g}x"] = {
            "rate_per_s": round(rate, 3),
            "window_s": round(count / rate, 1),
            "offered": len(records),
            "admitted": len(admitted),
            "refused_429": len(refused),
            "succeeded": sum(r.outcome == "ok" for r in records),
            "admitted_latency_s": {
                "p50": percentile(latency, 0.5),
                "p95": percentile(latency, 0.95),
                "max": percentile(latency, 1.0),
            },
            "max_running": max(sampler.inflight, default=0),
            "max_queued": max(sampler.queued, default=0),
            "oom_kills": sum(after[n]["oom_kills"] - before[n]["oom_kills"] for n in after),
            "replica_deaths": sum(
                after[n]["replica_deaths"] - before[n]["replica_deaths"] for n in after
            ),
            "peak_over_limit": {
                n: f"{c['peak'] >> 20} MiB > {c['limit'] >> 20} MiB"
                for n, c in after.items()
                if c["limit"] and c["peak"] > c["limit"]
            },
            "_records": records,
        }
    # Afterwards: healthy and as fast as before the overload.
    rig.wait_idle()
    healthy = rig.healthy()
    t0 = time.monotonic()
    answer = rig.search(video.uri, QUERY)
    after_s = time.monotonic() - t0
    fig.measured["after"] = {
        "healthz": healthy,
        "status": answer.status,
        "latency_s": round(after_s, 2),
        "baseline_latency_s": round(capacity.latency_s, 2),
    }
    fig.measured["phases"] = {
        k: {x: y for x, y in v.items() if x != "_records"} for k, v in phases.items()
    }
    return {"phases": phases, "capacity": capacity, "healthy": healthy, "after": answer,
            "after_s": after_s}  # fmt: skip


def check(outcome: dict[str, Any]) -> None:
    for name, phase in outcome["phases"].items():
        records: list[RequestRecord] = phase["_records"]
        failed = [
            (r.request_id, r.outcome, r.error_code, r.error_message)
            for r in records
            if r.outcome not in ("ok", "refused")
        ]
        assert not failed, f"{name}: admitted requests that did not succeed: {failed}"
        wrong = [r.error_code for r in records if r.outcome == "refused"]
        assert all(code == "overloaded" for code in wrong), wrong
        assert phase["max_queued"] <= SHARED_QUEUE_LIMIT, phase
        assert phase["max_running"] <= SLOTS, phase
        assert phase["oom_kills"] == 0 and phase["replica_deaths"] == 0, phase
        assert not phase["peak_over_limit"], phase
    # At 4x the bounded queue cannot absorb the excess: some of it must be refused.
    assert outcome["phases"]["4x"]["refused_429"] > 0, outcome["phases"]["4x"]
    assert outcome["healthy"]
    answer, baseline = outcome["after"], outcome["capacity"].latency_s
    assert answer.status == 200, answer.body
    assert outcome["after_s"] <= 2 * baseline + 5, (outcome["after_s"], baseline)


@pytest.fixture
def overload_figure(request: pytest.FixtureRequest) -> Iterator[Figure]:
    name = "overload_slow" if request.node.get_closest_marker("slow") else "overload"
    with figure(name) as fig:
        yield fig


def test_overload_is_refused_not_failed(
    quiet: Rig, rel_media: Media, overload_figure: Figure
) -> None:
    check(overload(quiet, rel_media, overload_figure, None))


@pytest.mark.slow
def test_sustained_overload_is_refused_not_failed(
    quiet: Rig, rel_media: Media, overload_figure: Figure
) -> None:
    check(overload(quiet, rel_media, overload_figure, SLOW_WINDOW_S))
