"""run_pytest.py: a missing environment skips, except under --require-env where it fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(*args: str, python: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "VSEARCH_PYTHON_ENV": str(python)}
    return subprocess.run(
        [sys.executable, str(HERE / "run_pytest.py"), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_without_venv_skips_by_default_and_fails_when_required(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    skipped = run("harness", "-k", "regimes", python=missing)
    assert skipped.returncode == 0 and "SKIPPED: no " in skipped.stdout
    required = run("--require-env", "harness", "-k", "regimes", python=missing)
    assert required.returncode == 1
    assert "FAILED: no " in required.stdout and "run ./vsearch once" in required.stdout


def test_selecting_nothing_fails_when_required() -> None:
    args = ("platforms/tests/test_run_pytest.py", "-k", "no_test_has_this_name")
    assert run(*args, python=Path(sys.executable)).returncode == 0
    required = run("--require-env", *args, python=Path(sys.executable))
    assert required.returncode == 1 and "selected no test" in required.stdout
