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

ROOT = Path(__file__).resolve().parents[2]
NO_TESTS_COLLECTED = 5
BAZEL_TEST = ROOT / "platforms" / "offline" / "bazel-test.sh"


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
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *marker, *pytest_args], cwd=ROOT, env=env
    )
    print(f"== pytest: exit {done.returncode} after {time.monotonic() - began:.0f} s", flush=True)
    code = done.returncode
    if code == NO_TESTS_COLLECTED:
        print("vsearch test: pytest collected no tests — that is a failure here", file=sys.stderr)
        code = 1
    if not bazel:
        print("== bazel: left out (--no-bazel)", flush=True)
        return code
    # Run even when pytest failed: one CI run should show every failure there is.
    print("== bazel (images, offline): platforms/offline/bazel-test.sh", flush=True)
    began = time.monotonic()
    images = subprocess.run(["bash", str(BAZEL_TEST)], cwd=ROOT, env=env)
    print(f"== bazel: exit {images.returncode} after {time.monotonic() - began:.0f} s", flush=True)
    return code or images.returncode
