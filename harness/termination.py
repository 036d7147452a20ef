"""SIGTERM and SIGHUP unwind the process like Ctrl-C.

`kill`, `timeout(1)`, a CI job's time limit, Bazel's test timeout and a closed terminal send
SIGTERM or SIGHUP. Python's default is to die on the spot, so an embedded platform the process
hosts (`vsearch bench`, a test fixture) left its S3 server, its replicas and their cgroups
running: `kill` of a running `vsearch bench` left the S3 server and nine replicas behind.
Raised as KeyboardInterrupt instead, the signal runs the clean-up Ctrl-C runs: `finally` blocks,
context managers, pytest's fixture teardown, and `vsearch bench` still writes the report of the
regimes it finished.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def unwind_on_termination() -> list[signal.Signals]:
    """Install the handlers (main thread only); returns the signals now handled.

    A signal that is not at its default is left alone: `nohup` ignores SIGHUP on purpose, and a
    supervisor may have installed its own handler.
    """
    handled: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        return handled  # Python delivers signals to the main thread only
    for sig in SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
            handled.append(signal.Signals(sig))
    return handled


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Only the first one interrupts: a second SIGTERM while the platform stops (a supervisor
    # repeating itself) must not cut its clean-up short. SIGKILL still ends it.
    for sig in SIGNALS:
        if signal.getsignal(sig) is _interrupt:
            signal.signal(sig, _already_stopping)
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: stopping")


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing (not SIG_IGN, which children would inherit across exec)."""


def run_child(command: Sequence[str], grace_s: float = 60.0, **popen: Any) -> int:
    """subprocess.run for a child that hosts platforms too (pytest, bazel): a stop here reaches
    it as SIGTERM, with `grace_s` to clean up, instead of subprocess.run's SIGKILL.

    Ctrl-C on a terminal already reached the child (the whole foreground process group gets
    SIGINT): then this only waits for it.
    """
    with subprocess.Popen(command, **popen) as child:
        try:
            return child.wait()
        except KeyboardInterrupt as stop:
            if stop.args:  # raised by _interrupt: the child was not signalled
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
