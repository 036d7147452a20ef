"""Conditional request state and step records against the real S3 server (SeaweedFS)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from base.storage import ObjectStore, PreconditionFailed
from orchestrator.client import StageError
from orchestrator.contracts import ErrorInfo
from orchestrator.pipeline import PipelineSettings
from orchestrator.state import RequestConflict, RequestState, read_status, state_key, step_key
from orchestrator.testing import (
    PER_SENTENCE,
    SPEECH,
    Call,
    FakeStages,
    Reply,
    ScriptedGateway,
    error,
    run_request,
)


def claim(state: RequestState, fp: str = "fp", resume: bool = True) -> Any:
    return state.claim(source_uri="s3://b/uploads/v.mp4", fingerprint=fp, resume=resume)


# -- what the S3 server itself guarantees -----------------------------------------------------


def test_s3_server_honours_if_none_match_and_if_match(store: ObjectStore, rid: str) -> None:
    key = f"requests/{rid}/probe.json"
    first = store.put_json(key, {"v": 1}, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": 2}, if_none_match="*")
    second = store.put_json(key, {"v": 3}, if_match=first)
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": 4}, if_match=first)  # stale ETag
    with pytest.raises(PreconditionFailed):
        store.put_json(f"requests/{rid}/absent.json", {"v": 5}, if_match=second)
    assert store.get_json(key) == ({"v": 3}, second)


# -- the state object -------------------------------------------------------------------------


def test_a_second_orchestrator_sees_the_conflict(store: ObjectStore, rid: str) -> None:
    first = RequestState(store, rid)
    assert claim(first).kind == "new"
    with pytest.raises(RequestConflict, match="being processed"):
        claim(RequestState(store, rid))
    first.renew()  # the owner is unaffected by the loser's attempt
    status = read_status(store, rid)
    assert status is not None and status["status"] == "running" and "stalled" not in status


def test_concurrent_starts_have_exactly_one_winner(store: ObjectStore, rid: str) -> None:
    racers = 8
    barrier = threading.Barrier(racers)

    def start(_: int) -> str:
        state = RequestState(store, rid)
        barrier.wait()
        try:
            return claim(state).kind
        except RequestConflict:
            return "conflict"

    with ThreadPoolExecutor(racers) as pool:
        outcomes = Counter(pool.map(start, range(racers)))
    assert outcomes == {"new": 1, "conflict": racers - 1}


def test_a_stale_etag_loses_after_a_takeover(store: ObjectStore, rid: str) -> None:
    crashed = RequestState(store, rid, lease_s=0.2)
    claim(crashed)
    time.sleep(0.3)  # the lease runs out: the owner is presumed dead
    status = read_status(store, rid)
    assert status is not None and status["stalled"] is True
    successor = RequestState(store, rid)
    taken = claim(successor)
    assert taken.kind == "takeover" and taken.state.attempt == 2
    # The old owner wakes up: its writes carry a stale ETag and are refused.
    with pytest.raises(RequestConflict, match="taken over"):
        crashed.renew()
    with pytest.raises(RequestConflict):
        crashed.finish_ok()
    successor.finish_error(ErrorInfo(status=422, code="bad_input", message="x"))
    value, _ = store.get_json(state_key(rid))
    assert value["owner"] == successor.owner and value["status"] == "error"


def test_a_failed_request_is_taken_over_but_not_with_other_inputs(
    store: ObjectStore, rid: str
) -> None:
    first = RequestState(store, rid)
    claim(first, fp="A")
    first.finish_error(ErrorInfo(status=503, code="overloaded", message="busy"))
    with pytest.raises(RequestConflict, match="different video or config"):
        claim(RequestState(store, rid), fp="B")
    assert claim(RequestState(store, rid), fp="A").kind == "takeover"


def test_a_late_heartbeat_does_not_reopen_a_finished_request(store: ObjectStore, rid: str) -> None:
    state = RequestState(store, rid)
    claim(state)
    state.finish_ok()
    state.renew()
    value, _ = store.get_json(state_key(rid))
    assert value["status"] == "ok"


# -- resume through the pipeline --------------------------------------------------------------


def step_counts(gw: ScriptedGateway) -> Counter[str]:
    return Counter(c.step for c in gw.calls)


def test_resume_redoes_only_the_steps_that_had_not_completed(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = fake(duration_s=22.0, speech=SPEECH, objects=[("person", 6.5, 13.0)])
    handlers = stages.handlers()
    good = handlers["transcribe"]
    broken = {"on": True}

    async def crash_on_clip_2(call: Call) -> Reply:
        if call.fanout == 2 and broken["on"]:
            # Fail only once the other branches (frames, delivery clips: they do not wait for
            # speech) are recorded to their last clip, so what is left is known.
            for step in ("detect-objects-0003-00", "transcode-clip-0003"):
                recorded = step_key(rid, step)
                for _ in range(200):
                    if await asyncio.to_thread(store.exists, recorded):
                        break
                    await asyncio.sleep(0.025)
            return error(call, 500, "internal", "transcribe failed: RuntimeError")
        return good(call)  # type: ignore[return-value]

    handlers["transcribe"] = crash_on_clip_2
    gw = gateway(handlers)
    video = put_upload()
    config = {"query": "flour", "clip_concurrency": 1, **PER_SENTENCE}
    with pytest.raises(StageError) as caught:
        run_request(store, gw.url, rid, video, config)
    assert caught.value.step == "transcribe-0002"
    # Speech runs one sentence at a time: sentence 3 was never started.
    assert "transcribe-0003" not in [c.step for c in gw.calls]
    first_run = len(gw.calls)

    broken["on"] = False
    out = run_request(store, gw.url, rid, video, config)
    counts = step_counts(gw)
    # Every step ran exactly once over both attempts, except the one that failed.
    assert len(counts) == 3 + 4 * 4 + 1  # head, 4 clips x 4 steps, search
    assert counts.pop("transcribe-0002") == 2
    assert set(counts.values()) == {1}
    second_run = gw.calls[first_run:]
    assert sorted(c.step for c in second_run) == ["search", "transcribe-0002", "transcribe-0003"]
    # The result is complete all the same, and says what was reused.
    assert [c.transcript for c in out.clips] == [s[2] for s in SPEECH]
    assert [m.clip_index for m in out.matches] == [1]
    assert out.metrics.request.steps_reused == 17
    assert out.metrics.request.steps_run == 3
    assert {r.step for r in out.metrics.invocations if r.reused} >= {"extract-audio", "cut-clips"}
    status = read_status(store, rid)
    assert status is not None and status["status"] == "ok" and status["attempt"] == 2


def test_a_finished_request_is_answered_from_its_result(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    gw = gateway(fake(duration_s=22.0, speech=SPEECH).handlers())
    video = put_upload()
    first = run_request(store, gw.url, rid, video, {"query": "bus"})
    calls = len(gw.calls)
    again = run_request(store, gw.url, rid, video, {"query": "bus"})
    assert len(gw.calls) == calls
    assert again == first
    # resume=False recomputes every step (e.g. after a stage upgrade), under the same id.
    rerun = run_request(store, gw.url, rid, video, {"query": "bus", "resume": False})
    assert len(gw.calls) == 2 * calls
    assert rerun.metrics.request.steps_reused == 0
    assert [m.clip_index for m in rerun.matches] == [2]
    with pytest.raises(RequestConflict):
        run_request(store, gw.url, rid, video, {"query": "fox"})


def test_an_orchestrator_that_lost_its_lease_stops_and_leaves_the_state_alone(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    gw = gateway(fake(duration_s=22.0, speech=SPEECH, delays={"transcribe": 3.0}).handlers())
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_request(
                store,
                gw.url,
                rid,
                put_upload(),
                {"query": "x"},
                settings=PipelineSettings(lease_s=0.6, progress_interval_s=0.0),
            )
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    t0 = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 10
    while not gw.calls_to("transcribe") and time.monotonic() < deadline:
        time.sleep(0.05)
    # Someone else takes the request over behind the owner's back (a stale lease elsewhere).
    for _ in range(50):  # the owner's heartbeat may slip in between our read and write
        value, etag = store.get_json(state_key(rid))
        try:
            store.put_json(
                state_key(rid), {**value, "owner": "usurper", "attempt": 9}, if_match=etag
            )
            break
        except PreconditionFailed:
            continue
    worker.join(timeout=10)
    assert isinstance(outcome.get("error"), RequestConflict), outcome
    assert time.monotonic() - t0 < 3.0  # stopped at the next heartbeat, not after the work
    value, _ = store.get_json(state_key(rid))
    assert value["owner"] == "usurper" and value["status"] == "running"
    assert gw.calls_to("search") == []
