"""Percentiles (nearest rank, never above the max), confidence intervals, summaries, cost."""

from __future__ import annotations

import random

import pytest

from harness.records import FunctionPlatform, InvocationSample, RequestRecord
from harness.stats import (
    Distribution,
    did_no_work,
    mean_ci,
    percentile,
    percentiles,
    request_cost,
    stage_cpu_per_request,
    summarize,
)
from harness.synthetic import MIB, synthetic_platform, synthetic_records


def test_nearest_rank_known_examples() -> None:
    # The textbook example (Wikipedia, "Percentile", nearest-rank method).
    data = [15, 20, 35, 40, 50]
    assert percentile(data, 5) == 15
    assert percentile(data, 30) == 20
    assert percentile(data, 40) == 20
    assert percentile(data, 50) == 35
    assert percentile(data, 100) == 50
    assert percentile([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 25) == 7
    assert percentile([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 75) == 15
    assert percentile([7], 99) == 7
    assert percentile(range(1, 101), 90) == 90
    assert percentile(range(1, 101), 99) == 99
    assert percentiles([1, 2, 3, 4]) == {"p50": 2, "p90": 4, "p95": 4, "p99": 4}


def test_percentile_never_exceeds_max_nor_interpolates() -> None:
    rng = random.Random(1)
    for n in (1, 2, 3, 5, 9, 10, 11, 19, 20, 101):
        data = [rng.lognormvariate(2, 1) for _ in range(n)]
        for p in (0, 1, 50, 90, 95, 99, 99.9, 100):
            value = percentile(data, p)
            assert min(data) <= value <= max(data)
            assert value in data  # an observed latency, not an interpolation
    # The prior attempt's bug: with 4 samples, an interpolating p90 can sit above the max if
    # computed on the wrong scale; nearest rank gives the max itself.
    assert percentile([1.0, 2.0, 3.0, 611.0], 90) == 611.0
    ps = percentiles([5.0, 1.0, 3.0])
    assert ps["p50"] <= ps["p90"] <= ps["p95"] <= ps["p99"] <= 5.0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_mean_ci_against_known_values() -> None:
    ci = mean_ci([1, 2, 3, 4, 5])
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445
    half = 2.776445 * (2.5**0.5) / 5**0.5
    assert ci.mean == pytest.approx(3.0)
    assert ci.half_width == pytest.approx(half, rel=1e-5)
    assert ci.low == pytest.approx(3 - half, rel=1e-5)
    assert ci.high == pytest.approx(3 + half, rel=1e-5)
    assert ci.n == 5
    one = mean_ci([4.2])
    assert one.mean == 4.2 and one.low is None and one.high is None
    same = mean_ci([2.0, 2.0, 2.0])
    assert same.low == same.high == 2.0
    with pytest.raises(ValueError):
        mean_ci([])


def test_distribution_counts_and_bounds() -> None:
    d = Distribution.of([3.0, None, 1.0, 2.0, float("nan")])
    assert d.n == 3 and d.min == 1.0 and d.max == 3.0 and d.total == 6.0
    assert d.p99 == 3.0 and d.p50 == 2.0
    assert d.ci95_low is not None and d.ci95_low < 2.0 < d.ci95_high  # type: ignore[operator]
    assert Distribution.of([]).n == 0


def _platform() -> dict[str, FunctionPlatform]:
    plat = synthetic_platform(extra_mib=20, warm_replicas=1)
    plat["orchestrator"] = FunctionPlatform(
        name="orchestrator",
        memory_limit_bytes=512 * MIB,
        peak_memory_bytes=200 * MIB,
        warm_replicas=1,
        oom_kills=1,
    )
    return plat


def test_summary_outcomes_latency_and_warmup() -> None:
    records = synthetic_records(12, seed=3, fail_every=5, refuse_every=6)
    s = summarize(records, regime="warm-steady", warmup=2, platform=_platform())
    measured = records[2:]
    assert s.outcomes.total == 10
    assert s.outcomes.ok == sum(r.ok for r in measured)
    assert s.outcomes.refused == sum(r.outcome == "refused" for r in measured) == 2
    assert s.outcomes.failed_content == sum(r.outcome == "failed_content" for r in measured)
    assert s.success_rate == pytest.approx(s.outcomes.ok / 10)
    assert s.admitted_success_rate == pytest.approx(s.outcomes.ok / 8)
    ok_lat = sorted(r.latency_s for r in measured if r.ok)
    assert s.latency_ok_s.n == len(ok_lat) and s.latency_ok_s.max == ok_lat[-1]
    assert s.latency_ok_s.p95 <= s.latency_ok_s.max  # type: ignore[operator]
    assert s.warmup is not None and s.warmup.outcomes.total == 2
    assert s.failed_checks.get("wer") == s.outcomes.failed_content
    assert s.error_codes.get("overloaded") == 2
    assert s.oom_kills == 1
    # Phase tags are used when no warm-up count is given.
    for r in records[:2]:
        r.phase = "warmup"
    assert summarize(records, regime="x").outcomes.total == 10


def test_summary_per_function() -> None:
    records = synthetic_records(6, seed=2)
    s = summarize(records, regime="r", platform=_platform())
    t = s.functions["transcribe"]
    assert t.invocations == 6 * 3  # three clips per request
    assert t.exec_s.n == 18 and t.exec_s.p50 is not None
    assert t.exec_s.p99 <= t.exec_s.max  # type: ignore[operator]
    assert t.memory_limit_bytes == 1024 * MIB
    assert t.peak_rss_bytes_measured == 420 * MIB
    assert t.peak_memory_bytes_platform == 440 * MIB
    assert t.peak_memory_bytes == 440 * MIB
    assert t.peak_over_limit == pytest.approx(440 / 1024)
    walls = [x.wall_s or 0 for r in records for x in r.invocations if x.function == "transcribe"]
    assert t.cpu_s_total == pytest.approx(0.9 * sum(walls))
    assert t.first_in_process == 0 and t.cold_start_waits == 0
    assert s.functions["orchestrator"].invocations == 6
    cold = summarize(synthetic_records(3, cold=True), regime="c")
    assert cold.functions["search"].cold_start_waits == 1
    assert cold.functions["search"].cold_starts == 1


def test_cost_measured_configured_and_idle() -> None:
    records = synthetic_records(4, seed=5)
    plat = _platform()
    s = summarize(records, regime="r", platform=plat, run_duration_s=100.0)
    # Measured: wall x (peak + child) per invocation; configured: wall x limit.
    manual_measured = sum(
        (x.wall_s or 0) * (x.footprint_bytes or 0) / (1 << 30)
        for r in records
        for x in r.invocations
    )
    manual_configured = sum(
        (x.wall_s or 0)
        * (x.memory_limit_bytes or plat[x.function].memory_limit_bytes or 0)
        / (1 << 30)
        for r in records
        for x in r.invocations
    )
    assert s.cost.measured_gb_s == pytest.approx(manual_measured)
    assert s.cost.configured_gb_s == pytest.approx(manual_configured)
    assert s.cost.configured_gb_s > s.cost.measured_gb_s  # type: ignore[operator]
    # Idle: one warm replica per function x its limit x 100 s.
    limits = sum(p.memory_limit_bytes or 0 for p in plat.values())
    assert s.cost.idle_gb_s == pytest.approx(limits / (1 << 30) * 100.0)
    assert s.cost.per_ok_request_measured_gb_s == pytest.approx(manual_measured / 4)
    assert s.cost.per_ok_request_with_idle_gb_s == pytest.approx(
        (manual_configured + s.cost.idle_gb_s) / 4  # type: ignore[operator]
    )
    assert s.cost.per_request_measured_gb_s.n == 4
    meas, conf = request_cost(records[0], {n: p.memory_limit_bytes or 0 for n, p in plat.items()})
    assert meas is not None and conf is not None and conf > meas
    # Without a known limit for every function, the configured cost is not guessed.
    assert summarize(records, regime="r").cost.configured_gb_s is None


def test_summary_of_nothing() -> None:
    s = summarize([], regime="empty")
    assert s.outcomes.total == 0 and s.success_rate is None and s.latency_ok_s.n == 0
    lone = RequestRecord(index=0, request_id="a", scheduled_s=0, outcome="not_sent")
    s = summarize([lone], regime="x")
    assert s.success_rate == 0.0 and s.admitted_success_rate is None


def _request(*invocations: InvocationSample) -> RequestRecord:
    return RequestRecord(
        index=0, request_id="r", scheduled_s=0.0, outcome="ok", invocations=list(invocations)
    )


def _call(function: str, cpu: float | None, **kw: object) -> InvocationSample:
    return InvocationSample.model_validate({"function": function, "cpu_s": cpu, **kw})


def test_stage_cpu_skips_attempts_refused_before_any_work() -> None:
    # On OpenFaaS CE a fan-out onto one replica meets 429s in a warm request: before this, any
    # such attempt (no metrics, so no CPU) left the request's CPU and the baseline's unknown.
    refused = _call("cut-clips", None, outcome="retried", status_code=429)
    never_connected = _call("search", None, outcome="retried", error_code="connect_timeout")
    r = _request(
        _call("orchestrator", 9.0),
        _call("cut-clips", 1.5),
        refused,
        _call("search", 0.25),
        never_connected,
    )
    assert did_no_work(refused) and did_no_work(never_connected)
    assert stage_cpu_per_request([r]).mean == pytest.approx(1.75)


def test_stage_cpu_unknown_when_an_attempt_that_worked_has_no_figure() -> None:
    # A 502 or a dropped connection may follow work: its CPU is unknown, not zero.
    for failed in (
        _call("cut-clips", None, outcome="retried", status_code=502),
        _call("cut-clips", None, outcome="retried", error_code="connection_error"),
    ):
        assert not did_no_work(failed)
        assert stage_cpu_per_request([_request(_call("search", 0.25), failed)]).n == 0
