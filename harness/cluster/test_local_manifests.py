"""manifests/openfaas/local and manifests/minio/local: valid for Kubernetes 1.34, on contract.

The images they name are the versions the builder pins (a provider edit changes its version,
so this fails until gateway.yaml names the new image), the timeouts are values.yaml's, and the
gateway, provider and MinIO objects validate against the Kubernetes 1.34 schemas (strict).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends import kind_manifests as km
from harness.cluster import builder
from harness.cluster.platform_images import IMAGES, REGISTRY, tag_for

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "manifests" / "openfaas" / "local"
MINIO_LOCAL = ROOT / "manifests" / "minio" / "local"
K8S_VERSION = "1.34.0"  # the host-process cluster's (v1.34.4)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all() -> list[dict[str, Any]]:
    return [d for path in sorted(LOCAL.glob("*.yaml")) for d in _docs(path)]


def _find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _all() if d["kind"] == kind and d["metadata"]["name"] == name)


def _image(component: str) -> str:
    version = builder.pinned_version(builder.COMPONENTS[component])
    return f"{REGISTRY}/platform/{component}:{tag_for(version)}"


def _containers() -> dict[str, dict[str, Any]]:
    spec = _find("Deployment", "gateway")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _minio_rendered() -> list[dict[str, Any]]:
    kubectl = builder.cached("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not built (./vsearch platform build kubectl): kustomize needs it")
    out = subprocess.run(
        [str(kubectl), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(MINIO_LOCAL)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _prometheus_pod() -> dict[str, Any]:
    return _find("Deployment", "prometheus")["spec"]["template"]["spec"]


def test_images_are_the_pinned_builds() -> None:
    containers = _containers()
    assert containers["gateway"]["image"] == _image("openfaas-gateway")
    assert containers["faas-provider"]["image"] == _image("faas-provider")
    (prometheus,) = _prometheus_pod()["containers"]
    assert prometheus["image"] == _image("prometheus")
    kustomization = yaml.safe_load((MINIO_LOCAL / "kustomization.yaml").read_text())
    (override,) = kustomization["images"]
    assert f"{override['newName']}:{override['newTag']}" == _image("minio")


def test_gateway_and_provider_follow_the_contract_and_values() -> None:
    containers = _containers()
    gateway, provider = _env(containers["gateway"]), _env(containers["faas-provider"])
    values = km.load_values()
    timeouts = km.values_timeouts(values)
    assert km.parse_go_duration(gateway["upstream_timeout"]) == timeouts.upstream_s
    for env in (gateway, provider):
        assert km.parse_go_duration(env["read_timeout"]) == timeouts.read_s
        assert km.parse_go_duration(env["write_timeout"]) == timeouts.write_s
        assert env["function_namespace"] == km.FUNCTION_NAMESPACE
        assert env["basic_auth"] == "true"
    assert gateway["functions_provider_url"] == f"http://127.0.0.1:{provider['port']}/"
    functions = values["functions"]
    assert provider["http_probe"] == str(functions["httpProbe"]).lower()
    assert provider["set_nonroot_user"] == str(functions["setNonRootUser"]).lower()
    service = _find("Service", "gateway")
    assert service["metadata"]["namespace"] == km.OPENFAAS_NAMESPACE
    assert service["spec"]["ports"][0]["port"] == 8080
    pod = _find("Deployment", "gateway")["spec"]["template"]["spec"]
    assert (
        pod["serviceAccountName"]
        == _find("ServiceAccount", "openfaas-provider")["metadata"]["name"]
    )
    assert {"name": "auth", "secret": {"secretName": "basic-auth"}} in pod["volumes"]
    # The generated password is never in the repository.
    assert not [d for d in _all() if d["kind"] == "Secret"]


def test_provider_role_covers_what_it_calls() -> None:
    role = _find("Role", "openfaas-provider")
    assert role["metadata"]["namespace"] == km.FUNCTION_NAMESPACE
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    for need in [("apps", "deployments", v) for v in ("get", "list", "create", "update", "delete")]:
        assert need in granted
    for need in [("", "services", v) for v in ("get", "create", "update", "delete")]:
        assert need in granted
    assert ("", "secrets", "get") in granted
    assert ("discovery.k8s.io", "endpointslices", "list") in granted  # the invoke resolver


def test_local_minio_is_manifests_minio_with_our_image() -> None:
    rendered = _minio_rendered()
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == _image("minio")
    upstream = next(
        d for d in _docs(ROOT / "manifests/minio/minio.yaml") if d["kind"] == "Deployment"
    )
    (original,) = upstream["spec"]["template"]["spec"]["containers"]
    assert original["image"].startswith("quay.io/minio/minio:")  # the pin for other clusters
    assert {k: v for k, v in container.items() if k != "image"} == {
        k: v for k, v in original.items() if k != "image"
    }
    # No provisioner on the host-process cluster: no claim, the data volume is an emptyDir.
    assert not [d for d in rendered if d["kind"] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"] and "persistentVolumeClaim" not in volumes["data"]


def test_local_manifests_validate_for_kubernetes_1_34() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    docs = _all()
    if builder.cached("kubectl") is not None:
        docs += _minio_rendered()
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)


def test_gateway_finds_prometheus_and_prometheus_scrapes_the_gateway() -> None:
    gateway = _env(_containers()["gateway"])
    service = _find("Service", "prometheus")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert (gateway["faas_prometheus_host"], gateway["faas_prometheus_port"]) == (host, "9090")
    assert service["metadata"]["namespace"] == km.OPENFAAS_NAMESPACE
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9090
    assert (
        service["spec"]["selector"]
        == _find("Deployment", "prometheus")["spec"]["selector"]["matchLabels"]
    )
    # The chart's scrape job keeps pods of the gateway's namespace annotated for scraping, at
    # the annotated port: the gateway's metrics port (8082, gateway/main.go).
    config = yaml.safe_load(_find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    (pods,) = [j for j in config["scrape_configs"] if j["job_name"] == "openfaas-pods"]
    (sd,) = pods["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [km.OPENFAAS_NAMESPACE]
    keep = [r for r in pods["relabel_configs"] if r.get("action") == "keep"]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                     "action": "keep", "regex": True}]  # fmt: skip
    template = _find("Deployment", "gateway")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8082"}
    ports = {p["containerPort"] for p in _containers()["gateway"]["ports"]}
    assert 8082 in ports


def test_prometheus_runs_non_root_on_its_config_and_an_empty_dir() -> None:
    pod = _prometheus_pod()
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert "emptyDir" in volumes[mounts[args["storage.tsdb.path"]]]
    config = _find("ConfigMap", "prometheus-config")
    assert volumes[mounts[args["config.file"]]]["configMap"]["name"] == config["metadata"]["name"]
    # Every rule file the config names is mounted beside it.
    rules = yaml.safe_load(config["data"]["prometheus.yml"])["rule_files"]
    for name in rules:
        assert f"/etc/prometheus/{name}" in mounts
        assert name in config["data"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    role = _find("Role", "openfaas-prometheus")
    assert role["metadata"]["namespace"] == km.OPENFAAS_NAMESPACE
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert {("pods", v) for v in ("get", "list", "watch")} <= granted
    assert (
        pod["serviceAccountName"]
        == _find("ServiceAccount", "openfaas-prometheus")["metadata"]["name"]
    )


def _pod(name: str) -> dict[str, Any]:
    return _find("Deployment", name)["spec"]["template"]["spec"]


def _service_host(name: str) -> str:
    service = _find("Service", name)
    return f"{name}.{service['metadata']['namespace']}.svc.cluster.local"


def test_nats_and_queue_worker_run_the_pinned_builds() -> None:
    (nats,) = _pod("nats")["containers"]
    (worker,) = _pod("queue-worker")["containers"]
    assert nats["image"] == _image("nats-streaming-server")
    assert worker["image"] == _image("queue-worker")
    # The chart's command: where the image has the binary.
    assert nats["command"] == [IMAGES["nats-streaming-server"].path]


def test_gateway_and_queue_worker_meet_at_the_nats_service() -> None:
    gateway = _env(_containers()["gateway"])
    worker = _env(_pod("queue-worker")["containers"][0])
    (nats,) = _pod("nats")["containers"]
    (port,) = _find("Service", "nats")["spec"]["ports"]
    assert (
        _find("Service", "nats")["spec"]["selector"]
        == (_find("Deployment", "nats")["spec"]["selector"]["matchLabels"])
    )
    for env in (gateway, worker):
        assert env["faas_nats_address"] == _service_host("nats")
        assert int(env.get("faas_nats_port", "4222")) == port["port"]
        assert env["faas_nats_channel"] == "faas-request"  # the worker's channel is a constant
    assert port["targetPort"] in {p["name"] for p in nats["ports"]}
    # Both sides default the cluster id to faas-cluster; the server must be started with it.
    args = nats["args"]
    assert args[args.index("--cluster_id") + 1] == "faas-cluster"
    assert "faas_nats_cluster_name" not in gateway and "faas_nats_cluster_name" not in worker
    # The worker invokes through the gateway's Service, on its port.
    assert worker["faas_gateway_address"] == _service_host("gateway")
    assert (
        int(worker.get("faas_gateway_port", "8080"))
        == (_find("Service", "gateway")["spec"]["ports"][0]["port"])
    )
    assert worker["faas_function_suffix"] == f".{km.FUNCTION_NAMESPACE}.svc.cluster.local"


def test_queue_worker_acks_no_sooner_than_the_longest_invocation() -> None:
    # NATS hands an unacked message out again after ack_wait: shorter than the gateway's
    # upstream_timeout, a long invocation would run twice.
    worker = _env(_pod("queue-worker")["containers"][0])
    gateway = _env(_containers()["gateway"])
    assert km.parse_go_duration(worker["ack_wait"]) >= km.parse_go_duration(
        gateway["upstream_timeout"]
    )


def test_nats_and_queue_worker_run_non_root_read_only() -> None:
    for name in ("nats", "queue-worker"):
        pod = _pod(name)
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in _pod("queue-worker")["volumes"]}
    assert volumes["auth"] == {"name": "auth", "secret": {"secretName": "basic-auth"}}


def test_nats_gives_up_on_a_gone_queue_worker_within_half_a_minute() -> None:
    # A stopped queue-worker never closes its session (it handles only SIGINT); what it was
    # handed waits until the server's heartbeats give up on it, ~5 min with the defaults.
    (nats,) = _pod("nats")["containers"]
    args = nats["args"]

    def arg(name: str) -> str:
        return str(args[args.index(name) + 1])

    interval = km.parse_go_duration(arg("--hb_interval"))
    timeout = km.parse_go_duration(arg("--hb_timeout"))
    assert int(arg("--hb_fail_count")) * (interval + timeout) <= 30
