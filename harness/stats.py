"""Honest statistics over request records: percentiles, confidence intervals, per-function
figures and cost.

Percentiles use the nearest-rank method: every reported percentile is a latency that actually
occurred, so none can exceed the maximum (the prior attempt reported p90 above the max). Means
come with a 95% confidence interval from the t-distribution. The first ``warmup`` requests are
summarised on their own and kept out of the main figures.

Cost is given two ways, both labelled: GB-seconds from *measured* memory (each invocation's
wall time x the peak RSS of its process plus its largest child) and from *configured* limits
(wall time x the function's memory limit); plus the idle cost of replicas kept warm over the run
(replicas x limit x run duration), which a per-invocation figure hides.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from harness.records import (
    GIB,
    OUTCOMES,
    FunctionPlatform,
    InvocationSample,
    RequestRecord,
)

DEFAULT_PERCENTILES: tuple[float, ...] = (50, 90, 95, 99)


# --------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the data at or below it.

    Always one of the values, so never above the maximum nor below the minimum.
    """
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no data")
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    rank = math.ceil(p / 100 * len(data))
    return data[min(max(rank, 1), len(data)) - 1]


def percentiles(
    values: Iterable[float], ps: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[str, float]:
    data = sorted(float(v) for v in values)
    return {_pname(p): percentile(data, p) for p in ps} if data else {}


def _pname(p: float) -> str:
    return f"p{int(p)}" if float(p).is_integer() else f"p{p:g}"


def min_samples_for(p: float) -> int:
    """Fewest samples for which the nearest-rank p-th percentile is not simply the maximum
    (p95: 20, p99: 100, p50: 2). A gate on a percentile with fewer samples is a gate on the
    maximum under another name."""
    if not 0 < p < 100:
        raise ValueError("p must be within (0, 100)")
    return max(1, math.ceil(100 / (100 - p) - 1e-9))


def percentile_ci(
    values: Iterable[float], p: float, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """Distribution-free confidence interval of the p-th percentile from order statistics.

    The number of samples at or below the true percentile is Binomial(n, p/100); the bounds
    are the order statistics x(l) <= Q <= x(u) with P(l <= B <= u - 1) >= ``confidence``,
    split evenly between the tails. A bound the sample cannot support is None (p95 needs
    n >= 73 for an upper bound at 95%): small samples say so instead of inventing one.
    """
    from scipy import stats as sps  # slow to import; only needed here

    data = sorted(float(v) for v in values)
    n = len(data)
    if n == 0:
        return None, None
    q = p / 100
    tail = (1 - confidence) / 2
    cdf = [float(sps.binom.cdf(k, n, q)) for k in range(n + 1)]
    low = None
    # Largest l >= 1 with P(B <= l - 1) <= tail.
    for rank in range(n, 0, -1):
        if cdf[rank - 1] <= tail:
            low = data[rank - 1]
            break
    high = None
    # Smallest u <= n with P(B <= u - 1) >= 1 - tail.
    for rank in range(1, n + 1):
        if cdf[rank - 1] >= 1 - tail:
            high = data[rank - 1]
            break
    return low, high


class MeanCI(BaseModel):
    mean: float
    low: float | None = Field(None, description="lower bound; None with fewer than 2 samples")
    high: float | None = None
    half_width: float | None = None
    n: int
    confidence: float = 0.95


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> MeanCI:
    """Mean and its two-sided confidence interval (Student's t, sample standard deviation)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("mean of no data")
    mean = statistics.fmean(data)
    if len(data) < 2:
        return MeanCI(mean=mean, n=1, confidence=confidence)
    from scipy import stats as sps  # slow to import; only needed here

    sem = statistics.stdev(data) / math.sqrt(len(data))
    half = float(sps.t.ppf((1 + confidence) / 2, len(data) - 1)) * sem
    return MeanCI(
        mean=mean,
        low=mean - half,
        high=mean + half,
        half_width=half,
        n=len(data),
        confidence=confidence,
    )


class Distribution(BaseModel):
    n: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    stdev: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    total: float | None = None
    #: 95% order-statistic CIs of p50 and p95 (None: the sample cannot bound it on that side).
    p50_ci_low: float | None = None
    p50_ci_high: float | None = None
    p95_ci_low: float | None = None
    p95_ci_high: float | None = None

    def stat(self, name: str) -> float | None:
        """A figure by name: p50, p95, p99, max, mean, min."""
        value = getattr(self, name)
        return None if value is None else float(value)

    def describe(self, name: str) -> str:
        """``p95 12.30s (n=21, 95% CI 10.10s..-)``: the figure with its sample size and CI."""
        value = self.stat(name)
        text = f"{name} {'-' if value is None else f'{value:.2f}s'} (n={self.n}"
        if name in ("p50", "p95"):
            lo, hi = getattr(self, f"{name}_ci_low"), getattr(self, f"{name}_ci_high")
            if lo is not None or hi is not None:
                fmt = lambda x: "-" if x is None else f"{x:.2f}s"  # noqa: E731
                text += f", 95% CI {fmt(lo)}..{fmt(hi)}"
        return text + ")"

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        data = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
        if not data:
            return cls(n=0)
        ci = mean_ci(data)
        p50_lo, p50_hi = percentile_ci(data, 50)
        p95_lo, p95_hi = percentile_ci(data, 95)
        return cls(
            p50_ci_low=p50_lo,
            p50_ci_high=p50_hi,
            p95_ci_low=p95_lo,
            p95_ci_high=p95_hi,
            n=len(data),
            min=data[0],
            max=data[-1],
            mean=ci.mean,
            ci95_low=ci.low,
            ci95_high=ci.high,
            stdev=statistics.stdev(data) if len(data) > 1 else None,
            total=math.fsum(data),
            **percentiles(data),
        )


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


class OutcomeCounts(BaseModel):
    total: int = 0
    ok: int = 0
    failed_content: int = 0
    error: int = 0
    refused: int = 0
    timeout: int = 0
    not_sent: int = 0

    @classmethod
    def of(cls, records: Iterable[RequestRecord]) -> OutcomeCounts:
        c = Counter(r.outcome for r in records)
        return cls(total=sum(c.values()), **{k: c.get(k, 0) for k in OUTCOMES})

    @property
    def admitted(self) -> int:
        return self.total - self.refused - self.not_sent

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.total if self.total else None

    @property
    def admitted_success_rate(self) -> float | None:
        return self.ok / self.admitted if self.admitted else None


class FunctionSummary(BaseModel):
    name: str
    invocations: int = Field(description="attempts run in this run (reused steps excluded)")
    failed_invocations: int = 0
    retries: int = Field(0, description="attempts after the first of a step")
    reused: int = 0
    cold_start_waits: int = Field(0, description="invocations that waited for a replica start")
    first_in_process: int = Field(0, description="invocations that were a process's first")
    cold_starts_platform: int | None = Field(None, description="the platform's counter")
    exec_s: Distribution = Field(description="the function's own wall time per invocation")
    latency_s: Distribution = Field(description="as seen by the orchestrator, per invocation")
    queue_s: Distribution
    cold_start_wait_s: Distribution
    cpu_s_total: float = 0.0
    cpu_s_mean: float | None = None
    peak_rss_bytes_measured: int | None = Field(
        None, description="max over invocations of process + largest child peak RSS"
    )
    peak_memory_bytes_platform: int | None = None
    file_cache_bytes_platform: int | None = Field(
        None, description="page cache inside the platform's peak (reclaimable; k8s pods)"
    )
    memory_limit_bytes: int | None = None
    peak_over_limit: float | None = Field(None, description="max(platform, measured) / limit")
    oom_kills: int = 0
    gb_s_measured: float = 0.0
    gb_s_configured: float | None = None
    idle_gb_s: float | None = None
    warm_replicas: int | None = None

    @property
    def peak_memory_bytes(self) -> int | None:
        known = [v for v in (self.peak_memory_bytes_platform, self.peak_rss_bytes_measured) if v]
        return max(known) if known else None

    @property
    def cold_starts(self) -> int:
        """The platform's count when it gives one, else the invocations that waited."""
        if self.cold_starts_platform is not None:
            return self.cold_starts_platform
        return self.cold_start_waits


class CostSummary(BaseModel):
    """GB-seconds; ``measured`` from peak RSS, ``configured`` from memory limits."""

    measured_gb_s: float = 0.0
    configured_gb_s: float | None = None
    idle_gb_s: float | None = Field(
        None, description="warm replicas x memory limit x run duration, summed over functions"
    )
    per_request_measured_gb_s: Distribution
    per_request_configured_gb_s: Distribution
    per_ok_request_measured_gb_s: float | None = Field(
        None, description="run total (measured) / successful requests"
    )
    per_ok_request_configured_gb_s: float | None = None
    per_ok_request_with_idle_gb_s: float | None = Field(
        None, description="(configured + idle) / successful requests"
    )


class WarmupSummary(BaseModel):
    outcomes: OutcomeCounts
    latency_s: Distribution


class RegimeSummary(BaseModel):
    regime: str
    outcomes: OutcomeCounts
    success_rate: float | None = Field(description="ok / all measured requests")
    admitted_success_rate: float | None = Field(
        description="ok / measured requests neither refused (429) nor left unsent"
    )
    latency_ok_s: Distribution = Field(description="from the scheduled time, successes only")
    latency_all_s: Distribution = Field(description="every request that got an answer or timed out")
    send_lag_s: Distribution
    end_to_end_s: Distribution = Field(description="the orchestrator's own end_to_end_s")
    overhead_s: Distribution = Field(description="end_to_end_s - critical path (orchestrator)")
    failed_checks: dict[str, int] = Field(default_factory=dict)
    error_codes: dict[str, int] = Field(default_factory=dict)
    functions: dict[str, FunctionSummary] = Field(default_factory=dict)
    cost: CostSummary
    warmup: WarmupSummary | None = None
    run_duration_s: float | None = None
    throughput_ok_per_s: float | None = None
    oom_kills: int = 0
    client_retries: int = Field(0, description="extra sends by the load generator")
    pipeline_retries: int = Field(0, description="function attempts the orchestrator retried")


def _limit(fn: str, samples: Sequence[InvocationSample], platform: FunctionPlatform | None) -> int:
    for s in samples:
        if s.memory_limit_bytes:
            return s.memory_limit_bytes
    return (platform.memory_limit_bytes if platform else None) or 0


def request_cost(
    record: RequestRecord, limits: Mapping[str, int] | None = None
) -> tuple[float | None, float | None]:
    """(measured, configured) GB-s of one request's fresh invocations; None when unknown."""
    fresh = [s for s in record.invocations if not s.reused]
    measured = [g for s in fresh if (g := s.gb_s_measured()) is not None]
    configured: list[float] = []
    for s in fresh:
        if s.wall_s is None:
            continue
        g = s.gb_s_configured((limits or {}).get(s.function))
        if g is None:
            configured = []
            break
        configured.append(g)
    return (
        math.fsum(measured) if measured else None,
        math.fsum(configured) if configured else None,
    )


def summarize_functions(
    records: Sequence[RequestRecord],
    platform: Mapping[str, FunctionPlatform] | None = None,
    run_duration_s: float | None = None,
) -> dict[str, FunctionSummary]:
    by_fn: dict[str, list[InvocationSample]] = {}
    for r in records:
        for s in r.invocations:
            by_fn.setdefault(s.function, []).append(s)
    names = sorted(set(by_fn) | set(platform or {}))
    out: dict[str, FunctionSummary] = {}
    for name in names:
        samples = by_fn.get(name, [])
        fresh = [s for s in samples if not s.reused]
        plat = (platform or {}).get(name)
        limit = _limit(name, fresh, plat) or None
        footprints = [f for s in fresh if (f := s.footprint_bytes) is not None]
        measured_peak = max(footprints) if footprints else None
        plat_peak = plat.peak_memory_bytes if plat else None
        peak = max((v for v in (measured_peak, plat_peak) if v), default=None)
        cpu = [s.cpu_s for s in fresh if s.cpu_s is not None]
        configured = [s.gb_s_configured(limit) for s in fresh if s.wall_s is not None]
        warm = None
        if plat is not None:
            warm = plat.warm_replicas if plat.warm_replicas is not None else plat.min_replicas
        idle = (
            warm * limit / GIB * run_duration_s
            if warm is not None and limit and run_duration_s is not None
            else None
        )
        out[name] = FunctionSummary(
            name=name,
            invocations=len(fresh),
            failed_invocations=sum(1 for s in fresh if s.outcome not in (None, "ok")),
            retries=sum(1 for s in fresh if s.attempt > 1),
            reused=len(samples) - len(fresh),
            cold_start_waits=sum(1 for s in fresh if s.waited_for_cold_start),
            first_in_process=sum(1 for s in fresh if s.cold_start),
            cold_starts_platform=plat.cold_starts if plat else None,
            exec_s=Distribution.of(s.exec_s for s in fresh),
            latency_s=Distribution.of(s.latency_s for s in fresh),
            queue_s=Distribution.of(s.queue_s for s in fresh),
            cold_start_wait_s=Distribution.of(
                s.cold_start_wait_s for s in fresh if s.waited_for_cold_start
            ),
            cpu_s_total=math.fsum(cpu),
            cpu_s_mean=statistics.fmean(cpu) if cpu else None,
            peak_rss_bytes_measured=measured_peak,
            peak_memory_bytes_platform=plat_peak,
            file_cache_bytes_platform=plat.peak_file_cache_bytes if plat else None,
            memory_limit_bytes=limit,
            peak_over_limit=peak / limit if peak and limit else None,
            oom_kills=plat.oom_kills if plat else 0,
            gb_s_measured=math.fsum(g for s in fresh if (g := s.gb_s_measured()) is not None),
            gb_s_configured=math.fsum(g for g in configured if g is not None)
            if configured and all(g is not None for g in configured)
            else None,
            idle_gb_s=idle,
            warm_replicas=warm,
        )
    return out


def summarize(
    records: Sequence[RequestRecord],
    *,
    regime: str = "run",
    warmup: int | None = None,
    platform: Mapping[str, FunctionPlatform] | None = None,
    run_duration_s: float | None = None,
) -> RegimeSummary:
    """Summary of one regime's records.

    ``warmup``: the first K records (by index) are warm-up; None uses each record's ``phase``.
    ``platform``: per-function figures of the run (limits, peaks, OOM kills, warm replicas).
    ``run_duration_s``: the idle-cost and throughput basis (default: first schedule to last
    finish of the measured requests).
    """
    ordered = sorted(records, key=lambda r: r.index)
    if warmup is not None:
        warm = ordered[:warmup]
        main = ordered[warmup:]
    else:
        warm = [r for r in ordered if r.phase == "warmup"]
        main = [r for r in ordered if r.phase != "warmup"]
    outcomes = OutcomeCounts.of(main)
    if run_duration_s is None and main:
        ends = [r.finished_s for r in main if r.finished_s is not None]
        start = min(r.scheduled_s for r in main)
        run_duration_s = (max(ends) - start) if ends else None
    limits = {n: p.memory_limit_bytes for n, p in (platform or {}).items() if p.memory_limit_bytes}
    # Memory limits for the configured cost come from the invocation records or the platform.
    functions = summarize_functions(main, platform, run_duration_s)
    for name, fs in functions.items():
        if fs.memory_limit_bytes:
            limits.setdefault(name, fs.memory_limit_bytes)
    costs = [request_cost(r, limits) for r in main]
    measured_total = math.fsum(f.gb_s_measured for f in functions.values())
    configured_parts = [f.gb_s_configured for f in functions.values() if f.invocations]
    configured_total = (
        math.fsum(c for c in configured_parts if c is not None)
        if configured_parts and all(c is not None for c in configured_parts)
        else None
    )
    idle_parts = [f.idle_gb_s for f in functions.values() if f.idle_gb_s is not None]
    idle_total = math.fsum(idle_parts) if idle_parts else None
    ok = outcomes.ok
    failed_checks: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in main:
        for c in r.failed_checks():
            failed_checks[c.name] += 1
        if r.outcome != "ok" and r.error_code:
            errors[r.error_code] += 1
    metrics = [r.request_metrics or {} for r in main if r.ok]
    return RegimeSummary(
        regime=regime,
        outcomes=outcomes,
        success_rate=outcomes.success_rate,
        admitted_success_rate=outcomes.admitted_success_rate,
        latency_ok_s=Distribution.of(r.latency_s for r in main if r.ok),
        latency_all_s=Distribution.of(r.latency_s for r in main if r.outcome != "not_sent"),
        send_lag_s=Distribution.of(r.send_lag_s for r in main),
        end_to_end_s=Distribution.of(m.get("end_to_end_s") for m in metrics),
        overhead_s=Distribution.of(m.get("overhead_s") for m in metrics),
        failed_checks=dict(failed_checks),
        error_codes=dict(errors),
        functions=functions,
        cost=CostSummary(
            measured_gb_s=measured_total,
            configured_gb_s=configured_total,
            idle_gb_s=idle_total,
            per_request_measured_gb_s=Distribution.of(m for m, _ in costs),
            per_request_configured_gb_s=Distribution.of(c for _, c in costs),
            per_ok_request_measured_gb_s=measured_total / ok if ok else None,
            per_ok_request_configured_gb_s=configured_total / ok
            if ok and configured_total is not None
            else None,
            per_ok_request_with_idle_gb_s=(configured_total + (idle_total or 0.0)) / ok
            if ok and configured_total is not None
            else None,
        ),
        warmup=WarmupSummary(
            outcomes=OutcomeCounts.of(warm),
            latency_s=Distribution.of(r.latency_s for r in warm if r.outcome != "not_sent"),
        )
        if warm
        else None,
        run_duration_s=run_duration_s,
        throughput_ok_per_s=ok / run_duration_s if run_duration_s else None,
        oom_kills=sum(f.oom_kills for f in functions.values()),
        client_retries=sum(r.client_retries for r in main),
        pipeline_retries=sum(f.retries for f in functions.values()),
    )


# --------------------------------------------------------------------------------------------
# Resource use and capacity
# --------------------------------------------------------------------------------------------


class ResourceUse(BaseModel):
    """CPU spent during one regime's load and the throughput it bounds.

    Three sources, each labelled: the platform's per-replica CPU (cgroup accounting, start-up
    and idle included), the functions' own per-invocation CPU (process + children), and the
    host's busy time, so CPU taken by anything else on the machine shows up instead of
    silently slowing the run.
    """

    cores: float = Field(description="CPUs the platform's functions may use")
    cores_source: str | None = Field(None, description="how the cores were found")
    window_s: float = Field(description="load window: run start to last answer")
    host_busy_cpu_s: float | None = Field(None, description="whole host, non-idle CPU seconds")
    harness_cpu_s: float | None = Field(
        None, description="the harness process (load generator; the embedded gateway thread)"
    )
    replica_cpu_s: float | None = Field(None, description="every function replica (cgroups)")
    replica_cpu_s_by_function: dict[str, float] = Field(default_factory=dict)
    other_cpu_s: float | None = Field(
        None, description="host busy - replicas - harness: the S3 server and other work"
    )
    stage_cpu_s_per_ok_request: Distribution = Field(
        description="per successful measured request: its stage invocations' own CPU "
        "(process + children)"
    )
    replica_cpu_s_per_ok_request: float | None = Field(
        None, description="replica CPU / successful requests in the window (warm-up included)"
    )
    #: cores / CPU-seconds per request: the rate at which the CPUs would be saturated.
    cpu_bound_limit_per_s: float | None = Field(None, description="from replica CPU per request")
    cpu_bound_limit_stages_per_s: float | None = Field(None, description="from stage CPU only")
    ok_requests: int | None = Field(
        None, description="successful requests in the load window (warm-up included)"
    )
    throughput_ok_per_s: float | None = Field(
        None, description="measured: successful requests (warm-up included) / load window"
    )
    utilisation: float | None = Field(None, description="(replicas + harness) / (cores x window)")
    host_utilisation: float | None = Field(None, description="host busy / (cores x window)")
    load_average_before: list[float] = Field(default_factory=list)
    load_average_after: list[float] = Field(default_factory=list)


def did_no_work(sample: InvocationSample) -> bool:
    """An attempt refused before the function started: a 429 (every slot busy; OpenFaaS CE has
    no queue for sync calls, so a fan-out onto one replica meets these in a warm request) or a
    connection never made. Either is retried and spent no function CPU."""
    if sample.outcome != "retried":
        return False
    return sample.status_code == 429 or sample.error_code == "connect_timeout"


def stage_cpu_per_request(
    records: Sequence[RequestRecord], *, exclude: frozenset[str] = frozenset({"orchestrator"})
) -> Distribution:
    """Per successful measured request, the summed CPU of its fresh stage invocations.

    The orchestrator's own figure is left out: it is its process's CPU over the request, which
    includes every other request it served meanwhile. Attempts refused before any work (see
    :func:`did_no_work`) carry no CPU figure and add none; any other attempt without one makes
    the request's CPU unknown, so it is left out rather than undercounted.
    """
    per: list[float] = []
    for r in records:
        if r.phase == "warmup" or not r.ok:
            continue
        cpu = [
            s.cpu_s
            for s in r.invocations
            if not s.reused and s.function not in exclude and not did_no_work(s)
        ]
        if cpu and all(c is not None for c in cpu):
            per.append(math.fsum(c for c in cpu if c is not None))
    return Distribution.of(per)


def resource_use(
    records: Sequence[RequestRecord],
    *,
    cores: float,
    window_s: float,
    cores_source: str | None = None,
    ok: int,
    host_busy_cpu_s: float | None = None,
    harness_cpu_s: float | None = None,
    replica_cpu_s_by_function: Mapping[str, float] | None = None,
    load_average_before: Sequence[float] = (),
    load_average_after: Sequence[float] = (),
) -> ResourceUse:
    stages = stage_cpu_per_request(records)
    by_fn = {k: round(v, 3) for k, v in sorted((replica_cpu_s_by_function or {}).items())}
    replica = math.fsum(by_fn.values()) if replica_cpu_s_by_function is not None else None
    per_ok = replica / ok if replica is not None and ok else None
    other = None
    if host_busy_cpu_s is not None and replica is not None and harness_cpu_s is not None:
        other = max(0.0, host_busy_cpu_s - replica - harness_cpu_s)
    capacity = cores * window_s if window_s > 0 else None
    used = (replica or 0.0) + (harness_cpu_s or 0.0)
    return ResourceUse(
        cores=cores,
        cores_source=cores_source,
        window_s=window_s,
        host_busy_cpu_s=host_busy_cpu_s,
        harness_cpu_s=harness_cpu_s,
        replica_cpu_s=replica,
        replica_cpu_s_by_function=by_fn,
        other_cpu_s=other,
        stage_cpu_s_per_ok_request=stages,
        replica_cpu_s_per_ok_request=per_ok,
        cpu_bound_limit_per_s=cores / per_ok if per_ok else None,
        cpu_bound_limit_stages_per_s=cores / stages.mean if stages.mean else None,
        ok_requests=ok,
        throughput_ok_per_s=ok / window_s if window_s > 0 else None,
        utilisation=used / capacity if capacity and replica is not None else None,
        host_utilisation=host_busy_cpu_s / capacity
        if capacity and host_busy_cpu_s is not None
        else None,
        load_average_before=[round(x, 2) for x in load_average_before],
        load_average_after=[round(x, 2) for x in load_average_after],
    )
