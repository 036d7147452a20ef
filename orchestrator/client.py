"""Calling a function through the gateway: deadlines, classified failures, bounded retries.

Success is a 200 whose body is a well-formed result of the function that was called, never the
status alone. Only failures that another attempt can fix are retried (429, 502, 503, lost
connections; a 429 refusal waits for a free slot until the deadline, the others are bounded by
max_attempts); a function's outputs have deterministic keys, so a repeated call overwrites its
own objects instead of duplicating work. Bad input (400/404/413/422) and a function's timeout
(504) end the request at once, naming the function.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from base.contracts import (
    REQUEST_ARRIVAL_HEADER,
    ErrorResult,
    InvocationMetrics,
    InvocationResult,
)
from base.errors import FunctionError
from base.runtime import DEADLINE_HEADER
from base.telemetry import log
from orchestrator.contracts import InvocationRecord

RETRYABLE_STATUS = frozenset({429, 502, 503})
#: The caller's input is at fault: the whole request fails with the function's own answer.
BAD_INPUT_STATUS = frozenset({400, 404, 413, 422})

QUEUE_HEADER = "X-Vsearch-Queue-Seconds"
COLD_START_HEADER = "X-Vsearch-Cold-Start-Seconds"
MEMORY_LIMIT_HEADER = "X-Vsearch-Memory-Limit-Bytes"
DURATION_HEADER = "X-Duration-Seconds"


class StageError(FunctionError):
    """A function call failed for good; the orchestrator answers with this status and code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        function: str,
        step: str,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.function = function
        self.step = step
        self.retryable = retryable


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    #: Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**(n-1))).
    base_s: float = 0.25
    cap_s: float = 8.0
    #: The HTTP timeout exceeds the budget sent to the function by this much, so a function
    #: that honours the budget answers its own 504 before the client gives up on it.
    timeout_grace_s: float = 2.0
    #: No call is started with less budget than this; it could not do useful work.
    min_call_s: float = 0.2
    #: A 429 is a refusal before any work (every replica's max_inflight slots busy; OpenFaaS CE
    #: has no queue for synchronous calls, unlike the embedded gateway), so it does not use up
    #: an attempt: the call waits for a free slot until the deadline, polling at most this far
    #: apart, instead of failing a request whose fan-out outnumbers the replicas.
    busy_cap_s: float = 2.0

    def backoff_ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1))


