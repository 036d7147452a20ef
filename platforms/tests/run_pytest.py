"""Run part of the repository's pytest suite from Bazel: run_pytest.py [--env=NAME=PATH...] [args].

Each leading `--env=NAME=PATH` exports NAME as the absolute path of the runfile PATH (a
`$(rootpath ...)`), so a test can find the files Bazel built for it (image tarballs...); the
remaining arguments go to pytest.

The suite needs the project's Python environment (.venv, made by ./vsearch from the locks) and
the source tree (media tools, embedded S3 server...), so this runs outside the sandbox (the
target is tagged `local`) in the real source tree, found through the runfiles' symlinks.
Skips (exit 0, "SKIPPED: ..." printed) when there is no .venv with pytest, or when pytest
selects no test (exit 5); any other non-zero exit fails. A leading `--require-env` turns those
skips into failures with the same reason: for targets whose whole point is what pytest runs
(//harness:regimes), passing with nothing run would be a lie.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

NO_TESTS_COLLECTED = 5


def source_root() -> Path:
    here = Path(os.path.realpath(__file__)).parent
    for candidate in [here, *here.parents]:
        if (candidate / "pyproject.toml").is_file() and (candidate / "WORKSPACE").is_file():
            return candidate
    raise SystemExit("run_pytest: no source tree (pyproject.toml + WORKSPACE) above " + str(here))


REQUIRE_ENV = False


def skip(reason: str) -> int:
    if REQUIRE_ENV:
        print(f"FAILED: {reason} (this target does not pass without running its tests)", flush=True)
        return 1
    print(f"SKIPPED: {reason}", flush=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        Path(out, "SKIPPED").write_text(reason + "\n")
    return 0


def runfile(path: str) -> Path:
    for base in (os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")):
        if base:
            for ws in (os.environ.get("TEST_WORKSPACE", ""), "_main", "vsearch", "__main__"):
                candidate = Path(base) / ws / path
                if ws and candidate.exists():
                    return candidate.resolve()
    raise SystemExit(f"run_pytest: no runfile {path}")


def main() -> int:
    global REQUIRE_ENV
    argv = sys.argv[1:]
    if argv and argv[0] == "--require-env":
        REQUIRE_ENV = True
        argv.pop(0)
    exported: dict[str, str] = {}
    while argv and argv[0].startswith("--env="):
        name, _, path = argv.pop(0).removeprefix("--env=").partition("=")
        exported[name] = str(runfile(path))
    root = source_root()
    python = Path(os.environ.get("VSEARCH_PYTHON_ENV", root / ".venv" / "bin" / "python"))
    if not python.exists():
        return skip(f"no {python}: run ./vsearch once (it makes .venv from the locks)")
    if subprocess.run([python, "-c", "import pytest"], capture_output=True).returncode != 0:
        return skip(f"{python} has no pytest: run ./vsearch once")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "RUNFILES", "PYTHON"))}
    env["PYTHONPATH"] = str(root)
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home) or home == os.environ.get("TEST_TMPDIR"):
        # Bazel runs tests without HOME (test-setup.sh assigns TEST_TMPDIR to it but does not
        # export it) or with that stand-in: kubectl then wrote its cache to .kube/ in the
        # source tree, and the stand-in would hide the account's caches this suite runs on
        # outside the sandbox (the cluster's kubeconfig, the platform's built mc, uv's cache).
        env["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    env.update(exported)
    args = [str(python), "-m", "pytest", *argv, "-p", "no:cacheprovider"]
    print("run_pytest:", " ".join(args), f"(in {root})", flush=True)
    done = subprocess.run(args, cwd=root, env=env)
    if done.returncode == NO_TESTS_COLLECTED:
        return skip(f"pytest selected no test ({' '.join(argv)})")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
