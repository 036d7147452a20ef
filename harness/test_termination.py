"""SIGTERM stops a hosted embedded platform cleanly (harness/termination.py), on a real one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.embedded.platform import s3_env_from_environ
from harness.termination import SIGNALS, unwind_on_termination

REPO = Path(__file__).resolve().parents[1]

#: A process hosting a platform with its own S3 server and one replica, as `vsearch bench` does.
HOST = textwrap.dedent(
    """
    import sys, time
    from harness.embedded.platform import EmbeddedPlatform
    from harness.functions import FunctionDeclaration
    from harness.termination import unwind_on_termination

    if sys.argv[2] == "handled":
        unwind_on_termination()
    probe = FunctionDeclaration(name="echo", module="harness.embedded.testing_functions.probe")
    s3 = "auto" if sys.argv[2] == "shared-s3" else "embedded"
    with EmbeddedPlatform(sys.argv[1], [probe], s3=s3):
        print("ready", flush=True)
        time.sleep(600)
    """
)


def _host(
    tmp_path: Path, mode: str, s3_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in s3_env_from_environ(env) or {}:  # the S3 the platform would use instead of its own
        env.pop(key)
    env.update(s3_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST, str(tmp_path / "state"), mode],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # the platform logs JSON lines to stdout first
        if line.strip() == "ready":
            break
    else:
        proc.kill()
        pytest.fail(f"the platform did not start (exit {proc.wait()})")
    # Keep reading: a full pipe would block the platform's logging while it stops.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    helpers = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in helpers)
    assert "testing_functions.probe" in names, names
    assert ("weed" in names) is (s3_env is None), names
    return proc, helpers


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    # is_running() compares start times, so a recycled pid does not count as alive.
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_stops_the_s3_server_and_the_replicas(tmp_path: Path) -> None:
    proc, helpers = _host(tmp_path, "handled")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    _, left = psutil.wait_procs(_alive(helpers), timeout=10)
    assert not left, [" ".join(p.cmdline())[:120] for p in left]
    # Interrupted, not a clean exit: the caller can tell it was stopped.
    assert proc.returncode != 0


def test_without_the_handler_sigterm_leaves_them_running(tmp_path: Path) -> None:
    """The control: Python's default for SIGTERM skips every clean-up."""
    proc, helpers = _host(tmp_path, "default")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGTERM
        time.sleep(1)
        left = _alive(helpers)
        assert any("weed" in " ".join(p.cmdline()) for p in left), "the S3 server was stopped"
    finally:
        for p in _alive(helpers):
            p.kill()
        psutil.wait_procs(helpers, timeout=10)


def test_a_killed_platform_leaves_no_replica_behind(tmp_path: Path, s3_env: dict[str, str]) -> None:
    """SIGKILL runs no clean-up at all: the zygote sees its control socket close without the
    platform's "retire" and stops the replicas it forked (base/zygote.py)."""
    proc, helpers = _host(tmp_path, "shared-s3", s3_env)
    try:
        replicas = [p for p in helpers if p.ppid() != proc.pid]  # forked by the zygote
        assert replicas, [" ".join(p.cmdline())[:120] for p in helpers]
        proc.kill()
        proc.wait(timeout=10)
        _, left = psutil.wait_procs(_alive(helpers), timeout=15)
        assert not left, [" ".join(p.cmdline())[:120] for p in left]
    finally:
        for p in _alive(helpers):
            p.kill()


def test_a_signal_that_is_not_at_its_default_is_left_alone() -> None:
    """`nohup` ignores SIGHUP on purpose; a second signal during the clean-up does nothing."""
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert unwind_on_termination() == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here, in the main thread
        os.kill(os.getpid(), signal.SIGTERM)  # the second: ignored while stopping
        time.sleep(0.1)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


#: A parent (as `vsearch test`) running a child (as pytest) that cleans up when stopped.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    from harness.termination import run_child, unwind_on_termination

    unwind_on_termination()
    child = [sys.executable, "-c", sys.argv[2]]
    if sys.argv[1] == "forwarding":
        run_child(child, grace_s=20)
    else:
        subprocess.run(child)
    """
)
CHILD = textwrap.dedent(
    """
    import sys, time
    from harness.termination import unwind_on_termination

    unwind_on_termination()
    print("ready", flush=True)
    try:
        time.sleep(600)
    finally:
        time.sleep(0.5)  # a platform takes a moment to stop
        open({marker!r}, "w").write("cleaned up")
    """
)


@pytest.mark.parametrize(("mode", "cleaned"), [("forwarding", True), ("subprocess.run", False)])
def test_a_stop_reaches_the_child_as_sigterm(tmp_path: Path, mode: str, cleaned: bool) -> None:
    """subprocess.run SIGKILLs its child on KeyboardInterrupt: the control shows no clean-up."""
    marker = tmp_path / "marker"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode, CHILD.format(marker=str(marker))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    assert marker.exists() is cleaned
