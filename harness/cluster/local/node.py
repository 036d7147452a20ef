"""The node: containerd (CRI), kubelet, kube-proxy and the CNI bridge network, and their undoing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import yaml

from harness.cluster.local import config as cfg
from harness.cluster.local.control_plane import binary
from harness.cluster.local.processes import Supervisor, http_ok, http_text, tls_context, wait_until


def containerd_dir(c: cfg.ClusterConfig) -> Path:
    return c.state_dir / "containerd"


def hosts_toml(registry: str) -> str:
    """containerd's registry host config: the local registry is plain HTTP."""
    return (
        f'server = "http://{registry}"\n\n'
        f'[host."http://{registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
        "  skip_verify = true\n"
    )


def containerd_toml(c: cfg.ClusterConfig, sandbox_image: str) -> str:
    """containerd 2.x config (version 3): private root/state/socket, runc, CNI, registry."""
    base = containerd_dir(c)
    cni_bin = Path(binary("bridge")).parent
    lines = [
        "version = 3",
        f'root = "{base / "root"}"',
        f'state = "{c.run / "containerd" / "state"}"',
        "",
        "[grpc]",
        f'  address = "{c.containerd_socket}"',
        "",
        "[ttrpc]",
        f'  address = "{c.containerd_socket}.ttrpc"',
        "",
        "[plugins]",
        "  [plugins.'io.containerd.cri.v1.runtime']",
        # lowering oom_score_adj needs CAP_SYS_RESOURCE, which our root lacks (README)
        "    restrict_oom_score_adj = true",
        "    netns_mounts_under_state_dir = true",
        "    [plugins.'io.containerd.cri.v1.runtime'.containerd]",
        "      default_runtime_name = 'runc'",
        "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        "        runtime_type = 'io.containerd.runc.v2'",
        "        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        f"          BinaryName = '{binary('runc')}'",
        f"          Root = '{c.run / 'runc'}'",
        "    [plugins.'io.containerd.cri.v1.runtime'.cni]",
        f"      bin_dirs = ['{cni_bin}']",
        f"      conf_dir = '{base / 'cni' / 'net.d'}'",
        "  [plugins.'io.containerd.cri.v1.images']",
        "    [plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"      sandbox = '{sandbox_image}'",
        "    [plugins.'io.containerd.cri.v1.images'.registry]",
        f"      config_path = '{base / 'certs.d'}'",
    ]
    return "\n".join(lines) + "\n"


def cni_conflist(c: cfg.ClusterConfig) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": cfg.CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cfg.POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(c.state_dir / "cni" / "networks"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(c: cfg.ClusterConfig) -> dict[str, object]:
    pki = c.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": c.node_ip,
        "port": c.ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": c.ports.kubelet_healthz,
        "tlsCertFile": str(pki / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-server.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [cfg.DNS_SERVICE_IP],
        "clusterDomain": cfg.CLUSTER_DOMAIN,
        "containerRuntimeEndpoint": f"unix://{c.containerd_socket}",
        "podCIDR": cfg.POD_CIDR,
        "resolvConf": "/etc/resolv.conf",
        # a shared CI disk is often >85% full: do not evict or taint for it
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
    }


def kube_proxy_config(c: cfg.ClusterConfig) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(c.state_dir / "kube" / "kube-proxy.kubeconfig")},
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{c.ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{c.ports.proxy_metrics}",
        "hostnameOverride": cfg.NODE_NAME,
        "clusterCIDR": cfg.POD_CIDR,
        "conntrack": {"maxPerCore": 0},  # leave the host's nf_conntrack_max alone
    }


def write_configs(c: cfg.ClusterConfig, sandbox_image: str) -> dict[str, Path]:
    base = containerd_dir(c)
    files = {
        "containerd": base / "config.toml",
        "hosts": base / "certs.d" / cfg.REGISTRY / "hosts.toml",
        "cni": base / "cni" / "net.d" / "10-vsearch.conflist",
        "kubelet": c.state_dir / "kube" / "kubelet.yaml",
        "kube-proxy": c.state_dir / "kube" / "kube-proxy.yaml",
    }
    texts = {
        "containerd": containerd_toml(c, sandbox_image),
        "hosts": hosts_toml(cfg.REGISTRY),
        "cni": json.dumps(cni_conflist(c), indent=2) + "\n",
        "kubelet": yaml.safe_dump(kubelet_config(c), sort_keys=False),
        "kube-proxy": yaml.safe_dump(kube_proxy_config(c), sort_keys=False),
    }
    for key, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[key])
    return files


def runtime_env() -> dict[str, str]:
    env = dict(os.environ)
    shim_dir = str(Path(binary("containerd-shim-runc-v2")).parent)
    env["PATH"] = f"{shim_dir}:{Path(binary('runc')).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def ctr(c: cfg.ClusterConfig, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("ctr"), "--address", str(c.containerd_socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=check,
    )


def start_containerd(c: cfg.ClusterConfig, sup: Supervisor) -> float:
    c.run.mkdir(parents=True, exist_ok=True)
    sup.start(
        "containerd",
        [binary("containerd"), "--config", str(containerd_dir(c) / "config.toml")],
        env=runtime_env(),
    )
    return wait_until(
        "containerd socket",
        lambda: c.containerd_socket.exists() and ctr(c, "version", check=False).returncode == 0,
        timeout=60,
        supervisor=sup,
        name="containerd",
    )


