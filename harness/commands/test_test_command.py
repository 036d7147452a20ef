"""`./vsearch test` says what became of the cluster tier it does not run."""

from __future__ import annotations

from pathlib import Path

from harness.commands.test import cluster_tier_line


def test_the_default_run_says_why_the_cluster_tier_is_skipped(tmp_path: Path) -> None:
    missing = tmp_path / "no-kubeconfig"
    line = cluster_tier_line({"VSEARCH_BACKEND": "embedded", "VSEARCH_KUBECONFIG": str(missing)})
    assert line.startswith("== cluster tier: skipped: no cluster: no kubeconfig at ")
    assert str(missing) in line and "./vsearch test --cluster" in line
