"""How ReplicaSet classifies a replica's death, with the process and cgroup played by fakes.

The real OOM path runs in test_embedded_gateway.py; the race tested here (the monitor sees the
group's OOM counter rise before the exit is handled) is too rare to provoke on demand there.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.embedded.cgroups import CgroupManager, GroupStats
from harness.embedded.events import EventLog
from harness.embedded.replicas import Replica, ReplicaSet
from harness.functions import FunctionDeclaration

MiB = 1 << 20


class KilledProcess:
    """A replica process that is gone, with the exit status the kernel's SIGKILL leaves."""

    pid = 4242
    url = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.proc = self

    def poll(self) -> int:
        return -signal.SIGKILL

    def exited(self) -> bool:
        return True

    @property
    def returncode(self) -> int:
        return -signal.SIGKILL

    def log_tail(self, limit: int) -> str:
        return ""


class Group:
    """An enforced group whose kernel counter already shows one OOM kill."""

    name = "probe-1"
    enforced = True
    memory_limit_bytes = 64 * MiB

    def __init__(self, oom_kills: int) -> None:
        self._oom_kills = oom_kills

    def procs_files(self) -> list[str]:
        return []

    def watch(self, pid: int) -> None:
        pass

    def stats(self) -> GroupStats:
        return GroupStats(memory_bytes=0, peak_bytes=64 * MiB, cpu_s=0.1, oom_kills=self._oom_kills)

    def oom_kills(self) -> int:
        return self._oom_kills

    def reset_peak(self) -> None:
        pass

    def remove(self) -> None:
        pass


def _death(tmp_path: Path, *, oom_seen: int, noted_ago_s: float | None) -> tuple[Any, ReplicaSet]:
    async def scenario() -> tuple[Any, ReplicaSet]:
        decl = FunctionDeclaration(name="probe", module="probe", min_replicas=0)
        async with httpx.AsyncClient() as client:
            pool = ReplicaSet(
                decl,
                env={},
                cgroups=CgroupManager("unit-test", enforce=False),
                events=EventLog(),
                client=client,
                log_dir=tmp_path,
            )
            replica = Replica(
                name="probe-1",
                seq=1,
                process=KilledProcess(),  # type: ignore[arg-type]
                group=Group(oom_kills=1),
                state="ready",
                oom_seen=oom_seen,
                oom_noted_at=None if noted_ago_s is None else time.monotonic() - noted_ago_s,
            )
            pool.replicas[replica.name] = replica
            await pool._on_exit(replica)
            return replica.death, pool

    return asyncio.run(scenario())


def test_a_sigkill_just_after_the_monitor_saw_an_oom_kill_is_that_oom_kill(
    tmp_path: Path,
) -> None:
    # The monitor already counted the kill (oom_seen == the kernel's count) a moment ago.
    death, pool = _death(tmp_path, oom_seen=1, noted_ago_s=0.05)
    assert death.cause == "oom_killed", death
    assert "OOM-killed" in death.message and "64 MiB" in death.message
    assert pool.oom_kills == 0, "the monitor's note was the count; the exit must not add one"


def test_an_unrelated_sigkill_long_after_an_oom_kill_is_a_plain_death(tmp_path: Path) -> None:
    death, _ = _death(tmp_path, oom_seen=1, noted_ago_s=60.0)
    assert death.cause == "replica_died", death
    assert "SIGKILL" in death.message


@pytest.mark.parametrize("noted_ago_s", [None, 0.05])
def test_an_oom_kill_counted_at_exit_is_counted_once(
    tmp_path: Path, noted_ago_s: float | None
) -> None:
    death, pool = _death(tmp_path, oom_seen=0, noted_ago_s=noted_ago_s)
    assert death.cause == "oom_killed"
    assert pool.oom_kills == 1
