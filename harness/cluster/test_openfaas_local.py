"""The gateway and our faas-provider as host processes against an API server of our own.

etcd and kube-apiserver run on free loopback ports (no node, no controller-manager: objects
are stored, nothing schedules). A function is deployed through the gateway's REST API with the
body harness/backends/kind_manifests.py renders, and the Deployment the provider made must hold
every field of the Deployment kind_manifests predicts (the API server adds defaults around
them). Then list, scale to 0, and delete, all through the gateway with its basic auth.

Prometheus is the built one (./vsearch platform build prometheus), scraping the gateway's
metrics port: the gateway's listing asks it for invocation counts and panics without an answer
(gateway/metrics/add_metrics.go mixIn), see manifests/README.md.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.backends import kind_manifests as km
from harness.cluster import builder
from harness.functions import load

pytestmark = pytest.mark.slow
# start order
NEEDED = ("etcd", "kube-apiserver", "prometheus", "faas-provider", "openfaas-gateway")
GATEWAY = "http://127.0.0.1:8080"  # the gateway's port is hard-coded (gateway/main.go)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _host_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent: picks the outgoing interface
        return str(s.getsockname()[0])


@dataclass
class Api:
    url: str
    token: str

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed, loopback
        try:
            with urllib.request.urlopen(req, context=context, timeout=10) as resp:
                raw = resp.read()
                is_json = resp.headers.get_content_type() == "application/json"
                return resp.status, json.loads(raw) if is_json else raw.decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


def _gateway(
    method: str, path: str, auth: str, body: object = None, base: str = GATEWAY
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def _contains(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``actual`` lacks or differs from ``expected`` (dicts: superset; lists: same length)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not a mapping"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                if value in (False, 0, "", [], {}):
                    continue  # the API server omits zero values (readOnly: false)
                out.append(f"{where}.{key}: missing")
            elif key == "items" and isinstance(value, list):
                # A secret projection's key order: faas-netes ranges over a Go map (random).
                by_key = sorted(actual[key], key=str)
                out += _contains(by_key, sorted(value, key=str), f"{where}.{key}")
            else:
                out += _contains(actual[key], value, f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual!r} != {expected!r}"]
        return [
            m
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for m in _contains(a, e, f"{where}[{i}]")
        ]
    return [] if actual == expected else [f"{where}: {actual!r} != {expected!r}"]


def _prometheus_config(path: Path) -> None:
    """manifests/openfaas/local/prometheus.yaml's gateway job, with a static target: no pods."""
    path.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "openfaas-pods", "scrape_interval": "1s",
                            "static_configs": [{"targets": ["127.0.0.1:8082"],
                                                "labels": {"app": "gateway"}}]}],
    }))  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str, str, int]]:
    binaries = {name: builder.cached(name) for name in NEEDED}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        pytest.skip(f"not built: {missing} (./vsearch platform build {' '.join(missing)})")
    if _port_busy(8080) or _port_busy(8082):
        pytest.skip("127.0.0.1:8080 or :8082 is taken; the gateway's ports are hard-coded")
    d = tmp_path_factory.mktemp("openfaas-local")
    token = secrets.token_urlsafe(32)
    (d / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out",
                    str(d / "sa.pub")], check=True, capture_output=True)  # fmt: skip
    client, peer, api_port, provider_port, prometheus_port = (_free_port() for _ in range(5))
    _prometheus_config(d / "prometheus.yml")
    auth_dir = d / "basic-auth"
    auth_dir.mkdir()
    password = secrets.token_urlsafe(24)
    (auth_dir / "basic-auth-user").write_text("admin")
    (auth_dir / "basic-auth-password").write_text(password)
    kubeconfig = d / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {
            "server": f"https://127.0.0.1:{api_port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }))  # fmt: skip
    values = km.load_values().get("functions") or {}
    commands = {
        "etcd": [
            str(binaries["etcd"]), "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
        ],
        "kube-apiserver": [
            str(binaries["kube-apiserver"]), f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1", f"--advertise-address={_host_ip()}",
            f"--secure-port={api_port}", f"--cert-dir={d / 'certs'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--token-auth-file={d / 'tokens.csv'}", "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.96.0.0/24",
        ],
        "prometheus": [
            str(binaries["prometheus"]), f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        "faas-provider": [str(binaries["faas-provider"])],
        "openfaas-gateway": [str(binaries["openfaas-gateway"])],
    }  # fmt: skip
    env = {
        "faas-provider": {
            "KUBECONFIG": str(kubeconfig), "port": str(provider_port),
            "function_namespace": km.FUNCTION_NAMESPACE, "basic_auth": "true",
            "secret_mount_path": str(auth_dir),
            "http_probe": str(bool(values.get("httpProbe", False))).lower(),
            "set_nonroot_user": str(bool(values.get("setNonRootUser", False))).lower(),
        },
        "openfaas-gateway": {
            "functions_provider_url": f"http://127.0.0.1:{provider_port}/",
            "basic_auth": "true", "secret_mount_path": str(auth_dir),
            "direct_functions": "false", "function_namespace": km.FUNCTION_NAMESPACE,
            "faas_prometheus_host": "127.0.0.1", "faas_prometheus_port": str(prometheus_port),
        },
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    api = Api(f"https://127.0.0.1:{api_port}", token)
    checks = {
        "etcd": lambda: urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2),
        "kube-apiserver": lambda: api.call("GET", "/readyz")[0] == 200,
        "prometheus": lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{prometheus_port}/-/ready", timeout=2),
        "faas-provider": lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{provider_port}/healthz", timeout=2),
        "openfaas-gateway": lambda: urllib.request.urlopen(f"{GATEWAY}/healthz", timeout=2),
    }  # fmt: skip
    try:
        for name in NEEDED:
            log = d / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    commands[name], stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, **env.get(name, {})}, cwd=d,
                )  # fmt: skip
            procs.append(proc)
            _wait(name, checks[name], proc, log, 90)
            if name == "kube-apiserver":
                namespace = {"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": km.FUNCTION_NAMESPACE}}  # fmt: skip
                assert api.call("POST", "/api/v1/namespaces", namespace)[0] == 201
                for secret, keys in km.SECRET_KEYS.items():
                    body = {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": secret, "namespace": km.FUNCTION_NAMESPACE},
                            "stringData": {k: secrets.token_hex(8) for k in keys}}  # fmt: skip
                    path = f"/api/v1/namespaces/{km.FUNCTION_NAMESPACE}/secrets"
                    assert api.call("POST", path, body)[0] == 201
        yield api, f"admin:{password}", f"http://127.0.0.1:{provider_port}", prometheus_port
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_gateway_deploys_lists_scales_and_deletes(stack: tuple[Api, str, str, int]) -> None:
    api, auth, provider, prometheus_port = stack
    decls = load().functions
    decl = next(d for d in decls if d.name == "orchestrator")  # two secrets, read-only root
    images = km.ImageRefs("t1", "127.0.0.1:5001", {d.name: "sha256:" + "0" * 64 for d in decls})
    fn = km.deployment_request(decl, images, decls)
    apps = f"/apis/apps/v1/namespaces/{km.FUNCTION_NAMESPACE}/deployments"

    assert _gateway("POST", "/system/functions", "admin:wrong", fn.request)[0] == 401
    status, body = _gateway("POST", "/system/functions", auth, fn.request)
    assert status == 202, body
    code, made = api.call("GET", f"{apps}/{decl.name}")
    assert code == 200, made
    differences = _contains(made, km.expected_deployment(fn))
    assert not differences, "\n".join(differences)
    code, service = api.call(
        "GET", f"/api/v1/namespaces/{km.FUNCTION_NAMESPACE}/services/{decl.name}"
    )
    assert code == 200 and service["spec"]["ports"][0]["port"] == km.RUNTIME_PORT, service
    assert service["spec"]["selector"] == {"faas_function": decl.name}

    # The listing mixes in Prometheus' counts: it answers only when Prometheus does.
    status, body = _gateway("GET", "/system/functions", auth)
    assert status == 200, body
    listed = {f["name"]: f for f in json.loads(body)}
    assert listed[decl.name]["replicas"] == fn.min_replicas
    assert listed[decl.name]["image"] == fn.image
    # No count: nothing runs it (no node here); faas-provider types omit a zero count.
    assert listed[decl.name].get("invocationCount", 0) == 0
    # ... and that Prometheus scrapes the gateway's metrics.
    query = urllib.parse.quote('up{job="openfaas-pods"}')
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}", timeout=5
        ) as answer:
            result = json.load(answer)["data"]["result"]
        if result and result[0]["value"][1] == "1":
            break
        assert time.monotonic() < deadline, f"the gateway is not scraped: {result}"
        time.sleep(0.5)

    scale = f"/system/scale-function/{decl.name}"

    def replicas_after(n: int, base: str = GATEWAY) -> int:
        request = {"serviceName": decl.name, "replicas": n}
        status, body = _gateway("POST", scale, auth, request, base)
        assert status in (200, 202), body
        return int(api.call("GET", f"{apps}/{decl.name}")[1]["spec"]["replicas"])

    assert replicas_after(3) == 3
    # The CE gateway clamps every scale request to 1..5 (gateway/scaling/ranges.go,
    # MakeHorizontalScalingHandler): 0 through the gateway is 1 ...
    assert replicas_after(0) == 1
    # ... and the provider itself (localhost:8081 in the pod) scales to 0.
    assert replicas_after(0, provider) == 0

    status, body = _gateway("DELETE", "/system/functions", auth, {"functionName": decl.name})
    assert status in (200, 202), body
    assert api.call("GET", f"{apps}/{decl.name}")[0] == 404
    assert _gateway("GET", f"/system/function/{decl.name}", auth)[0] == 404
