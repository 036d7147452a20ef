"""The watchdog contract, checked against a real function process over HTTP."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from harness.embedded.function_process import FunctionProcess

MODULE = "base.tests.sample_function"


def start(s3_server: Any, tmp_path: Path, **env: str) -> FunctionProcess:
    proc = FunctionProcess(MODULE, {**s3_server.env(), **env}, log_path=tmp_path / "fn.log")
    proc.start()
    proc.wait_ready()
    return proc


@pytest.fixture(scope="module")
def sample(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionProcess]:
    proc = start(s3_server, tmp_path_factory.mktemp("sample"), exec_timeout="2s", max_inflight="2")
    yield proc
    proc.stop()


def body(mode: str = "echo", seconds: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"rt-{uuid.uuid4().hex[:8]}",
        "input": extra.pop("input", {}),
        "config": {"mode": mode, "seconds": seconds},
        **extra,
    }


def post(proc: FunctionProcess, payload: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(proc.url + "/", json=payload, timeout=30, **kwargs)


def test_health_and_ready(sample: FunctionProcess) -> None:
    for path in ("/_/health", "/_/ready"):
        response = httpx.get(sample.url + path)
        assert response.status_code == 200
        assert response.json()["function"] == "sample"
    # The pid lets a platform reject a ready answer from another process on the same port.
    ready = httpx.get(sample.url + "/_/ready").json()
    assert ready["pid"] == sample.pid
    # Where the cold start went, by phase; together no more than process start to ready.
    phases = ready["startup"]
    assert phases.pop("from_zygote") is False  # a fresh interpreter
    assert set(phases) == {"process_start_s", "imports_s", "model_load_s"}
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= (sample.ready_after_s or 0) + 1.0


def test_port_opens_before_init_and_early_calls_wait_for_it(s3_server: Any, tmp_path: Path) -> None:
    proc = FunctionProcess(
        MODULE, {**s3_server.env(), "SAMPLE_INIT_SECONDS": "3"}, log_path=tmp_path / "fn.log"
    ).start()
    try:
        deadline = time.monotonic() + 60
        while True:  # liveness answers while the "model" is still loading
            try:
                health = httpx.get(proc.url + "/_/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, proc.log_tail()
                time.sleep(0.05)
        assert health.status_code == 200 and health.json()["status"] == "starting"
        assert httpx.get(proc.url + "/_/ready", timeout=1).status_code == 503
        early = post(proc, body())  # arrives during init: waits, then runs
        assert early.status_code == 200, early.text
        assert early.json()["metrics"]["process_init_s"] >= 3
        assert httpx.get(proc.url + "/_/ready", timeout=1).status_code == 200
    finally:
        proc.stop()


def test_invoke_returns_typed_result_metrics_and_duration_header(sample: FunctionProcess) -> None:
    response = post(sample, body(fanout=3))
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert data["outputs"] == {
        "mode": "echo",
        "fanout": 3,
        "uri": None,
        "size": None,
        "mmapped": None,
        "frozen": None,
        "arrival": None,
    }
    metrics = data["metrics"]
    assert metrics["function"] == "sample" and metrics["pid"] == sample.proc.pid
    assert metrics["wall_s"] >= 0 and metrics["peak_rss_bytes"] > 10 << 20
    assert float(response.headers["X-Duration-Seconds"]) >= 0


def test_cold_start_is_the_first_invocation_the_process_started(
    s3_server: Any, tmp_path: Path
) -> None:
    proc = start(s3_server, tmp_path, max_inflight="4")
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: post(proc, body()).json(), range(4)))
        flags = sorted(r["metrics"]["cold_start"] for r in results)
        assert flags == [False, False, False, True]
        assert sorted(r["metrics"]["invocation"] for r in results) == [1, 2, 3, 4]
        assert all(r["metrics"]["process_init_s"] > 0 for r in results)
    finally:
        proc.stop()


def test_timeout_answers_504_and_kills_the_child(sample: FunctionProcess) -> None:
    started = time.monotonic()
    response = post(sample, body("child", seconds=30))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert time.monotonic() - started < 5
    time.sleep(0.5)
    children = psutil.Process(sample.proc.pid).children(recursive=True)
    assert not [c for c in children if c.name() == "sleep"], "the timed-out child still runs"
    # The slot came back: the function serves again.
    assert post(sample, body()).status_code == 200


def test_timeout_stops_python_work_and_frees_the_slot(sample: FunctionProcess) -> None:
    assert post(sample, body("python", seconds=30)).status_code == 504
    time.sleep(0.2)
    assert post(sample, body()).status_code == 200


def test_caller_deadline_header_shortens_the_budget(sample: FunctionProcess) -> None:
    started = time.monotonic()
    response = post(sample, body("child", seconds=10), headers={"X-Timeout-Seconds": "0.5"})
    assert response.status_code == 504
    assert time.monotonic() - started < 1.8


@pytest.mark.parametrize(
    ("sent", "seen"),
    [("1700000000.250000", 1700000000.25), (None, None), ("soon", None), ("-3", None)],
)
def test_the_handler_sees_the_request_arrival_header(
    sample: FunctionProcess, sent: str | None, seen: float | None
) -> None:
    # The orchestrator stamps its stage calls with it (one request, one rank at the gateway).
    headers = {} if sent is None else {"X-Vsearch-Request-Arrival": sent}
    response = post(sample, body("arrival"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"]["arrival"] == seen


def test_max_inflight_answers_429_when_full(s3_server: Any, tmp_path: Path) -> None:
    proc = start(s3_server, tmp_path, max_inflight="1")
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = pool.submit(post, proc, body("child", seconds=1.5))
            time.sleep(0.4)
            refused = post(proc, body())
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "overloaded"
            assert slow.result().status_code == 200
        assert post(proc, body()).status_code == 200
    finally:
        proc.stop()


def test_max_queued_calls_wait_for_a_slot_and_the_next_one_is_refused(
    s3_server: Any, tmp_path: Path
) -> None:
    # CE's gateway queues no synchronous call: with max_queued the replica holds a few itself.
    proc = start(s3_server, tmp_path, max_inflight="1", max_queued="1")
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = pool.submit(post, proc, body("child", seconds=1.0))
            time.sleep(0.3)
            queued = pool.submit(post, proc, body())
            time.sleep(0.3)
            refused = post(proc, body())
            assert refused.status_code == 429
            assert "1 calls already wait" in refused.json()["error"]["message"]
            assert slow.result().status_code == 200
            answer = queued.result()
            # It waited for the slow call's slot, then ran.
            assert answer.status_code == 200, answer.text
        assert post(proc, body()).status_code == 200
    finally:
        proc.stop()


def test_queued_calls_get_the_slot_first_come_first_served(s3_server: Any, tmp_path: Path) -> None:
    # B waits longer than C, and across the runtime's old 0.5 s re-wait (which put B behind C).
    proc = start(s3_server, tmp_path, max_inflight="1", max_queued="2")
    finished: dict[str, float] = {}

    def timed(name: str, payload: dict[str, Any]) -> httpx.Response:
        response = post(proc, payload)
        finished[name] = time.monotonic()
        return response

    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = pool.submit(timed, "A", body("child", seconds=1.25))
            time.sleep(0.1)
            first = pool.submit(timed, "B", body("child", seconds=0.4))
            time.sleep(0.2)
            second = pool.submit(timed, "C", body("child", seconds=0.4))
            answers = [f.result() for f in (slow, first, second)]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert finished["A"] < finished["B"] < finished["C"], finished
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("not json", 400, "bad_json"),
        ({"request_id": "../etc", "input": {}}, 400, "invalid_request"),
        ({"request_id": "ok-id", "input": {}, "unknown": 1}, 400, "invalid_request"),
        ({"request_id": "ok-id", "input": {}, "config": {"mode": "nope"}}, 400, "invalid_request"),
    ],
)
def test_malformed_requests_get_400(
    sample: FunctionProcess, payload: Any, status: int, code: str
) -> None:
    if isinstance(payload, str):
        response = httpx.post(sample.url + "/", content=payload, timeout=10)
    else:
        response = post(sample, payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_oversize_body_gets_413(sample: FunctionProcess) -> None:
    response = httpx.post(sample.url + "/", content=b"x" * (2 << 20), timeout=10)
    assert response.status_code == 413


def test_crash_is_a_500_without_internals_and_bad_input_a_422(sample: FunctionProcess) -> None:
    crashed = post(sample, body("crash"))
    assert crashed.status_code == 500
    assert "secret internals" not in crashed.text and "Traceback" not in crashed.text
    bad = post(sample, body("bad"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "not_media"
    assert post(sample, body()).status_code == 200


def test_claim_check_roundtrip_and_bad_keys(sample: FunctionProcess, s3_server: Any) -> None:
    client = s3_server.client()
    key = f"uploads/{uuid.uuid4().hex[:8]}/in.bin"
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"claim check" * 100)
    payload = body("copy", input={"source": f"s3://{s3_server.bucket}/{key}"})
    response = post(sample, payload)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["outputs"]["uri"] == (
        f"s3://{s3_server.bucket}/requests/{payload['request_id']}/sample/copy.bin"
    )
    assert out["metrics"]["bytes_downloaded"] == 1100 == out["metrics"]["bytes_uploaded"]
    stored = client.get_object(
        Bucket=s3_server.bucket, Key=f"requests/{payload['request_id']}/sample/copy.bin"
    )
    assert stored["Body"].read() == b"claim check" * 100

    for source, status in [
        (f"s3://{s3_server.bucket}/uploads/none/missing.bin", 404),
        (f"s3://other-bucket/{key}", 400),
        (f"s3://{s3_server.bucket}/uploads/../secret", 400),
        ("/etc/passwd", 400),
        ("http://127.0.0.1:1/x", 400),
    ]:
        response = post(sample, body("copy", input={"source": source}))
        assert response.status_code == status, (source, response.text)
