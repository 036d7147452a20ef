"""KindBackend's command sequence against fake kind/kubectl/helm/docker/skopeo.

The fakes (harness/backends/testing/fake_cluster_tools.py) sit first on PATH, log every argv,
refuse command lines the real tools would refuse, and answer from a shared fake cluster; ``kubectl
port-forward`` serves a fake OpenFaaS CE gateway that applies CE's rules. A tiny registry HTTP
server stands in for the registry container's API (digests).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.backends import kind as kb
from harness.backends import kind_manifests as km
from harness.backends.cluster import openfaas_api, pods
from harness.backends.factory import create_backend
from harness.backends.testing import fake_cluster_tools as fake
from harness.functions import load
from harness.records import FunctionPlatform, platform_from_statuses
from harness.regimes import load_regimes

ROOT = Path(__file__).resolve().parents[2]
TAG = "t20250101"


class FakeCluster:
    """Paths and helpers of one fake world."""

    def __init__(self, tmp: Path, registry_port: int) -> None:
        self.tmp = tmp
        self.state_path = tmp / "state.json"
        self.log_path = tmp / "calls.jsonl"
        self.registry = f"localhost:{registry_port}"
        self.manifests = tmp / "manifests"
        self.workdir = tmp / "work"
        self.deployed: kb.KindBackend | None = None
        self.deploy_calls = 0

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text()))

    def update(self, **changes: Any) -> None:
        with fake.state_lock() as state:
            state.update(changes)

    def calls(self) -> list[dict[str, Any]]:
        return fake.read_log(self.log_path)

    def argvs(self, tool: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls() if c.get("tool") == tool and "argv" in c]

    def errors(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if "error" in c]

    def backend(self, **kwargs: Any) -> kb.KindBackend:
        options: dict[str, Any] = {
            "registry": self.registry,
            "image_tag": TAG,
            "workdir": self.workdir,
            "manifests_dir": self.manifests,
            "ready_timeout_s": 20.0,
        }
        options.update(kwargs)
        backend = kb.KindBackend("vsearch", **options)
        backend.forward_backoff_s = 0.05
        return backend


class _Registry(BaseHTTPRequestHandler):
    """The registry's /v2 API: digests of what the fake docker/skopeo pushed."""

    state_path: Path
    host: str

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        repo, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
        pushed = json.loads(self.state_path.read_text()).get("pushed", {})
        digest = pushed.get(f"{self.host}/{repo}:{tag}")
        assert "application/vnd.oci.image.index.v1+json" in self.headers.get("Accept", "")
        self.send_response(200 if digest else 404)
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def fake_world(tmp: Path) -> Iterator[FakeCluster]:
    """A fake cluster in ``tmp``: fake tools first on PATH, a registry API, test manifests."""
    handler = type("Registry", (_Registry,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    world = FakeCluster(tmp, port)
    handler.state_path = world.state_path
    handler.host = world.registry
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in fake.install(tmp / "bin", world.state_path, world.log_path).items():
            mp.setenv(key, value)
        # The real manifests, with the registry on the fake's port and the chart pinned to the
        # fake archive (the real chart's digest cannot be produced offline).
        shutil.copytree(ROOT / "manifests", world.manifests)
        registry = yaml.safe_load((world.manifests / "kind" / "registry.yaml").read_text())
        registry["host_port"] = port
        (world.manifests / "kind" / "registry.yaml").write_text(yaml.safe_dump(registry))
        pin_path = world.manifests / "openfaas" / "chart-pin.yaml"
        pin = yaml.safe_load(pin_path.read_text())
        pin["digest"] = "sha256:" + hashlib.sha256(fake.FAKE_CHART_BYTES).hexdigest()
        pin_path.write_text(yaml.safe_dump(pin))
        world.update(local_images=[f"{world.registry}/vsearch/{n}:{TAG}" for n in load().names])
        try:
            yield world
        finally:
            server.shutdown()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    """A fresh fake world, for tests that break or delete things."""
    with fake_world(tmp_path) as world:
        yield world


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    """One fake world deployed once for the tests that only look or regime-prepare (a deploy
    runs ~80 fake tool processes)."""
    with fake_world(tmp_path_factory.mktemp("kind-shared")) as world:
        backend = world.backend()
        backend.deploy(load().functions)
        world.deployed = backend
        world.deploy_calls = len(world.calls())
        try:
            yield world
        finally:
            backend.keep_cluster = True  # stop the port-forwards only
            backend.teardown()


@pytest.fixture
def deployed(shared: FakeCluster) -> kb.KindBackend:
    assert shared.deployed is not None
    return shared.deployed


def _milestones(calls: list[dict[str, Any]]) -> list[str]:
    """A readable trace: tool + its command words (+ the gateway's REST calls)."""
    out = []
    for c in calls:
        if c.get("tool") == "gateway":
            out.append(
                "gateway " + " ".join(k for k in c if k in ("post", "put", "scale", "refused"))
            )
            continue
        if "argv" not in c:
            continue
        words = [a for a in c["argv"] if not a.startswith("-")]
        if c["tool"] in ("kubectl", "helm"):
            # Skip the values of the global flags that precede the command.
            words = [w for w in words if not w.endswith("kubeconfig") and w != "kind-vsearch"]
        out.append(f"{c['tool']} {' '.join(words[:2])}")
    return out


def _first(trace: list[str], prefix: str) -> int:
    for i, line in enumerate(trace):
        if line.startswith(prefix):
            return i
    raise AssertionError(f"{prefix!r} never ran; trace: {trace}")


# --------------------------------------------------------------------------------------------
# Deploy from nothing (one shared deploy)
# --------------------------------------------------------------------------------------------


def test_kind_deploy_from_scratch_runs_the_real_sequence(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    calls = shared.calls()[: shared.deploy_calls]
    assert [c for c in calls if "error" in c] == []
    trace = _milestones(calls)
    order = [
        "docker inspect",  # is the registry running?
        "docker run",  # start it
        "kind get clusters",
        "kind create cluster",
        "docker network connect",  # the registry joins the kind network
        "kind get nodes",
        "docker exec",  # hosts.toml into each node
        "kubectl apply",  # local-registry-hosting
        "docker image inspect",
        "docker push",
        "kubectl get secret",
        "kubectl create",  # generated secrets, from stdin
        "helm repo add",
        "helm pull",
        "helm upgrade",
        "kubectl rollout status",
        "kubectl delete",  # the previous bootstrap Job
        "kubectl wait",
        "kubectl port-forward",
        "gateway post",
        "kubectl get deployments",
    ]
    positions = [_first(trace, step) for step in order]
    assert positions == sorted(positions), trace
    state = shared.state()
    assert state["clusters"] == ["vsearch"]
    assert state["containers"]["kind-registry"]["image"].startswith("registry:2.8.3@sha256:")
    assert sorted(state["functions"]) == sorted(load().names)
    assert deployed.created_cluster and deployed.started_registry
    saved = json.loads((shared.workdir / kb.STATE_FILE).read_text())
    assert saved["created_cluster"] and saved["digests"] == deployed.digests


def test_kind_deploys_pinned_refs_reachable_from_the_cluster(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    state = shared.state()
    cluster_registry = f"{fake.FAKE_REGISTRY_IP}:5000"
    assert deployed.cluster_registry == cluster_registry
    for name, fn in state["functions"].items():
        pushed = state["pushed"][f"{shared.registry}/vsearch/{name}:{TAG}"]
        assert fn["request"]["image"] == f"{cluster_registry}/vsearch/{name}:{TAG}@{pushed}"
        assert deployed.digests[name] == pushed
    files = state["node_files"]["vsearch-control-plane"]
    local = f"/etc/containerd/certs.d/{shared.registry}/hosts.toml"
    assert files[local] == '[host."http://kind-registry:5000"]\n'
    remote = files[f"/etc/containerd/certs.d/{cluster_registry}/hosts.toml"]
    assert f'server = "http://{cluster_registry}"' in remote
    hosting = [o for c in shared.calls() for o in c.get("objects", []) if "local-registry" in o]
    assert hosting == ["ConfigMap/kube-public/local-registry-hosting"]


def test_kind_secrets_travel_on_stdin_only(shared: FakeCluster, deployed: kb.KindBackend) -> None:
    state = shared.state()
    plain = [base64.b64decode(v).decode() for s in state["secrets"].values() for v in s.values()]
    everything = shared.log_path.read_text() + (shared.workdir / "commands.log").read_text()
    everything += (shared.workdir / kb.STATE_FILE).read_text()
    for secret in plain:
        if len(secret) >= 12:
            assert secret not in everything
    created = [o for c in shared.calls() for o in c.get("objects", [])]
    assert "Secret/vsearch/minio-root" in created
    assert "Secret/vsearch/minio-app" in created
    assert f"Secret/openfaas-fn/{km.S3_SECRET}" in created
    app = state["secrets"]["vsearch/minio-app"]
    fn = state["secrets"][f"openfaas-fn/{km.S3_SECRET}"]
    assert app["access-key-id"] == fn[km.S3_ACCESS_KEY_ITEM]
    password = state["secrets"]["openfaas/basic-auth"]["basic-auth-password"]
    assert deployed.gateway_auth().password == base64.b64decode(password).decode()
    # The orchestrator's copy of the gateway's credentials (prewarming), created from stdin.
    assert f"Secret/openfaas-fn/{km.GATEWAY_SECRET}" in created
    gateway = state["secrets"][f"openfaas-fn/{km.GATEWAY_SECRET}"]
    assert gateway[km.GATEWAY_PASSWORD_ITEM] == password


def test_kind_helm_gets_the_pinned_chart_and_the_timeout_chain(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    (upgrade,) = [a for a in shared.argvs("helm") if "upgrade" in a]
    assert "--install" in upgrade and "--wait" in upgrade
    assert upgrade[upgrade.index("--kube-context") + 1] == "kind-vsearch"
    chart = Path(upgrade[upgrade.index("openfaas") + 1])
    assert chart.name == "openfaas-15.0.6.tgz"
    sets = [upgrade[i + 1] for i, a in enumerate(upgrade) if a == "--set"]
    assert "gateway.upstreamTimeout=910s" in sets and "faasnetes.writeTimeout=920s" in sets
    assert upgrade[upgrade.index("--values") + 1].endswith("openfaas/values.yaml")


def test_kind_every_kubectl_call_names_our_kubeconfig(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    for argv in shared.argvs("kubectl"):
        assert argv[argv.index("--kubeconfig") + 1] == str(shared.workdir / "kubeconfig")
        assert argv[argv.index("--context") + 1] == "kind-vsearch"


def test_kind_redeploy_reuses_cluster_registry_and_secrets(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    secrets_before = shared.state()["secrets"]
    first = len(shared.calls())
    again = shared.backend()
    again.deploy(load().functions)
    calls = shared.calls()[first:]
    assert [c for c in calls if "error" in c] == []
    trace = _milestones(calls)
    assert not any(t.startswith(("kind create", "docker run", "kubectl create")) for t in trace)
    assert not any(t.startswith("helm pull") for t in trace)  # the verified archive is reused
    assert sum(t == "gateway put" for t in trace) == len(load().names)
    assert shared.state()["secrets"] == secrets_before
    again.keep_cluster = True
    again.teardown()


def test_kind_teardown_respects_keep_and_ownership(cluster: FakeCluster) -> None:
    backend = cluster.backend(keep_cluster=True)
    backend._require_tools()
    backend._ensure_registry()
    backend._ensure_cluster()
    backend.teardown()
    assert cluster.state()["clusters"] == ["vsearch"]
    assert not any("delete" in a for a in cluster.argvs("kind"))
    # A cluster this workdir did not create is never deleted.
    cluster.backend(workdir=cluster.tmp / "other").teardown()
    assert cluster.state()["clusters"] == ["vsearch"]
    # The workdir that created it (state.json remembers) deletes cluster and registry.
    cluster.backend().teardown()
    assert cluster.state()["clusters"] == []
    assert "kind-registry" not in cluster.state()["containers"]
    assert cluster.errors() == []


# --------------------------------------------------------------------------------------------
# Regimes: warm and cold on CE
# --------------------------------------------------------------------------------------------


def test_kind_cold_is_made_by_deleting_pods_never_by_replicas_zero(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    regime = load_regimes().get("cold-burst")
    first = len(shared.calls())
    report = deployed.prepare(regime.preparation)
    calls = shared.calls()[first:]
    assert [c for c in calls if "error" in c] == []
    assert not any(c.get("scale") and c.get("replicas") == 0 for c in calls)
    deletes = [c["argv"] for c in calls if "delete" in c.get("argv", []) and "pods" in c["argv"]]
    assert deletes, "no pods were deleted"
    selector = deletes[0][deletes[0].index("-l") + 1]
    assert selector.startswith("faas_function in (") and "orchestrator" in selector
    assert "--wait=false" in deletes[0]
    cold = report["cold"]
    assert "pods deleted" in cold["method"]
    assert cold["verified_at"] >= cold["deleted_at"]
    assert set(cold["deleted_pods"]) == set(load().names)
    assert report["redeployed"]  # min_replicas 0 was rendered (as 1, with a note)
    assert any("CE cannot scale to zero" in n for n in report["notes"])
    # At the verification no function had a ready pod (from the fake cluster's own records; a
    # check now would race the replacements, which become ready ~2 s after the deletion).
    at = cold["verified_at"]
    for pod in shared.state()["pods"]:
        alive_then = pod["created"] <= at and (pod["deleted"] is None or pod["deleted"] > at)
        assert not (alive_then and pod["deleted"] is None and pod["ready_at"] <= at), pod
    with pytest.raises(kb.KindError, match="HTTP 400"):
        deployed.api.scale("search", 0)  # what the CE gateway says to replicas=0


def test_kind_warm_is_scaled_and_verified_through_the_api(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    report = deployed.prepare(load_regimes().get("warm-burst").preparation)
    assert report["warm"]["via"] == "gateway API"
    for name in load().names:
        assert deployed.ready_replicas(name) == 1
    deployed.scale("search", 3)
    deployed.wait_replicas("search", 3, timeout_s=20)
    assert shared.state()["functions"]["search"]["replicas"] == 3
    deployed.scale("search", 1)
    deployed.wait_replicas("search", 1, timeout_s=20)
    with pytest.raises(kb.KindError, match="at most 5"):
        deployed.scale("search", 6)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def test_kind_function_status_measures_memory_ooms_and_cold_starts(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    deployed.prepare(load_regimes().get("warm-steady").preparation)
    before = platform_from_statuses(deployed.function_status())
    shared.update(cgroup={"peak": "314572800", "events": "low 0\noom 0\noom_kill 0"})
    with fake.state_lock() as state:
        pod = next(p for p in state["pods"] if p["function"] == "transcribe" and not p["deleted"])
        pod["oom"] = True
    deployed.scale("search", 0)
    deployed.prepare(load_regimes().get("warm-steady").preparation)
    statuses = deployed.function_status()
    by_name = {s["name"]: s for s in statuses}
    transcribe = by_name["transcribe"]["vsearch"]
    assert transcribe["peak_memory_bytes"] == 314572800
    assert transcribe["memory_source"] == "cgroup v2 memory.peak"
    assert transcribe["memory_limit_bytes"] == 1 << 30
    assert transcribe["invocations_by_code"] == {"200": 2.0}
    run = {
        s["name"]: FunctionPlatform.from_status(s).since(before.get(s["name"])) for s in statuses
    }
    assert run["search"].cold_starts == 1  # its replacement pod became ready
    assert run["transcribe"].oom_kills == 1
    assert run["orchestrator"].cold_starts == 0
    assert run["transcribe"].peak_memory_bytes == 314572800
    types = {e["type"] for e in deployed.events()}
    assert {"replica_started", "replica_ready", "replica_stopped", "oom_kill"} <= types
    described = deployed.describe()
    assert described["limits_enforced"] is True
    assert "CE cannot scale to zero" in described["cold_start"]
    assert described["openfaas"]["chart"].startswith("openfaas 15.0.6")
    assert all(km.is_pinned(i) for i in described["images"].values())
    assert described["preparations"] and described["tools"]["kind"].startswith("kind v0.33.0")


def test_kind_parsers() -> None:
    assert pods.parse_cgroup_probe({"v1_peak": "5", "current": "9"}) == (
        5,
        "cgroup v1 memory.max_usage_in_bytes",
    )
    assert pods.parse_cgroup_probe({}) == (None, None)
    v1_stat = "cache 1\nrss 2\ntotal_cache 184549376\ntotal_rss 53477376\n"
    assert pods.parse_file_cache({"v1_stat": v1_stat}) == 184549376
    assert pods.parse_file_cache({"stat": "anon 5\nfile 7\nfile_mapped 3\n"}) == 7
    assert pods.parse_file_cache({}) is None
    text = (
        "# HELP x\n"
        'gateway_function_invocation_total{code="200",function_name="search.openfaas-fn"} 4\n'
        'gateway_function_invocation_total{code="429",function_name="search.openfaas-fn"} 1\n'
    )
    assert openfaas_api.parse_gateway_metrics(text) == {"search": {"200": 4.0, "429": 1.0}}


# --------------------------------------------------------------------------------------------
# Port-forwards, storage
# --------------------------------------------------------------------------------------------


def test_kind_port_forward_is_retried(shared: FakeCluster, deployed: kb.KindBackend) -> None:
    shared.update(port_forward_failures=2)
    first = len(shared.calls())
    again = shared.backend()
    again.attach()
    forwards = [c for c in shared.calls()[first:] if "port-forward" in c.get("argv", [])]
    assert len(forwards) == 4  # two failed tries for the gateway, then it and MinIO's
    assert httpx.get(again.gateway_url + "/healthz", trust_env=False).status_code == 200
    # A forward that dies (the gateway pod restarted) is re-established on the next call.
    assert again._gateway is not None and again._gateway._proc is not None
    again._gateway._proc.kill()
    again._gateway._proc.wait()
    assert len(again.api.functions()) == len(load().names)
    assert again._gateway.starts == 2
    again.keep_cluster = True
    again.teardown()


def test_kind_port_forward_gives_up_with_a_reason(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    shared.update(port_forward_failures=99)
    again = shared.backend()
    try:
        with pytest.raises(kb.KindError, match="port-forward to openfaas/deployment/gateway"):
            again.attach()
    finally:
        shared.update(port_forward_failures=0)


def test_kind_upload_goes_through_the_minio_forward(
    shared: FakeCluster, deployed: kb.KindBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from harness.embedded.s3_server import SeaweedS3

    with SeaweedS3(bucket=km.S3_BUCKET) as s3:
        # The relay behind the fake MinIO port-forward leads to a real S3 server, and the
        # cluster's functions' account is that server's: attach() reads it back from the Secret.
        monkeypatch.setenv("FAKE_KIND_S3", s3.endpoint_url.removeprefix("http://"))
        with fake.state_lock() as state:
            saved = state["secrets"]["vsearch/minio-app"]
            state["secrets"]["vsearch/minio-app"] = {
                "access-key-id": base64.b64encode(s3.access_key.encode()).decode(),
                "secret-access-key": base64.b64encode(s3.secret_key.encode()).decode(),
            }
        backend = shared.backend()
        try:
            backend.attach()
            video = tmp_path / "v.mp4"
            video.write_bytes(b"not really a video")
            assert backend.upload(video, "inputs/v.mp4") == f"s3://{km.S3_BUCKET}/inputs/v.mp4"
            got = s3.client().get_object(Bucket=km.S3_BUCKET, Key="inputs/v.mp4")["Body"].read()
            assert got == b"not really a video"
        finally:
            backend.keep_cluster = True
            backend.teardown()
            with fake.state_lock() as state:
                state["secrets"]["vsearch/minio-app"] = saved


# --------------------------------------------------------------------------------------------
# Failures are explained (and logs collected)
# --------------------------------------------------------------------------------------------


def test_kind_platform_drift_is_caught(shared: FakeCluster, deployed: kb.KindBackend) -> None:
    assert deployed.rendering is not None
    shared.update(drift={"drop_limits": True})
    try:
        with pytest.raises(kb.KindError, match="memory limit"):
            deployed._verify_deployments(deployed.rendering)
    finally:
        shared.update(drift={})
    deployed._verify_deployments(deployed.rendering)
    assert deployed.deployment_mismatches == []  # probes and securityContext as predicted


def test_kind_localhost_refs_would_be_refused_by_ce(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    # The push address (what kind's docs use) is refused by CE's anonymous-image check, made
    # inside the faas-netes pod; hence the registry's cluster address in every deployed ref.
    assert deployed.rendering is not None
    body = dict(deployed.rendering.get("search").request)
    body["image"] = body["image"].replace(str(deployed.cluster_registry), shared.registry)
    with pytest.raises(kb.KindError, match="public images"):
        deployed.api.deploy(body)


def test_kind_oci_layouts_are_pushed_with_skopeo(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    layouts = shared.tmp / "oci"
    for name in load().names:
        (layouts / name).mkdir(parents=True, exist_ok=True)
        digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        index = {"schemaVersion": 2, "manifests": [{"digest": digest, "size": 1}]}
        (layouts / name / "index.json").write_text(json.dumps(index))
    backend = shared.backend(image_dir=layouts)
    backend.declarations = load().functions
    first = len(shared.calls())
    backend._push_images()
    copies = [c["argv"] for c in shared.calls()[first:] if c.get("tool") == "skopeo"]
    assert len(copies) == len(load().names)
    assert all("--all" in a and a[-1].startswith(f"docker://{shared.registry}/") for a in copies)
    assert backend.digests == {
        n: "sha256:" + hashlib.sha256(n.encode()).hexdigest() for n in load().names
    }


def test_kind_build_digests_are_checked(shared: FakeCluster, deployed: kb.KindBackend) -> None:
    backend = shared.backend(image_digests={"search": "sha256:" + "1" * 64})
    backend.declarations = load().functions
    with pytest.raises(kb.KindError, match="the build said"):
        backend._push_images()


def test_kind_chart_digest_mismatch_is_refused(
    shared: FakeCluster, deployed: kb.KindBackend
) -> None:
    backend = shared.backend(workdir=shared.tmp / "fresh-work")
    backend.chart["digest"] = "sha256:" + "0" * 64
    with pytest.raises(kb.KindError, match="does not match the pinned"):
        backend._chart_archive()
    assert not list((shared.tmp / "fresh-work" / "charts").glob("*.tgz"))


def test_kind_missing_images_are_listed_and_logs_collected(cluster: FakeCluster) -> None:
    cluster.update(local_images=[])
    backend = cluster.backend()
    with pytest.raises(kb.KindError, match="function images are missing") as info:
        backend.deploy(load().functions)
    assert "orchestrator" in str(info.value) and "pod logs and events" in str(info.value)
    names = {p.name for p in (cluster.workdir / "logs").glob("*/*")}
    assert {"openfaas.pods.json", "openfaas-fn.events.json", "vsearch.describe.txt"} <= names
    assert any(n.endswith(".log") for n in names)
    backend.teardown()


def test_kind_missing_tools_and_tag_are_reported(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VSEARCH_IMAGE_TAG", raising=False)
    with pytest.raises(kb.KindError, match="no function images"):
        cluster.backend(image_tag=None).deploy(load().functions)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(kb.KindError, match=r"missing tools: kind v0\.33\.0, kubectl"):
        cluster.backend().deploy(load().functions)


def test_kind_passes_on_every_k8s_option(tmp_path: Path) -> None:
    backend = kb.KindBackend(
        "other",
        workdir=tmp_path,
        keep_cluster=True,
        cluster_registry="10.9.8.7:5000",
        ready_timeout_s=12.5,
        helm_timeout="3m",
        image_digests={"search": "sha256:" + "a" * 64},
        env={"VSEARCH_X": "1"},
    )
    assert backend.keep_cluster and backend.cluster_registry == "10.9.8.7:5000"
    assert backend.ready_timeout_s == 12.5 and backend.helm_timeout == "3m"
    assert backend.expected_digests == {"search": "sha256:" + "a" * 64}
    assert backend.openfaas_mode == "chart" and backend.given_context == "kind-other"
    assert backend.kubeconfig == tmp_path / "kubeconfig"
    with pytest.raises(TypeError, match="no_such_option"):
        kb.KindBackend(workdir=tmp_path, no_such_option=1)
    # The CLI passes its whole option set; the factory keeps what the signature names.
    made = create_backend(
        "kind", workdir=tmp_path, state_dir=tmp_path / "embedded", ready_timeout_s=3.0
    )
    assert isinstance(made, kb.KindBackend) and made.ready_timeout_s == 3.0
