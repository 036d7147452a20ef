"""Process supervision with real processes: detached start, pid files, stop, readiness waits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.cluster.local.processes import ProcessError, Supervisor, start_ticks, wait_until

SLEEPER = [sys.executable, "-c", "import time, sys; print('up', flush=True); time.sleep(60)"]


def test_start_records_pid_and_stop_ends_it(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    rec = sup.start("sleeper", SLEEPER)
    assert sup.alive("sleeper") == rec
    assert os.getsid(rec.pid) == rec.pid  # its own session: a terminal's signals miss it
    again = sup.start("sleeper", SLEEPER)  # idempotent: the running one is kept
    assert again.pid == rec.pid
    wait_until("log line", lambda: "up" in sup.tail("sleeper"), timeout=10)
    assert sup.stop("sleeper") is True
    assert start_ticks(rec.pid) is None
    assert not sup.pid_file("sleeper").exists()
    assert sup.stop("sleeper") is False


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    rec = sup.start("sleeper", SLEEPER)
    forged = rec.model_copy(update={"start_ticks": rec.start_ticks + 1})
    sup.pid_file("sleeper").write_text(forged.model_dump_json())
    assert sup.alive("sleeper") is None
    assert sup.stop("sleeper") is False  # never signals a pid that is not the one it started
    assert start_ticks(rec.pid) == rec.start_ticks
    sup.pid_file("sleeper").write_text(rec.model_dump_json())
    sup.stop("sleeper")


def test_sigterm_ignored_gets_sigkill(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)",
    ]
    rec = sup.start("stubborn", stubborn)
    wait_until("ready", lambda: "ready" in sup.tail("stubborn"), timeout=10)
    assert sup.stop("stubborn", timeout=0.5) is True
    assert start_ticks(rec.pid) is None


def test_wait_until_names_the_log_when_the_process_dies(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    failing = [
        sys.executable,
        "-c",
        "import time, sys; time.sleep(0.3); print('bad flag'); sys.exit(2)",
    ]
    sup.start("failing", failing)
    with pytest.raises(ProcessError, match=r"(?s)failing exited while waiting for port.*bad flag"):
        wait_until("port", lambda: False, timeout=20, supervisor=sup, name="failing")


def test_wait_until_times_out(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="not ready after 0 s"):
        wait_until("never", lambda: False, timeout=0.3, interval=0.05)
    assert wait_until("now", lambda: True, timeout=1) < 1
