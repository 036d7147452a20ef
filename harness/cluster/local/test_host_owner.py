"""One host network per machine: only the cluster that claimed it may take or undo it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.cluster.local import cluster
from harness.cluster.local import config as cfg


@pytest.fixture
def owner_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "owner"
    monkeypatch.setattr(cfg, "HOST_OWNER", path)
    return path


def test_a_second_cluster_is_refused_while_the_first_node_runs(
    tmp_path: Path, owner_file: Path
) -> None:
    first = cfg.ClusterConfig(state_dir=tmp_path / "first", node_ip="192.0.2.7")
    second = cfg.ClusterConfig(state_dir=tmp_path / "second", node_ip="192.0.2.7")
    cluster.claim_host(first)
    assert cluster.host_owner() == first.state_dir.resolve()
    sup = cluster.supervisor(first)
    sup.start("containerd", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(cluster.HostInUse, match="is up on this host"):
            cluster.claim_host(second)
        # a down of the second state dir stops its own processes only: the owner stays
        done = cluster.down(second)
        assert done.stopped == [] and not done.bridge_removed and done.nat_rules_removed == 0
        assert cluster.host_owner() == first.state_dir.resolve()
    finally:
        sup.stop("containerd")
    cluster.claim_host(second)  # the first node is gone: the host can be taken
    assert cluster.host_owner() == second.state_dir.resolve()
