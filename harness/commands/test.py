"""`./vsearch test`: every check a change must pass — lint, the test suite, then the images.

The image step is platforms/offline/bazel-test.sh: offline Bazel builds every function image
for amd64 and arm64 and runs their structure, run-tier and publishing tests. It says itself
what it skipped and why (no apt, no Docker engine...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harness.termination import run_child

ROOT = Path(__file__).resolve().parents[2]
NO_TESTS_COLLECTED = 5
BAZEL_TEST = ROOT / "platforms" / "offline" / "bazel-test.sh"
#: The cluster tier: the regimes on the cluster, and the checks of the live cluster itself.
CLUSTER_TESTS = ("harness/test_regimes_embedded.py", "harness/backends/test_k8s_live.py")


def run_cluster_tests(pytest_args: list[str], *, env: dict[str, str] | None = None) -> int:
    """`./vsearch test --cluster`: the regimes and the cluster's own tests against the cluster
    the environment names (VSEARCH_BACKEND, default k8s; VSEARCH_KUBECONFIG, default the local
    platform's). Skipped, saying why, when there is none; the default tier is unchanged."""
    from harness.backends import from_env

    env = dict(os.environ if env is None else env)
    env.setdefault("VSEARCH_BACKEND", "k8s")
    env["PYTHONPATH"] = str(ROOT)
    reason = from_env.cluster_unavailable(env)
    if reason is not None:
        print(f"vsearch test --cluster: SKIPPED: {reason}", flush=True)
        return 0
    print(
        f"== pytest (cluster tier, VSEARCH_BACKEND={env['VSEARCH_BACKEND']}, kubeconfig "
        f"{from_env.k8s_options(env)['kubeconfig']})",
        flush=True,
    )
    began = time.monotonic()
    code = run_child(
        [sys.executable, "-m", "pytest", *CLUSTER_TESTS, *pytest_args], cwd=ROOT, env=env
    )
    print(f"== pytest: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
    return 1 if code == NO_TESTS_COLLECTED else code


def cluster_tier_line(env: dict[str, str]) -> str:
    """What the default run says about the cluster tier, which it never runs: whether a cluster
    answers here and, if not, why (the platform's cold build, ~50 min here, does not fit CI)."""
    from harness.backends import from_env

    env = {"VSEARCH_BACKEND": "k8s", **env}
    if env["VSEARCH_BACKEND"] not in from_env.CLUSTER_BACKENDS:
        env["VSEARCH_BACKEND"] = "k8s"
    reason = from_env.cluster_unavailable(env)
    if reason is None:
        return "== cluster tier: not in this run; a cluster answers here: ./vsearch test --cluster"
    return (
        f"== cluster tier: skipped: {reason}. It needs the platform built from source (~50 min "
        "cold on 2 cores, manifests/README.md) and up, then ./vsearch test --cluster"
    )


def run_tests(pytest_args: list[str], *, include_slow: bool, bazel: bool = True) -> int:
    bin_dir = Path(sys.executable).parent
    print("== ruff (lint)", flush=True)
    lint = subprocess.run([str(bin_dir / "ruff"), "check", "."], cwd=ROOT)
    if lint.returncode != 0:
        return lint.returncode
    print("== pytest", flush=True)
    marker = [] if include_slow else ["-m", "not slow"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.monotonic()
    # A stop (CI time limit, kill) reaches pytest as SIGTERM: its fixtures stop their platforms.
    code = run_child([sys.executable, "-m", "pytest", *marker, *pytest_args], cwd=ROOT, env=env)
    print(f"== pytest: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
    if code == NO_TESTS_COLLECTED:
        print("vsearch test: pytest collected no tests — that is a failure here", file=sys.stderr)
        code = 1
    if not bazel:
        print("== bazel: left out (--no-bazel)", flush=True)
        print(cluster_tier_line(env), flush=True)
        return code
    # Run even when pytest failed: one CI run should show every failure there is.
    print("== bazel (images, offline): platforms/offline/bazel-test.sh", flush=True)
    began = time.monotonic()
    images = run_child(["bash", str(BAZEL_TEST)], cwd=ROOT, env=env)
    print(f"== bazel: exit {images} after {time.monotonic() - began:.0f} s", flush=True)
    print(cluster_tier_line(env), flush=True)
    return code or images
