"""The capacity search on synthetic records: stepping, judging, the result and its plot."""

from __future__ import annotations

import matplotlib.pyplot as plt

from harness.capacity import (
    CapacityStep,
    capacity_result,
    judge_step,
    next_rate,
    plot_capacity,
    render_capacity_result,
)
from harness.regimes import Baseline, CapacityConfig, load_regimes
from harness.stats import summarize
from harness.synthetic import synthetic_records

BASELINE = Baseline(latency_s=10.0, cpu_s=8.0, cores=2)  # cap 0.25/s
CONFIG = CapacityConfig(start_x=0.5, step_x=0.25, max_steps=6, max_latency_ratio=3.0)


def _step(x: float, *, ok: bool) -> CapacityStep:
    # Below capacity latency stays near the baseline; above it the queue grows.
    records = synthetic_records(6, base_latency_s=10.0 if ok else 40.0)
    summary = summarize(records, regime=f"capacity-{x}")
    return judge_step(summary, rate_x=x, rate_per_s=x * 0.25, baseline=BASELINE, config=CONFIG)


def test_steps_rise_until_the_first_break() -> None:
    steps: list[CapacityStep] = []
    truth = {0.5: True, 0.75: True, 1.0: False}
    while (x := next_rate(steps, CONFIG)) is not None:
        steps.append(_step(x, ok=truth[x]))
    assert [s.rate_x for s in steps] == [0.5, 0.75, 1.0]
    assert [s.sustainable for s in steps] == [True, True, False]
    assert "slowest request" in steps[-1].reason and "> 3x" in steps[-1].reason
    result = capacity_result(steps, BASELINE, CONFIG)
    assert result.cpu_bound_cap_per_s == 0.25
    assert result.sustainable_rate_per_s == 0.75 * 0.25
    assert result.ratio_to_cap == 0.75
    text = render_capacity_result(result)
    assert "sustainable rate: 0.188 req/s = 75% of the CPU-bound cap" in text
    assert "2 cores / 8.00 CPU-s per request = 0.250 req/s" in text
    fig = plot_capacity(result)
    plt.close(fig)


def test_a_first_step_too_high_halves_and_failures_break_a_step() -> None:
    steps = [_step(0.5, ok=False)]
    assert next_rate(steps, CONFIG) == 0.25
    # A step with wrong answers is not sustainable however fast it was.
    records = synthetic_records(6, fail_every=3, base_latency_s=10.0)
    bad = judge_step(
        summarize(records, regime="c"), rate_x=0.25, rate_per_s=0.0625,
        baseline=BASELINE, config=CONFIG,
    )  # fmt: skip
    assert not bad.sustainable and bad.reason.startswith("success 4/6 < 100%")
    steps.append(bad)
    assert next_rate(steps, CONFIG) == 0.125
    result = capacity_result(steps, BASELINE, CONFIG)
    assert result.sustainable_rate_per_s is None and "broke at" in result.stopped


def test_max_steps_ends_a_search_that_never_breaks() -> None:
    config = CONFIG.model_copy(update={"max_steps": 2})
    steps = [_step(0.5, ok=True), _step(0.75, ok=True)]
    assert next_rate(steps, config) is None
    assert "max_steps (2) reached" in capacity_result(steps, BASELINE, config).stopped


def test_regimes_yaml_declares_the_capacity_search() -> None:
    rs = load_regimes()
    assert rs.capacity is not None and rs.baseline is not None
    assert rs.capacity.preparation.declarations == rs.baseline.preparation.declarations
    assert set(rs.capacity.sources) >= {"max_latency_ratio", "start_x", "requests_per_step"}


def test_a_step_whose_answers_fall_behind_is_not_sustainable() -> None:
    # Arrivals every 2 s (0.5/s) but answers 5 s apart: a queue builds, whatever the latency.
    records = synthetic_records(6, rate=0.5, base_latency_s=1.0)
    late = [
        r.model_copy(update={"finished_s": 10.0 + 5.0 * r.index}).finalize_timing() for r in records
    ]
    config = CONFIG.model_copy(update={"max_latency_ratio": 100.0})
    step = judge_step(
        summarize(late, regime="c"), rate_x=2.0, rate_per_s=0.5, baseline=BASELINE,
        config=config, records=late,
    )  # fmt: skip
    assert step.completion_rate_per_s == 0.2
    assert not step.sustainable and "answers came at 0.200/s < 80% of the offered" in step.reason
