"""from_env: the environment names the cluster; what is missing is said, never guessed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.backends import from_env

ROOT = Path(__file__).resolve().parents[2]


def test_default_is_embedded_and_k8s_options_come_from_env(tmp_path: Path) -> None:
    assert from_env.backend_name({}) == "embedded"
    env = {
        "VSEARCH_BACKEND": "k8s",
        "VSEARCH_KUBECONFIG": str(tmp_path / "kc"),
        "VSEARCH_KUBE_CONTEXT": "c1",
        "VSEARCH_OPENFAAS": "local",
        "VSEARCH_IMAGE_TAG": "abc1234",
        "VSEARCH_IMAGE_DIGESTS": str(tmp_path / "abc1234.json"),
        "VSEARCH_K8S_WORKDIR": str(tmp_path / "w"),
    }
    options = from_env.k8s_options(env)
    assert options == {
        "kubeconfig": tmp_path / "kc",
        "workdir": tmp_path / "w",
        "context": "c1",
        "openfaas": "local",
        "image_tag": "abc1234",
        "image_digests": tmp_path / "abc1234.json",
    }


def test_a_missing_cluster_is_named(tmp_path: Path) -> None:
    env = {"VSEARCH_BACKEND": "k8s", "VSEARCH_KUBECONFIG": str(tmp_path / "absent")}
    reason = from_env.cluster_unavailable(env)
    assert reason is not None and f"no kubeconfig at {tmp_path / 'absent'}" in reason
    assert "not a cluster backend" in str(from_env.cluster_unavailable({}))


def test_vsearch_test_cluster_skips_with_the_reason(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VSEARCH_KUBECONFIG": str(tmp_path / "absent"),
    }
    env.pop("VSEARCH_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "test", "--cluster"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "vsearch test --cluster: SKIPPED: no cluster: no kubeconfig at" in done.stdout


def test_regime_tests_fail_when_a_named_cluster_is_not_there(tmp_path: Path) -> None:
    # Asked for explicitly (e.g. bazel --test_env), an absent cluster is a failure, not a pass.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VSEARCH_BACKEND": "k8s",
        "VSEARCH_KUBECONFIG": str(tmp_path / "absent"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "harness/test_regimes_embedded.py", "-k",
         "warm-steady", "-p", "no:cacheprovider", "-q", "--benchmark-disable"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "VSEARCH_BACKEND=k8s: no cluster: no kubeconfig at" in done.stdout
