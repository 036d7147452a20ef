"""Request-age priority: the oldest request's work goes first, in the queue and on the CPU.

Three requests arriving together on 2 cores each need about 2 cores of work at a time. Shared
fairly, all three finish near the end of the burst; served oldest-first, the first finishes
after about one request's work, the second after two, so the median waits for two, not three.

The orchestrator stamps every downstream call with its request's arrival time (HEADER, Unix
seconds). The gateway then
- hands a function's free replica slot to the queued call of the oldest request (not the call
  that queued first), and
- weighs each busy replica's cgroup by the rank of the oldest request it is working for among
  the requests with work running: 8x the CPU weight of the next younger one. CFS stays work
  conserving, so CPU the oldest request cannot use (it waits on one single-threaded stage)
  still goes to the younger ones.
The platform's own processes (the gateway's, the S3 server) sit in one group weighted as the
oldest request (SERVICE_SHARES, platform.py), so no request waits on a starved proxy or store.
A call without the header (the orchestrator's own invocation) counts as a request arriving when
the gateway received it; the gateway sends every call on with the arrival it ranks it by
(stamp_request_arrival), and the orchestrator sends that on with its stage calls, so a
request's own call and its stages' share one rank.
VSEARCH_REQUEST_PRIORITY=0 turns all of it off (FIFO per function, every replica at the default
weight in the host's ordinary scheduling), for the A/B.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from base.contracts import REQUEST_ARRIVAL_HEADER, parse_request_arrival
from base.telemetry import log
from harness.embedded.cgroups import DEFAULT_SHARES, CgroupError, ReplicaGroup

HEADER = REQUEST_ARRIVAL_HEADER
ENV = "VSEARCH_REQUEST_PRIORITY"
#: cpu.shares by rank (0 = the oldest request with work running); younger ranks take the last.
#: Each step is 8x: nearly strict oldest-first, and the youngest still gets a trickle.
RANK_SHARES = (8 * DEFAULT_SHARES, DEFAULT_SHARES, DEFAULT_SHARES // 8, DEFAULT_SHARES // 64)
#: The platform's own processes (gateway, S3 server) serve every request's calls, the oldest's
#: too: they weigh as the oldest request's replicas do, or it would wait on them.
SERVICE_SHARES = RANK_SHARES[0]


def enabled_from_env(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(ENV, "1") != "0"


def request_arrival(headers: Mapping[str, str], default: float) -> float:
    """The request's arrival from the header (any case), else `default` (now, at the gateway)."""
    raw = next((v for k, v in headers.items() if k.lower() == HEADER.lower()), None)
    value = parse_request_arrival(raw)
    return default if value is None else value


def stamp_request_arrival(headers: dict[str, str], default: float) -> float:
    """The call's arrival (request_arrival), also written back as the one stamp in `headers`.

    The function then learns the arrival its call is ranked by, also when the caller's stamp was
    missing or unusable, so the calls it makes for the same request (the orchestrator's) rank
    with it.
    """
    arrival = request_arrival(headers, default)
    for key in [k for k in headers if k.lower() == HEADER.lower()]:
        del headers[key]
    headers[HEADER] = f"{arrival:.6f}"
    return arrival


def shares_for_rank(rank: int) -> int:
    return RANK_SHARES[min(rank, len(RANK_SHARES) - 1)]


@dataclass(eq=False)
class _Busy:
    group: ReplicaGroup
    arrivals: list[float] = field(default_factory=list)
    #: The weight last written, so an unchanged rank costs no write.
    shares: int | None = None


class CpuPriority:
    """Keeps every busy replica's cgroup weighted by its oldest request's age rank.

    `begin`/`end` bracket one proxied call on one replica (keys are replica objects). A replica
    serving several calls (max_inflight > 1) takes the rank of its oldest request.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        set_run_shares: Callable[[int], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self._set_run_shares = set_run_shares
        self._busy: dict[object, _Busy] = {}
        self._run_shares = 0
        #: Writes that failed (a replica's group removed under us is expected, briefly).
        self.errors = 0

    def begin(self, replica: object, group: ReplicaGroup, arrival: float) -> None:
        if not self.enabled:
            return
        self._busy.setdefault(replica, _Busy(group)).arrivals.append(arrival)
        self._apply()

    def end(self, replica: object, arrival: float) -> None:
        if not self.enabled:
            return
        busy = self._busy.get(replica)
        if busy is None:
            return
        with contextlib.suppress(ValueError):
            busy.arrivals.remove(arrival)
        if not busy.arrivals:
            del self._busy[replica]
            # Idle at the default weight: the next call's rank is set when it begins.
            self._write(busy.group, DEFAULT_SHARES)
        self._apply()

    def ranks(self) -> dict[object, int]:
        """Each busy replica's rank: 0 for the oldest request with work running."""
        order = sorted({min(b.arrivals) for b in self._busy.values()})
        index = {arrival: i for i, arrival in enumerate(order)}
        return {replica: index[min(b.arrivals)] for replica, b in self._busy.items()}

    def _apply(self) -> None:
        for replica, rank in self.ranks().items():
            busy = self._busy[replica]
            shares = shares_for_rank(rank)
            if busy.shares != shares:
                self._write(busy.group, shares)
                busy.shares = shares
        run_shares = DEFAULT_SHARES * max(1, len(self._busy))
        if self._set_run_shares is not None and run_shares != self._run_shares:
            self._run_shares = run_shares
            try:
                self._set_run_shares(run_shares)
            except (CgroupError, OSError) as exc:
                self._failed("run", exc)

    def _write(self, group: ReplicaGroup, shares: int) -> None:
        try:
            group.set_cpu_shares(shares)
        except (CgroupError, OSError) as exc:
            self._failed(group.name, exc)

    def _failed(self, where: str, exc: Exception) -> None:
        self.errors += 1
        if self.errors <= 3:
            log("gateway.cpu_priority_failed", level="warning", group=where, error=str(exc))
