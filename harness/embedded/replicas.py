"""The replicas of one function: start, route, queue, scale, detect deaths, replace.

Everything here runs on the gateway's event loop (no locks): routing decisions, the FIFO queue
and replica state change only between awaits. Processes are watched with pidfds, so a replica
that dies (SIGKILL, OOM kill, crash) is noticed the moment it exits, not at the next poll.

Capacity model (the OpenFaaS one, made explicit): each replica serves at most `max_inflight`
calls; a call that finds no free slot waits in a FIFO queue, and starts a replica if the ones
starting cannot absorb the queue and the function is below `max_replicas`. A function's
outstanding calls are bounded by `max_replicas * max_inflight + queue_limit`; beyond that the
gateway answers 429 right away, as an overloaded OpenFaaS function would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from base.telemetry import log
from harness.embedded.cgroups import CgroupError, CgroupManager, GroupStats, ReplicaGroup
from harness.embedded.events import EventLog
from harness.embedded.function_process import FunctionProcess, FunctionStartError, process_env
from harness.embedded.models import FunctionExtras, ReplicaStatus, ZygoteStatus
from harness.embedded.priority import enabled_from_env
from harness.embedded.zygote import ForkedProcess, ZygoteProcess
from harness.functions import FunctionDeclaration

ReplicaState = Literal["starting", "ready", "draining", "stopping", "dead"]

#: Variables a function process does not inherit from the platform's own environment.
DROP_INHERITED = ("AWS_", "S3_", "GATEWAY_")


class PoolError(Exception):
    status = 503
    code = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Overloaded(PoolError):
    status = 429
    code = "overloaded"


class QueueTimeout(PoolError):
    status = 504
    code = "queue_timeout"


class StartFailed(PoolError):
    status = 503
    code = "start_failed"


class ShuttingDown(PoolError):
    status = 503
    code = "shutting_down"


@dataclass(frozen=True)
class PoolSettings:
    #: Calls that may wait for a slot once every replica is busy (per function).
    queue_limit: int = 32
    #: Longest a call waits for a slot; None: the function's exec_timeout.
    queue_timeout_s: float | None = None
    start_timeout_s: float = 120.0
    ready_poll_s: float = 0.02
    #: Replicas started on demand above the desired count stop after this long idle
    #: (functions with scale_to_zero_idle use that instead).
    scale_down_idle_s: float = 60.0
    monitor_interval_s: float = 0.2
    stats_interval_s: float = 1.0
    stop_grace_s: float = 5.0
    #: After a SIGKILL, how long the OOM counter may lag the process's exit.
    oom_settle_s: float = 0.3
    #: A SIGKILL this soon after the monitor saw an OOM kill in the group is that kill.
    oom_recent_s: float = 5.0
    backoff_max_s: float = 30.0
    #: Start replicas by forking a per-function zygote (imports and fork-safe models loaded)
    #: instead of a fresh interpreter; VSEARCH_ZYGOTE=0 turns it off (fresh processes only).
    zygote: bool = field(default_factory=lambda: os.environ.get("VSEARCH_ZYGOTE", "1") != "0")
    #: A replica start waits this long for a zygote that is still warming up, then starts fresh.
    zygote_ready_timeout_s: float = 120.0
    #: A zygote that failed this many times in a row is given up (fresh processes from then on).
    zygote_max_failures: int = 3
    #: Free slots go to the queued call of the oldest request, and busy replicas' cgroups are
    #: weighted by request age (harness/embedded/priority.py); VSEARCH_REQUEST_PRIORITY=0: FIFO.
    request_priority: bool = field(default_factory=enabled_from_env)


class ReplicaIdle(LookupError):
    """A busy-only kill found the replica between calls."""


@dataclass(frozen=True)
class Death:
    """Why a replica's process ended."""

    cause: Literal["oom_killed", "replica_died", "replica_stopped"]
    exit_code: int | None
    limit_bytes: int | None
    peak_bytes: int
    message: str


