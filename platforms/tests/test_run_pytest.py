"""run_pytest.py: a missing environment skips, except under --require-env where it fails."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(
    *args: str, python: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "VSEARCH_PYTHON_ENV": str(python), **(extra or {})}
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


def test_the_suite_sees_the_accounts_home_not_bazels_stand_in(tmp_path: Path) -> None:
    probe = tmp_path / "test_home_probe.py"
    probe.write_text("import os\n\ndef test_home():\n    print('HOME=' + os.environ['HOME'])\n")
    stand_in = str(tmp_path / "bazel-test-tmp")
    done = run(
        str(probe), "-s", python=Path(sys.executable),
        extra={"HOME": stand_in, "TEST_TMPDIR": stand_in},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"HOME={pwd.getpwuid(os.getuid()).pw_dir}" in done.stdout
    unset = run(str(probe), "-s", python=Path(sys.executable), extra={"TEST_TMPDIR": stand_in})
    assert f"HOME={pwd.getpwuid(os.getuid()).pw_dir}" in unset.stdout, unset.stdout
    # A HOME the caller chose (not Bazel's stand-in) is left as it is.
    kept = run(str(probe), "-s", python=Path(sys.executable), extra={"HOME": stand_in})
    assert f"HOME={stand_in}" in kept.stdout
