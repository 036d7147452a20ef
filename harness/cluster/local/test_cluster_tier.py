"""Cluster tier: the real host-process cluster, from nothing to a pod resolving Services, and back.

Opt-in (``slow``: ``./vsearch test --all`` or ``pytest -m slow``): it needs root, the built
platform (``./vsearch platform build``), and the cluster's fixed ports free, and it edits the
host's iptables and mounts while it runs. Measured here: ~50 s with every binary cached (up
~25 s; down ~20 s after the simulated containerd crash; load average 5-8 on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness.cluster import builder
from harness.cluster.local import cluster, images, node
from harness.cluster.local import config as cfg

pytestmark = pytest.mark.slow

# netcheck: the test's own pod image, which `up` does not need.
NEEDED = (*cluster.PROGRAMS, "netcheck")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (containerd, runc, iptables, mounts)"
    missing = [name for name in NEEDED if builder.cached(name) is None]
    if missing:
        return f"not built: {', '.join(missing)} (./vsearch platform build {' '.join(missing)})"
    if shutil.which("skopeo") is None or shutil.which("iptables-save") is None:
        return "needs skopeo and iptables"
    ports = cfg.Ports()
    for port in (ports.apiserver, ports.registry, ports.etcd_client, ports.kubelet):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 or (
                port == ports.apiserver and s.connect_ex((cfg.node_ip(), port)) == 0
            ):
                return f"port {port} is in use (a cluster is up: ./vsearch platform down first)"
    if Path(f"/sys/class/net/{cfg.BRIDGE}").exists():
        return f"the bridge {cfg.BRIDGE} exists (a cluster is up)"
    return None


def _our_processes(state: Path) -> list[str]:
    cache = str(builder.cache_root())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if exe.startswith(cache) and str(state) in cmdline:
            found.append(f"{proc.name} {cmdline[:120]}")
    return found


def test_up_pod_dns_down(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path / "cluster"
    c = cfg.ClusterConfig(state_dir=state, node_ip=cfg.node_ip())
    began = time.monotonic()
    try:
        result = cluster.up(c)
        rows = {row.name: row for row in cluster.status(c)}
        assert all(row.healthy for row in rows.values()), rows
        assert rows["kube-apiserver"].version == "v1.34.4"
        image = images.push(images.build(c, images.netcheck_spec()))
        kubectl = [str(builder.cached("kubectl")), f"--kubeconfig={result.kubeconfig}"]
        names = ["kubernetes.default", "kube-dns.kube-system.svc.cluster.local"]
        subprocess.run(
            [*kubectl, "run", "netcheck", "--restart=Never", f"--image={image}", "--", *names],
            check=True,
            capture_output=True,
        )
        phase = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            phase = subprocess.run(
                [*kubectl, "get", "pod", "netcheck", "-o", "jsonpath={.status.phase}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            time.sleep(1)
        logs = subprocess.run(
            [*kubectl, "logs", "netcheck"], capture_output=True, text=True, check=False
        ).stdout
        assert phase == "Succeeded", (phase, logs)
        answers = {a["name"]: a["addrs"] for a in map(json.loads, logs.splitlines())}
        assert answers["kubernetes.default"] == [cfg.KUBERNETES_SERVICE_IP]
        assert answers["kube-dns.kube-system.svc.cluster.local"] == [cfg.DNS_SERVICE_IP]
        print(f"up + pod + DNS in {time.monotonic() - began:.1f} s; steps {result.steps}")
        # containerd crashing first must not leak its shims or the pods' processes
        crashed = cluster.supervisor(c).alive("containerd")
        assert crashed is not None
        os.kill(crashed.pid, signal.SIGKILL)
    finally:
        done = cluster.down(c)
    assert "kube-apiserver" in done.stopped and "kubelet" in done.stopped
    assert _our_processes(state) == []
    assert node.mounts_under(state) == []
    assert not Path(f"/sys/class/net/{cfg.BRIDGE}").exists()
    assert not list(Path("/sys/fs/cgroup").glob("*/kubepods")), "pod processes are left"
    assert not cfg.HOST_OWNER.exists()
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert "KUBE-SERVICES" not in nat and cfg.CNI_NETWORK not in nat
