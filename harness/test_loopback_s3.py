"""The shared start/stop of the child-process S3 servers, on plain shell children (no S3)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import pytest
from botocore.exceptions import ReadTimeoutError

from harness.loopback_s3 import LoopbackS3, LoopbackS3Error, stop_process_group


class ShellServer(LoopbackS3):
    """Runs a shell script in place of a server; port 9 (discard) is never an S3 endpoint."""

    name = "shell"

    def __init__(self, script: str, log_dir: Path, startup_timeout: float = 3.0) -> None:
        super().__init__(bucket="b", startup_timeout=startup_timeout)
        self.script = script
        self.log_dir = log_dir
        self.stopped = 0

    @property
    def endpoint_url(self) -> str:
        return "http://127.0.0.1:9"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "shell.log"

    def start(self) -> Self:
        self._launch_and_wait(["sh", "-c", self.script], dict(os.environ))
        return self

    def stop(self) -> None:
        self.stopped += 1
        self._terminate()

    def _probe(self, client: Any) -> None:
        raise ConnectionRefusedError("not yet")


def test_an_early_exit_fails_with_its_code_and_only_this_launchs_log(tmp_path: Path) -> None:
    (tmp_path / "shell.log").write_text("an earlier launch's line\n")
    server = ShellServer("echo booting; exit 3", tmp_path)
    with pytest.raises(LoopbackS3Error, match="shell exited with code 3") as info:
        server.start()
    assert "booting" in str(info.value)
    assert "earlier launch" not in str(info.value)
    assert server.pid is None and not server.is_running()


def test_a_server_never_writable_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    server = ShellServer("exec sleep 60", tmp_path, startup_timeout=0.5)
    began = time.monotonic()
    with pytest.raises(LoopbackS3Error, match=r"shell not writable after 0 s"):
        server.start()
    assert time.monotonic() - began < 10
    assert server.pid is None


class SlowThenReadyServer(ShellServer):
    """The first probe times out reading (as a busy weed does after a restart), then it works."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__("exec sleep 60", log_dir)
        self.probes = 0

    def _probe(self, client: Any) -> None:
        self.probes += 1
        if self.probes == 1:
            # botocore's read timeout: response is None, unlike a ClientError's answer dict.
            raise ReadTimeoutError(endpoint_url=self.endpoint_url)


def test_a_read_timeout_during_startup_is_retried_not_raised(tmp_path: Path) -> None:
    server = SlowThenReadyServer(tmp_path)
    try:
        server.start()
        assert server.probes == 2 and server.is_running()
    finally:
        server.stop()


def test_stop_kills_the_whole_group_even_a_child_ignoring_sigterm(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The leader ends on SIGTERM; its child ignores it and must be swept up with SIGKILL.
    script = f"sh -c 'trap \"\" TERM; echo $$ > {pid_file}; while :; do sleep 1; done' & wait"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        stop_process_group(proc, timeout=5)
        assert proc.returncode is not None
        deadline = time.monotonic() + 5
        while _alive(child):
            assert time.monotonic() < deadline, f"child {child} survived the group stop"
            time.sleep(0.05)
    finally:  # a failed run must not leave the child behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
