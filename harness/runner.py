"""Regimes on a real platform: deploy, prepare and verify, offer the load, account for it.

Platform-independent: everything goes through :class:`harness.backend.Backend`. One regime is
one :class:`RegimeRun` in three phases, so a caller (the CLI, or pytest-benchmark's
``pedantic(setup=...)``) can time the load apart from the deploy:

- ``setup()``: deploy with the regime's declaration overrides (a fresh platform per regime, so
  the platform's high-water peak memory is this regime's), upload the video, scale every
  function to the wanted replica count and *verify* it (exactly N ready, or none at all);
- ``load()``: the open-loop workload (:func:`harness.bench.run_regime`), platform snapshots
  before and after, events, replica counts seen after, and the CPU accounting;
- ``close()``: teardown.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness.backend import Backend
from harness.bench import run_regime
from harness.functions import FunctionDeclaration
from harness.functions import load as load_declarations
from harness.records import FunctionPlatform
from harness.regimes import Baseline, Regime, evaluate
from harness.report import RegimeResult
from harness.stats import resource_use, stage_cpu_per_request
from harness.workload import OrchestratorSender, ProgressCallback, Video, http_client

PhaseCallback = Callable[[str, str], None]
#: Events worth listing one by one in a result (cold_start ones are counted, not listed).
_LISTED_EVENTS = frozenset(
    {"replica_started", "replica_stopped", "replica_died", "start_failed", "oom_kill"}
)


class PreparationError(RuntimeError):
    """The platform could not be put into the state the regime asks for."""


@dataclass(frozen=True)
class Media:
    """The input every request of a run searches."""

    path: Path
    query: str
    #: VideoTruth (or its dict); None: content cannot be checked (see ``require_truth``).
    truth: Any = None
    id: str = "video"


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------


def prepare(
    backend: Backend,
    regime: Regime,
    functions: Sequence[str],
    *,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Scale every function to the regime's replica count, then verify it held.

    ``verify: ready`` needs exactly N ready replicas and nothing starting or stopping;
    ``verify: zero`` needs none at all (so the first request really meets a cold function).
    The state is checked twice: by ``wait_replicas`` and again from ``/system/functions``
    after ``settle_s``, which is what the result records as seen.
    """
    prep = regime.preparation
    timeout = prep.timeout_s if timeout_s is None else timeout_s
    began = time.monotonic()
    wanted = {fn: n for fn in functions if (n := prep.replicas_for(fn)) is not None}
    for fn, n in wanted.items():
        backend.scale(fn, n)
    if prep.verify != "none":
        for fn, n in wanted.items():
            remaining = max(1.0, timeout - (time.monotonic() - began))
            try:
                backend.wait_replicas(fn, n, timeout_s=remaining)
            except TimeoutError as exc:
                raise PreparationError(f"{regime.name}: preparation failed: {exc}") from exc
    if prep.settle_s:
        time.sleep(prep.settle_s)
    seen = ready_counts(backend.function_status())
    problems = [
        f"{fn}: {seen.get(fn, 'absent')} ready, wanted {n}"
        for fn, n in wanted.items()
        if prep.verify != "none" and seen.get(fn) != n
    ]
    if problems:
        raise PreparationError(
            f"{regime.name}: replicas changed after preparation ({prep.verify}): "
            + "; ".join(problems)
        )
    return {
        "verify": prep.verify,
        "wanted_replicas": wanted,
        "ready_replicas_seen": {fn: seen.get(fn) for fn in functions},
        "verified": prep.verify != "none",
        "prepare_s": round(time.monotonic() - began, 3),
    }


