"""The local registry (a host process on 127.0.0.1:5001) and CoreDNS (in the cluster)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from harness.cluster.local import config as cfg
from harness.cluster.local import dns, images
from harness.cluster.local.control_plane import binary
from harness.cluster.local.processes import Supervisor, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[3]
COREDNS_MANIFEST = ROOT / "manifests" / "cluster" / "coredns.yaml"
KUBERNETES_NAME = f"kubernetes.default.svc.{cfg.CLUSTER_DOMAIN}"
COREDNS_IMAGE_PLACEHOLDER = "127.0.0.1:5001/platform/coredns:pinned-at-apply"


def registry_config(c: cfg.ClusterConfig) -> dict[str, object]:
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json"},
        "storage": {
            "filesystem": {"rootdirectory": str(c.state_dir / "registry")},
            "delete": {"enabled": True},
        },
        "http": {
            "addr": f"127.0.0.1:{c.ports.registry}",
            "debug": {"addr": f"127.0.0.1:{c.ports.registry_debug}"},
        },
    }


def start_registry(c: cfg.ClusterConfig, sup: Supervisor) -> float:
    path = c.state_dir / "registry.yaml"
    path.write_text(yaml.safe_dump(registry_config(c), sort_keys=False))
    (c.state_dir / "registry").mkdir(parents=True, exist_ok=True)
    sup.start("registry", [binary("registry"), "serve", str(path)])
    return wait_until(
        "registry /v2/",
        lambda: http_ok(f"http://127.0.0.1:{c.ports.registry}/v2/"),
        timeout=60,
        supervisor=sup,
        name="registry",
    )


def kubectl(c: cfg.ClusterConfig, *args: str, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        [binary("kubectl"), f"--kubeconfig={c.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def coredns_manifest(image: str) -> str:
    text = COREDNS_MANIFEST.read_text()
    if COREDNS_IMAGE_PLACEHOLDER not in text:
        raise ValueError(f"{COREDNS_MANIFEST} has no image {COREDNS_IMAGE_PLACEHOLDER}")
    return text.replace(COREDNS_IMAGE_PLACEHOLDER, image)


def deploy_coredns(c: cfg.ClusterConfig) -> str:
    """Build and push CoreDNS's image, apply our manifest pinned by digest, wait for it."""
    image = images.push(images.build(c, images.coredns_spec()))
    applied = kubectl(c, "apply", "-f", "-", stdin=coredns_manifest(image))
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl apply coredns: {applied.stderr.strip()}")
    rolled = kubectl(
        c,
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/coredns",
        "--timeout=180s",
        timeout=200,
    )
    if rolled.returncode != 0:
        pods = kubectl(c, "-n", "kube-system", "describe", "pods", "-l", "k8s-app=kube-dns")
        raise RuntimeError(f"coredns not available: {rolled.stderr.strip()}\n{pods.stdout[-3000:]}")
    # the Deployment's status may be the one stored before a restart: ask the DNS itself
    wait_until(
        "CoreDNS answering kubernetes.default through the kube-dns Service",
        lambda: dns.query_a(cfg.DNS_SERVICE_IP, KUBERNETES_NAME) == [cfg.KUBERNETES_SERVICE_IP],
        timeout=120,
    )
    return image
