"""Every gate can fail: synthetic records (no platform) made to miss each threshold in turn.

Each test checks that the verdict names the regime, the function (where there is one), the
figure, the measured value and the limit, so a red CI says what broke.
"""

from __future__ import annotations

import pytest

from harness.regimes import Baseline, Thresholds, Violation, evaluate, load_regimes
from harness.stats import RegimeSummary, min_samples_for, percentile_ci, resource_use, summarize
from harness.synthetic import MIB, synthetic_platform, synthetic_records

BASELINE = Baseline(latency_s=5.0, cpu_s=8.0, cores=2)  # CPU-bound cap 0.25/s


def _platform(*, peak_scale: float = 1.0, oom: dict[str, int] | None = None, cold: int = 0):
    return synthetic_platform(peak_scale=peak_scale, oom=oom, cold_starts=cold)


def _summary(n: int = 25, **kw: object) -> RegimeSummary:
    platform = kw.pop("platform", None) or _platform()
    return summarize(synthetic_records(n, **kw), regime="gate", platform=platform)  # type: ignore[arg-type]


def _one(violations: list[Violation], figure: str, function: str | None = None) -> Violation:
    found = [v for v in violations if v.figure == figure and v.function == function]
    assert len(found) == 1, [v.message for v in violations]
    return found[0]


def test_memory_budget_below_the_limit_fails_naming_the_function() -> None:
    # transcribe peaks at 420 MiB (synthetic); its limit is 1024 MiB, its budget 400 MiB.
    summary = _summary(4)
    v = _one(
        evaluate(summary, Thresholds(max_peak_memory={"transcribe": "400Mi"})),
        "peak memory",
        "transcribe",
    )
    assert v.message.startswith("gate: transcribe: peak memory 420 MiB")
    assert "> maximum 400 MiB" in v.message and "limit 1024 MiB" in v.message
    assert v.value == 420 * MIB and v.limit == 400 * MIB
    # The same run passes a budget just above its peak.
    assert evaluate(summary, Thresholds(max_peak_memory={"transcribe": "421Mi"})) == []


def test_budget_keyword_resolves_from_the_regime_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "r.yaml"
    path.write_text(
        "budgets_source: test\n"
        "budgets: {transcribe: 400Mi}\n"
        "regimes:\n"
        "  - name: a\n"
        "    workload: {kind: burst, count: 1}\n"
        "    thresholds: {max_peak_memory: {'*': budget}}\n"
    )
    rules = load_regimes(path).get("a").thresholds.max_peak_memory
    assert rules == {"transcribe": "400Mi", "*": "limit"}
    v = _one(
        evaluate(_summary(2), load_regimes(path).get("a").thresholds), "peak memory", "transcribe"
    )
    assert "> maximum 400 MiB" in v.message


def test_latency_ratio_to_the_baseline_fails_with_the_figures() -> None:
    summary = _summary(25, base_latency_s=10.0)  # p50 ~12 s against a 5 s baseline
    v = _one(
        evaluate(summary, Thresholds(max_p50_ratio=1.5), baseline=BASELINE), "p50 latency ratio"
    )
    assert v.value is not None and v.value > 1.5 and v.limit == 1.5
    assert "x the warm baseline 5.00s > maximum 1.5x" in v.message
    assert "n=25" in v.message and "95% CI" in v.message
    p95 = _one(
        evaluate(summary, Thresholds(max_p95_ratio=2.0), baseline=BASELINE), "p95 latency ratio"
    )
    assert "p95 latency" in p95.message and "> maximum 2x" in p95.message
    mx = _one(
        evaluate(summary, Thresholds(max_max_ratio=2.0), baseline=BASELINE), "max latency ratio"
    )
    assert mx.value is not None and mx.value > 2.0
    # Within the ratio: passes; without a baseline a ratio gate cannot pass silently.
    assert evaluate(summary, Thresholds(max_p50_ratio=4.0), baseline=BASELINE) == []
    none = _one(evaluate(summary, Thresholds(max_p50_ratio=4.0)), "p50 latency ratio")
    assert "no baseline" in none.message


def test_absolute_latency_still_possible() -> None:
    v = _one(evaluate(_summary(25), Thresholds(max_p95_latency_s=1.0)), "p95 latency")
    assert "> maximum 1s" in v.message and "from scheduled send time" in v.message


def test_a_percentile_on_too_few_samples_fails_instead_of_passing() -> None:
    summary = _summary(3)
    v = _one(evaluate(summary, Thresholds(max_p95_latency_s=1000.0)), "p95 latency")
    assert "not enough samples (n=3, p95 needs >= 20)" in v.message
    assert v.value == 3 and v.limit == 20
    # ... the ratio form too; a median or a max on the same 3 samples is judged.
    v = _one(evaluate(summary, Thresholds(max_p95_ratio=100.0), baseline=BASELINE), "p95 latency")
    assert "not enough samples" in v.message
    assert (
        evaluate(summary, Thresholds(max_p50_ratio=100.0, max_max_ratio=100.0), baseline=BASELINE)
        == []
    )


