"""etcd, kube-apiserver, kube-controller-manager, kube-scheduler and their kubeconfigs."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from harness.cluster import builder
from harness.cluster.local import config as cfg
from harness.cluster.local.processes import Supervisor, http_ok, tls_context, wait_until


def binary(name: str) -> str:
    """The cached build of ``name``, built now (or reused) when missing."""
    found = builder.cached(name)
    if found is None:
        found = builder.build(name).binary
    return str(found)


def kubeconfig_text(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig with the CA and the client certificate embedded (TLS verified)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "vsearch",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": "vsearch", "context": {"cluster": "vsearch", "user": user}}],
        "current-context": "vsearch",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def write_kubeconfigs(c: cfg.ClusterConfig) -> dict[str, Path]:
    """admin (the public one at <state>/kubeconfig) and one per component under <state>/kube."""
    out: dict[str, Path] = {}
    for name, cert in (
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
        ("kube-proxy", "kube-proxy"),
        ("kubelet", "kubelet-client"),
    ):
        path = c.kubeconfig if name == "admin" else c.state_dir / "kube" / f"{name}.kubeconfig"
        text = kubeconfig_text(
            c.apiserver_url, c.pki / "ca.crt", c.pki / f"{cert}.crt", c.pki / f"{cert}.key", name
        )
        out[name] = write_private(path, text)
    return out


def etcd_argv(c: cfg.ClusterConfig) -> list[str]:
    p, pki = c.ports, c.pki
    client = f"https://127.0.0.1:{p.etcd_client}"
    peer = f"http://127.0.0.1:{p.etcd_peer}"
    return [
        binary("etcd"),
        "--name=vsearch",
        f"--data-dir={c.state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=vsearch={peer}",
        f"--cert-file={pki / 'etcd-server.crt'}",
        f"--key-file={pki / 'etcd-server.key'}",
        f"--trusted-ca-file={pki / 'ca.crt'}",
        "--client-cert-auth=true",
        "--listen-metrics-urls=",
        "--log-level=warn",
    ]


def apiserver_argv(c: cfg.ClusterConfig) -> list[str]:
    p, pki = c.ports, c.pki
    return [
        binary("kube-apiserver"),
        f"--etcd-servers=https://127.0.0.1:{p.etcd_client}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--bind-address={c.node_ip}",
        f"--advertise-address={c.node_ip}",
        f"--secure-port={p.apiserver}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={cfg.SERVICE_CIDR}",
        "--allow-privileged=false",
        "--profiling=false",
    ]


def controller_manager_argv(c: cfg.ClusterConfig) -> list[str]:
    kube = str(c.state_dir / "kube" / "controller-manager.kubeconfig")
    pki = c.pki
    return [
        binary("kube-controller-manager"),
        f"--kubeconfig={kube}",
        f"--authentication-kubeconfig={kube}",
        f"--authorization-kubeconfig={kube}",
        "--bind-address=127.0.0.1",
        f"--secure-port={c.ports.controller_manager}",
        f"--tls-cert-file={pki / 'controller-manager-server.crt'}",
        f"--tls-private-key-file={pki / 'controller-manager-server.key'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={cfg.SERVICE_CIDR}",
        "--controllers=*,-cloud-node-lifecycle",
        "--leader-elect=false",
        "--profiling=false",
    ]


def scheduler_argv(c: cfg.ClusterConfig) -> list[str]:
    kube = str(c.state_dir / "kube" / "scheduler.kubeconfig")
    return [
        binary("kube-scheduler"),
        f"--kubeconfig={kube}",
        f"--authentication-kubeconfig={kube}",
        f"--authorization-kubeconfig={kube}",
        "--bind-address=127.0.0.1",
        f"--secure-port={c.ports.scheduler}",
        f"--tls-cert-file={c.pki / 'scheduler-server.crt'}",
        f"--tls-private-key-file={c.pki / 'scheduler-server.key'}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def admin_tls(c: cfg.ClusterConfig):
    return tls_context(c.pki / "ca.crt", c.pki / "admin.crt", c.pki / "admin.key")


def start(c: cfg.ClusterConfig, sup: Supervisor) -> dict[str, float]:
    """Start what is not running and wait for each to be healthy; seconds per component."""
    took: dict[str, float] = {}
    (c.state_dir / "etcd").mkdir(parents=True, exist_ok=True)
    os.chmod(c.state_dir / "etcd", 0o700)
    sup.start("etcd", etcd_argv(c))
    etcd_tls = tls_context(
        c.pki / "ca.crt", c.pki / "apiserver-etcd-client.crt", c.pki / "apiserver-etcd-client.key"
    )
    took["etcd"] = wait_until(
        "etcd /health",
        lambda: http_ok(f"https://127.0.0.1:{c.ports.etcd_client}/health", context=etcd_tls),
        timeout=60,
        supervisor=sup,
        name="etcd",
    )
    sup.start("kube-apiserver", apiserver_argv(c))
    tls = admin_tls(c)
    took["kube-apiserver"] = wait_until(
        "kube-apiserver /readyz",
        lambda: http_ok(f"{c.apiserver_url}/readyz", context=tls),
        timeout=180,
        supervisor=sup,
        name="kube-apiserver",
    )
    sup.start("kube-controller-manager", controller_manager_argv(c))
    sup.start("kube-scheduler", scheduler_argv(c))
    for name, port in (
        ("kube-controller-manager", c.ports.controller_manager),
        ("kube-scheduler", c.ports.scheduler),
    ):
        took[name] = wait_until(
            f"{name} /healthz",
            lambda port=port: http_ok(f"https://127.0.0.1:{port}/healthz", context=tls),
            timeout=120,
            supervisor=sup,
            name=name,
        )
    return took
