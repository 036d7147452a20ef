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
from harness.cluster.platform_images import REGISTRY, tag_for

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


def test_images_are_the_pinned_builds() -> None:
    containers = _containers()
    assert containers["gateway"]["image"] == _image("openfaas-gateway")
    assert containers["faas-provider"]["image"] == _image("faas-provider")
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
