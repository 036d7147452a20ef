"""K8sBackend against the fake tools: any cluster by kubeconfig, OpenFaaS from the local
manifests or the one already there, and a teardown that removes only what it deployed.

The fake world (fake kubectl/helm/docker/skopeo, a registry API, a copy of the manifests) is the
kind tests' (test_kind_backend.fake_world); here no ``kind`` command may run at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends import k8s
from harness.backends import kind_manifests as km
from harness.backends.test_kind_backend import TAG, FakeCluster, fake_world
from harness.backends.testing import fake_cluster_tools as fake
from harness.functions import load
from harness.records import FunctionPlatform, platform_from_statuses
from harness.regimes import load_regimes

CONTEXT = "vsearch-local"
#: A stand-in for what manifests/openfaas/local/ will hold (written by the platform's helper):
#: only its shape matters here (a gateway Deployment in openfaas).
LOCAL_GATEWAY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gateway
  namespace: openfaas
spec:
  selector: {matchLabels: {app: gateway}}
  template:
    metadata: {labels: {app: gateway}}
    spec:
      containers:
        - name: gateway
          image: 127.0.0.1:5001/platform/gateway:0.0.0-test
          env:
            - {name: upstream_timeout, value: 15m10s}
            - {name: read_timeout, value: 15m20s}
            - {name: write_timeout, value: 15m20s}
"""

