"""The rendered configs: containerd (CRI options, registry host), CNI, kubelet, kube-proxy."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from harness.cluster import builder
from harness.cluster.local import addons, control_plane, node
from harness.cluster.local import config as cfg

NEEDED = ("containerd", "runc", "bridge", "kubelet", "kube-proxy", "kube-apiserver", "etcd")
needs_built = pytest.mark.skipif(
    any(builder.cached(name) is None for name in NEEDED),
    reason="the platform's programs are not built (./vsearch platform build): configs name them",
)


@pytest.fixture
def conf(tmp_path: Path) -> cfg.ClusterConfig:
    return cfg.ClusterConfig(state_dir=tmp_path, node_ip="192.0.2.7")


@needs_built
def test_containerd_config(conf: cfg.ClusterConfig) -> None:
    doc = tomllib.loads(node.containerd_toml(conf, "127.0.0.1:5001/platform/pause:v1"))
    assert doc["version"] == 3
    assert doc["grpc"]["address"] == str(conf.containerd_socket)
    assert doc["root"].startswith(str(conf.state_dir))
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == str(builder.cached("runc"))
    assert Path(runtime["cni"]["bin_dirs"][0], "bridge") == builder.cached("bridge")
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "127.0.0.1:5001/platform/pause:v1"
    hosts = tomllib.loads(node.hosts_toml("127.0.0.1:5001"))
    assert hosts["server"] == "http://127.0.0.1:5001"
    assert hosts["host"]["http://127.0.0.1:5001"]["capabilities"] == ["pull", "resolve"]


@needs_built
def test_written_files_and_cni(conf: cfg.ClusterConfig) -> None:
    files = node.write_configs(conf, "p:1")
    hosts = files["hosts"]
    config_path = tomllib.loads(files["containerd"].read_text())["plugins"][
        "io.containerd.cri.v1.images"
    ]["registry"]["config_path"]
    assert hosts == Path(config_path) / "127.0.0.1:5001" / "hosts.toml"
    cni = json.loads(files["cni"].read_text())
    bridge = cni["plugins"][0]
    assert (bridge["type"], bridge["bridge"], bridge["ipMasq"]) == ("bridge", cfg.BRIDGE, True)
    assert bridge["ipam"]["ranges"] == [[{"subnet": cfg.POD_CIDR}]]
    assert bridge["ipam"]["dataDir"].startswith(str(conf.state_dir))


@needs_built
def test_kubelet_and_proxy(conf: cfg.ClusterConfig) -> None:
    kubelet = node.kubelet_config(conf)
    assert kubelet["clusterDNS"] == [cfg.DNS_SERVICE_IP]
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}
    assert kubelet["authorization"] == {"mode": "Webhook"}
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{conf.containerd_socket}"
    proxy = node.kube_proxy_config(conf)
    assert proxy["mode"] == "iptables" and proxy["bindAddress"] == "127.0.0.1"
    yaml.safe_dump(kubelet)


@needs_built
def test_control_plane_flags_verify_tls(conf: cfg.ClusterConfig) -> None:
    api = control_plane.apiserver_argv(conf)
    assert "--anonymous-auth=false" in api
    assert f"--etcd-servers=https://127.0.0.1:{conf.ports.etcd_client}" in api
    assert f"--kubelet-certificate-authority={conf.pki / 'ca.crt'}" in api
    etcd = control_plane.etcd_argv(conf)
    assert "--client-cert-auth=true" in etcd


@needs_built
def test_kubeconfig_embeds_ca_and_client_cert(conf: cfg.ClusterConfig) -> None:
    from harness.cluster.local import pki

    pki.ensure_all(conf.pki, cfg.NODE_NAME, conf.node_ip, cfg.KUBERNETES_SERVICE_IP)
    paths = control_plane.write_kubeconfigs(conf)
    assert paths["admin"] == conf.kubeconfig
    assert (conf.kubeconfig.stat().st_mode & 0o777) == 0o600
    doc = yaml.safe_load(conf.kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://192.0.2.7:26443"
    assert "insecure-skip-tls-verify" not in cluster and cluster["certificate-authority-data"]


def test_coredns_manifest_is_pinned_at_apply() -> None:
    docs = list(yaml.safe_load_all(addons.coredns_manifest("127.0.0.1:5001/x@sha256:" + "a" * 64)))
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ]
    deployment = docs[4]["spec"]["template"]["spec"]
    assert deployment["containers"][0]["image"].endswith("@sha256:" + "a" * 64)
    assert docs[5]["spec"]["clusterIP"] == cfg.DNS_SERVICE_IP


def test_coredns_manifest_validates_against_the_kubernetes_schemas() -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (PyPI) is not in the venv"
    )
    text = addons.coredns_manifest("127.0.0.1:5001/platform/coredns@sha256:" + "b" * 64)
    for doc in yaml.safe_load_all(text):
        kv.validate(doc, "1.34.0", strict=True)


def test_image_layouts_are_reused_while_their_inputs_stay(conf: cfg.ClusterConfig) -> None:
    from harness.cluster import oci_image
    from harness.cluster.local import images

    spec = oci_image.ImageSpec(
        name="127.0.0.1:5001/platform/probe:v1",
        files={"/probe": oci_image.ImageFile(data=b"#!probe v1\n")},
        entrypoint=("/probe",),
    )
    first = images.build(conf, spec)
    index = first.layout / "index.json"
    stamp = index.stat().st_mtime_ns
    assert images.build(conf, spec) == first
    assert index.stat().st_mtime_ns == stamp  # not rewritten
    changed = spec.model_copy(update={"files": {"/probe": oci_image.ImageFile(data=b"v2\n")}})
    second = images.build(conf, changed)
    assert second.manifest_digest != first.manifest_digest
    assert json.loads(index.read_text())["manifests"][0]["digest"] == second.manifest_digest
