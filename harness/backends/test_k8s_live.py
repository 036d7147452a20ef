"""The live cluster the environment names (`./vsearch test --cluster`): OpenFaaS and MinIO
answer, and the versions results.json will carry are real. Skipped, with the reason, when
VSEARCH_BACKEND does not name a usable cluster (the default tier never has one).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from harness.backends import from_env
from harness.backends.cluster.versions import async_versions
from harness.backends.k8s import K8sBackend


@pytest.fixture(scope="module")
def live() -> Iterator[K8sBackend]:
    reason = from_env.cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    backend = K8sBackend(**from_env.k8s_options())
    backend.attach()
    try:
        yield backend
    finally:
        backend.keep_cluster = True  # only this process's port-forwards
        backend.teardown()


def test_live_cluster_versions_are_measured(live: K8sBackend) -> None:
    versions = live.platform_versions()
    k8s = versions["kubernetes"]
    assert str(k8s.get("gitVersion", "")).startswith("v"), versions
    # An unstamped build (go build of the module without -X) answers these placeholders.
    assert k8s.get("gitCommit") not in (None, "", "$Format:%H$"), versions
    assert not str(k8s.get("buildDate", "")).startswith("1970"), versions
    assert versions["openfaas"].get("gateway", {}).get("release"), versions
    assert versions["openfaas"].get("provider", {}).get("name"), versions
    assert versions["minio"].get("image_id") or versions["minio"].get("image"), versions


def test_live_functions_answer_through_the_gateway(live: K8sBackend) -> None:
    names = {s["name"] for s in live.api.functions()}
    assert names, "no functions deployed: run `./vsearch up --backend k8s` first"
    assert live.api.healthy()


class _Callbacks(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.got.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _outgoing_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent: picks the outgoing interface
        return str(s.getsockname()[0])


def test_live_async_invocation_is_queued_and_the_queue_worker_invokes_the_function(
    live: K8sBackend,
) -> None:
    queue = async_versions(live)
    if not queue["enabled"]:
        pytest.skip(f"no NATS and queue-worker ready in the gateway's namespace: {queue}")
    names = sorted(s["name"] for s in live.api.functions())
    assert names, "no functions deployed: run `./vsearch up --backend k8s` first"
    name = "search" if "search" in names else names[0]
    # A body every function refuses at once (no work, no storage): the queue-worker's callback
    # must carry what the same call answers synchronously.
    body = b"{}"
    got: list[tuple[dict[str, str], bytes]] = []
    handler = type("Callbacks", (_Callbacks,), {"got": got})
    server = HTTPServer(("0.0.0.0", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    callback = f"http://{_outgoing_ip()}:{server.server_address[1]}/done"
    try:
        with httpx.Client(base_url=live.gateway_url, trust_env=False, timeout=30.0) as http:
            sync = http.post(f"/function/{name}", content=body)
            queued = http.post(
                f"/async-function/{name}", content=body, headers={"X-Callback-Url": callback}
            )
        assert queued.status_code == 202, queued.text
        call_id = queued.headers["X-Call-Id"]
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.shutdown()
        server.server_close()
    assert got, (
        f"no callback at {callback} within 60 s: the queue-worker's log says what it did "
        "(kubectl -n openfaas logs deploy/queue-worker); pods must reach this host"
    )
    headers, answer = got[0]
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Name"] == name
    assert int(headers["X-Function-Status"]) == sync.status_code
    assert json.loads(answer)["function"] == name == sync.json()["function"]