def ready_counts(statuses: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {str(s["name"]): int(s.get("availableReplicas") or 0) for s in statuses}


# --------------------------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------------------------


def replica_cpu_by_function(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
) -> dict[str, float] | None:
    """CPU seconds each function's replicas spent between two status snapshots.

    Live replicas: their cgroup CPU now minus at the start; replicas that ended in between:
    the CPU their stop/death event reported. None when the platform reports no per-replica
    CPU (the gateway's ``vsearch`` extras are an embedded-platform feature; the k8s backend's
    extras list pods without CPU, which must not read as 0 CPU-s).
    """
    if not after or not all(isinstance(s.get("vsearch"), Mapping) for s in after):
        return None
    if any("cpu_s" not in r for s in [*before, *after] for r in s["vsearch"].get("replicas") or []):
        return None

    def replicas(statuses: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
        return {
            (str(s["name"]), str(r["name"])): float(r.get("cpu_s") or 0.0)
            for s in statuses
            for r in s["vsearch"].get("replicas") or []
        }

    start, end = replicas(before), replicas(after)
    out: dict[str, float] = {str(s["name"]): 0.0 for s in after}
    for (fn, name), cpu in end.items():
        out[fn] = out.get(fn, 0.0) + max(0.0, cpu - start.get((fn, name), 0.0))
    for e in events:
        if e.get("type") not in ("replica_stopped", "replica_died") or e.get("cpu_s") is None:
            continue
        key = (str(e.get("function")), str(e.get("replica")))
        if key in end:
            continue
        fn = key[0]
        out[fn] = out.get(fn, 0.0) + max(0.0, float(e["cpu_s"]) - start.get(key, 0.0))
    return out


def _host_busy_s() -> float:
    t = psutil.cpu_times()
    # Not sum(t): guest time is already counted in user time on Linux.
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(t, name, 0.0) for name in busy))