@dataclass(eq=False)
class Replica:
    name: str
    seq: int
    process: FunctionProcess
    group: ReplicaGroup
    state: ReplicaState = "starting"
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    ready_monotonic: float | None = None
    ready_at: float | None = None
    inflight: int = 0
    invocations: int = 0
    cold_start_waits: int = 0
    last_used: float = field(default_factory=time.monotonic)
    #: When the newest call was handed to this replica (monotonic seconds).
    last_call_at: float | None = None
    stats: GroupStats = field(default_factory=lambda: GroupStats(0, 0, 0.0, 0))
    oom_seen: int = 0
    #: When the monitor last saw the group's OOM counter rise (monotonic seconds).
    oom_noted_at: float | None = None
    stop_requested: bool = False
    #: Set by the first of the exit paths (pidfd, poll) to run; the others then only wait.
    exit_handled: bool = False
    death: Death | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    pidfd: int | None = None
    #: Forked from the function's zygote (False: a fresh interpreter).
    from_zygote: bool = False
    #: Where the cold start went, as the replica's /_/ready reported it.
    startup: dict[str, float | bool | int] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def start_s(self) -> float | None:
        if self.ready_monotonic is None:
            return None
        return self.ready_monotonic - self.started_monotonic

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            name=self.name,
            pid=self.pid,
            state=self.state,
            url=self.url,
            inflight=self.inflight,
            newest_call_s=(
                round(time.monotonic() - self.last_call_at, 4)
                if self.inflight and self.last_call_at is not None
                else None
            ),
            invocations=self.invocations,
            cold_start_waits=self.cold_start_waits,
            start_s=None if self.start_s is None else round(self.start_s, 4),
            started_at=self.started_at,
            ready_at=self.ready_at,
            memory_bytes=self.stats.memory_bytes,
            peak_memory_bytes=self.stats.peak_bytes,
            cpu_s=round(self.stats.cpu_s, 4),
            oom_kills=self.stats.oom_kills,
            from_zygote=self.from_zygote,
            startup=self.startup,
        )


@dataclass
class Lease:
    """One call's slot on one replica; give it back with `ReplicaSet.release`."""

    replica: Replica
    queue_s: float
    #: The part of queue_s spent waiting for a new replica process to become ready.
    cold_start_s: float
    released: bool = False


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Replica]
    arrived: float
    bounded: bool
    #: When the call's request arrived (Unix seconds): the oldest request is served first.
    request_arrival: float = 0.0


