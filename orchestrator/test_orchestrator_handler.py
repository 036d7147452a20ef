"""`python -m orchestrator` as a real process: the HTTP surface, timeouts, crash and resume."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from base.contracts import REQUEST_ARRIVAL_HEADER
from base.storage import ObjectStore
from harness.embedded.function_process import FunctionProcess, FunctionStartError
from orchestrator.state import step_key
from orchestrator.testing import PER_SENTENCE, SPEECH, Call, FakeStages, Reply, ScriptedGateway


@pytest.fixture
def orchestrators(s3_server: Any, tmp_path: Path) -> Iterator[Callable[..., FunctionProcess]]:
    started: list[FunctionProcess] = []

    def start(gateway_url: str | None, **env: str) -> FunctionProcess:
        extra = {"GATEWAY_URL": gateway_url} if gateway_url else {}
        proc = FunctionProcess(
            "orchestrator",
            {**s3_server.env(), **extra, "max_inflight": "4", **env},
            log_path=tmp_path / f"orchestrator-{len(started)}.log",
        ).start()
        started.append(proc)
        proc.wait_ready(timeout_s=30)
        return proc

    yield start
    for proc in started:
        proc.stop()


def post(url: str, body: dict[str, Any], timeout: float = 60.0) -> httpx.Response:
    return httpx.post(url + "/", json=body, timeout=timeout)


def test_http_surface(
    orchestrators: Callable[..., FunctionProcess],
    gateway: Callable[..., ScriptedGateway],
    fake: Callable[..., FakeStages],
    put_upload: Callable[..., str],
    s3_server: Any,
) -> None:
    gw = gateway(fake(duration_s=22.0, speech=SPEECH, objects=[("person", 6.5, 13.0)]).handlers())
    url = orchestrators(gw.url).url
    video = put_upload()

    # No request_id given: the orchestrator assigns one and the result carries it.
    r = post(url, {"input": {"video": video}, "config": {"query": "Flour"}})
    assert r.status_code == 200, r.text
    body = r.json()
    rid = body["request_id"]
    assert re.fullmatch(r"r\d{8}T\d{6}-[0-9a-f]{10}", rid)
    out = body["outputs"]
    assert out["request_id"] == rid and out["status"] == "ok"
    assert [m["clip_index"] for m in out["matches"]] == [1]
    assert [c["index"] for c in out["clips"] if c["objects"]] == [1, 2]
    # transcribe: one call for every sentence (speech_pack_s)
    assert len(out["metrics"]["invocations"]) == 17
    assert {c.headers["x-vsearch-request-id"] for c in gw.calls} == {rid}

    got = httpx.get(f"{url}/requests/{rid}", timeout=10)
    assert got.status_code == 200
    status = got.json()
    assert status["status"] == "ok" and status["result"]["matches"] == out["matches"]
    assert status["progress"]["stage"] == "done"

    assert httpx.get(f"{url}/requests/t-unknown-id", timeout=10).status_code == 404
    bad = httpx.get(f"{url}/requests/-bad", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"

    calls = len(gw.calls)
    for video_uri, config, code in [
        ("s3://other-bucket/uploads/v.mp4", {"query": "x"}, "foreign_bucket"),
        ("/etc/passwd", {"query": "x"}, "invalid_request"),
        ("https://example.com/v.mp4", {"query": "x"}, "invalid_request"),
        (video, {"query": ""}, "invalid_request"),
        (video, {"query": "x", "clip_concurrency": 33}, "invalid_request"),
        (video, {"query": "x", "functions": {"search": {"query": "y"}}}, "invalid_request"),
        (video, {"query": "x", "functions": {"nope": {}}}, "invalid_request"),
    ]:
        r = post(url, {"input": {"video": video_uri}, "config": config})
        assert r.status_code == 400, (video_uri, config, r.text)
        assert r.json()["error"]["code"] == code, r.text
    assert len(gw.calls) == calls  # refused before any function was called

    missing = post(
        url,
        {
            "request_id": "t-missing-upload",
            "input": {"video": f"s3://{s3_server.bucket}/uploads/none.mp4"},
            "config": {"query": "x"},
        },
    )
    assert missing.status_code == 404
    failed = httpx.get(f"{url}/requests/t-missing-upload", timeout=10).json()
    assert failed["status"] == "error" and failed["error"]["status"] == 404


def test_stage_calls_carry_the_arrival_the_orchestrators_call_came_with(
    orchestrators: Callable[..., FunctionProcess],
    gateway: Callable[..., ScriptedGateway],
    fake: Callable[..., FakeStages],
    put_upload: Callable[..., str],
) -> None:
    # The embedded gateway stamps the orchestrator's call; the stage calls must rank as the
    # same request there (harness/embedded/priority.py), so they carry the same stamp.
    gw = gateway(fake(duration_s=22.0, speech=SPEECH, objects=[("person", 6.5, 13.0)]).handlers())
    url = orchestrators(gw.url).url
    body = {"input": {"video": put_upload()}, "config": {"query": "flour"}}
    stamped = httpx.post(
        url + "/", json=body, headers={REQUEST_ARRIVAL_HEADER: "1700000000.250000"}, timeout=60
    )
    assert stamped.status_code == 200, stamped.text
    arrivals = {float(c.headers[REQUEST_ARRIVAL_HEADER.lower()]) for c in gw.calls}
    assert arrivals == {1700000000.25}

    # Without a stamp (OpenFaaS's gateway gives none) the orchestrator's own clock stands in.
    seen = len(gw.calls)
    before = time.time()
    assert post(url, body).status_code == 200
    (own,) = {float(c.headers[REQUEST_ARRIVAL_HEADER.lower()]) for c in gw.calls[seen:]}
    assert before <= own <= time.time()


def test_gateway_url_is_required(orchestrators: Callable[..., FunctionProcess]) -> None:
    with pytest.raises(FunctionStartError, match="GATEWAY_URL"):
        orchestrators(None)


def test_exec_timeout_stops_the_request_and_records_it(
    orchestrators: Callable[..., FunctionProcess],
    gateway: Callable[..., ScriptedGateway],
    fake: Callable[..., FakeStages],
    put_upload: Callable[..., str],
) -> None:
    stages = fake(duration_s=22.0, speech=SPEECH, delays={"segment-speech": 20.0})
    gw = gateway(stages.handlers())
    url = orchestrators(gw.url, exec_timeout="6s").url
    t0 = time.monotonic()
    r = post(
        url, {"request_id": "t-slow", "input": {"video": put_upload()}, "config": {"query": "x"}}
    )
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert time.monotonic() - t0 < 14
    # The budget the stage was given fits inside the orchestrator's own exec_timeout.
    assert float(gw.calls_to("segment-speech")[0].headers["x-timeout-seconds"]) < 6
    deadline = time.monotonic() + 10
    while True:
        status = httpx.get(f"{url}/requests/t-slow", timeout=10).json()
        if status["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "error" and status["error"]["code"] == "timeout"


def test_a_killed_orchestrator_is_resumed_by_another(
    orchestrators: Callable[..., FunctionProcess],
    gateway: Callable[..., ScriptedGateway],
    fake: Callable[..., FakeStages],
    put_upload: Callable[..., str],
    store: ObjectStore,
) -> None:
    stages = fake(duration_s=22.0, speech=SPEECH, objects=[("person", 6.5, 13.0)])
    handlers = stages.handlers()
    good = handlers["transcribe"]
    hang = {"on": True}

    async def hangs_on_clip_2(call: Call) -> Reply:
        give_up = time.monotonic() + 30
        while call.fanout == 2 and hang["on"] and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        return good(call)  # type: ignore[return-value]

    handlers["transcribe"] = hangs_on_clip_2
    gw = gateway(handlers)
    first = orchestrators(gw.url, ORCHESTRATOR_LEASE_S="2")
    second = orchestrators(gw.url, ORCHESTRATOR_LEASE_S="2")
    rid = "t-crash-resume"
    body = {
        "request_id": rid,
        "input": {"video": put_upload()},
        "config": {"query": "flour", **PER_SENTENCE},
    }

    def doomed() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the orchestrator is killed mid-request
            post(first.url, body)

    caller = threading.Thread(target=doomed, daemon=True)
    caller.start()
    others = [
        f"{name}-{i:04d}"
        for i in range(4)
        for name in ("transcode-clip", "transcribe", "sample-frames")
        if (name, i) != ("transcribe", 2)
    ] + [f"detect-objects-{i:04d}-00" for i in range(4)]
    wait_until(lambda: all(store.exists(step_key(rid, s)) for s in others), 20)
    assert gw.calls_to("transcribe") and hang["on"]

    # While the first orchestrator holds the lease, the same id elsewhere is a conflict.
    running = post(second.url, body)
    assert running.status_code == 409, running.text
    progress = httpx.get(f"{second.url}/requests/{rid}", timeout=10).json()
    assert progress["status"] == "running" and progress["progress"]["clips_total"] == 4

    first.kill()
    wait_until(
        lambda: httpx.get(f"{second.url}/requests/{rid}", timeout=10).json().get("stalled"), 10
    )
    hang["on"] = False
    resumed = post(second.url, body)
    assert resumed.status_code == 200, resumed.text
    out = resumed.json()["outputs"]
    assert [m["clip_index"] for m in out["matches"]] == [1]
    assert [c["transcript"] for c in out["clips"]] == [s[2] for s in SPEECH]
    counts = Counter(c.step for c in gw.calls)
    assert counts.pop("transcribe-0002") == 2  # the call the dead orchestrator never saw end
    assert set(counts.values()) == {1}, counts
    final = httpx.get(f"{second.url}/requests/{rid}", timeout=10).json()
    assert final["status"] == "ok" and final["attempt"] == 2
    caller.join(timeout=5)


def wait_until(predicate: Callable[[], Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.1)