def _own_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def event_summary(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by_type = Counter(str(e.get("type")) for e in events)
    by_function: dict[str, Counter[str]] = {}
    for e in events:
        by_function.setdefault(str(e.get("function")), Counter())[str(e.get("type"))] += 1
    return {
        "counts": dict(sorted(by_type.items())),
        "by_function": {fn: dict(sorted(c.items())) for fn, c in sorted(by_function.items())},
        "listed": [e for e in events if e.get("type") in _LISTED_EVENTS][:500],
    }


# --------------------------------------------------------------------------------------------
# One regime
# --------------------------------------------------------------------------------------------


class RegimeRun:
    def __init__(
        self,
        backend: Backend,
        regime: Regime,
        media: Media,
        *,
        declarations: Sequence[FunctionDeclaration] | None = None,
        progress: ProgressCallback | None = None,
        on_phase: PhaseCallback | None = None,
        require_truth: bool = True,
        cores: float | None = None,
        http: Callable[[float], httpx.AsyncClient] = http_client,
        keep_platform: bool = False,
        baseline: Baseline | None = None,
    ) -> None:
        """``http(timeout_s)`` makes the load generator's client (tests pass a mock transport).

        ``keep_platform``: ``close()`` leaves the backend deployed, so the next regime with the
        same declarations can reuse it; the caller tears it down at the end.
        ``baseline``: the warm request measured at the start of the run (ratio thresholds and
        ``rate_x_capacity`` refer to it).
        """
        self.backend = backend
        self.baseline = baseline
        if regime.workload.rate_x_capacity is not None:
            capacity = baseline.capacity_per_s if baseline is not None else None
            if not capacity:
                raise PreparationError(
                    f"{regime.name}: rate_x_capacity needs the baseline's CPU-bound capacity"
                )
            regime = regime.model_copy(update={"workload": regime.workload.with_capacity(capacity)})
        self.regime = regime
        self.media = media
        self.declarations = list(declarations or load_declarations().functions)
        self.progress = progress
        self.on_phase = on_phase
        self.require_truth = require_truth
        #: CPUs the functions can use and how that was found (asked of the backend at setup).
        self.cores: float | None = cores
        self.cores_source = "given by the caller" if cores else ""
        self.http = http
        self.keep_platform = keep_platform
        self.video_uri: str | None = None
        self.preparation: dict[str, Any] = {}
        self.platform_description: dict[str, Any] = {}
        self._deployed_at = 0.0
        self._statuses: list[list[dict[str, Any]]] = []

    def _phase(self, phase: str, detail: str = "") -> None:
        if self.on_phase is not None:
            self.on_phase(phase, detail)

    @property
    def functions(self) -> list[str]:
        return [d.name for d in self.declarations]

    # -- phases ----------------------------------------------------------------------------------

    def setup(self) -> None:
        regime = self.regime
        declarations = regime.preparation.apply(self.declarations)
        warm = sum(d.min_replicas for d in declarations)
        self._phase("deploy", f"fresh platform, {warm} min replicas to start")
        self._deployed_at = time.time()
        began = time.monotonic()
        reused_before = getattr(self.backend, "reused_deploys", 0)
        self.backend.deploy(declarations)
        deploy_s = time.monotonic() - began
        if self.cores is None:
            self.cores, self.cores_source = platform_cores(self.backend)
        reused = getattr(self.backend, "reused_deploys", 0) > reused_before
        key = f"bench/{regime.name}-{uuid.uuid4().hex[:8]}/{_safe_name(self.media.path.name)}"
        self.video_uri = self.backend.upload(self.media.path, key)
        self._phase("prepare", _describe_wanted(regime, self.functions))
        prep = prepare(self.backend, regime, self.functions)
        # Cold starts, OOM kills and peak memory count from here, whether the platform is
        # fresh or reused, so every regime's figures are its own and comparable.
        start_window = getattr(self.backend, "start_window", None)
        if callable(start_window):
            start_window()
        self.preparation = {
            "deploy_s": round(deploy_s, 3),
            "platform_reused": reused,
            "measurement_window": "from the end of preparation"
            if callable(start_window)
            else "from the deploy",
            **prep,
        }
        self.platform_description = self.backend.describe()

    def load(self) -> RegimeResult:
        if self.video_uri is None:
            raise RuntimeError("setup() first")
        self._phase("load", _describe_load(self.regime))
        return asyncio.run(self._load())

    def close(self) -> None:
        if self.keep_platform:
            return
        self._phase("teardown")
        self.backend.teardown()

    def run(self) -> RegimeResult:
        try:
            self.setup()
            return self.load()
        finally:
            self.close()

    # -- the load --------------------------------------------------------------------------------

    async def _snapshot(self) -> dict[str, FunctionPlatform]:
        statuses = await asyncio.to_thread(self.backend.function_status)
        self._statuses.append(statuses)
        return {s.name: s for s in map(FunctionPlatform.from_status, statuses)}

    async def _load(self) -> RegimeResult:
        regime, media = self.regime, self.media
        assert self.video_uri is not None
        timeout = regime.workload.request_timeout_s or 600.0
        load_before = list(os.getloadavg())
        host0, own0 = _host_busy_s(), _own_cpu_s()
        self._statuses = []
        async with self.http(timeout + 30) as client:
            sender = OrchestratorSender(
                client,
                self.backend.gateway_url,
                [Video(id=media.id, uri=self.video_uri, truth=media.truth, query=media.query)],
                query=media.query,
                # The driver's request_timeout_s decides; the client must not cut in first.
                timeout_s=timeout + 30,
                request_prefix=f"bench-{regime.name}",
                require_truth=self.require_truth,
            )
            result = await run_regime(
                regime,
                sender,
                snapshot=self._snapshot,
                progress=self.progress,
                preparation_report=dict(self.preparation),
                baseline=self.baseline,
            )
        host_cpu, own_cpu = _host_busy_s() - host0, _own_cpu_s() - own0
        events = await asyncio.to_thread(self.backend.events, self._deployed_at)
        before, after = [*self._statuses, [], []][:2]
        window = result.load.duration_s
        load_start = result.load.started_at_unix
        in_load = [e for e in events if float(e.get("time", 0.0)) >= load_start]
        result.preparation = {
            **(result.preparation or {}),
            "ready_replicas_after": ready_counts(after),
            "events_preparation": event_summary(
                [e for e in events if float(e.get("time", 0.0)) < load_start]
            ),
            "events_load": event_summary(in_load),
        }
        assert self.cores is not None, "setup() finds the cores"
        result.resources = resource_use(
            result.records,
            cores=self.cores,
            cores_source=self.cores_source,
            window_s=window,
            # Warm-up requests ran in the same window and used the same CPU: count them.
            ok=sum(1 for r in result.records if r.ok),
            host_busy_cpu_s=round(host_cpu, 3),
            harness_cpu_s=round(own_cpu, 3),
            replica_cpu_s_by_function=replica_cpu_by_function(before, after, in_load),
            load_average_before=load_before,
            load_average_after=list(os.getloadavg()),
        )
        # Judged again now that the CPU accounting (a goodput basis) is known.
        result.violations = evaluate(
            result.summary, regime.thresholds, baseline=self.baseline, resources=result.resources
        )
        return result


def baseline_from(result: RegimeResult, cores: float | None) -> Baseline:
    """The warm baseline from its regime's result: the median latency of its measured
    successful requests and their mean stage CPU-seconds."""
    lat = result.summary.latency_ok_s
    if not lat.n or lat.p50 is None:
        raise PreparationError(
            f"baseline: no successful warm request to measure against "
            f"({result.summary.outcomes.ok}/{result.summary.outcomes.total} ok; "
            + "; ".join(v.message for v in result.violations)
            + ")"
        )
    stages = (
        result.resources.stage_cpu_s_per_ok_request
        if result.resources
        else stage_cpu_per_request(result.records)
    )
    cpu = stages.mean
    return Baseline(
        latency_s=lat.p50,
        cpu_s=cpu,
        cores=cores,
        cores_source=result.resources.cores_source if result.resources else None,
        n=lat.n,
        source=f"{result.name}: {lat.n} warm request(s) measured at the start of this run",
    )


def measure_baseline(
    backend: Backend,
    regime: Regime,
    media: Media,
    **kwargs: Any,
) -> tuple[Baseline, RegimeResult]:
    """Run the baseline regime (a warm request of the run's video) on ``backend`` (left
    deployed for the regimes that follow) and return it with its result."""
    run = RegimeRun(backend, regime, media, keep_platform=True, **kwargs)
    result = run.run()
    return baseline_from(result, run.cores), result


def run_regimes(
    backend: Backend,
    regimes: Sequence[Regime],
    media: Media,
    *,
    declarations: Sequence[FunctionDeclaration] | None = None,
    progress: Callable[[Regime], ProgressCallback | None] | None = None,
    on_phase: Callable[[Regime], PhaseCallback | None] | None = None,
    on_result: Callable[[RegimeResult], None] | None = None,
    require_truth: bool = True,
) -> tuple[list[RegimeResult], dict[str, Any]]:
    """Every regime in turn; consecutive regimes with the same declarations share a deploy.
    Returns the results and the platform's description (from the last deploy). A regime whose
    preparation fails ends the run."""
    results: list[RegimeResult] = []
    description: dict[str, Any] = {}
    try:
        for regime in regimes:
            run = RegimeRun(
                backend,
                regime,
                media,
                declarations=declarations,
                progress=progress(regime) if progress else None,
                on_phase=on_phase(regime) if on_phase else None,
                require_truth=require_truth,
                keep_platform=True,
            )
            result = run.run()
            description = run.platform_description or description
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        backend.teardown()
    return results, description


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def platform_cores(backend: Backend) -> tuple[float, str]:
    """The CPUs the backend's functions can use and how that was found: its ``cpu_cores()``
    (a cluster's nodes, not the harness host), else the CPUs the harness may run on."""
    ask = getattr(backend, "cpu_cores", None)
    if callable(ask):
        cores, source = ask()
        return float(cores), str(source)
    return float(_cores()), "CPUs the harness may run on (the backend names none of its own)"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _safe_name(name: str) -> str:
    from harness.commands.search import safe_object_name

    return safe_object_name(name)


def _describe_wanted(regime: Regime, functions: Sequence[str]) -> str:
    prep = regime.preparation
    counts = Counter(prep.replicas_for(fn) for fn in functions)
    parts = [f"{n} replica(s) x {k} functions" for n, k in sorted(counts.items(), key=str)]
    return f"scale to {', '.join(parts)}, verify {prep.verify}"


def _describe_load(regime: Regime) -> str:
    wl = regime.workload
    schedule = regime.schedule()
    rate = f"{wl.rate:g}/s" if wl.rate else "all at once" if wl.kind == "burst" else wl.kind
    return f"{wl.kind}: {len(schedule)} requests, {rate}, over {schedule.span_s:.0f} s"
