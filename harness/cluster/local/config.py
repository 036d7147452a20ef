"""Where the host-process cluster keeps its state, which ports and addresses it uses."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict

NODE_NAME = "vsearch-node"
CLUSTER_DOMAIN = "cluster.local"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "vsb0"
CNI_NETWORK = "vsearch-pods"
REGISTRY = "127.0.0.1:5001"
# The host's network (bridge, iptables chains, kubepods cgroups) is one per machine: the cluster
# that set it up writes its state dir here, and only that cluster's `down` undoes it.
HOST_OWNER = Path("/run/vsearch-cluster.owner")


class Ports(BaseModel):
    """Every port the cluster listens on; chosen away from the defaults other tools take."""

    model_config = ConfigDict(frozen=True)

    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 26443
    controller_manager: int = 26457
    scheduler: int = 26459
    kubelet: int = 26250
    kubelet_healthz: int = 26248
    proxy_healthz: int = 26256
    proxy_metrics: int = 26249
    registry: int = 5001
    registry_debug: int = 5002


class ClusterConfig(BaseModel):
    """One cluster: its state directory and the addresses its parts use."""

    model_config = ConfigDict(frozen=True)

    state_dir: Path
    node_ip: str
    ports: Ports = Ports()

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run(self) -> Path:
        return self.state_dir / "run"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.node_ip}:{self.ports.apiserver}"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"


def state_dir() -> Path:
    configured = os.environ.get("VSEARCH_CLUSTER_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "vsearch-cluster"


def node_ip() -> str:
    """The address of the default route's interface (pods reach the API server there)."""
    out = subprocess.run(
        ["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "src" in out:
        return out[out.index("src") + 1]
    return socket.gethostbyname(socket.gethostname())


def load() -> ClusterConfig:
    return ClusterConfig(state_dir=state_dir(), node_ip=node_ip())
