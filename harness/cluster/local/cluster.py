"""`./vsearch platform up|down|status`: the host-process cluster, in order."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from pydantic import BaseModel

from harness.cluster import builder
from harness.cluster.local import addons, control_plane, dns, images, node, pki
from harness.cluster.local import config as cfg
from harness.cluster.local.processes import Supervisor, http_ok, http_text, tls_context

log = logging.getLogger("vsearch.cluster")

# Started in this order by `up`, stopped in reverse by `down`.
PROCESSES = (
    "registry",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
)
COMPONENT_OF = {"registry": "registry", "containerd": "containerd"}
# Every program `up` needs built (the processes, their tools and plug-ins, the images' programs).
PROGRAMS = (
    *PROCESSES,
    "ctr",
    "kubectl",
    "containerd-shim-runc-v2",
    "runc",
    "bridge",
    "loopback",
    "host-local",
    "portmap",
    "pause",
    "coredns",
)


class ComponentStatus(BaseModel):
    name: str
    pid: int | None
    healthy: bool
    version: str | None
    detail: str = ""


class UpResult(BaseModel):
    kubeconfig: Path
    state_dir: Path
    steps: dict[str, float]  # seconds per step
    coredns_image: str


def supervisor(c: cfg.ClusterConfig) -> Supervisor:
    return Supervisor(c.run / "pids", c.logs)


def _timed(steps: dict[str, float], name: str, began: float) -> None:
    steps[name] = round(time.monotonic() - began, 2)
    log.info(json.dumps({"event": "cluster_up_step", "step": name, "seconds": steps[name]}))


class HostInUse(RuntimeError):
    """The host cannot take this cluster's node: not root, or another cluster's node is up."""


def up(c: cfg.ClusterConfig | None = None) -> UpResult:
    """From nothing (or a partly running cluster) to a Ready node with CoreDNS; idempotent."""
    if os.geteuid() != 0:
        raise HostInUse("needs root: containerd, runc, the CNI bridge and iptables change the host")
    c = c or cfg.load()
    sup = supervisor(c)
    steps: dict[str, float] = {}
    c.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(c.state_dir, 0o700)
    t = time.monotonic()
    for name in PROGRAMS:
        control_plane.binary(name)  # built now when missing (cold builds take minutes)
    _timed(steps, "binaries", t)
    t = time.monotonic()
    pki.ensure_all(c.pki, cfg.NODE_NAME, c.node_ip, cfg.KUBERNETES_SERVICE_IP)
    control_plane.write_kubeconfigs(c)
    _timed(steps, "pki", t)
    t = time.monotonic()
    addons.start_registry(c, sup)
    _timed(steps, "registry", t)
    t = time.monotonic()
    steps.update({f"wait:{k}": round(v, 2) for k, v in control_plane.start(c, sup).items()})
    _timed(steps, "control-plane", t)
    t = time.monotonic()
    pause = images.build(c, images.pause_spec())
    node.write_configs(c, pause.name)
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if bridge_nf.exists() and bridge_nf.read_text().strip() != "1":
        bridge_nf.write_text("1\n")  # Service traffic between pods of one bridge
    claim_host(c)
    node.start_containerd(c, sup)
    images.import_into_containerd(c, pause)
    _timed(steps, "containerd", t)
    t = time.monotonic()
    node.start_kubelet(c, sup)
    _timed(steps, "kubelet (node Ready)", t)
    t = time.monotonic()
    node.start_kube_proxy(c, sup)
    _timed(steps, "kube-proxy", t)
    t = time.monotonic()
    image = addons.deploy_coredns(c)
    _timed(steps, "coredns", t)
    return UpResult(
        kubeconfig=c.kubeconfig, state_dir=c.state_dir, steps=steps, coredns_image=image
    )


class DownResult(BaseModel):
    stopped: list[str]
    containers_removed: int
    nat_rules_removed: int
    unmounted: int
    bridge_removed: bool
    kube_proxy_cleanup: bool
    kubelet_chains_removed: int
    pod_cgroups_removed: int
    leftover_shims: list[int]
    pod_processes_killed: list[int] = []


def _shim_pids(c: cfg.ClusterConfig) -> list[int]:
    """containerd-shim-runc-v2 processes of this cluster (their exe is our cached build)."""
    shim = builder.cached("containerd-shim-runc-v2")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if shim is not None and exe == str(shim) and str(c.containerd_socket) in cmdline:
            found.append(int(proc.name))
    return found


def host_owner() -> Path | None:
    try:
        return Path(cfg.HOST_OWNER.read_text().strip())
    except OSError:
        return None


def claim_host(c: cfg.ClusterConfig) -> None:
    owner = host_owner()
    if owner is not None and owner.resolve() != c.state_dir.resolve():
        other = Supervisor(owner / "run" / "pids", owner / "logs")
        if any(other.alive(name) for name in ("containerd", "kubelet", "kube-proxy")):
            raise HostInUse(f"the cluster in {owner} is up on this host: down it first")
    cfg.HOST_OWNER.write_text(f"{c.state_dir.resolve()}\n")


def down(c: cfg.ClusterConfig | None = None, *, purge: bool = False) -> DownResult:
    """Stop every process `up` started and undo what they changed on the host."""
    c = c or cfg.load()
    sup = supervisor(c)
    stopped = []
    for name in ("kube-proxy", "kubelet"):
        if sup.stop(name):
            stopped.append(name)
    owner = host_owner()
    owns_host = owner is not None and owner.resolve() == c.state_dir.resolve()
    cleanup = node.kube_proxy_cleanup() if owns_host and builder.cached("kube-proxy") else False
    removed = len(node.remove_tasks(c)) if sup.alive("containerd") else 0
    for name in (
        "containerd",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
        "registry",
    ):
        if sup.stop(name, timeout=20):
            stopped.append(name)
    leftovers = _shim_pids(c)
    for pid in leftovers:  # a shim whose containerd died first: its tasks are gone with it
        os.kill(pid, 9)
    nat = chains = cgroups = 0
    killed: list[int] = []
    bridge = False
    if owns_host:  # another cluster's (or nobody's) host network is left alone
        nat = node.remove_cni_nat_rules()
        chains = node.remove_kubelet_chains()
        killed = node.kill_pod_processes()
        if killed:
            time.sleep(0.5)  # the kernel empties the cgroups once the processes are reaped
        cgroups = node.remove_pod_cgroups()
        bridge = node.remove_bridge()
        cfg.HOST_OWNER.unlink(missing_ok=True)
    unmounted = node.unmount_all(c.state_dir)
    shutil.rmtree(c.state_dir / "cni" / "networks", ignore_errors=True)  # IPAM leases
    if purge and not node.mounts_under(c.state_dir):
        shutil.rmtree(c.state_dir, ignore_errors=True)
    return DownResult(
        stopped=stopped,
        containers_removed=removed,
        nat_rules_removed=nat,
        unmounted=unmounted,
        bridge_removed=bridge,
        kube_proxy_cleanup=cleanup,
        kubelet_chains_removed=chains,
        pod_cgroups_removed=cgroups,
        leftover_shims=leftovers,
        pod_processes_killed=killed,
    )


def _version(name: str) -> str | None:
    record = builder.cached_record(name)
    return record.version if record else None


def status(c: cfg.ClusterConfig | None = None) -> list[ComponentStatus]:
    c = c or cfg.load()
    sup = supervisor(c)
    have_pki = (c.pki / "admin.crt").is_file()
    admin = (
        tls_context(c.pki / "ca.crt", c.pki / "admin.crt", c.pki / "admin.key")
        if have_pki
        else None
    )
    etcd_tls = (
        tls_context(
            c.pki / "ca.crt",
            c.pki / "apiserver-etcd-client.crt",
            c.pki / "apiserver-etcd-client.key",
        )
        if have_pki
        else None
    )
    p = c.ports
    checks = {
        "registry": lambda: http_ok(f"http://127.0.0.1:{p.registry}/v2/"),
        "etcd": lambda: http_ok(f"https://127.0.0.1:{p.etcd_client}/health", context=etcd_tls),
        "kube-apiserver": lambda: http_ok(f"{c.apiserver_url}/readyz", context=admin),
        "kube-controller-manager": lambda: http_ok(
            f"https://127.0.0.1:{p.controller_manager}/healthz", context=admin
        ),
        "kube-scheduler": lambda: http_ok(
            f"https://127.0.0.1:{p.scheduler}/healthz", context=admin
        ),
        "containerd": lambda: node.ctr(c, "version", check=False).returncode == 0,
        "kubelet": lambda: node.node_ready(c),
        "kube-proxy": lambda: http_ok(f"http://127.0.0.1:{p.proxy_healthz}/healthz"),
    }
    rows = []
    for name in PROCESSES:
        rec = sup.alive(name)
        healthy = False
        if rec is not None and have_pki:
            try:
                healthy = bool(checks[name]())
            except (OSError, ValueError):
                healthy = False
        rows.append(
            ComponentStatus(
                name=name, pid=rec.pid if rec else None, healthy=healthy, version=_version(name)
            )
        )
    coredns_ok, detail = False, ""
    if admin is not None and sup.alive("kube-apiserver"):
        try:
            dep = json.loads(
                http_text(
                    f"{c.apiserver_url}/apis/apps/v1/namespaces/kube-system/deployments/coredns",
                    context=admin,
                )
            )
            ready = dep.get("status", {}).get("readyReplicas", 0) or 0
            answer = dns.query_a(cfg.DNS_SERVICE_IP, addons.KUBERNETES_NAME)
            coredns_ok = ready >= 1 and answer == [cfg.KUBERNETES_SERVICE_IP]
            detail = f"{ready}/{dep.get('spec', {}).get('replicas')} ready, "
            detail += f"{addons.KUBERNETES_NAME} -> {','.join(answer) or 'no answer'}"
        except (OSError, ValueError) as exc:
            detail = str(exc)[:100]
    rows.append(
        ComponentStatus(
            name="coredns", pid=None, healthy=coredns_ok, version=_version("coredns"), detail=detail
        )
    )
    return rows
