"""The retry policy against a real HTTP server answering scripted statuses (no httpx mocks)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from base.contracts import REQUEST_ARRIVAL_HEADER
from orchestrator.client import Deadline, GatewayClient, RetryPolicy, StageError
from orchestrator.contracts import InvocationRecord
from orchestrator.testing import Call, Reply, ScriptedGateway, error, free_port, ok

FN = "transcode-clip"


class UpperJitter(random.Random):
    """Full jitter pinned to its upper bound, so backoff gaps are predictable in tests."""

    def uniform(self, a: float, b: float) -> float:
        return b


def scripted(*replies: Callable[[Call], Reply]) -> Callable[[Call], Reply]:
    """A handler answering the n-th call with the n-th reply (the last one repeats)."""
    seen = {"n": 0}

    def handler(call: Call) -> Reply:
        n = min(seen["n"], len(replies) - 1)
        seen["n"] += 1
        return replies[n](call)

    return handler


def fine(call: Call) -> Reply:
    reply = ok(call, {"mp4": "s3://b/x.mp4"})
    reply.headers.update({"X-Vsearch-Queue-Seconds": "0.25", "X-Vsearch-Cold-Start-Seconds": "1.5"})
    return reply


def status(code: int, err: str = "x", **kw: Any) -> Callable[[Call], Reply]:
    return lambda call: error(call, code, err, f"scripted {code}", **kw)


def call(
    url: str,
    *,
    policy: RetryPolicy | None = None,
    deadline_s: float = 30.0,
    records: list[InvocationRecord] | None = None,
) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            client = GatewayClient(url, http, policy or RetryPolicy(base_s=0.1), rng=UpperJitter())
            return await client.call(
                FN,
                request_id="r-1",
                step="transcode-clip-0003",
                input={"clip": "s3://b/c.mp4"},
                config={},
                fanout=3,
                deadline=Deadline(deadline_s),
                records=records,
            )

    return asyncio.run(go())


@pytest.mark.parametrize("code", [429, 502, 503])
def test_retryable_status_is_retried_with_exponential_backoff(code: int) -> None:
    with ScriptedGateway({FN: scripted(status(code), status(code), fine)}) as gw:
        records: list[InvocationRecord] = []
        result = call(gw.url, records=records)
    assert result.outputs == {"mp4": "s3://b/x.mp4"}
    assert [r.outcome for r in records] == ["retried", "retried", "ok"]
    assert [r.status_code for r in records] == [code, code, 200]
    assert [r.attempt for r in records] == [1, 2, 3]
    # Upper-bound jitter: the waits are base * 2**(n-1) = 0.1 s, then 0.2 s.
    arrivals = [c.received for c in gw.calls]
    assert arrivals[1] - arrivals[0] >= 0.1
    assert arrivals[2] - arrivals[1] >= 0.2
    assert arrivals[2] - arrivals[0] < 1.5
    # Same body every attempt: the function's deterministic keys make the repeat idempotent.
    assert gw.calls[0].body == gw.calls[2].body
    assert [c.headers["x-vsearch-attempt"] for c in gw.calls] == ["1", "2", "3"]
    final = records[-1]
    assert final.queue_s == 0.25 and final.cold_start_wait_s == 1.5
    assert final.metrics is not None and final.metrics.function == FN


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=3.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        assert policy.backoff_ceiling(attempt) == ceiling
        draws = [rng.uniform(0, policy.backoff_ceiling(attempt)) for _ in range(200)]
        assert min(draws) >= 0 and max(draws) <= ceiling
        assert max(draws) - min(draws) > ceiling / 2  # really jittered, not a constant


def test_connection_errors_are_retried_until_the_function_is_up() -> None:
    port = free_port()
    gw = ScriptedGateway({FN: fine}, port=port)
    records: list[InvocationRecord] = []

    def start_after_first_refusal() -> None:
        # Nothing listens until an attempt has been refused; then the "function" comes up.
        deadline = time.monotonic() + 10
        while not records and time.monotonic() < deadline:
            time.sleep(0.01)
        gw.start()

    starter = threading.Thread(target=start_after_first_refusal)
    starter.start()
    try:
        result = call(gw.url, records=records, policy=RetryPolicy(base_s=0.1, max_attempts=8))
    finally:
        starter.join()
        gw.stop()
    assert result.outputs["mp4"] == "s3://b/x.mp4"
    assert records[0].status_code is None and records[0].error_code == "connection_error"
    assert records[0].outcome == "retried"
    assert records[-1].outcome == "ok" and len(records) >= 2
    assert len(gw.calls) == 1  # only the attempt that reached a server got there


@pytest.mark.parametrize(
    ("code", "err"),
    [
        (400, "invalid_request"),
        (404, "input_not_found"),
        (413, "input_too_large"),
        (422, "no_video"),
    ],
)
def test_bad_input_is_not_retried_and_names_the_function(code: int, err: str) -> None:
    with ScriptedGateway({FN: scripted(status(code, err), fine)}) as gw:
        records: list[InvocationRecord] = []
        with pytest.raises(StageError) as caught:
            call(gw.url, records=records)
    assert len(gw.calls) == 1
    exc = caught.value
    assert (exc.status, exc.code) == (code, err)
    assert exc.function == FN and exc.step == "transcode-clip-0003"
    assert FN in exc.message and f"scripted {code}" in exc.message
    assert [r.outcome for r in records] == ["failed"]


def test_function_timeout_504_fails_at_once_with_code_timeout() -> None:
    with (
        ScriptedGateway({FN: scripted(status(504, "timeout"), fine)}) as gw,
        pytest.raises(StageError) as caught,
    ):
        call(gw.url)
    assert len(gw.calls) == 1
    assert (caught.value.status, caught.value.code) == (504, "timeout")
    assert FN in caught.value.message


def test_function_crash_500_is_not_retried() -> None:
    with (
        ScriptedGateway({FN: scripted(status(500, "internal"), fine)}) as gw,
        pytest.raises(StageError) as caught,
    ):
        call(gw.url)
    assert len(gw.calls) == 1
    assert caught.value.status == 502 and caught.value.code == "internal"


def test_unknown_function_at_the_gateway_is_not_mistaken_for_missing_input() -> None:
    # The gateway answers a plain-text 404: no function ever saw the request.
    with ScriptedGateway({}) as gw, pytest.raises(StageError) as caught:
        call(gw.url)
    assert len(gw.calls) == 1
    assert caught.value.status == 502 and caught.value.code == "gateway_error"


@pytest.mark.parametrize(
    ("code", "err"), [(404, "function_not_found"), (413, "body_too_large"), (400, "bad")]
)
def test_a_gateway_error_is_not_taken_for_the_functions_verdict(code: int, err: str) -> None:
    # Same envelope as a function's error, but it never went through a function's runtime.
    refused = lambda c: error(c, code, err, "from the gateway", from_gateway=True)  # noqa: E731
    with ScriptedGateway({FN: refused}) as gw, pytest.raises(StageError) as caught:
        call(gw.url)
    assert len(gw.calls) == 1
    assert caught.value.status == 502 and caught.value.code == err


def test_a_replica_killed_mid_call_is_retried() -> None:
    died = lambda c: error(c, 502, "oom_killed", "replica OOM-killed", from_gateway=True)  # noqa: E731
    with ScriptedGateway({FN: scripted(died, fine)}) as gw:
        result = call(gw.url)
    assert len(gw.calls) == 2 and result.outputs


def test_a_child_oom_kill_is_reported_as_oom_and_not_retried() -> None:
    # The kernel killed only the function's ffmpeg: the function says "exit -9", the gateway
    # counted the OOM kill. The same input would need the same memory, so no retry.
    headers = {"X-Vsearch-Oom-Kills": "1", "X-Vsearch-Replica": "transcode-clip-2"}
    crashed = lambda c: error(c, 500, "internal", "ffmpeg exit -9", headers=headers)  # noqa: E731
    with ScriptedGateway({FN: crashed}) as gw, pytest.raises(StageError) as caught:
        call(gw.url)
    assert len(gw.calls) == 1
    assert caught.value.code == "oom_killed"
    assert "replica transcode-clip-2" in caught.value.message and "OOM" in caught.value.message


def test_attempts_are_bounded_then_the_failure_is_retryable_for_the_caller() -> None:
    with (
        ScriptedGateway({FN: status(503, "storage_unavailable")}) as gw,
        pytest.raises(StageError) as caught,
    ):
        call(gw.url, policy=RetryPolicy(max_attempts=3, base_s=0.01))
    assert len(gw.calls) == 3
    exc = caught.value
    assert exc.status == 503 and exc.code == "storage_unavailable" and exc.retryable
    assert "after 3 attempts" in exc.message


def test_deadline_is_sent_to_the_function_and_enforced_by_the_client() -> None:
    slow = lambda c: Reply(200, None, delay_s=10.0)  # noqa: E731 - never answers in time
    with ScriptedGateway({FN: slow}) as gw:
        t0 = time.monotonic()
        with pytest.raises(StageError) as caught:
            call(gw.url, deadline_s=1.0, policy=RetryPolicy(timeout_grace_s=0.3))
        elapsed = time.monotonic() - t0
    assert caught.value.code == "timeout" and caught.value.status == 504
    assert elapsed < 1.0 + 0.3 + 0.7
    assert len(gw.calls) == 1  # a timed-out call used the whole budget: nothing left to retry
    sent = float(gw.calls[0].headers["x-timeout-seconds"])
    assert 0.8 < sent <= 1.0


def test_retries_stop_when_the_backoff_would_pass_the_deadline() -> None:
    with ScriptedGateway({FN: status(503)}) as gw:
        t0 = time.monotonic()
        with pytest.raises(StageError) as caught:
            call(gw.url, deadline_s=1.0, policy=RetryPolicy(max_attempts=10, base_s=0.4))
        elapsed = time.monotonic() - t0
    # Waits 0.4 then 0.8 s: the second wait would end past the deadline, so it is not taken.
    assert len(gw.calls) == 2
    assert elapsed < 1.0
    assert caught.value.code == "timeout" and "deadline" in caught.value.message
    # Every budget sent is what was left of the request's deadline.
    budgets = [float(c.headers["x-timeout-seconds"]) for c in gw.calls]
    assert budgets[0] > budgets[1] and budgets[0] <= 1.0


def test_retry_after_is_honoured() -> None:
    busy = status(429, "overloaded", headers={"Retry-After": "0.5"})
    with ScriptedGateway({FN: scripted(busy, fine)}) as gw:
        call(gw.url, policy=RetryPolicy(base_s=0.01))
    assert gw.calls[1].received - gw.calls[0].received >= 0.5


def test_a_200_without_a_valid_result_is_a_failure() -> None:
    broken = lambda c: Reply(200, {"status": "ok", "outputs": {}})  # noqa: E731
    with (
        ScriptedGateway({FN: broken}) as gw,
        pytest.raises(StageError) as caught,
    ):
        call(gw.url)
    assert len(gw.calls) == 1
    assert caught.value.code == "bad_response" and caught.value.status == 502


def test_an_answer_for_another_function_is_rejected() -> None:
    def misrouted(c: Call) -> Reply:
        reply = ok(c, {})
        reply.body["function"] = "search"
        return reply

    with (
        ScriptedGateway({FN: misrouted}) as gw,
        pytest.raises(StageError) as caught,
    ):
        call(gw.url)
    assert caught.value.code == "bad_response"


def test_busy_refusals_wait_for_a_slot_without_using_up_attempts() -> None:
    # OpenFaaS CE has no queue: a fan-out wider than the replicas' slots meets 429s until a call
    # finishes. Six refusals then a free slot succeed although max_attempts is 3.
    replies = [status(429, "overloaded")] * 6 + [fine]
    with ScriptedGateway({FN: scripted(*replies)}) as gw:
        records: list[InvocationRecord] = []
        result = call(gw.url, records=records, policy=RetryPolicy(max_attempts=3, base_s=0.01))
    assert result.outputs == {"mp4": "s3://b/x.mp4"}
    assert [r.status_code for r in records] == [429] * 6 + [200]


def test_busy_refusals_stop_at_the_deadline() -> None:
    with ScriptedGateway({FN: status(429, "overloaded")}) as gw:
        began = time.monotonic()
        with pytest.raises(StageError) as err:
            call(gw.url, deadline_s=1.5, policy=RetryPolicy(max_attempts=2, base_s=0.05))
    assert time.monotonic() - began < 4.0
    assert len(gw.calls) > 2  # refusals did not count against max_attempts=2
    assert err.value.function == FN


def test_other_retryable_failures_stay_bounded_by_max_attempts() -> None:
    with ScriptedGateway({FN: status(502, "replica_died")}) as gw, pytest.raises(StageError):
        call(gw.url, policy=RetryPolicy(max_attempts=3, base_s=0.01))
    assert len(gw.calls) == 3


def test_every_attempt_carries_the_requests_arrival() -> None:
    async def go(url: str) -> None:
        async with httpx.AsyncClient() as http:
            client = GatewayClient(
                url, http, RetryPolicy(base_s=0.01), rng=UpperJitter(), request_arrival=1234.5
            )
            await client.call(
                FN, request_id="r-1", step="s", input={}, config={}, deadline=Deadline(10.0)
            )

    with ScriptedGateway({FN: scripted(status(503), fine)}) as gw:
        asyncio.run(go(gw.url))
    arrivals = [c.headers[REQUEST_ARRIVAL_HEADER.lower()] for c in gw.calls]
    assert [float(a) for a in arrivals] == [1234.5, 1234.5], "the retry must keep its place"