LOCAL_RBAC = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: openfaas-provider, namespace: openfaas}
"""


def _kubeconfig(path: Path) -> Path:
    path.write_text(f"apiVersion: v1\nkind: Config\ncurrent-context: {CONTEXT}\n")
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_world(tmp_path) as w:
        local = w.manifests / "openfaas" / "local"
        local.mkdir(parents=True, exist_ok=True)
        (local / "gateway.yaml").write_text(LOCAL_GATEWAY)
        (local / "rbac.yaml").write_text(LOCAL_RBAC)
        # The fakes serve upstream MinIO (minio.yaml + bootstrap Job); the local MinIO's
        # kustomize + host-side mc bootstrap is tested in test_k8s_local_storage.py.
        shutil.rmtree(w.manifests / k8s.LOCAL_MINIO_DIR, ignore_errors=True)
        yield w


def _backend(world: FakeCluster, **kwargs: Any) -> k8s.K8sBackend:
    options: dict[str, Any] = {
        "kubeconfig": _kubeconfig(world.tmp / "kubeconfig"),
        "registry": world.registry,
        "image_tag": TAG,
        "workdir": world.workdir,
        "manifests_dir": world.manifests,
        "ready_timeout_s": 20.0,
    }
    options.update(kwargs)
    backend = k8s.K8sBackend(**options)
    backend.forward_backoff_s = 0.05
    return backend


def _deleted(world: FakeCluster) -> list[dict[str, Any]]:
    return list(world.state().get("deleted", []))


def test_k8s_deploys_with_local_openfaas_and_removes_only_what_it_deployed(
    world: FakeCluster,
) -> None:
    backend = _backend(world, openfaas="local")
    backend.deploy(load().functions)
    try:
        assert world.errors() == []
        assert world.argvs("kind") == [], "a k8s deploy never runs kind"
        assert world.argvs("helm") == [], "local manifests: no helm"
        kubectl = world.argvs("kubectl")
        # Every call names the kubeconfig's current-context (resolved once).
        talks = [a for a in kubectl if "current-context" not in a and "--client" not in a]
        assert talks and all(a[a.index("--context") + 1] == CONTEXT for a in talks), talks
        applied = [a[a.index("-f") + 1] for a in kubectl if "apply" in a]
        local = world.manifests / "openfaas" / "local"
        # RBAC first though its file name sorts after the gateway's.
        assert applied.index(str(local / "rbac.yaml")) < applied.index(str(local / "gateway.yaml"))
        state = world.state()
        assert set(state["functions"]) == set(load().names)
        # The gateway's basic-auth was generated here (the chart is not there to do it).
        assert "openfaas/basic-auth" in state["secrets"]
        saved = json.loads((world.workdir / k8s.STATE_FILE).read_text())
        assert saved["backend"] == "k8s"
        assert saved["openfaas_installed"] == "local"
        assert saved["storage_deployed"] is True
        assert set(saved["created_namespaces"]) == {
            "openfaas",
            km.FUNCTION_NAMESPACE,
            km.STORAGE_NAMESPACE,
        }
        assert "openfaas/basic-auth" in saved["generated_secrets"]
        assert set(saved["deployed_functions"]) == set(load().names)
        # Images went to the registry and are deployed pinned by digest.
        for name, image in backend.describe()["images"].items():
            assert image.startswith(f"{world.registry}/vsearch/{name}:{TAG}@sha256:"), image
    finally:
        backend.teardown()
    deleted = _deleted(world)
    objects = [o for d in deleted for o in d["objects"]]
    assert {f"deployment/{n}" for n in load().names} <= set(objects)
    assert str(world.manifests / "openfaas" / "local" / "gateway.yaml") in objects
    assert str(world.manifests / "minio" / "minio.yaml") in objects
    assert "openfaas/basic-auth" not in world.state()["secrets"]
    assert world.state().get("namespaces") == []
    after = k8s.K8sBackend(
        kubeconfig=world.tmp / "kubeconfig", workdir=world.workdir, manifests_dir=world.manifests
    )
    assert not after.owns_anything
    assert world.argvs("kind") == []


def test_k8s_uses_the_openfaas_already_there_and_leaves_it(world: FakeCluster) -> None:
    # The platform (another tool) installed OpenFaaS: namespaces, gateway, basic-auth.
    world.update(
        namespaces=["openfaas", km.FUNCTION_NAMESPACE],
        openfaas_gateway="platform",
        gateway_deployment=yaml.safe_load(LOCAL_GATEWAY),
        secrets={
            "openfaas/basic-auth": {
                "basic-auth-user": fake._b64("admin"),
                "basic-auth-password": fake._b64("not-ours-0123456789"),
            }
        },
    )
    backend = _backend(world)  # openfaas="auto"
    backend.deploy(load().functions)
    try:
        assert backend.openfaas_mode == "existing"
        assert world.errors() == []
        assert not [a for a in world.argvs("helm") if "upgrade" in a]
        saved = json.loads((world.workdir / k8s.STATE_FILE).read_text())
        assert saved["openfaas_installed"] is None
        assert saved["created_namespaces"] == [km.STORAGE_NAMESPACE]
        assert "openfaas/basic-auth" not in saved["generated_secrets"]
    finally:
        backend.teardown()
    state = world.state()
    assert set(state["namespaces"]) == {"openfaas", km.FUNCTION_NAMESPACE}
    assert "openfaas/basic-auth" in state["secrets"]
    assert state["openfaas_gateway"] == "platform"
    objects = [o for d in _deleted(world) for o in d["objects"]]
    assert not any("openfaas/local" in o for o in objects)
    assert state.get("functions") == {}


def test_k8s_leaves_a_minio_that_was_there_before_it(world: FakeCluster) -> None:
    # `vsearch up --openfaas local` left the platform up (MinIO included) for the live tests;
    # a regime run from another workdir deploys on it and tears down only what it added.
    platform = _backend(world, openfaas="local")
    platform.deploy(load().functions)
    platform.left_up = True
    platform.save_state()
    regimes = _backend(world, openfaas="existing", workdir=world.tmp / "regimes")
    try:
        regimes.deploy(load().functions)
        saved = json.loads((world.tmp / "regimes" / k8s.STATE_FILE).read_text())
        assert saved["storage_deployed"] is False
    finally:
        regimes.teardown()
        # Left up, so it deletes nothing; it only stops its port-forwards, which would
        # otherwise outlive the test run.
        platform.teardown()
    objects = [o for d in _deleted(world) for o in d["objects"]]
    assert str(world.manifests / "minio" / "minio.yaml") not in objects
    assert f"{km.STORAGE_NAMESPACE}/minio" in world.state()["deployments"]
    assert f"{km.STORAGE_NAMESPACE}/minio-app" in world.state()["secrets"]


def test_k8s_keep_and_left_up_remove_nothing(world: FakeCluster) -> None:
    backend = _backend(world, openfaas="local")
    backend.deploy(load().functions)
    backend.left_up = True
    backend.save_state()
    during_deploy = _deleted(world)  # the previous bootstrap Job only
    backend.teardown()
    assert _deleted(world) == during_deploy
    again = _backend(world, openfaas="local", image_tag=None)
    assert again.left_up and again.owns_anything
    again.attach()
    try:
        assert {s["name"] for s in again.api.functions()} == set(load().names)
    finally:
        again.keep_cluster = True
        again.teardown()
    assert _deleted(world) == during_deploy


def test_k8s_platform_versions_come_from_the_cluster(world: FakeCluster) -> None:
    backend = _backend(world, openfaas="local")
    backend.deploy(load().functions)
    try:
        versions = backend.describe()["versions"]
    finally:
        backend.keep_cluster = True
        backend.teardown()
    for key in ("gitVersion", "gitCommit", "gitTreeState", "buildDate"):
        assert versions["kubernetes"][key] == fake.FAKE_SERVER_VERSION[key]
    assert versions["openfaas"]["gateway"] == {"release": "0.27.13-fake", "sha": "beef"}
    assert versions["openfaas"]["provider"]["name"] == "vsearch-faas-provider"
    assert versions["openfaas"]["provider"]["release"] == "0.18.13-fake"
    assert "minio" in versions


def test_k8s_cores_are_the_nodes_not_the_harness_host(
    world: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _backend(world)
    backend.declarations = [
        d.model_copy(update={"cpu_limit": 0.25, "max_replicas": 1}) for d in load().functions
    ]
    asked: list[tuple[str, ...]] = []
    node = {
        "metadata": {"name": "big-node"},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "31500m"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }

    def kubectl_json(*args: str) -> dict[str, Any]:
        asked.append(args)
        return {"items": [node]}

    monkeypatch.setattr(backend, "_kubectl_json", kubectl_json)
    cores, source = backend.cpu_cores()
    assert asked == [("get", "nodes")]
    assert cores == 0.25 * len(backend.declarations) and "CPU limits" in source
    backend.declarations = list(load().functions)  # unthrottled, as manifests/functions.yaml
    cores, source = backend.cpu_cores()
    assert cores == 31.5 and source.endswith("node(s) big-node")


def test_k8s_without_a_kubeconfig_says_what_to_do(tmp_path: Path) -> None:
    backend = k8s.K8sBackend(kubeconfig=tmp_path / "absent", workdir=tmp_path / "w")
    with pytest.raises(k8s.K8sError, match="no kubeconfig at"):
        _ = backend.kubectl


def test_k8s_refuses_an_unknown_openfaas_mode(tmp_path: Path) -> None:
    with pytest.raises(k8s.K8sError, match="openfaas must be one of"):
        k8s.K8sBackend(kubeconfig=tmp_path / "k", workdir=tmp_path, openfaas="operator")


def test_k8s_refuses_a_gateway_whose_timeouts_break_the_chain(world: FakeCluster) -> None:
    short = yaml.safe_load(LOCAL_GATEWAY)
    short["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "upstream_timeout", "value": "60s"},
        {"name": "read_timeout", "value": "65s"},
        {"name": "write_timeout", "value": "65s"},
    ]
    world.update(namespaces=["openfaas"], openfaas_gateway="platform", gateway_deployment=short)
    backend = _backend(world, openfaas="existing")
    with pytest.raises(k8s.K8sError, match="upstream_timeout 60s") as err:
        backend.deploy(load().functions)
    assert "set upstream_timeout=" in str(err.value)
    assert world.state().get("functions", {}) == {}


def test_k8s_deploys_bazel_layouts_tagged_by_commit_pinned_by_digest(
    world: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.backends.cluster import images
    from harness.cluster.oci_image import ImageFile, ImageSpec, build_layout

    monkeypatch.delenv("VSEARCH_IMAGE_TAG", raising=False)
    bazel_bin = world.tmp / "bazel-bin"
    own = {}
    for decl in load().functions:
        layout = bazel_bin / images.package_of(decl) / "index"
        spec = ImageSpec(name=f"x/{decl.name}:1", files={"/f": ImageFile(data=decl.name.encode())})
        own[decl.name] = build_layout(spec, layout).manifest_digest
    backend = _backend(world, openfaas="local", image_tag=None, image_dir=bazel_bin)
    backend.deploy(load().functions)
    try:
        tag = images.commit_tag()
        assert backend.image_tag == tag
        for name, image in backend.describe()["images"].items():
            assert image == f"{world.registry}/vsearch/{name}:{tag}@{own[name]}", image
        copies = [a for a in world.argvs("skopeo") if "copy" in a]
        assert {a[-2] for a in copies} == {
            f"oci:{bazel_bin / images.package_of(d) / 'index'}" for d in load().functions
        }
    finally:
        backend.teardown()


def test_gateway_auth_trims_like_the_gateway() -> None:
    # A Secret made by hand with --from-file=<(... | base64) ends in a newline; the gateway
    # trims it (faas-provider auth), so the harness must send the trimmed password (the live
    # cluster answered 401 before).
    auth = k8s.gateway_auth({"basic-auth-user": "admin\n", "basic-auth-password": "s3cret\n"})
    assert auth.as_tuple() == ("admin", "s3cret")
    assert k8s.gateway_auth({"basic-auth-password": "p"}).as_tuple() == ("admin", "p")


def test_local_storage_is_kustomized_when_openfaas_is_local(
    world: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = world.manifests / k8s.LOCAL_MINIO_DIR
    shutil.copytree(Path(__file__).resolve().parents[2] / "manifests" / k8s.LOCAL_MINIO_DIR, local)
    assert _backend(world, openfaas="existing").storage_local  # fed by the local registry
    assert not _backend(world, openfaas="existing", registry="registry.example:5000").storage_local
    assert not _backend(world, openfaas="chart").storage_local
    backend = _backend(world, openfaas="local")
    assert backend.storage_local
    calls: list[tuple[list[str], str | None]] = []

    def run(args: Any, *, input: str | None = None, **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append((list(args), input))
        return subprocess.CompletedProcess(args, 0, stdout="kind: Rendered\n", stderr="")

    monkeypatch.setattr(backend.runner, "run", run)
    backend._apply_storage()
    # (the context is resolved by a kubectl call of its own first)
    (render, _), (apply, rendered) = [c for c in calls if "kustomize" in c[0] or "apply" in c[0]]
    assert render[-4:] == ["kustomize", "--load-restrictor", "LoadRestrictionsNone", str(local)]
    assert apply[-3:] == ["apply", "-f", "-"] and rendered == "kind: Rendered\n"


def test_local_openfaas_starts_nats_before_the_gateway_and_the_queue_worker(
    world: FakeCluster,
) -> None:
    # The repository's files (the world copies manifests/): the gateway and the queue-worker
    # exit when NATS does not answer at their start.
    local = world.manifests / "openfaas" / "local"
    assert (local / "nats.yaml").is_file() and (local / "queue-worker.yaml").is_file()
    backend = _backend(world, openfaas="local")
    backend._install_local()
    assert world.errors() == []
    steps = [
        a[a.index("-f") + 1] if "apply" in a else a[a.index("status") + 1]
        for a in world.argvs("kubectl")
        if "apply" in a or "rollout" in a
    ]
    ready = steps.index("deployment/nats")
    assert steps.index(str(local / "nats.yaml")) < ready
    assert ready < steps.index(str(local / "gateway.yaml"))
    assert ready < steps.index(str(local / "queue-worker.yaml"))
    assert steps.index(str(local / "rbac.yaml")) < steps.index(str(local / "gateway.yaml"))
    assert steps[-1] == "deployment/gateway"


def test_local_openfaas_without_nats_waits_only_for_the_gateway(world: FakeCluster) -> None:
    for name in ("nats.yaml", "queue-worker.yaml"):
        (world.manifests / "openfaas" / "local" / name).unlink(missing_ok=True)
    backend = _backend(world, openfaas="local")
    backend._install_local()
    rollouts = [a[a.index("status") + 1] for a in world.argvs("kubectl") if "rollout" in a]
    assert rollouts == ["deployment/gateway"]


# --------------------------------------------------------------------------------------------
# Cold starts: our provider keeps a Deployment at 0 and idles functions there; CE does neither
# --------------------------------------------------------------------------------------------


def test_k8s_cold_behind_our_provider_scales_the_deployments_to_zero(world: FakeCluster) -> None:
    backend = _backend(world, openfaas="local")
    backend.deploy(load().functions)
    try:
        assert backend.scales_to_zero
        first = len(world.calls())
        report = backend.prepare(load_regimes().get("cold-burst").preparation)
        calls = world.calls()[first:]
        assert [c for c in calls if "error" in c] == []
        kubectl = [c["argv"] for c in calls if c.get("tool") == "kubectl" and "argv" in c]
        scales = [a for a in kubectl if "scale" in a]
        assert len(scales) == 1 and "--replicas=0" in scales[0]
        assert set(load().names) <= set(scales[0])
        assert not [a for a in kubectl if "delete" in a], "no pod is deleted"
        assert report["cold"]["method"].startswith("Deployments scaled to 0")
        # Nothing brings them back before the load (with pod deletes, replacements were
        # ready after ~2 s and the regime met warm functions).
        time.sleep(fake.REPLACEMENT_READY_AFTER_S + 0.5)
        assert {n: backend.ready_replicas(n) for n in load().names} == dict.fromkeys(
            load().names, 0
        )
        assert all(f["replicas"] == 0 for f in world.state()["functions"].values())
        assert "scale-from-zero" in backend.describe()["cold_start"]
    finally:
        backend.teardown()


def test_k8s_counts_a_pod_that_came_and_went_between_two_snapshots(world: FakeCluster) -> None:
    backend = _backend(world, openfaas="local")
    backend.pod_watch_interval_s = 0.05
    backend.deploy(load().functions)
    try:
        backend.scale("search", 0)
        before = platform_from_statuses(backend.function_status())
        backend.scale("search", 1)  # as the gateway's scale-from-zero does
        backend.wait_replicas("search", 1, timeout_s=10)
        time.sleep(0.3)  # the watch sees it ready
        backend.scale("search", 0)  # as the idler does
        time.sleep(fake.POD_GONE_AFTER_S + 0.3)  # gone from the cluster's listing
        statuses = backend.function_status()
        run = {
            s["name"]: FunctionPlatform.from_status(s).since(before[s["name"]]) for s in statuses
        }
        assert run["search"].cold_starts == 1
        assert run["transcribe"].cold_starts == 0
    finally:
        backend.teardown()
    assert backend._pod_watch is None, "teardown stops the pod watch"


def test_k8s_scale_to_zero_after_idle_needs_our_provider(world: FakeCluster) -> None:
    cold_steady = load_regimes().get("cold-steady").preparation.apply(load().functions)
    backend = _backend(world, openfaas="local")
    # The fake idler takes every labelled function to 0 at once: deploy must not wait for it.
    backend.deploy(cold_steady)
    try:
        assert world.errors() == []
        assert all(f["replicas"] == 0 for f in world.state()["functions"].values())
        labels = world.state()["functions"]["search"]["request"]["labels"]
        assert labels[km.SCALE_ZERO_LABEL] == "true"
        assert labels[km.SCALE_ZERO_DURATION_LABEL] == "5s"
        status = {s["name"]: s for s in backend.function_status()}
        assert status["search"]["vsearch"]["scale_to_zero_idle"] == 5.0
    finally:
        backend.teardown()
    # faas-netes CE (here: an OpenFaaS that was already there) has no idler: refused up front,
    # before any function is deployed, rather than a regime waiting for a zero that never comes.
    world.update(
        namespaces=["openfaas", km.FUNCTION_NAMESPACE],
        openfaas_gateway="platform",
        gateway_deployment=yaml.safe_load(LOCAL_GATEWAY),
        secrets={
            "openfaas/basic-auth": {
                "basic-auth-user": fake._b64("admin"),
                "basic-auth-password": fake._b64("not-ours-0123456789"),
            }
        },
    )
    backend = _backend(world)
    try:
        with pytest.raises(k8s.K8sError, match=r"has no idler.*--openfaas local"):
            backend.deploy(cold_steady)
        assert world.state().get("functions") == {}
    finally:
        backend.teardown()
