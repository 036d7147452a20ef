"""`./vsearch lock`: re-resolve requirements.in into hash-pinned locks for both architectures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = {"x86_64": "x86_64-manylinux_2_28", "aarch64": "aarch64-manylinux_2_28"}


def uv() -> str:
    candidate = Path(sys.executable).with_name("uv")
    return str(candidate) if candidate.exists() else "uv"


def relock(upgrade: bool) -> int:
    for arch, platform in PLATFORMS.items():
        out = ROOT / f"requirements-{arch}.lock"
        args = [
            uv(), "pip", "compile", "--quiet", "requirements.in",
            "--override", "requirements-overrides.txt",
            "--generate-hashes", "--python-version", "3.11",
            "--python-platform", platform, "-o", out.name,
        ]  # fmt: skip
        if upgrade:
            args.append("--upgrade")
        print(f"locking {out.name} ({platform})", file=sys.stderr)
        done = subprocess.run(args, cwd=ROOT)
        if done.returncode != 0:
            return done.returncode
    # Online Bazel's per-function wheel closures follow the locks.
    script = ROOT / "platforms" / "tools" / "online_wheels.py"
    return subprocess.run([sys.executable, str(script)], cwd=ROOT).returncode
