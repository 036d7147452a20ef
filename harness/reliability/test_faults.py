"""Faults on the embedded platform: killed replicas, a killed orchestrator, an S3 restart.

Each test runs real requests over videos of known content (the demo, a one-sentence video)
through the whole pipeline and counts what became of them: succeeded (content checked), failed
cleanly (a coded error, and a state that says so) or lost (no answer, or an answer the state
contradicts).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from harness.media.generate import VideoTruth
from harness.records import RequestRecord, check_content, content_ok
from harness.reliability.media import QUERY, Media
from harness.reliability.support import (
    Answer,
    RequestRow,
    Rig,
    diff,
    figure,
    new_id,
    output_problems,
    request_prefix,
    wait_until,
)
from harness.workload import OrchestratorSender, Video, http_client, run_open_loop, steady

#: Functions whose busy replica is SIGKILLed, in this order, during the steady load: the short,
#: fanned-out calls first (3 per request, any request will do), then transcribe's one long call
#: per request (its sentences share one call).
KILLED = ("transcode-clip", "transcribe")
#: How long a call may get going before its kill, so it lands inside the handler: transcode-clip
#: calls take ~0.1-0.25 s on 3 replicas, so a longer wait would see every one of them finish.
SETTLE_S = {"transcode-clip": 0.05}
#: A call first seen this long past its settle time is left alone (it may be answering).
FRESH_SLACK_S = 0.1
#: Steps the orchestrator does itself (copy, hash): recorded and reused, but not function calls.
LOCAL_STEPS = frozenset({"import", "sha256"})


def content_passes(truth: VideoTruth) -> Callable[[Answer], bool]:
    def check(answer: Answer) -> bool:
        return content_ok(check_content(answer.outputs, truth, query=QUERY))

    return check


def stored_result(rig: Rig, request_id: str) -> dict[str, Any]:
    body = rig.s3.get_object(Bucket=rig.bucket, Key=f"{request_prefix(request_id)}result.json")
    return dict(json.loads(body["Body"].read()))


def stored_state(rig: Rig, request_id: str) -> dict[str, Any]:
    body = rig.s3.get_object(Bucket=rig.bucket, Key=f"{request_prefix(request_id)}state.json")
    return dict(json.loads(body["Body"].read()))


def relative_keys(rig: Rig, request_id: str) -> set[str]:
    prefix = request_prefix(request_id)
    return {k[len(prefix) :] for k in rig.keys(prefix)}


def step_records(rig: Rig, request_id: str) -> set[str]:
    prefix = f"{request_prefix(request_id)}steps/"
    return {k[len(prefix) : -len(".json")] for k in rig.keys(prefix)}


# -- a replica killed mid-invocation -------------------------------------------------------------


@dataclass
class Killer:
    """SIGKILLs one busy replica of each function in turn, while the load runs."""

    rig: Rig
    functions: tuple[str, ...]
    #: Lets the call get going, so the kill lands inside the handler, not at its first byte
    #: (per function; SETTLE_S).
    settle_s: float = 0.3
    kills: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Killer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="killer")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _fresh_call(self, function: str, settle_s: float) -> tuple[str, float] | None:
        """A replica whose call began at most `settle_s` (+ a poll's slack) ago, and its age.

        A call that has run longer may be about to answer: a kill after the replica wrote its
        answer reaches nobody, and the test would see no retry (CI: transcribe, killed at the
        end of its one call per request)."""
        replicas = self.rig.platform.function(function)["vsearch"]["replicas"]
        fresh = [
            (r["name"], r["newest_call_s"])
            for r in replicas
            if r["state"] == "ready"
            and r["inflight"] > 0
            and r["newest_call_s"] is not None
            and r["newest_call_s"] <= settle_s + FRESH_SLACK_S
        ]
        return min(fresh, key=lambda f: f[1]) if fresh else None

    def _run(self) -> None:
        for function in self.functions:
            settle_s = SETTLE_S.get(function, self.settle_s)
            while not self._stop.is_set():
                found = self._fresh_call(function, settle_s)
                if found is None:
                    self._stop.wait(0.02)
                    continue
                replica, age_s = found
                if self._stop.wait(max(0.0, settle_s - age_s)):
                    return
                try:
                    # Busy-only: short calls (transcode-clip's ~0.1 s) end between our look
                    # and the kill; the gateway checks and kills in one step.
                    killed = self.rig.platform.kill_replica(function, replica, busy_only=True)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code == 409:
                        continue
                    raise
                self.kills.append(killed)
                break


async def _steady_load(rig: Rig, video: Video, count: int, rate: float) -> list[RequestRecord]:
    async with http_client(timeout_s=600) as client:
        sender = OrchestratorSender(
            client, rig.gateway_url, [video], request_prefix="kill", timeout_s=600
        )
        result = await run_open_loop(steady(rate, count=count), sender)
    return result.records


def test_a_killed_replica_is_retried_on_another(quiet: Rig, rel_media: Media) -> None:
    rig, truth = quiet, rel_media.demo
    video = Video("demo", rig.upload(truth.path), truth, QUERY)
    with figure("fault_kill_replica") as fig:
        events = rig.platform.events()
        since = events[-1].seq if events else 0
        with Killer(rig, KILLED) as killer:
            records = asyncio.run(_steady_load(rig, video, count=3, rate=0.5))
        deaths = rig.platform.events(since=since, type="replica_died")
        retried = [
            {"request": r.request_id, "function": i.function, "step": i.step, "code": i.error_code}
            for r in records
            for i in r.invocations
            if i.outcome == "retried"
        ]
        outputs: dict[str, list[str]] = {}
        relative: dict[str, set[str]] = {}
        for record in records:
            ok = record.outcome == "ok"
            row = fig.add(
                RequestRow(
                    request_id=record.request_id,
                    http_status=record.http_status,
                    error_code=record.error_code,
                    verdict="ok" if ok else "lost",
                    seconds=record.latency_s,
                    note="" if ok else (record.error_message or "")[:200],
                )
            )
            if ok:
                relative[record.request_id] = relative_keys(rig, record.request_id)
                result = stored_result(rig, record.request_id)
                outputs[record.request_id] = output_problems(relative[record.request_id], result)
                if result.get("request_id") != record.request_id:
                    outputs[record.request_id].append("result.json of another request")
                    row.verdict = "lost"
        fig.measured.update(
            kills=killer.kills,
            replica_deaths=[f"{e.function}/{e.replica}: {e.message}" for e in deaths],
            retried_attempts=retried,
            output_problems=outputs,
            latency_s=[r.latency_s for r in records],
        )

    assert len(killer.kills) == len(KILLED), f"the load ended before every kill: {killer.kills}"
    assert {e.replica for e in deaths} >= {k["replica"] for k in killer.kills}
    assert fig.succeeded == 3, [r.note for r in fig.requests]
    # The kill reached the orchestrator as a dead replica, and it tried again elsewhere.
    for function in KILLED:
        assert any(a["function"] == function and a["code"] == "replica_died" for a in retried), (
            function,
            retried,
        )
    assert all(not problems for problems in outputs.values()), outputs
    # Deterministic keys: the same video gives the same relative keys, request after request.
    names = {frozenset(k for k in keys if not k.startswith("input/")) for keys in relative.values()}
    assert len(names) == 1, [sorted(a ^ b) for a in names for b in names if a != b][:1]


# -- the orchestrator killed mid-request ---------------------------------------------------------


def function_steps(keys: set[str]) -> set[str]:
    steps = {k[len("steps/") : -len(".json")] for k in keys if k.startswith("steps/")}
    return steps - LOCAL_STEPS


def test_a_killed_orchestrator_is_resumed_from_its_state(quiet: Rig, rel_media: Media) -> None:
    rig, truth = quiet, rel_media.demo
    uri = rig.upload(truth.path)
    request_id = new_id("resume")
    first: list[Answer] = []
    with figure("fault_kill_orchestrator") as fig:
        sender = threading.Thread(
            target=lambda: first.append(rig.search(uri, QUERY, request_id=request_id))
        )
        sender.start()
        # Mid-request: the clips are cut and some per-clip steps are recorded, not all.
        assert wait_until(lambda: len(step_records(rig, request_id)) >= 6, 180, 0.1)
        # While its orchestrator lives, the same id again is refused, never run twice.
        duplicate = rig.search(uri, QUERY, request_id=request_id)
        killed = rig.platform.kill_replica("orchestrator")
        sender.join(60)
        assert first, "the client got no answer after its orchestrator was killed"
        recorded = step_records(rig, request_id)
        answer = first[0]
        # The caller learns at once (a coded 502, not a hang), and the request is findable.
        fig.add(
            RequestRow(
                request_id=request_id,
                label="first attempt (orchestrator killed)",
                http_status=answer.status,
                error_code=answer.code,
                verdict="failed_cleanly" if answer.clean_error else "lost",
                seconds=round(answer.seconds, 3),
                note=answer.message[:200],
            )
        )
        fig.add(rig.verdict(duplicate, lambda a: False)).label = "duplicate while running"
        state = rig.state(request_id)  # waits for the replacement orchestrator to start
        # While the dead owner's lease lives, the same id is refused, never run twice. Only
        # tried with time to spare: a slow replacement start may have outlived the lease.
        left = stored_state(rig, request_id)["lease_expires_at"] - time.time()
        early = rig.search(uri, QUERY, request_id=request_id) if left > 3 else None
        if early is not None:
            fig.add(rig.verdict(early, lambda a: False)).label = "re-sent within the lease"
        stalled = wait_until(lambda: bool((rig.state(request_id) or {}).get("stalled")), 30, 0.5)
        second = rig.search(uri, QUERY, request_id=request_id)
        row = fig.add(rig.verdict(second, content_passes(truth)))
        row.label = "re-sent after the lease expired"
        request = (second.outputs or {}).get("metrics", {}).get("request", {})
        final = rig.state(request_id) or {}
        keys = relative_keys(rig, request_id)
        problems = output_problems(keys, stored_result(rig, request_id)) if second.outputs else []
        fig.measured.update(
            killed=killed,
            steps_recorded_before_kill=sorted(recorded),
            state_after_kill=(state or {}).get("status"),
            duplicate_while_running=f"{duplicate.status} {duplicate.code}",
            early_resend=f"{early.status} {early.code}" if early else f"skipped, {left:.1f} s left",
            stalled_after_lease=stalled,
            steps_reused=request.get("steps_reused"),
            steps_run=request.get("steps_run"),
            attempt=final.get("attempt"),
            output_problems=problems,
        )

    assert duplicate.status == 409 and duplicate.code == "conflict", duplicate.body
    assert answer.status == 502 and answer.code == "replica_died", (answer.status, answer.body)
    assert state is not None and state["status"] == "running", state
    if early is not None:
        assert early.status == 409 and early.code == "conflict", (early.status, early.body)
    assert stalled, "the killed orchestrator's lease never expired"
    assert row.verdict == "ok", (second.status, second.body if second.status != 200 else "")
    # Every function step recorded before the kill was reused, none redone (the metric counts
    # function calls; the orchestrator's own import and hash steps are reused too).
    calls = recorded - LOCAL_STEPS
    assert request["steps_reused"] == len(calls), (request, sorted(recorded))
    assert request["steps_run"] + request["steps_reused"] == len(function_steps(keys))
    assert final["status"] == "ok" and final["attempt"] == 2, final
    assert not problems, problems


# -- the S3 server restarted mid-run -------------------------------------------------------------


@pytest.fixture
def checksums_before(quiet: Rig) -> Iterator[dict[str, str]]:
    yield quiet.checksums()


def test_an_s3_restart_loses_nothing(
    quiet: Rig, rel_media: Media, checksums_before: dict[str, str]
) -> None:
    rig = quiet
    # The demo (tens of seconds) is surely still running when the restart begins; the short
    # video's request is caught at whatever stage it has reached.
    truths = {new_id("s3restart"): rel_media.demo, new_id("s3restart"): rel_media.short}
    answers: dict[str, Answer] = {}

    def send(request_id: str) -> None:
        uri = rig.upload(truths[request_id].path)
        answers[request_id] = rig.search(uri, QUERY, request_id=request_id)

    with figure("fault_s3_restart") as fig:
        threads = [threading.Thread(target=send, args=(rid,)) for rid in truths]
        for thread in threads:
            thread.start()
        # Both in flight, past the import: the restart hits stage I/O and state writes.
        assert wait_until(lambda: all(len(step_records(rig, r)) >= 3 for r in truths), 180, 0.1)
        in_flight = sorted(set(truths) - set(answers))
        t0 = time.monotonic()
        rig.server.restart()
        down_s = time.monotonic() - t0
        for thread in threads:
            thread.join(600)
        for request_id, truth in truths.items():
            answer = answers.get(request_id) or Answer(request_id, None, None, 0.0, "no answer")
            fig.add(rig.verdict(answer, content_passes(truth))).label = "in flight at restart"
        after = rig.checksums()
        changed = diff(checksums_before, {k: v for k, v in after.items() if k in checksums_before})
        good = rig.search(rig.upload(rel_media.short.path), QUERY)
        fig.add(rig.verdict(good, content_passes(rel_media.short))).label = "sent after"
        fig.measured.update(
            restart_s=round(down_s, 2),
            in_flight_at_restart=len(in_flight),
            objects_before=len(checksums_before),
            objects_lost_or_changed=changed,
            outcomes={r: f"{a.status} {a.code or ''}".strip() for r, a in answers.items()},
        )

    assert in_flight, "every request had finished before the restart: nothing was tested"
    assert not changed["removed"] and not changed["changed"], changed
    assert fig.lost == 0, [r.model_dump() for r in fig.requests if r.verdict == "lost"]
    assert fig.requests[-1].verdict == "ok", "the platform did not recover from the restart"
