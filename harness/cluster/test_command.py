"""`./vsearch platform list|build|status|down` through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.cluster.builder import COMPONENTS, ROOT


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VSEARCH_PLATFORM_CACHE=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "platform", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_list_names_every_pin_and_nothing_built_in_an_empty_cache(tmp_path: Path) -> None:
    done = _cli("list", "--json", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "ok"
    rows = document["programs"]
    assert [row["name"] for row in rows] == list(COMPONENTS)
    assert all(row["binary"] is None for row in rows)
    minio = next(row for row in rows if row["name"] == "minio")
    assert minio["version"] == "v0.0.0-20260212201848-7aac2a2c5b7c"


def test_an_unknown_program_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("build", "k3s", "--json", cache=tmp_path)
    assert done.returncode == 2 and "unknown program(s) k3s" in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "usage"
    assert not any(tmp_path.iterdir())  # nothing was built or created


def test_status_and_down_of_a_cluster_that_is_not_there(tmp_path: Path) -> None:
    """An empty state dir: every component DOWN (exit 1, one JSON document); down is a no-op."""
    env_dir = tmp_path / "cluster"
    env = dict(os.environ, VSEARCH_CLUSTER_DIR=str(env_dir), PYTHONPATH=str(ROOT))
    status = subprocess.run(
        [sys.executable, "-m", "harness.cli", "platform", "status", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    document = json.loads(status.stdout)
    assert document["status"] == "degraded"
    names = [row["name"] for row in document["components"]]
    assert names[:3] == ["registry", "etcd", "kube-apiserver"] and names[-1] == "coredns"
    assert all(not row["healthy"] and row["pid"] is None for row in document["components"])
    down = subprocess.run(
        [sys.executable, "-m", "harness.cli", "platform", "down", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["stopped"] == []