def node_ready(c: cfg.ClusterConfig) -> bool:
    tls = tls_context(c.pki / "ca.crt", c.pki / "admin.crt", c.pki / "admin.key")
    node = json.loads(http_text(f"{c.apiserver_url}/api/v1/nodes/{cfg.NODE_NAME}", context=tls))
    return any(
        cond.get("type") == "Ready" and cond.get("status") == "True"
        for cond in node.get("status", {}).get("conditions", [])
    )


def start_kubelet(c: cfg.ClusterConfig, sup: Supervisor) -> float:
    sup.start(
        "kubelet",
        [
            binary("kubelet"),
            f"--config={c.state_dir / 'kube' / 'kubelet.yaml'}",
            f"--kubeconfig={c.state_dir / 'kube' / 'kubelet.kubeconfig'}",
            f"--root-dir={c.state_dir / 'kubelet'}",
            f"--hostname-override={cfg.NODE_NAME}",
            f"--node-ip={c.node_ip}",
            "--v=1",
        ],
        env=runtime_env(),
    )
    return wait_until(
        "node Ready", lambda: node_ready(c), timeout=120, supervisor=sup, name="kubelet"
    )


def start_kube_proxy(c: cfg.ClusterConfig, sup: Supervisor) -> float:
    sup.start(
        "kube-proxy",
        [binary("kube-proxy"), f"--config={c.state_dir / 'kube' / 'kube-proxy.yaml'}"],
    )
    return wait_until(
        "kube-proxy /healthz",
        lambda: http_ok(f"http://127.0.0.1:{c.ports.proxy_healthz}/healthz"),
        timeout=60,
        supervisor=sup,
        name="kube-proxy",
    )


def remove_tasks(c: cfg.ClusterConfig) -> list[str]:
    """Kill and delete every container of containerd's k8s.io namespace (their shims exit)."""
    if not c.containerd_socket.exists():
        return []
    listed = ctr(c, "tasks", "ls", "-q", check=False).stdout.split()
    for task in listed:
        ctr(c, "tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
    for task in listed:
        ctr(c, "tasks", "delete", "--force", task, check=False)
    containers = ctr(c, "containers", "ls", "-q", check=False).stdout.split()
    for container in containers:
        ctr(c, "containers", "delete", container, check=False)
    return containers


CNI_COMMENT = re.compile(r'--comment "name: \\"' + re.escape(cfg.CNI_NETWORK) + r'\\" id: ')


def remove_cni_nat_rules() -> int:
    """Delete the bridge plugin's masquerade rules for our network and their CNI-* chains."""
    saved = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False
    ).stdout
    removed, chains = 0, set()
    for line in saved.splitlines():
        if line.startswith("-A POSTROUTING") and CNI_COMMENT.search(line):
            target = re.search(r"-j (CNI-[0-9a-f]+)", line)
            if target:
                chains.add(target.group(1))
            rule = subprocess.run(
                ["sh", "-c", f"iptables -t nat -D {line[3:]}"], capture_output=True, check=False
            )
            removed += rule.returncode == 0
    for chain in chains:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True, check=False)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True, check=False)
    return removed


# The chains the kubelet adds to the host's tables (pkg/kubelet/kubelet_network_linux.go).
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def remove_kubelet_chains() -> int:
    """Delete the kubelet's chains (and INPUT/OUTPUT jumps to KUBE-FIREWALL), IPv4 and IPv6."""
    removed = 0
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            saved = subprocess.run(
                [f"{tool}-save", "-t", table], capture_output=True, text=True, check=False
            ).stdout
            for line in saved.splitlines():
                if (
                    line.startswith("-A ")
                    and re.search(r"-j (KUBE-FIREWALL|KUBE-KUBELET-CANARY)$", line)
                    and not line.startswith(("-A KUBE-FIREWALL ", "-A KUBE-KUBELET-CANARY "))
                ):
                    subprocess.run(
                        ["sh", "-c", f"{tool} -t {table} -D {line[3:]}"],
                        capture_output=True,
                        check=False,
                    )
            for chain in KUBELET_CHAINS:
                if f":{chain} " in saved:
                    subprocess.run(
                        [tool, "-t", table, "-F", chain], capture_output=True, check=False
                    )
                    done = subprocess.run(
                        [tool, "-t", table, "-X", chain], capture_output=True, check=False
                    )
                    removed += done.returncode == 0
    return removed


def _pod_cgroup_tops() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [*root.glob("*/kubepods"), *root.glob("kubepods"), *root.glob("*/kubepods.slice")]


def kill_pod_processes() -> list[int]:
    """SIGKILL what still runs in the kubepods cgroups (a pod whose shim died with containerd)."""
    pids: set[int] = set()
    for top in _pod_cgroup_tops():
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except (OSError, ValueError):
                continue
    for pid in sorted(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return sorted(pids)


def remove_pod_cgroups() -> int:
    """rmdir the kubelet's kubepods cgroups (empty once every container is gone), v1 and v2."""
    removed = 0
    for top in _pod_cgroup_tops():
        for group in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                group.rmdir()
        try:
            top.rmdir()
            removed += 1
        except OSError:
            pass
    return removed


def mounts_under(root: Path) -> list[str]:
    found = []
    prefix = str(root.resolve()) + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> int:
    count = 0
    for point in mounts_under(root):
        done = subprocess.run(["umount", point], capture_output=True, check=False)
        if done.returncode != 0:
            done = subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        count += done.returncode == 0
    return count


def kube_proxy_cleanup() -> bool:
    done = subprocess.run(
        [binary("kube-proxy"), "--cleanup"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def remove_bridge() -> bool:
    if not Path(f"/sys/class/net/{cfg.BRIDGE}").exists():
        return False
    return subprocess.run(["ip", "link", "del", cfg.BRIDGE], check=False).returncode == 0
