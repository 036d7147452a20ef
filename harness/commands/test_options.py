"""The parser's shared options load nothing heavy: `./vsearch --help` and a usage error answer
without importing the HTTP client or a platform."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.cli import build_parser
from harness.commands.options import DEFAULT_GATEWAY_PORT, DEFAULT_STATE_DIR

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("httpx", "harness.embedded", "harness.backends", "harness.commands.kind")


def test_building_the_parser_imports_no_client_and_no_platform() -> None:
    code = (
        "import sys\n"
        "from harness.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_shared_options_keep_their_defaults() -> None:
    parser = build_parser()
    up = parser.parse_args(["up"])
    assert up.state_dir == DEFAULT_STATE_DIR and up.gateway_port == DEFAULT_GATEWAY_PORT == 8080
    assert up.cluster_name == "vsearch" and up.manifests_dir == ROOT / "manifests"
    status = parser.parse_args(["status", "--backend", "k8s", "--context", "ctx"])
    assert status.context == "ctx" and not hasattr(status, "registry")  # deploy-only option