class Deadline:
    """The request's budget on the monotonic clock; every call gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.total_s = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


@dataclass
class CallResult:
    outputs: dict[str, Any]
    metrics: InvocationMetrics
    attempts: list[InvocationRecord]


@dataclass
class _Failure:
    """One attempt that did not succeed: what it was, and whether another may."""

    status: int | None
    code: str
    message: str
    retryable: bool
    retry_after_s: float | None = None
    #: The body was the function's own error (not the gateway's): its status speaks for it.
    from_function: bool = False


def _header_float(response: httpx.Response, name: str) -> float | None:
    try:
        value = float(response.headers[name])
    except (KeyError, ValueError):
        return None
    return value if value >= 0 else None


class GatewayClient:
    """Invokes `POST {gateway}/function/{name}` on one shared, pooled AsyncClient."""

    def __init__(
        self,
        gateway_url: str,
        http: httpx.AsyncClient,
        policy: RetryPolicy | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_arrival: float | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        #: When the request arrived (Unix seconds): sent with every call so the gateway can serve
        #: older requests' work first.
        self.request_arrival = request_arrival
        self.http = http
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._sleep = sleep

    def url(self, function: str) -> str:
        return f"{self.gateway_url}/function/{function}"

    async def call(
        self,
        function: str,
        *,
        request_id: str,
        step: str,
        input: dict[str, Any],
        config: dict[str, Any],
        deadline: Deadline,
        fanout: int | None = None,
        records: list[InvocationRecord] | None = None,
    ) -> CallResult:
        """Call until success, a final failure, the attempt limit or the deadline."""
        records = records if records is not None else []
        attempts: list[InvocationRecord] = []
        body: dict[str, Any] = {"request_id": request_id, "input": input, "config": config}
        if fanout is not None:
            body["fanout"] = fanout
        policy = self.policy
        last: _Failure | None = None
        attempt = 0
        failures = 0  # failed attempts that count against max_attempts (not 429 refusals)
        busy = 0  # 429 refusals in a row
        while failures < policy.max_attempts:
            attempt += 1
            remaining = deadline.remaining()
            if remaining < policy.min_call_s:
                raise self._deadline_error(function, step, attempt - 1, last, deadline)
            outcome, record = await self._attempt(
                function, step, attempt, fanout, body, remaining, request_id
            )
            attempts.append(record)
            records.append(record)
            if isinstance(outcome, CallResult):
                outcome.attempts = attempts
                return outcome
            last = outcome
            if not outcome.retryable:
                raise self._final_error(function, step, attempt, outcome)
            if outcome.status == 429:
                busy += 1
                ceiling = min(policy.busy_cap_s, policy.backoff_ceiling(busy))
            else:
                busy = 0
                failures += 1
                if failures == policy.max_attempts:
                    break
                ceiling = policy.backoff_ceiling(failures)
            delay = self._rng.uniform(0.0, ceiling)
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, policy.cap_s))
            if deadline.remaining() - delay < policy.min_call_s:
                raise self._deadline_error(function, step, attempt, last, deadline)
            log(
                "retry",
                request_id=request_id,
                function=function,
                step=step,
                attempt=attempt,
                status=outcome.status,
                code=outcome.code,
                backoff_s=round(delay, 3),
            )
            await self._sleep(delay)
        assert last is not None
        raise self._exhausted_error(function, step, attempt, last)

    async def _attempt(
        self,
        function: str,
        step: str,
        attempt: int,
        fanout: int | None,
        body: dict[str, Any],
        remaining: float,
        request_id: str,
    ) -> tuple[CallResult | _Failure, InvocationRecord]:
        policy = self.policy
        headers = {
            DEADLINE_HEADER: f"{remaining:.3f}",
            "X-Vsearch-Request-Id": request_id,
            "X-Vsearch-Step": step,
            "X-Vsearch-Attempt": str(attempt),
        }
        if self.request_arrival is not None:
            headers[REQUEST_ARRIVAL_HEADER] = f"{self.request_arrival:.6f}"
        timeout = httpx.Timeout(
            remaining + policy.timeout_grace_s,
            connect=min(remaining, 10.0),
            pool=remaining,
        )
        started_at = time.time()
        t0 = time.monotonic()
        response: httpx.Response | None = None
        outcome: CallResult | _Failure
        try:
            response = await self.http.post(
                self.url(function), json=body, headers=headers, timeout=timeout
            )
        except httpx.ConnectTimeout:
            outcome = _Failure(None, "connect_timeout", "no connection to the gateway", True)
        except httpx.TimeoutException as exc:
            # The function had the whole remaining budget: another attempt cannot fit.
            outcome = _Failure(
                504, "timeout", f"no answer within {remaining:.1f} s ({type(exc).__name__})", False
            )
        except httpx.TransportError as exc:
            outcome = _Failure(None, "connection_error", f"{type(exc).__name__}: {exc}", True)
        else:
            outcome = self._classify(function, body["request_id"], response)
        latency = time.monotonic() - t0
        record = InvocationRecord(
            function=function,
            step=step,
            attempt=attempt,
            fanout=fanout,
            status_code=response.status_code if response is not None else None,
            outcome="ok"
            if isinstance(outcome, CallResult)
            else ("retried" if outcome.retryable else "failed"),
            error_code=None if isinstance(outcome, CallResult) else outcome.code,
            started_at=started_at,
            client_latency_s=round(latency, 4),
            function_duration_s=_header_float(response, DURATION_HEADER) if response else None,
            queue_s=_header_float(response, QUEUE_HEADER) if response else None,
            cold_start_wait_s=_header_float(response, COLD_START_HEADER) if response else None,
            memory_limit_bytes=_memory_limit(response),
            metrics=outcome.metrics if isinstance(outcome, CallResult) else None,
        )
        log(
            "call",
            request_id=request_id,
            function=function,
            step=step,
            attempt=attempt,
            status=record.status_code,
            outcome=record.outcome,
            code=record.error_code,
            latency_s=record.client_latency_s,
        )
        return outcome, record

    def _classify(
        self, function: str, request_id: str, response: httpx.Response
    ) -> CallResult | _Failure:
        status = response.status_code
        try:
            payload: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if status == 200:
            try:
                result = InvocationResult.model_validate(payload)
            except ValidationError:
                return _Failure(502, "bad_response", "answered 200 without a valid result", False)
            if result.function != function or result.request_id != request_id:
                return _Failure(
                    502,
                    "bad_response",
                    f"answered for {result.function}/{result.request_id}, not this call",
                    False,
                )
            return CallResult(outputs=result.outputs, metrics=result.metrics, attempts=[])
        error: ErrorResult | None = None
        try:
            error = ErrorResult.model_validate(payload)
        except ValidationError:
            error = None
        if error is not None:
            code, message = error.error.code, error.error.message
        else:
            code = {429: "overloaded", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}.get(
                status, "gateway_error"
            )
            message = f"gateway answered {status}: {response.text[:200]!r}"
        # The gateway uses the functions' error envelope too; only an answer that went through
        # the runtime carries X-Duration-Seconds, so only then does its status speak for the
        # function (a gateway's 404 means "no such function", not "no such input").
        mine = error is not None and DURATION_HEADER in response.headers
        oom_kills = response.headers.get("X-Vsearch-Oom-Kills")
        if oom_kills and status >= 500:
            # The kernel may kill only the function's ffmpeg child: the function then reports
            # a crash, and the platform's OOM count is the only sign of why. The same input
            # needs the same memory again, so this is not retried.
            replica = response.headers.get("X-Vsearch-Replica", "?")
            message = f"replica {replica}: {oom_kills} OOM kill(s) during the call; {message}"
            return _Failure(status, "oom_killed", message, False, from_function=mine)
        if status in RETRYABLE_STATUS:
            retry_after = _header_float(response, "Retry-After")
            return _Failure(status, code, message, True, retry_after, mine)
        if status == 504:
            return _Failure(504, "timeout", message, False, from_function=mine)
        # A 404 without a function's error body is the gateway not knowing the function; a 500
        # is a crash. Neither is the caller's fault, and neither goes away by retrying.
        return _Failure(status, code, message, False, from_function=mine)

    # -- errors the orchestrator answers with ----------------------------------------------------
    @staticmethod
    def _final_error(function: str, step: str, attempt: int, failure: _Failure) -> StageError:
        where = f"{function} ({step})"
        if failure.code == "timeout" or failure.status == 504:
            return StageError(
                504,
                "timeout",
                f"{where} timed out: {failure.message}",
                function=function,
                step=step,
            )
        if failure.status in BAD_INPUT_STATUS and failure.from_function:
            return StageError(
                failure.status or 400,
                failure.code,
                f"{where} rejected the input: {failure.message}",
                function=function,
                step=step,
            )
        return StageError(
            502,
            failure.code,
            f"{where} failed (HTTP {failure.status}): {failure.message}",
            function=function,
            step=step,
        )

    @staticmethod
    def _exhausted_error(function: str, step: str, attempts: int, last: _Failure) -> StageError:
        # Still busy or unreachable after every attempt: the caller may try again later (and a
        # retried request resumes from its completed steps).
        status = 503 if last.status in (429, 503) or last.status is None else 502
        return StageError(
            status,
            last.code,
            f"{function} ({step}) failed after {attempts} attempts: "
            f"HTTP {last.status}: {last.message}",
            function=function,
            step=step,
            retryable=True,
        )

    @staticmethod
    def _deadline_error(
        function: str, step: str, attempts: int, last: _Failure | None, deadline: Deadline
    ) -> StageError:
        tail = f"; last error HTTP {last.status} {last.code}" if last else ""
        return StageError(
            504,
            "timeout",
            f"request deadline ({deadline.total_s:.0f} s) reached before {function} ({step}) "
            f"could finish after {attempts} attempt(s){tail}",
            function=function,
            step=step,
        )


def _memory_limit(response: httpx.Response | None) -> int | None:
    if response is None:
        return None
    value = _header_float(response, MEMORY_LIMIT_HEADER)
    return int(value) if value else None
