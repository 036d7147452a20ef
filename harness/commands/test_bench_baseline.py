"""bench --baseline: regimes against the in-process baseline, from records (no platform)."""

from __future__ import annotations

import statistics

import pytest

from harness.commands.bench import compare_with_baseline, render_baseline
from harness.report import RegimeResult
from harness.stats import summarize
from harness.synthetic import synthetic_records


def _regime(name: str, *, cold: bool = False) -> RegimeResult:
    records = synthetic_records(5, seed=3, cold=cold, fail_every=5)
    return RegimeResult(name=name, summary=summarize(records, regime=name), records=records)


def test_ratios_are_medians_of_successful_requests_against_the_baseline() -> None:
    warm, cold = _regime("warm-steady"), _regime("cold-burst", cold=True)
    runs = [
        {"ok": True, "wall_s": 4.0, "cpu_s": 3.1, "function_cpu_s": 3.0},
        {"ok": True, "wall_s": 6.0, "cpu_s": 3.3, "function_cpu_s": 3.2},
        {"ok": False, "wall_s": 1.0, "cpu_s": 0.1, "function_cpu_s": 0.1},  # left out
    ]
    cmp = compare_with_baseline([warm, cold], {"requests": runs, "load_s": {"transcribe": 2.0}})
    base = cmp["baseline"]
    assert (base["requests_ok"], base["wall_p50_s"], base["function_cpu_s_p50"]) == (2, 5.0, 3.1)

    row = cmp["regimes"][0]
    ok = [r for r in warm.records if r.ok]
    assert row["requests_ok"] == len(ok) == 4  # every 5th failed its content checks
    e2e = statistics.median(float(r.request_metrics["end_to_end_s"]) for r in ok)  # type: ignore[index]
    assert row["end_to_end_p50_s"] == pytest.approx(e2e, abs=1e-4)
    assert row["end_to_end_vs_baseline"] == pytest.approx(e2e / 5.0, abs=1e-3)
    cpu = statistics.median(
        sum(i.cpu_s or 0.0 for i in r.invocations if i.function != "orchestrator") for r in ok
    )
    assert row["function_cpu_s_p50"] == pytest.approx(cpu, abs=1e-4)
    assert row["cpu_vs_baseline"] == pytest.approx(cpu / 3.1, abs=1e-3)
    assert 0 <= row["overhead_share_p50"] < 1

    cold_row = cmp["regimes"][1]
    assert cmp["cold_burst_vs_warm_steady_p50"] == pytest.approx(
        cold_row["latency_p50_s"] / row["latency_p50_s"], abs=1e-3
    )
    text = render_baseline(cmp)
    assert "in-process baseline (2/3 ok)" in text and "cold-burst p50 / warm-steady p50" in text
