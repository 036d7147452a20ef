"""Request-age priority: queue order by request arrival, CPU weights by age rank.

The pool is driven with a fake ready replica (no process), the weights with groups that record
what they were given; the real cgroup files are checked in test_embedded_cgroups.py and through a
live gateway in test_embedded_gateway.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from harness.embedded.cgroups import CgroupManager, GroupStats
from harness.embedded.events import EventLog
from harness.embedded.priority import (
    HEADER,
    RANK_SHARES,
    CpuPriority,
    enabled_from_env,
    request_arrival,
    stamp_request_arrival,
)
from harness.embedded.replicas import PoolSettings, Replica, ReplicaSet
from harness.functions import FunctionDeclaration


class Process:
    pid = 4242
    url = "http://127.0.0.1:9"

    def poll(self) -> None:
        return None


class Group:
    """Records the CPU weights it is given."""

    enforced = False
    memory_limit_bytes = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.shares: list[int] = []

    def procs_files(self) -> list[str]:
        return []

    def watch(self, pid: int) -> None:
        pass

    def stats(self) -> GroupStats:
        return GroupStats(0, 0, 0.0, 0)

    def oom_kills(self) -> int:
        return 0

    def reset_peak(self) -> None:
        pass

    def set_cpu_shares(self, shares: int) -> None:
        self.shares.append(shares)

    def remove(self) -> None:
        pass


def test_the_arrival_comes_from_the_header_in_any_case() -> None:
    assert request_arrival({HEADER: "1700000000.5"}, 9.0) == 1700000000.5
    assert request_arrival({HEADER.lower(): "12.25"}, 9.0) == 12.25
    assert request_arrival({}, 9.0) == 9.0


@pytest.mark.parametrize("raw", ["soon", "nan", "inf", "-5", "0"])
def test_a_malformed_arrival_cannot_jump_the_queue(raw: str) -> None:
    assert request_arrival({HEADER: raw}, 9.0) == 9.0


def test_the_stamp_a_function_gets_is_the_arrival_its_call_ranks_by() -> None:
    headers = {HEADER.lower(): "soon", "X-Call-Id": "c"}
    assert stamp_request_arrival(headers, 9.0) == 9.0
    assert headers == {HEADER: "9.000000", "X-Call-Id": "c"}
    kept = {HEADER: "12.25"}
    assert stamp_request_arrival(kept, 9.0) == 12.25 and kept == {HEADER: "12.250000"}


def test_the_switch_is_on_unless_set_to_zero() -> None:
    assert enabled_from_env({})
    assert enabled_from_env({"VSEARCH_REQUEST_PRIORITY": "1"})
    assert not enabled_from_env({"VSEARCH_REQUEST_PRIORITY": "0"})


def test_busy_replicas_are_weighted_by_their_oldest_requests_rank() -> None:
    run: list[int] = []
    prio = CpuPriority(enabled=True, set_run_shares=run.append)
    a, b, c = Group("a"), Group("b"), Group("c")
    prio.begin("ra", a, 20.0)
    prio.begin("rb", b, 10.0)
    prio.begin("rc", c, 30.0)
    assert prio.ranks() == {"rb": 0, "ra": 1, "rc": 2}
    assert (b.shares[-1], a.shares[-1], c.shares[-1]) == RANK_SHARES[:3]
    assert RANK_SHARES[0] >= 8 * RANK_SHARES[1], "the oldest request must clearly win"
    # The busy replicas weigh at the host level as many ungrouped processes would.
    assert run == [1024, 2048, 3072]

    prio.end("rb", 10.0)  # the oldest request's stage is done: everyone moves up one rank
    assert b.shares[-1] == 1024, "an idle replica goes back to the default weight"
    assert (a.shares[-1], c.shares[-1]) == (RANK_SHARES[0], RANK_SHARES[1])
    assert run[-1] == 2048


def test_a_replica_serving_two_requests_takes_the_older_ones_rank() -> None:
    prio = CpuPriority(enabled=True)
    a, b = Group("a"), Group("b")
    prio.begin("ra", a, 20.0)
    prio.begin("rb", b, 15.0)
    prio.begin("ra", a, 10.0)
    assert prio.ranks() == {"ra": 0, "rb": 1}
    prio.end("ra", 10.0)
    assert prio.ranks() == {"rb": 0, "ra": 1}
    writes = len(a.shares)
    prio.begin("rb", b, 15.0)  # same rank again: no cgroup write
    assert len(a.shares) == writes


def test_switched_off_no_weight_is_written() -> None:
    run: list[int] = []
    prio = CpuPriority(enabled=False, set_run_shares=run.append)
    a = Group("a")
    prio.begin("ra", a, 1.0)
    prio.end("ra", 1.0)
    assert a.shares == [] and run == []


def _served_order(tmp_path: Path, *, priority: bool, arrivals: list[float]) -> list[float]:
    """Occupy the only slot, queue one call per arrival (in list order), free the slot, and
    return the arrivals in the order the pool handed them the slot."""

    async def scenario() -> list[float]:
        decl = FunctionDeclaration(name="probe", module="probe", min_replicas=0, max_replicas=1)
        async with httpx.AsyncClient() as client:
            pool = ReplicaSet(
                decl,
                env={},
                cgroups=CgroupManager("unit-test", enforce=False),
                events=EventLog(),
                client=client,
                log_dir=tmp_path,
                settings=PoolSettings(request_priority=priority, zygote=False),
            )
            replica = Replica(
                name="probe-1",
                seq=1,
                process=Process(),  # type: ignore[arg-type]
                group=Group("probe-1"),
                state="ready",
            )
            pool.replicas[replica.name] = replica
            first = await pool.acquire(request_arrival=50.0)
            served: list[float] = []

            async def queued(arrival: float) -> None:
                lease = await pool.acquire(request_arrival=arrival)
                served.append(arrival)
                await asyncio.sleep(0)
                pool.release(lease)

            tasks = []
            for arrival in arrivals:
                tasks.append(asyncio.create_task(queued(arrival)))
                await asyncio.sleep(0)  # queue in list order
            assert pool.queued == len(arrivals)
            pool.release(first)
            await asyncio.gather(*tasks)
            return served

    return asyncio.run(scenario())


def test_a_free_slot_goes_to_the_oldest_requests_call(tmp_path: Path) -> None:
    served = _served_order(tmp_path, priority=True, arrivals=[30.0, 10.0, 20.0, 10.0])
    assert served == [10.0, 10.0, 20.0, 30.0]


def test_switched_off_the_queue_is_first_come_first_served(tmp_path: Path) -> None:
    served = _served_order(tmp_path, priority=False, arrivals=[30.0, 10.0, 20.0])
    assert served == [30.0, 10.0, 20.0]
