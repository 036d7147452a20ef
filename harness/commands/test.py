"""`./vsearch test`: every check a change must pass — lint, then the whole test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_TESTS_COLLECTED = 5


def run_tests(pytest_args: list[str], *, include_slow: bool) -> int:
    bin_dir = Path(sys.executable).parent
    print("== ruff (lint)", flush=True)
    lint = subprocess.run([str(bin_dir / "ruff"), "check", "."], cwd=ROOT)
    if lint.returncode != 0:
        return lint.returncode
    print("== pytest", flush=True)
    marker = [] if include_slow else ["-m", "not slow"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *marker, *pytest_args], cwd=ROOT, env=env
    )
    if done.returncode == NO_TESTS_COLLECTED:
        print("vsearch test: pytest collected no tests — that is a failure here", file=sys.stderr)
        return 1
    return done.returncode
