"""`python -m harness.embedded up/status/down` from other processes, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from harness.embedded.function_process import REPO_ROOT

PROBE = "harness.embedded.testing_functions.probe"


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.embedded", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _gone(pid: int) -> bool:
    # Orphans are reaped by whatever adopted them, maybe late: a zombie is gone too.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_up_status_down(s3_server: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "functions.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "defaults": {"memory_limit": "256Mi", "exec_timeout": "10s"},
                "functions": [{"name": "echo", "module": PROBE}],
            }
        )
    )
    state_dir = tmp_path / "state"
    env = s3_server.env()  # `--s3 auto` picks the external S3 up from the environment
    common = ["--state-dir", str(state_dir)]

    up = _cli("up", *common, "--manifest", str(manifest), env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((state_dir / "state.json").read_text())
        creds_path = state_dir / "credentials.json"
        password = json.loads(creds_path.read_text())["gateway"]["password"]
        assert creds_path.stat().st_mode & 0o777 == 0o600
        assert state["s3_endpoint"] == env["S3_ENDPOINT_URL"]
        assert password not in up.stdout + up.stderr
        assert env["AWS_SECRET_ACCESS_KEY"] not in up.stdout + up.stderr
        assert _cli("up", *common, "--manifest", str(manifest), env=env).stdout.startswith(
            "already running"
        )

        body = {"request_id": f"t-{uuid.uuid4().hex[:8]}", "input": {"message": "via cli"}}
        response = httpx.post(f"{state['gateway_url']}/function/echo", json=body, timeout=30)
        assert response.status_code == 200 and response.json()["outputs"]["message"] == "via cli"
        replica_pid = response.json()["outputs"]["pid"]

        status = _cli("status", *common, env=env)
        assert status.returncode == 0, status.stderr
        assert "echo" in status.stdout and password not in status.stdout
        as_json = json.loads(_cli("status", *common, "--json", env=env).stdout)
        assert as_json[0]["name"] == "echo" and as_json[0]["invocationCount"] == 1
    finally:
        down = _cli("down", *common, env=env)
    assert down.returncode == 0 and down.stdout.strip() == "stopped", down.stdout + down.stderr
    assert _gone(state["pid"]) and _gone(replica_pid)
    assert not (state_dir / "state.json").exists()
    assert _cli("status", *common, env=env).returncode == 3


def test_serve_refuses_unknown_functions(tmp_path: Path) -> None:
    result = _cli("serve", "--state-dir", str(tmp_path), "--only", "nope", env={})
    assert result.returncode == 2 and "unknown functions: nope" in result.stderr


@pytest.mark.parametrize("command", ["down", "status"])
def test_commands_without_a_platform(command: str, tmp_path: Path) -> None:
    result = _cli(command, "--state-dir", str(tmp_path), env={})
    assert "not running" in result.stdout