def test_success_oom_cold_and_send_lag_gates_fail() -> None:
    summary = _summary(4, fail_every=2, platform=_platform(oom={"detect-objects": 1}, cold=2))
    t = Thresholds(min_success_rate=1.0, max_oom_kills=0, max_cold_starts=0)
    vs = evaluate(summary, t)
    assert "success rate 50.0% < minimum 100.0%" in _one(vs, "success rate").message
    oom = _one(vs, "OOM kills", "detect-objects")
    assert oom.message.startswith("gate: detect-objects: 1 OOM kills > maximum 0")
    cold = _one(vs, "cold starts")
    assert "> maximum 0 (the regime was not warm)" in cold.message
    # Send lag: the load generator fell behind its schedule.
    records = synthetic_records(3)
    lagging = [
        r.model_copy(update={"sent_s": r.scheduled_s + 2.5}).finalize_timing()
        if r.index == 1
        else r
        for r in records
    ]
    lag = _one(
        evaluate(summarize(lagging, regime="gate"), Thresholds(max_send_lag_s=1.0)), "send lag"
    )
    assert "2.500s after schedule > maximum 1s" in lag.message and lag.limit == 1.0


def test_admitted_fraction_and_goodput_gates_fail() -> None:
    # 7 of 8 refused: admitted success is perfect, and that alone used to pass.
    records = synthetic_records(8, refuse_every=1)
    records[0] = synthetic_records(1)[0]
    summary = summarize(records, regime="overload")
    assert summary.admitted_success_rate == 1.0
    v = _one(evaluate(summary, Thresholds(min_admitted_fraction=0.25)), "admitted fraction")
    assert "admitted fraction 12.5% < minimum 25.0% (1 of 8 admitted; 7 refused" in v.message
    # Goodput: 1 ok over the window against a 0.25/s CPU-bound cap.
    g = _one(evaluate(summary, Thresholds(min_goodput_share=0.5), baseline=BASELINE), "goodput")
    assert "of capacity 0.250/s < minimum 50%" in g.message and g.limit == 0.5
    assert g.value is not None and g.value < 0.5
    # Without a baseline the regime's own CPU accounting is the basis.
    res = resource_use(records, cores=2, window_s=20.0, ok=1, replica_cpu_s_by_function={"x": 10.0})
    g2 = _one(evaluate(summary, Thresholds(min_goodput_share=0.9), resources=res), "goodput")
    assert "this regime's CPU-bound cap" in g2.message
    # With neither it fails rather than pass unjudged.
    assert (
        "cannot be judged"
        in _one(evaluate(summary, Thresholds(min_goodput_share=0.1)), "goodput").message
    )


def test_min_samples_and_percentile_ci() -> None:
    assert min_samples_for(95) == 20 and min_samples_for(50) == 2 and min_samples_for(99) == 100
    data = list(range(1, 101))
    lo, hi = percentile_ci(data, 50)
    assert lo is not None and hi is not None and lo < 50 < hi and hi - lo < 25
    lo95, hi95 = percentile_ci(list(range(1, 21)), 95)
    assert lo95 is not None and hi95 is None  # 20 samples cannot bound a p95 from above
    assert percentile_ci([1.0, 2.0, 3.0], 50) == (None, None)


@pytest.mark.parametrize("size", ["ci", "small"])
def test_every_threshold_in_regimes_yaml_says_where_it_came_from(size: str) -> None:
    rs = load_regimes()
    assert rs.budgets and rs.budgets_source
    regimes = rs.resolve(size)  # type: ignore[arg-type]
    base = rs.baseline_for(size)  # type: ignore[arg-type]
    for regime in [*regimes, *([base] if base else [])]:
        missing = [f for f in regime.thresholds.set_fields() if f not in regime.thresholds.sources]
        assert not missing, f"{regime.name} ({size}): thresholds without a source: {missing}"


def test_default_size_supports_a_p95_and_ci_gates_on_what_it_can() -> None:
    rs = load_regimes()
    warm = rs.resolve("small", ["warm-steady"])[0]
    measured = len(warm.schedule()) - warm.workload.warmup
    assert measured >= 20
    for size in ("ci", "small"):
        for regime in rs.resolve(size):  # type: ignore[arg-type]
            n = len(regime.schedule()) if regime.workload.rate_x_capacity is None else 0
            n = n or (regime.workload.count or 0)
            n -= regime.workload.warmup
            t = regime.thresholds
            if t.max_p95_ratio is not None or t.max_p95_latency_s is not None:
                assert n >= 20, f"{regime.name} ({size}): p95 gate on {n} samples"
