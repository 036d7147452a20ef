"""The embedded platform end to end: real replica processes, real cgroups, real S3.

One platform serves the whole module (starting replicas costs ~2 s each); every test uses its
own function so tests cannot disturb each other's replicas.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from base.contracts import REQUEST_ARRIVAL_HEADER
from harness.embedded.cgroups import detect
from harness.embedded.gateway import GatewaySettings, is_loopback_url
from harness.embedded.platform import EmbeddedPlatform
from harness.embedded.priority import RANK_SHARES, SERVICE_SHARES
from harness.embedded.replicas import PoolSettings
from harness.functions import FunctionDeclaration

PROBE = "harness.embedded.testing_functions.probe"
SPEC = Path("/work/shared/specs/openfaas-gateway.openapi.yml")
MiB = 1 << 20


def _probe(name: str, **fields: Any) -> FunctionDeclaration:
    return FunctionDeclaration(
        name=name,
        module=PROBE,
        **{"exec_timeout": "20s", "memory_limit": "256Mi", "max_replicas": 1, **fields},
    )


DECLARATIONS = [
    _probe("echo", max_inflight=4, max_replicas=2, env={"PROBE_FLAVOUR": "plain"}),
    _probe("slow", max_inflight=2),
    _probe("napper", scale_to_zero_idle=1.0),
    _probe("scaler", max_replicas=3),
    _probe("hog", memory_limit="64Mi"),
    _probe("fragile"),
    # Only test_reset_window uses it: a fresh process gives its first allocation back to the OS.
    _probe("meter"),
    # Only test_the_oldest_request_is_served_first uses it: one slot, so calls queue.
    _probe("ager"),
]


@pytest.fixture(scope="module")
def platform(
    s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPlatform]:
    settings = GatewaySettings(pool=PoolSettings(queue_limit=2))
    state_dir = tmp_path_factory.mktemp("platform")
    with EmbeddedPlatform(state_dir, DECLARATIONS, s3=s3_server.env(), settings=settings) as p:
        yield p


@pytest.fixture(scope="module")
def http(platform: EmbeddedPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=60) as client:
        yield client


def _body(**input: Any) -> dict[str, Any]:
    return {"request_id": f"t-{uuid.uuid4().hex[:10]}", "input": input}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    outputs: dict[str, Any] = response.json()["outputs"]
    return outputs


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    error: dict[str, Any] = body["error"]
    return error


# -- proxying ------------------------------------------------------------------------------------


def test_a_call_is_proxied_to_a_replica(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    response = http.post("/function/echo", json=_body(message="hello gateway"))

    out = _ok(response)
    assert out["message"] == "hello gateway"
    replica = response.headers["X-Vsearch-Replica"]
    assert out["replica"] == replica  # REPLICA_NAME reached the process
    assert replica in platform.client.replica_names("echo")
    assert out["gateway_url"] == platform.gateway_url  # functions can call other functions
    assert float(response.headers["X-Duration-Seconds"]) > 0  # the function's own header
    assert float(response.headers["X-Vsearch-Queue-Seconds"]) < 1
    assert "X-Vsearch-Cold-Start-Seconds" not in response.headers
    assert response.headers["X-Call-Id"]
    assert response.headers.get_list("date") and len(response.headers.get_list("date")) == 1


def test_paths_queries_and_namespaced_names_reach_the_function(http: httpx.Client) -> None:
    health = http.get("/function/echo/_/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "function": "probe"}
    namespaced = http.post("/function/echo.openfaas-fn", json=_body(message="ns"))
    assert _ok(namespaced)["message"] == "ns"
    call_id = "my-call-42"
    echoed = http.post("/function/echo", json=_body(message="id"), headers={"X-Call-Id": call_id})
    assert echoed.headers["X-Call-Id"] == call_id


def test_the_callers_deadline_header_reaches_the_function(http: httpx.Client) -> None:
    started = time.monotonic()
    response = http.post(
        "/function/echo", json=_body(sleep_s=5), headers={"X-Timeout-Seconds": "0.5"}
    )
    assert _error(response, 504)["code"] == "timeout"  # the function's own 504
    assert time.monotonic() - started < 3


def test_the_gateway_forwards_the_arrival_it_ranks_a_call_by(http: httpx.Client) -> None:
    # The orchestrator passes the stamp on to its stage calls: its own call and theirs then
    # rank as one request (priority.py), not as two a few milliseconds apart.
    before = time.time()
    unstamped = _ok(http.post("/function/echo", json=_body(message="new")))
    assert before <= unstamped["request_arrival"] <= time.time()
    stamped = http.post(
        "/function/echo",
        json=_body(message="old"),
        headers={REQUEST_ARRIVAL_HEADER: "1700000000.500000"},
    )
    assert _ok(stamped)["request_arrival"] == 1700000000.5
    # An unusable stamp is ranked as arriving now, and the function is told that same time.
    before = time.time()
    garbled = http.post(
        "/function/echo", json=_body(message="bad"), headers={REQUEST_ARRIVAL_HEADER: "soon"}
    )
    assert before <= _ok(garbled)["request_arrival"] <= time.time()


def test_unknown_function_is_a_json_404(http: httpx.Client) -> None:
    error = _error(http.post("/function/nope", json=_body()), 404)
    assert error["code"] == "function_not_found" and "nope" in error["message"]
    assert _error(http.get("/nowhere"), 404)["code"] == "not_found"


def test_invalid_request_is_the_functions_own_400(http: httpx.Client) -> None:
    response = http.post("/function/echo", content=b"not json")
    assert _error(response, 400)["code"] == "bad_json"


# -- capacity ------------------------------------------------------------------------------------


def test_beyond_inflight_and_queue_capacity_calls_get_429(http: httpx.Client) -> None:
    # slow: 1 replica x max_inflight 2, queue 2 -> 4 calls accepted, the other 2 refused.
    def call(_: int) -> httpx.Response:
        return http.post("/function/slow", json=_body(sleep_s=1.5), timeout=30)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(call, range(6)))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 200, 429, 429], [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 429):
        assert _error(refused, 429)["code"] == "overloaded"
        assert "queued" in refused.json()["error"]["message"]
    waits = sorted(float(r.headers["X-Vsearch-Queue-Seconds"]) for r in responses if r.is_success)
    assert waits[0] < 0.5 and waits[1] < 0.5  # ran at once
    assert waits[2] > 1.0 and waits[3] > 1.0  # waited for a slot, then ran


def test_the_oldest_request_is_served_first(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    """Queued calls get the slot by their request's arrival (the orchestrator's header), and the
    replica working for the oldest request has the highest CPU weight (priority.py)."""
    support = detect()
    cpu_base = support.bases.get("cpu") if support.version == 1 else None
    finished: dict[str, float] = {}

    def call(label: str, arrival: float, sleep_s: float) -> httpx.Response:
        response = http.post(
            "/function/ager",
            json=_body(sleep_s=sleep_s),
            headers={REQUEST_ARRIVAL_HEADER: f"{arrival:.6f}"},
            timeout=30,
        )
        finished[label] = time.monotonic()
        return response

    now = time.time()
    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(call, "busy", now - 100, 3.0)
        time.sleep(1.0)
        if cpu_base is not None:
            (group,) = (cpu_base / platform.run).glob("ager-[0-9]*/")  # not the zygote's
            assert (group / "cpu.shares").read_text().strip() == str(RANK_SHARES[0])
        younger = pool.submit(call, "younger", now - 10, 0.5)
        time.sleep(0.3)
        older = pool.submit(call, "older", now - 20, 0.5)
        responses = [f.result() for f in (busy, younger, older)]
    for response in responses:
        _ok(response)
    assert finished["older"] < finished["younger"], finished
    if cpu_base is not None:
        (group,) = (cpu_base / platform.run).glob("ager-[0-9]*/")
        assert (group / "cpu.shares").read_text().strip() == "1024", "idle: back to the default"


def test_the_gateway_and_the_zygotes_sit_in_cpu_groups_of_their_own(
    platform: EmbeddedPlatform, http: httpx.Client
) -> None:
    """The platform's process (the gateway) weighs as the oldest request's replicas; a zygote it
    started does not inherit that weight: it joined a group of its own."""
    support = detect()
    if support.version != 1 or "cpu" not in support.bases:
        pytest.skip(f"no writable v1 cpu hierarchy here ({support.reason})")
    services = support.bases["cpu"] / platform.run / "services"
    assert (services / "cpu.shares").read_text().strip() == str(SERVICE_SHARES)
    assert os.getpid() in _procs(services), "the gateway's process is weighted"
    _ok(http.post("/function/echo", json=_body(message="zygote?")))
    zygote = platform.function("echo")["vsearch"]["zygote"]["pid"]
    assert zygote not in _procs(services)
    assert zygote in _procs(support.bases["cpu"] / platform.run / "echo-z1")


def _procs(group: Path) -> set[int]:
    return {int(p) for p in (group / "cgroup.procs").read_text().split()}


# -- scaling and cold starts ---------------------------------------------------------------------


def test_scale_to_zero_after_idle_then_a_real_cold_start(
    platform: EmbeddedPlatform, http: httpx.Client
) -> None:
    first = _ok(http.post("/function/napper", json=_body(message="warm")))
    platform.client.wait_replicas("napper", 0, timeout_s=15)  # idle 1 s -> zero replicas
    assert platform.ready_replicas("napper") == 0
    assert platform.events(type="scaled_to_zero", function="napper")

    response = http.post("/function/napper", json=_body(message="cold"))

    out = _ok(response)
    cold_s = float(response.headers["X-Vsearch-Cold-Start-Seconds"])
    # A replica really started: forked from the zygote (ms) or a fresh interpreter (> 0.1 s).
    assert cold_s > 0
    assert float(response.headers["X-Vsearch-Queue-Seconds"]) >= cold_s
    assert out["pid"] != first["pid"]
    colds = platform.events(type="cold_start", function="napper")
    assert colds and colds[-1].replica == response.headers["X-Vsearch-Replica"]
    assert colds[-1].seconds == pytest.approx(cold_s, abs=0.01)


def test_scale_api_allows_zero_and_scales_back_up(platform: EmbeddedPlatform) -> None:
    platform.scale("scaler", 3)
    assert platform.ready_replicas("scaler") == 3
    assert platform.function("scaler")["replicas"] == 3

    platform.scale("scaler", 0)
    status = platform.function("scaler")
    assert status["availableReplicas"] == 0 and status["vsearch"]["replicas"] == []

    # From zero, a call starts a replica and waits for it.
    response = platform.invoke("scaler", _body(message="up again"))
    assert _ok(response)["message"] == "up again"
    assert float(response.headers["X-Vsearch-Cold-Start-Seconds"]) > 0
    assert platform.ready_replicas("scaler") == 1


def test_scale_request_is_validated(platform: EmbeddedPlatform) -> None:
    auth = platform.auth.as_tuple()
    url = f"{platform.gateway_url}/system/scale-function"
    assert httpx.post(f"{url}/scaler", json={"replicas": -1}, auth=auth).status_code == 400
    assert httpx.post(f"{url}/nope", json={"replicas": 1}, auth=auth).status_code == 404
    mismatch = {"serviceName": "echo", "replicas": 1}
    assert httpx.post(f"{url}/scaler", json=mismatch, auth=auth).status_code == 400


# -- failures ------------------------------------------------------------------------------------


def test_an_oom_kill_is_a_502_an_event_and_a_replacement(
    platform: EmbeddedPlatform, http: httpx.Client
) -> None:
    if not platform.limits_enforced:
        pytest.skip(f"memory limits not enforced here: {platform.limits_reason}")
    before = _ok(http.post("/function/hog", json=_body(message="small", allocate_mb=8)))
    since = platform.client.events()[-1].seq

    started = time.monotonic()
    response = http.post("/function/hog", json=_body(allocate_mb=200))
    took = time.monotonic() - started

    error = _error(response, 502)
    assert error["code"] == "oom_killed"
    replica = response.headers["X-Vsearch-Replica"]
    assert "hog" in error["message"] and replica in error["message"]
    assert "64 MiB" in error["message"]
    assert took < 5
    ooms = platform.events(since=since, type="oom_kill", function="hog")
    assert len(ooms) == 1 and ooms[0].replica == replica
    assert ooms[0].limit_bytes == 64 * MiB
    assert ooms[0].peak_bytes is not None and ooms[0].peak_bytes >= 0.9 * 64 * MiB

    platform.client.wait_replicas("hog", 1, timeout_s=30)  # min_replicas kept
    after = _ok(http.post("/function/hog", json=_body(message="fits again", allocate_mb=8)))
    assert after["message"] == "fits again"
    assert after["pid"] != before["pid"]
    assert platform.function("hog")["vsearch"]["oom_kills"] >= 1


def test_a_replica_killed_mid_call_is_a_502_and_is_replaced(
    platform: EmbeddedPlatform, http: httpx.Client
) -> None:
    before = _ok(http.post("/function/fragile", json=_body(message="before")))
    assert platform.function("fragile")["vsearch"]["replicas"][0]["newest_call_s"] is None
    # Between calls, a busy-only kill refuses (the fault tests' kill must land in a call).
    with pytest.raises(httpx.HTTPStatusError) as idle:
        platform.kill_replica("fragile", busy_only=True)
    assert idle.value.response.status_code == 409
    results: queue.Queue[httpx.Response] = queue.Queue()
    caller = threading.Thread(
        target=lambda: results.put(http.post("/function/fragile", json=_body(sleep_s=10)))
    )
    caller.start()
    deadline = time.monotonic() + 10
    while platform.function("fragile")["vsearch"]["inflight"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The call's age lets a fault test kill a call that has just begun, not one answering.
    first = platform.function("fragile")["vsearch"]["replicas"][0]["newest_call_s"]
    time.sleep(0.2)
    later = platform.function("fragile")["vsearch"]["replicas"][0]["newest_call_s"]
    assert 0 <= first < later < 10, (first, later)

    killed = platform.kill_replica("fragile", busy_only=True)
    caller.join(15)

    response = results.get_nowait()
    error = _error(response, 502)
    assert error["code"] == "replica_died"
    assert "fragile" in error["message"] and killed["replica"] in error["message"]
    assert "SIGKILL" in error["message"]
    assert killed["pid"] == before["pid"]
    platform.client.wait_replicas("fragile", 1, timeout_s=30)
    after = _ok(http.post("/function/fragile", json=_body(message="after")))
    assert after["pid"] != before["pid"]
    died = platform.events(type="replica_died", function="fragile")
    assert died and died[-1].replica == killed["replica"] and died[-1].exit_code == -9


def test_a_crashing_replica_is_replaced(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    response = http.post("/function/fragile", json=_body(exit_code=3))
    error = _error(response, 502)
    assert error["code"] == "replica_died" and "exit code 3" in error["message"]
    platform.client.wait_replicas("fragile", 1, timeout_s=30)
    assert _ok(http.post("/function/fragile", json=_body(message="ok")))["message"] == "ok"


# -- async ---------------------------------------------------------------------------------------


class _Callbacks(BaseHTTPRequestHandler):
    received: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.put((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def callback_url() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    handler = type("Handler", (_Callbacks,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/done", received
    server.shutdown()
    server.server_close()


def test_async_call_posts_its_result_to_a_loopback_callback(
    http: httpx.Client, callback_url: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = callback_url
    response = http.post(
        "/async-function/echo",
        json=_body(message="later", sleep_s=0.2),
        headers={"X-Callback-Url": url},
    )
    assert response.status_code == 202
    call_id = response.headers["X-Call-Id"]

    headers, body = received.get(timeout=15)

    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "echo"
    assert json.loads(body)["outputs"]["message"] == "later"


def test_async_callback_must_be_loopback(http: httpx.Client) -> None:
    for url in ("http://example.com/cb", "http://10.0.0.1/cb", "file:///etc/passwd", "nonsense"):
        response = http.post("/async-function/echo", json=_body(), headers={"X-Callback-Url": url})
        assert _error(response, 400)["code"] == "callback_not_loopback", url
    assert is_loopback_url("http://localhost:8080/x") and is_loopback_url("http://[::1]:1/")
    assert not is_loopback_url("http://127.0.0.1.example.com/")


# -- system API ----------------------------------------------------------------------------------


def test_system_routes_need_basic_auth(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    paths = ["/system/functions", "/system/function/echo", "/system/info", "/system/events"]
    for path in [*paths, "/system/not-a-route"]:
        assert http.get(path).status_code == 401, path
        assert http.get(path, auth=("admin", "wrong")).status_code == 401, path
        assert http.get(path, auth=("root", platform.auth.password)).status_code == 401, path
    assert http.post("/system/scale-function/echo", json={"replicas": 0}).status_code == 401
    assert http.post("/system/kill-replica/echo").status_code == 401
    for path in paths:
        assert http.get(path, auth=platform.auth.as_tuple()).status_code == 200, path
    assert platform.auth.password not in repr(platform.auth)
    # Function calls and health stay open, as on OpenFaaS.
    assert http.get("/healthz").status_code == 200


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _resolve(spec, spec["components"]["schemas"][name])
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(_resolve(spec, part))
        return merged
    return schema


def _check(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """The subset of OpenAPI 3.0 schema rules the gateway spec uses."""
    nullable = schema.get("nullable", False)
    schema = _resolve(spec, schema)
    if value is None:
        assert nullable or schema.get("nullable", False), f"{where} is null"
        return
    kind = schema.get("type")
    if kind == "string":
        assert isinstance(value, str), where
    elif kind == "boolean":
        assert isinstance(value, bool), where
    elif kind in ("number", "integer"):
        assert isinstance(value, int | float) and not isinstance(value, bool), where
        if kind == "integer" or schema.get("format") in ("integer", "int64"):
            assert float(value).is_integer(), f"{where} is not an integer"
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(spec, schema.get("items", {}), item, f"{where}[{i}]")
    elif kind == "object" or "properties" in schema:
        assert isinstance(value, dict), where
        for name in schema.get("required", []):
            assert name in value, f"{where}.{name} is required"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                _check(spec, sub, value[name], f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                _check(spec, extra, item, f"{where}[{key}]")


def test_system_functions_matches_the_openapi_function_status(platform: EmbeddedPlatform) -> None:
    if not SPEC.exists():
        pytest.skip(f"OpenAPI spec not found at {SPEC}")
    spec = yaml.safe_load(SPEC.read_text())
    schema = spec["components"]["schemas"]["FunctionStatus"]

    functions = platform.client.functions()

    assert {f["name"] for f in functions} == {d.name for d in DECLARATIONS}
    for status in functions:
        _check(spec, schema, status, status["name"])
    echo = next(f for f in functions if f["name"] == "echo")
    assert echo["image"] == f"embedded:{PROBE}"
    assert echo["limits"]["memory"] == "256Mi"
    assert echo["envVars"] == {"PROBE_FLAVOUR": "plain"}  # declared env only, no secrets
    assert echo["invocationCount"] >= 1
    assert echo["availableReplicas"] >= 1 and echo["replicas"] >= 1
    one = platform.function("echo")
    _check(spec, schema, one, "echo")
    info = platform.client.info()
    _check(spec, spec["components"]["schemas"]["GatewayInfo"], info, "info")
    assert info["vsearch"]["limits_enforced"] == platform.limits_enforced


def test_replica_stats_come_from_the_cgroup(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    _ok(http.post("/function/echo", json=_body(allocate_mb=48)))
    deadline = time.monotonic() + 5
    while True:
        replicas = platform.function("echo")["vsearch"]["replicas"]
        if max(r["peak_memory_bytes"] for r in replicas) >= 48 * MiB:
            break
        assert time.monotonic() < deadline, replicas
        time.sleep(0.2)
    assert all(r["cpu_s"] > 0 and r["invocations"] >= 0 for r in replicas)
    assert all(r["start_s"] and r["start_s"] > 0 for r in replicas)


_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})? (?P<value>[-+]?(\d+(\.\d*)?|\.\d+)'
    r"([eE][-+]?\d+)?|[-+]?Inf|NaN)$"
)


def test_metrics_are_prometheus_text(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    _ok(http.post("/function/echo", json=_body(message="count me")))
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples.setdefault(match["name"], []).append((labels, float(match["value"])))

    for name in (
        "gateway_function_invocation_total",
        "gateway_functions_seconds",
        "gateway_service_count",
        "vsearch_replica_memory_peak_bytes",
        "vsearch_oom_kills_total",
        "vsearch_cold_starts_total",
    ):
        assert name in types, name
    assert types["gateway_functions_seconds"] == "histogram"
    ok_calls = [
        v
        for labels, v in samples["gateway_function_invocation_total"]
        if labels == {"function_name": "echo", "code": "200"}
    ]
    assert ok_calls and ok_calls[0] >= 1
    buckets = [
        (labels["le"], v)
        for labels, v in samples["gateway_functions_seconds_bucket"]
        if labels["function_name"] == "echo" and labels["code"] == "200"
    ]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
    count = next(
        v
        for labels, v in samples["gateway_functions_seconds_count"]
        if labels == {"function_name": "echo", "code": "200"}
    )
    assert counts[-1] == count
    services = {labels["function_name"]: v for labels, v in samples["gateway_service_count"]}
    assert services["echo"] >= 1


def test_events_record_replica_lifecycles(platform: EmbeddedPlatform) -> None:
    events = platform.events()
    kinds = {e.type for e in events}
    assert {"replica_started", "replica_ready"} <= kinds
    assert all(a.seq < b.seq and a.time <= b.time for a, b in itertools.pairwise(events))
    later = platform.events(since=events[-1].seq)
    assert all(e.seq > events[-1].seq for e in later)


def test_state_files_and_credentials(platform: EmbeddedPlatform) -> None:
    state = json.loads((platform.state_dir / "state.json").read_text())
    assert state["gateway_url"] == platform.gateway_url
    assert state["gateway_url"].startswith("http://127.0.0.1:")
    assert platform.auth.password not in (platform.state_dir / "state.json").read_text()
    creds_path = platform.state_dir / "credentials.json"
    assert creds_path.stat().st_mode & 0o777 == 0o600
    creds = json.loads(creds_path.read_text())
    assert creds["gateway"]["password"] == platform.auth.password
    assert creds["s3"]["S3_BUCKET"] == state["bucket"]


def test_proxy_overhead_is_small(platform: EmbeddedPlatform, http: httpx.Client) -> None:
    replica = platform.function("echo")["vsearch"]["replicas"][0]
    body = _body(message="x")
    with httpx.Client(base_url=replica["url"]) as direct:
        for client, path in ((direct, "/"), (http, "/function/echo")):
            client.post(path, json=body)  # warm the connections

        def median(client: httpx.Client, path: str) -> float:
            times = []
            for _ in range(30):
                started = time.perf_counter()
                assert client.post(path, json=body).status_code == 200
                times.append(time.perf_counter() - started)
            return sorted(times)[len(times) // 2]

        direct_s = median(direct, "/")
        gateway_s = median(http, "/function/echo")
    overhead = gateway_s - direct_s
    print(f"\nproxy overhead: direct {direct_s * 1e3:.2f} ms, gateway {gateway_s * 1e3:.2f} ms")
    assert overhead < 0.05


def test_reset_window_starts_totals_and_peaks_afresh(
    platform: EmbeddedPlatform, http: httpx.Client
) -> None:
    """What lets one deploy serve several regimes: each regime's peak is its own.

    Last in the module: it zeroes the run totals the tests above read.
    """

    def meter() -> dict[str, Any]:
        return platform.function("meter")["vsearch"]

    def peak_reaches(n_bytes: int) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while (status := meter())["peak_memory_bytes"] < n_bytes:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        return status

    # The process's first large allocation is mmapped, so it is returned when freed.
    _ok(http.post("/function/meter", json=_body(allocate_mb=96)))
    before = peak_reaches(96 * MiB)
    assert before["replica_starts"] >= 1

    answer = platform.client.reset_window()
    assert "meter" in answer["reset"]
    after = meter()
    current = max(r["memory_bytes"] for r in after["replicas"])
    print(
        f"\nmeter peak {before['peak_memory_bytes'] / MiB:.1f} MiB before the reset, "
        f"{after['peak_memory_bytes'] / MiB:.1f} after (current {current / MiB:.1f})"
    )
    # The high-water mark starts again at the current usage, without the freed 96 MiB.
    assert after["peak_memory_bytes"] <= current + 8 * MiB, after
    assert after["peak_memory_bytes"] < before["peak_memory_bytes"] - 64 * MiB, after
    assert after["cold_starts"] == after["replica_starts"] == after["oom_kills"] == 0
    assert {e.type for e in platform.client.events()} >= {"window_reset"}

    _ok(http.post("/function/meter", json=_body(allocate_mb=48)))
    later = peak_reaches(after["peak_memory_bytes"] + 40 * MiB)
    assert later["peak_memory_bytes"] < before["peak_memory_bytes"], "the old peak came back"