class ReplicaSet:
    def __init__(
        self,
        decl: FunctionDeclaration,
        *,
        env: dict[str, str],
        cgroups: CgroupManager,
        events: EventLog,
        client: httpx.AsyncClient,
        log_dir: Path,
        settings: PoolSettings | None = None,
    ) -> None:
        self.decl = decl
        self.name = decl.name
        self.settings = settings or PoolSettings()
        self._env = env
        self._cgroups = cgroups
        self._events = events
        self._client = client
        self._log_dir = log_dir
        self.desired = decl.min_replicas
        self.replicas: dict[str, Replica] = {}
        self._waiters: deque[_Waiter] = deque()
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._closing = False
        self.last_activity = time.monotonic()
        self._last_stats = 0.0
        self._failures = 0
        self._backoff_until = 0.0
        self._last_start_error = ""
        # Run totals, kept after replicas are gone.
        self.cold_starts = 0
        self.replica_starts = 0
        self.replica_deaths = 0
        self.oom_kills = 0
        self.peak_memory_bytes = 0
        self._prev_cpu = (time.monotonic(), 0.0)
        self._usage_cores = 0.0
        self._zygote: ZygoteProcess | None = None
        self._zygote_group: ReplicaGroup | None = None
        self._zygote_seq = itertools.count(1)
        self._zygote_failures = 0
        self._zygote_given_up = ""
        #: (pid, read at, (RSS, PSS)) of the warm zygote's last smaps_rollup.
        self._zygote_memory: tuple[int, float, tuple[int, int]] | None = None
        self.zygote_starts = 0
        self.replicas_forked = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.zygote:
            self._start_zygote()
        self._monitor = asyncio.create_task(self._monitor_loop(), name=f"monitor-{self.name}")
        self._reconcile()

    async def close(self) -> None:
        self._closing = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown(f"{self.name}: the platform is stopping"))
        self._waiters.clear()
        await asyncio.gather(
            *(self._stop(r, reason="platform stopping") for r in list(self.replicas.values())),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._stop_zygote)

    # -- routing -------------------------------------------------------------------------------

    @property
    def exec_timeout_s(self) -> float:
        return self.decl.exec_timeout_s

    def _live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state in ("starting", "ready", "draining")]

    def _pick(self) -> Replica | None:
        free = [
            r
            for r in self.replicas.values()
            if r.state == "ready" and r.inflight < self.decl.max_inflight
        ]
        # Least loaded first; among equals the oldest, so later replicas go idle and scale down.
        return min(free, key=lambda r: (r.inflight, r.seq), default=None)

    def outstanding(self) -> int:
        return sum(r.inflight for r in self.replicas.values()) + len(self._waiters)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self, *, bounded: bool = True, request_arrival: float | None = None) -> Lease:
        """A slot on a ready replica; waits in the queue (and for a cold start) if needed.

        The queue is served oldest request first (request_arrival, Unix seconds; None: now)
        under request_priority, else first come first served.
        """
        if self._closing:
            raise ShuttingDown(f"{self.name}: the platform is stopping")
        arrived = time.monotonic()
        self.last_activity = arrived
        if not self._waiters:
            replica = self._pick()
            if replica is not None:
                return self._lease(replica, arrived)
        capacity = self.decl.max_replicas * self.decl.max_inflight + self.settings.queue_limit
        if bounded and self.outstanding() >= capacity:
            raise Overloaded(
                f"{self.name}: all {self.decl.max_replicas} replicas x {self.decl.max_inflight} "
                f"slots busy and {self.settings.queue_limit} calls queued"
            )
        if not self._live():
            if time.monotonic() < self._backoff_until:
                raise StartFailed(f"{self.name}: replicas fail to start: {self._last_start_error}")
            # Scale from zero restores the floor an idle scale-down took away.
            self.desired = max(self.desired, self.decl.min_replicas)
        waiter = _Waiter(
            asyncio.get_running_loop().create_future(),
            arrived,
            bounded,
            time.time() if request_arrival is None else request_arrival,
        )
        self._waiters.append(waiter)
        self._scale_up()
        timeout = self.settings.queue_timeout_s or self.exec_timeout_s
        try:
            replica = await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except BaseException as exc:
            self._abandon(waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"{self.name}: no replica slot within {timeout:.0f} s "
                    f"({self.queued} calls queued)"
                ) from None
            raise
        return self._lease(replica, arrived, assigned=True)

    def _abandon(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            # The slot was handed over just as the caller gave up: pass it on.
            replica = future.result()
            replica.inflight -= 1
            self._dispatch()
        elif not future.done():
            future.cancel()

    def _lease(self, replica: Replica, arrived: float, *, assigned: bool = False) -> Lease:
        if not assigned:
            replica.inflight += 1
        replica.invocations += 1
        now = time.monotonic()
        replica.last_used = replica.last_call_at = now
        cold = 0.0
        if replica.ready_monotonic is not None and replica.ready_monotonic > arrived:
            cold = replica.ready_monotonic - arrived
            replica.cold_start_waits += 1
            self.cold_starts += 1
            self._events.record(
                "cold_start",
                self.name,
                replica=replica.name,
                pid=replica.pid,
                seconds=round(cold, 4),
            )
        return Lease(replica, now - arrived, cold)

    def release(self, lease: Lease) -> int:
        """Give the slot back; returns how many OOM kills this replica had since last looked."""
        if lease.released:
            return 0
        lease.released = True
        replica = lease.replica
        replica.inflight = max(0, replica.inflight - 1)
        replica.last_used = self.last_activity = time.monotonic()
        # A child (ffmpeg) can be OOM-killed while the replica itself survives: still an event.
        kills = self._check_oom(replica) if replica.state != "dead" else 0
        self._dispatch()
        return kills

    def _dispatch(self) -> None:
        """Hand free slots to waiters: the oldest request's first, or the first queued."""
        while self._waiters:
            if self._waiters[0].future.done():
                self._waiters.popleft()
                continue
            replica = self._pick()
            if replica is None:
                break
            waiter = self._next_waiter()
            replica.inflight += 1
            waiter.future.set_result(replica)
        self._scale_up()

    def _next_waiter(self) -> _Waiter:
        if not self.settings.request_priority:
            return self._waiters.popleft()
        # min keeps the first of equals: calls of one request stay in the order they queued.
        waiter = min(
            (w for w in self._waiters if not w.future.done()), key=lambda w: w.request_arrival
        )
        self._waiters.remove(waiter)
        return waiter

    def _scale_up(self) -> None:
        if self._closing or not self._waiters:
            return
        starting = sum(1 for r in self.replicas.values() if r.state == "starting")
        need = len(self._waiters) - starting * self.decl.max_inflight
        while (
            need > 0
            and len(self._live()) < self.decl.max_replicas
            and time.monotonic() >= self._backoff_until
        ):
            self._start_replica()
            need -= self.decl.max_inflight

    # -- scaling -------------------------------------------------------------------------------

    def scale(self, replicas: int) -> int:
        """Set the desired count (0 allowed); extra replicas drain, missing ones start."""
        target = max(0, min(replicas, self.decl.max_replicas))
        self.desired = target
        live = [r for r in self._live() if r.state != "draining"]
        # Idle replicas go first, newest first; busy ones finish their calls before stopping.
        for replica in sorted(live, key=lambda r: (r.inflight > 0, -r.seq))[
            : max(0, len(live) - target)
        ]:
            replica.state = "draining"
        self._events.record("scaled", self.name, replicas=target)
        self._reconcile()
        return target

    def _reconcile(self) -> None:
        if self._closing:
            return
        for replica in self._live():
            if replica.state == "draining" and replica.inflight == 0:
                self._begin_stop(replica, reason="scaled down")
        serving = [r for r in self._live() if r.state != "draining"]
        missing = self.desired - len(serving)
        while missing > 0 and time.monotonic() >= self._backoff_until:
            if len(self._live()) >= self.decl.max_replicas:
                break
            self._start_replica()
            missing -= 1
        self._scale_down_idle(serving)

    def _scale_down_idle(self, serving: list[Replica]) -> None:
        now = time.monotonic()
        idle_s = self.decl.scale_to_zero_idle or self.settings.scale_down_idle_s
        if self._waiters:
            return
        # Idle counts from the last call or the last replica becoming ready, whichever is later:
        # a replica still starting (or just started) has not had its chance to serve yet.
        quiet_since = max([self.last_activity, *(r.last_used for r in serving)])
        if (
            self.decl.scale_to_zero_idle
            and self.desired > 0
            and serving
            and all(r.state == "ready" and r.inflight == 0 for r in serving)
            and now - quiet_since >= self.decl.scale_to_zero_idle
        ):
            self.desired = 0
            self._events.record("scaled_to_zero", self.name, seconds=round(now - quiet_since, 3))
        excess = len(serving) - self.desired
        for replica in sorted(serving, key=lambda r: -r.seq):
            if excess <= 0:
                break
            if (
                replica.state == "ready"
                and replica.inflight == 0
                and now - replica.last_used >= idle_s
            ):
                self._begin_stop(replica, reason=f"idle {now - replica.last_used:.0f} s")
                excess -= 1

    # -- replica processes ---------------------------------------------------------------------

    def _start_replica(self) -> Replica | None:
        if self._zygote_warming():
            return None  # forked as soon as the zygote is warm (the monitor retries)
        name = f"{self.name}-{next(self._seq)}"
        try:
            group = self._cgroups.create(
                name,
                self.decl.memory_limit_bytes,
                self.decl.cpu_limit,
                cpu_shares=self.settings.request_priority,
            )
        except (CgroupError, OSError) as exc:
            # Never run a replica unlimited when limits are meant to hold.
            self._start_failed(None, f"cgroup for {name}: {exc}")
            return None
        env = {
            **self._env,
            **self.decl.env,
            "exec_timeout": self.decl.exec_timeout,
            "max_inflight": str(self.decl.max_inflight),
            "REPLICA_NAME": name,
            "FUNCTION_NAME": self.name,
        }
        zygote = self._zygote if self._zygote is not None and self._zygote.usable() else None
        process = self._process(name, env, group, zygote)
        replica = Replica(name=name, seq=int(name.rsplit("-", 1)[1]), process=process, group=group)
        replica.from_zygote = zygote is not None
        try:
            try:
                process.start()
            except FunctionStartError as exc:
                # The zygote could not fork: this replica starts fresh, and the zygote restarts.
                log("zygote.fallback", level="warning", function=self.name, error=str(exc)[:300])
                self._zygote_failed(f"fork failed: {exc}")
                process = self._process(name, env, group, None)
                replica.process = process
                replica.from_zygote = False
                process.start()
        except OSError as exc:
            with contextlib.suppress(CgroupError):
                group.remove()
            self._start_failed(None, f"{name}: cannot start {self.decl.module}: {exc}")
            return None
        assert process.pid is not None
        group.watch(process.pid)
        self.replicas[name] = replica
        self.replica_starts += 1
        self.replicas_forked += int(replica.from_zygote)
        self._watch_exit(replica)
        self._events.record(
            "replica_started",
            self.name,
            replica=name,
            pid=process.pid,
            limit_bytes=group.memory_limit_bytes,
            message="forked from the zygote" if replica.from_zygote else "fresh process",
        )
        self._spawn(self._await_ready(replica))
        return replica

    def _process(
        self, name: str, env: dict[str, str], group: ReplicaGroup, zygote: ZygoteProcess | None
    ) -> FunctionProcess:
        kwargs = {
            "log_path": self._log_dir / f"{name}.log",
            "cgroup_procs": group.procs_files(),
            "drop_inherited": DROP_INHERITED,
        }
        if zygote is not None:
            return ForkedProcess(zygote, self.decl.module, env, **kwargs)  # type: ignore[arg-type]
        return FunctionProcess(self.decl.module, env, **kwargs)  # type: ignore[arg-type]

    # -- the zygote ----------------------------------------------------------------------------

    def _start_zygote(self) -> None:
        """One template process per function: imports and fork-safe models, then it forks."""
        if not hasattr(os, "fork"):
            self._zygote_given_up = "os.fork is not available here: replicas start fresh"
            log("zygote.unsupported", level="warning", function=self.name)
            return
        name = f"{self.name}-z{next(self._zygote_seq)}"
        try:
            # A cpu group of its own under request priority: else the zygote would stay in the
            # services group it was started from (platform.py), weighted as the gateway is.
            group = self._cgroups.create(
                name,
                self.decl.memory_limit_bytes,
                self.decl.cpu_limit,
                cpu_shares=self.settings.request_priority,
            )
        except (CgroupError, OSError) as exc:
            self._zygote_failed(f"cgroup for {name}: {exc}")
            return
        env = process_env(
            {**self._env, **self.decl.env, "FUNCTION_NAME": self.name}, DROP_INHERITED
        )
        zygote = ZygoteProcess(
            self.decl.module,
            env,
            log_path=self._log_dir / f"{name}.log",
            cgroup_procs=group.procs_files(),
        )
        try:
            zygote.start()
        except OSError as exc:
            with contextlib.suppress(CgroupError):
                group.remove()
            self._zygote_failed(f"cannot start the zygote: {exc}")
            return
        assert zygote.pid is not None
        group.watch(zygote.pid)
        self._zygote, self._zygote_group = zygote, group
        self.zygote_starts += 1
        log("zygote.started", function=self.name, zygote=name, pid=zygote.pid)

    def _zygote_warming(self) -> bool:
        zygote = self._zygote
        if zygote is None or zygote.ready or not zygote.alive():
            return False
        age = time.monotonic() - zygote.started_monotonic
        if age < self.settings.zygote_ready_timeout_s:
            return True
        self._zygote_failed(f"not warm after {age:.0f} s")
        return False

    def _zygote_failed(self, reason: str) -> None:
        self._zygote_failures += 1
        tail = ""
        if self._zygote is not None:
            lines = self._zygote.log_tail(400).strip().splitlines()[-1:]
            tail = f" (last log line: {lines[0]})" if lines else ""
        log(
            "zygote.failed",
            level="warning",
            function=self.name,
            reason=reason[:300] + tail,
            failures=self._zygote_failures,
        )
        self._stop_zygote()
        if self._zygote_failures >= self.settings.zygote_max_failures:
            self._zygote_given_up = f"{reason}{tail}"[:500]
            log("zygote.given_up", level="error", function=self.name, reason=self._zygote_given_up)

    def _zygote_upkeep(self) -> None:
        """Restart a zygote that died (replicas start fresh meanwhile)."""
        if self._closing or not self.settings.zygote or self._zygote_given_up:
            return
        zygote = self._zygote
        if zygote is not None and zygote.alive():
            if zygote.ready:
                self._zygote_failures = 0
            return
        if zygote is not None:
            code = zygote.proc.poll() if zygote.proc is not None else None
            self._zygote_failed(f"the zygote exited ({_exit_text(code)}): {zygote.failure}")
            if self._zygote_given_up:
                return
        self._start_zygote()

    def _stop_zygote(self) -> None:
        zygote, group = self._zygote, self._zygote_group
        self._zygote = self._zygote_group = None
        if zygote is not None:
            zygote.stop()
        if group is not None:
            try:
                group.remove()
            except CgroupError as exc:
                log("cgroup.remove_failed", level="warning", replica=group.name, error=str(exc))

    def _zygote_rss_pss(self, zygote: ZygoteProcess | None) -> tuple[int, int]:
        """The zygote's smaps_rollup, read at most every ZYGOTE_MEMORY_TTL_S once it is warm."""
        if zygote is None or not zygote.pid:
            return 0, 0
        now = time.monotonic()
        cached = self._zygote_memory
        if cached is not None and cached[0] == zygote.pid and now - cached[1] < ZYGOTE_MEMORY_TTL_S:
            return cached[2]
        figures = smaps_rollup(zygote.pid)
        self._zygote_memory = (zygote.pid, now, figures) if zygote.usable() else None
        return figures

    def zygote_status(self) -> ZygoteStatus | None:
        if not self.settings.zygote:
            return None
        zygote, group = self._zygote, self._zygote_group
        stats = None
        if group is not None:
            with contextlib.suppress(OSError):
                stats = group.stats()
        rss, pss = self._zygote_rss_pss(zygote)
        return ZygoteStatus(
            pid=zygote.pid if zygote is not None else None,
            state=(
                "given_up"
                if self._zygote_given_up
                else "none"
                if zygote is None
                else "ready"
                if zygote.usable()
                else "starting"
                if zygote.alive()
                else "dead"
            ),
            ready_after_s=(
                None
                if zygote is None or zygote.ready_after_s is None
                else round(zygote.ready_after_s, 4)
            ),
            phases=dict(zygote.phases) if zygote is not None else {},
            rss_bytes=rss,
            pss_bytes=pss,
            memory_bytes=stats.memory_bytes if stats else 0,
            peak_memory_bytes=stats.peak_bytes if stats else 0,
            starts=self.zygote_starts,
            replicas_forked=self.replicas_forked,
            given_up=self._zygote_given_up or None,
        )

    async def _await_ready(self, replica: Replica) -> None:
        deadline = replica.started_monotonic + self.settings.start_timeout_s
        url = f"{replica.url}/_/ready"
        while replica.state == "starting":
            if replica.exited.is_set() or replica.process.proc is None:
                return
            with contextlib.suppress(httpx.TransportError):
                response = await self._client.get(url, timeout=1.0)
                if response.status_code == 200 and self._answered_by(replica, response):
                    with contextlib.suppress(ValueError, AttributeError):
                        startup = response.json().get("startup")
                        replica.startup = startup if isinstance(startup, dict) else None
                    break
            if time.monotonic() > deadline:
                self._start_failed(
                    replica, f"not ready after {self.settings.start_timeout_s:.0f} s"
                )
                await self._stop(replica, reason="start timeout")
                return
            await asyncio.sleep(self.settings.ready_poll_s)
        if replica.state != "starting":
            return
        replica.ready_monotonic = replica.last_used = time.monotonic()
        replica.ready_at = time.time()
        replica.state = "ready"
        self._failures = 0
        self._events.record(
            "replica_ready",
            self.name,
            replica=replica.name,
            pid=replica.pid,
            seconds=round(replica.start_s or 0.0, 4),
            message="forked from the zygote" if replica.from_zygote else "fresh process",
        )
        self._dispatch()
        self._reconcile()

    def _answered_by(self, replica: Replica, response: httpx.Response) -> bool:
        """A ready answer counts only from the replica's own process: with tests starting
        platforms in parallel another process can hold the port the replica was given."""
        try:
            pid = response.json().get("pid")
        except (ValueError, AttributeError):
            return False
        if pid is None or pid == replica.pid:
            return True
        log(
            "platform.ready_from_other_process",
            level="warning",
            function=self.name,
            replica=replica.name,
            pid=replica.pid,
            other_pid=pid,
        )
        return False

    def _start_failed(self, replica: Replica | None, reason: str) -> None:
        self._failures += 1
        delay = min(self.settings.backoff_max_s, 0.5 * 2 ** (self._failures - 1))
        self._backoff_until = time.monotonic() + delay
        tail = replica.process.log_tail(400).strip().splitlines()[-1:] if replica else []
        self._last_start_error = reason + (f" (last log line: {tail[0]})" if tail else "")
        self._events.record(
            "start_failed",
            self.name,
            replica=replica.name if replica else None,
            pid=replica.pid if replica else None,
            message=self._last_start_error[:500],
        )
        others = [r for r in self._live() if r is not replica]
        if not others:
            # Nothing else can serve the queue: fail it now rather than at the queue timeout.
            error = StartFailed(f"{self.name}: replica failed to start: {self._last_start_error}")
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
            self._waiters.clear()

    def _watch_exit(self, replica: Replica) -> None:
        loop = asyncio.get_running_loop()
        pid = replica.pid
        if pid is None or not hasattr(os, "pidfd_open"):
            return  # the monitor loop polls instead
        try:
            replica.pidfd = os.pidfd_open(pid)
        except OSError:
            return
        loop.add_reader(replica.pidfd, self._on_pidfd, replica)

    def _on_pidfd(self, replica: Replica) -> None:
        self._close_pidfd(replica)
        self._spawn(self._on_exit(replica))

    def _close_pidfd(self, replica: Replica) -> None:
        if replica.pidfd is not None:
            asyncio.get_running_loop().remove_reader(replica.pidfd)
            os.close(replica.pidfd)
            replica.pidfd = None

    async def _on_exit(self, replica: Replica) -> None:
        """Classify the exit, record it, clean up, and replace the replica if needed."""
        if replica.exit_handled:
            return
        replica.exit_handled = True
        self._close_pidfd(replica)
        assert replica.process.proc is not None
        code = replica.process.returncode
        was = replica.state
        replica.state = "dead"
        limit = replica.group.memory_limit_bytes
        oom = replica.group.oom_kills() > replica.oom_seen
        # The monitor may have noted this very kill a moment before the exit was seen: a
        # SIGKILL right after an OOM kill in the group is that kill, not some other signal.
        noted = replica.oom_noted_at
        if not oom and code == -signal.SIGKILL and noted is not None:
            oom = time.monotonic() - noted < self.settings.oom_recent_s
        if (
            not oom
            and code == -signal.SIGKILL
            and replica.group.enforced
            and not replica.stop_requested
        ):
            # The kernel may account the kill a moment after the process is gone.
            settle = time.monotonic() + self.settings.oom_settle_s
            while not oom and time.monotonic() < settle:
                await asyncio.sleep(0.02)
                oom = replica.group.oom_kills() > replica.oom_seen
        with contextlib.suppress(OSError):
            replica.stats = replica.group.stats()
        peak = replica.stats.peak_bytes
        self.peak_memory_bytes = max(self.peak_memory_bytes, peak)
        if replica.stop_requested and not oom:
            death = Death(
                "replica_stopped",
                code,
                limit,
                peak,
                f"function {self.name} replica {replica.name} was stopped",
            )
            self._events.record(
                "replica_stopped",
                self.name,
                replica=replica.name,
                pid=replica.pid,
                exit_code=code,
                peak_bytes=peak,
                cpu_s=round(replica.stats.cpu_s, 4),
                invocations=replica.invocations,
            )
        else:
            self.replica_deaths += 1
            if oom:
                if (count := replica.group.oom_kills()) > replica.oom_seen:
                    self._note_oom(replica, count)
                message = (
                    f"function {self.name} replica {replica.name} was OOM-killed: memory limit "
                    f"{_mib(limit)}, peak {_mib(peak)}"
                )
                death = Death("oom_killed", code, limit, peak, message)
            else:
                message = f"function {self.name} replica {replica.name} exited ({_exit_text(code)})"
                death = Death("replica_died", code, limit, peak, message)
            self._events.record(
                "replica_died",
                self.name,
                replica=replica.name,
                pid=replica.pid,
                exit_code=code,
                limit_bytes=limit,
                peak_bytes=peak,
                cpu_s=round(replica.stats.cpu_s, 4),
                invocations=replica.invocations,
                message=message,
            )
            if was == "starting":
                self._start_failed(replica, message)
        replica.death = death
        self.replicas.pop(replica.name, None)
        replica.exited.set()
        try:
            await asyncio.to_thread(replica.group.remove)
        except CgroupError as exc:
            log("cgroup.remove_failed", level="warning", replica=replica.name, error=str(exc))
        self._dispatch()
        self._reconcile()

    def _check_oom(self, replica: Replica) -> int:
        count = replica.group.oom_kills()
        if count <= replica.oom_seen:
            return 0
        with contextlib.suppress(OSError):
            replica.stats = replica.group.stats()
        new = count - replica.oom_seen
        self._note_oom(replica, count)
        return new

    def _note_oom(self, replica: Replica, count: int) -> None:
        self.oom_kills += count - replica.oom_seen
        replica.oom_seen = count
        replica.oom_noted_at = time.monotonic()
        self._events.record(
            "oom_kill",
            self.name,
            replica=replica.name,
            pid=replica.pid,
            limit_bytes=replica.group.memory_limit_bytes,
            peak_bytes=replica.stats.peak_bytes,
            message=f"OOM kill in {replica.name} (kills so far: {count})",
        )

    def _begin_stop(self, replica: Replica, *, reason: str) -> None:
        # State changes now, not when the task first runs, so no tick stops it twice.
        replica.stop_requested = True
        replica.state = "stopping"
        self._spawn(self._stop(replica, reason=reason))

    async def _stop(self, replica: Replica, *, reason: str) -> None:
        if replica.exited.is_set():
            return
        replica.stop_requested = True
        if replica.state != "dead":
            replica.state = "stopping"
        log("replica.stop", function=self.name, replica=replica.name, reason=reason)
        pid = replica.pid
        if pid is not None:
            _killpg(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._wait_exit(replica), self.settings.stop_grace_s)
            except TimeoutError:
                _killpg(pid, signal.SIGKILL)
                await asyncio.wait_for(self._wait_exit(replica), 10.0)

    async def _wait_exit(self, replica: Replica) -> None:
        while not replica.exited.is_set():
            # No pidfd (or it already fired): poll so the exit is still handled.
            if replica.pidfd is None and not replica.exit_handled and replica.process.exited():
                self._spawn(self._on_exit(replica))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replica.exited.wait(), 0.05)

    async def death_of(self, replica: Replica, timeout_s: float = 3.0) -> Death | None:
        """After a dropped connection: wait briefly for the replica's exit to be classified."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wait_exit(replica), timeout_s)
        return replica.death

    def kill(
        self, replica_name: str | None = None, sig: int = signal.SIGKILL, *, busy_only: bool = False
    ) -> Replica:
        """Fault injection: signal a replica's process group (the busiest one by default).

        busy_only: only while it serves a call (checked here, on the event loop, so the kill
        cannot land between two calls); else ReplicaIdle."""
        candidates = [r for r in self._live() if replica_name in (None, r.name)]
        if not candidates:
            raise KeyError(replica_name or self.name)
        replica = max(candidates, key=lambda r: (r.inflight, r.seq))
        if busy_only and replica.inflight == 0:
            raise ReplicaIdle(replica.name)
        if replica.pid is not None:
            _killpg(replica.pid, sig)
        return replica

    # -- background ----------------------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log(
                "replicas.task_failed",
                level="error",
                function=self.name,
                error=repr(task.exception())[:500],
            )

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.monitor_interval_s)
            try:
                self._tick()
            except Exception as exc:  # the monitor must outlive any single bad tick
                log("replicas.monitor_error", level="error", function=self.name, error=repr(exc))

    def _tick(self) -> None:
        for replica in list(self.replicas.values()):
            # Only without a pidfd: the pidfd's callback owns the exit otherwise.
            watched = replica.pidfd is not None or replica.exit_handled
            if not watched and replica.process.exited():
                self._spawn(self._on_exit(replica))
        self._zygote_upkeep()
        now = time.monotonic()
        if now - self._last_stats >= self.settings.stats_interval_s:
            self._last_stats = now
            self._sample()
        self._reconcile()
        self._scale_up()  # replica starts deferred while the zygote warmed up

    def _refresh_stats(self) -> float:
        """Read every live replica's cgroup now; returns their CPU seconds in total."""
        cpu_total = 0.0
        for replica in self._live():
            with contextlib.suppress(OSError):
                replica.stats = replica.group.stats()
            cpu_total += replica.stats.cpu_s
            self.peak_memory_bytes = max(self.peak_memory_bytes, replica.stats.peak_bytes)
            if replica.stats.oom_kills > replica.oom_seen:
                self._note_oom(replica, replica.stats.oom_kills)
        return cpu_total

    def _sample(self) -> None:
        cpu_total = self._refresh_stats()
        then, before = self._prev_cpu
        now = time.monotonic()
        if now > then:
            self._usage_cores = max(0.0, cpu_total - before) / (now - then)
        self._prev_cpu = (now, cpu_total)

    def reset_window(self) -> None:
        """Start a new measurement window: run totals to zero, peaks from current usage.

        So one deploy can serve several benchmark regimes, each with its own figures.
        """
        self.cold_starts = self.replica_starts = self.replica_deaths = self.oom_kills = 0
        self.peak_memory_bytes = 0
        for replica in self._live():
            with contextlib.suppress(OSError):
                replica.group.reset_peak()
                replica.stats = replica.group.stats()
            self.peak_memory_bytes = max(self.peak_memory_bytes, replica.stats.peak_bytes)
        self._events.record("window_reset", self.name, replicas=len(self._live()))

    # -- status --------------------------------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return sum(1 for r in self.replicas.values() if r.state == "ready")

    @property
    def target(self) -> int:
        """What OpenFaaS calls `replicas`: the count the platform is working towards."""
        serving = sum(1 for r in self._live() if r.state != "draining")
        return max(self.desired, serving)

    @property
    def usage_cores(self) -> float:
        return self._usage_cores

    def memory_bytes(self) -> int:
        return sum(r.stats.memory_bytes for r in self._live())

    def extras(self) -> FunctionExtras:
        # Fresh figures: a request that ended between two samples still shows its peak.
        self._refresh_stats()
        decl = self.decl
        return FunctionExtras(
            module=decl.module,
            videosearcher=decl.videosearcher,
            exec_timeout_s=decl.exec_timeout_s,
            max_inflight=decl.max_inflight,
            memory_limit_bytes=decl.memory_limit_bytes,
            cpu_limit=decl.cpu_limit,
            min_replicas=decl.min_replicas,
            max_replicas=decl.max_replicas,
            scale_to_zero_idle=decl.scale_to_zero_idle,
            desired_replicas=self.desired,
            inflight=sum(r.inflight for r in self.replicas.values()),
            queued=self.queued,
            queue_limit=self.settings.queue_limit,
            cold_starts=self.cold_starts,
            replica_starts=self.replica_starts,
            replica_deaths=self.replica_deaths,
            oom_kills=self.oom_kills,
            peak_memory_bytes=self.peak_memory_bytes,
            limits_enforced=self._cgroups.enforced,
            limits_reason=self._cgroups.reason,
            replicas=[r.status() for r in sorted(self.replicas.values(), key=lambda r: r.seq)],
            zygote=self.zygote_status(),
        )


#: How long a warm zygote's RSS/PSS figures are reused. The kernel walks every mapping of the
#: process to sum smaps_rollup (1-9 ms for a zygote holding a model): the 9 zygotes made up 86%
#: of a /system/functions answer (41 ms, on the gateway's event loop), which the orchestrator's
#: prewarm asks for at every request arrival. A warm zygote serves nothing; its memory moves
#: only as replicas fork from it or exit.
ZYGOTE_MEMORY_TTL_S = 5.0


def smaps_rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process from /proc/PID/smaps_rollup; (0, 0) when unreadable.

    PSS splits each shared page among the processes that map it, so a zygote's PSS falls as
    its replicas share its pages; RSS counts them all.
    """
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                parts = line.split()
                if parts and parts[0] in values:
                    values[parts[0]] = int(parts[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return values["Rss:"], values["Pss:"]


def _killpg(pid: int, sig: int) -> None:
    # The replica leads its own session (start_new_session), so its pid is its group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _mib(value: int | None) -> str:
    return "unlimited" if value is None else f"{value / (1 << 20):.0f} MiB"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
