"""The per-request trace (Gantt PNG, Chrome trace JSON, critical path), the calibration of
budgets and limits, and the significance test of `./vsearch report A B`, on synthetic runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.calibrate import calibrate, render_calibration, round_up
from harness.records import RequestRecord, invocations_from_result
from harness.regimes import Baseline
from harness.report import RegimeResult, RunResults, significance, write_report
from harness.stats import summarize
from harness.synthetic import (
    MIB,
    envelope,
    good_result,
    invocation,
    synthetic_platform,
    synthetic_records,
)
from harness.trace import chrome_trace, critical_path, request_trace

T0 = 1_700_000_000.0


def _chain_record() -> RequestRecord:
    """extract (0-1) -> segment (1-2) -> two clips in parallel: a short (2-3) and a long one
    whose replica had to start (2-6, 1.5 s of it waiting) -> search (6-6.2)."""
    calls = [
        invocation("extract-audio", wall_s=0.9, started_at=T0),
        invocation("segment-speech", wall_s=0.9, started_at=T0 + 1.0),
        invocation("transcribe", fanout=0, wall_s=0.9, started_at=T0 + 2.0),
        invocation("transcribe", fanout=1, wall_s=2.4, cold_wait_s=1.5,
                   started_at=T0 + 2.0),
        invocation("search", wall_s=0.15, started_at=T0 + 6.0),
    ]  # fmt: skip
    calls[1]["metrics"].update(download_s=0.1, compute_s=0.7, upload_s=0.1)
    body = envelope(good_result(request_id="r-trace", invocations=calls))
    return RequestRecord(
        index=0, request_id="r-trace", scheduled_s=0.0, sent_s=0.0, finished_s=6.5,
        http_status=200, outcome="ok", invocations=invocations_from_result(body),
    ).finalize_timing()  # fmt: skip


def test_trace_has_phases_and_the_critical_path() -> None:
    trace = request_trace(_chain_record())
    labels = [b.label for b in trace.bars]
    assert labels[0] == "extract-audio" and labels[-1] == "search"
    crit = [b.label for b in trace.bars if b.critical]
    # The cold clip, not the fast one, set the latency.
    assert crit == ["extract-audio", "segment-speech", "transcribe-1", "search"]
    seg = next(b for b in trace.bars if b.label == "segment-speech")
    assert [s.kind for s in seg.segments][:3] == ["download", "compute", "upload"]
    cold = next(b for b in trace.bars if b.label == "transcribe-1")
    assert [s.kind for s in cold.segments][:2] == ["cold start wait", "run"]
    assert cold.segments[0].duration_s == pytest.approx(1.5)
    assert trace.critical_path_s == pytest.approx(6.16, abs=0.02)
    events = chrome_trace(trace)["traceEvents"]
    slices = [e for e in events if e["ph"] == "X" and e["cat"] != "phase"]
    assert len(slices) == 5 and all(e["dur"] > 0 for e in slices)
    assert {e["name"] for e in events if e.get("cat") == "critical"} == {
        "extract-audio", "segment-speech", "transcribe", "search"
    }  # fmt: skip
    json.dumps(events)  # serialisable as written


def test_critical_path_of_nothing_and_write_report_emits_traces(tmp_path: Path) -> None:
    assert critical_path([]) == []
    records = [_chain_record()]
    result = RegimeResult(name="t", summary=summarize(records, regime="t"), records=records)
    files = write_report(tmp_path, [result])
    assert files["trace t"].read_bytes().startswith(b"\x89PNG")
    doc = json.loads(files["trace t (Perfetto)"].read_text())
    assert doc["displayTimeUnit"] == "ms" and doc["traceEvents"]


def _run(latency_s: float, n: int, *, peak_scale: float = 1.0, fail_every: int = 0) -> RunResults:
    platform = synthetic_platform(peak_scale=peak_scale)
    records = synthetic_records(n, base_latency_s=latency_s, fail_every=fail_every)
    base = Baseline(latency_s=latency_s, cpu_s=8.0, cores=2)
    result = RegimeResult(
        name="warm-steady",
        summary=summarize(records, regime="warm-steady", platform=platform),
        records=records,
        baseline=base,
    )
    return RunResults(regimes=[result], platform={"cpus": 2})


def test_calibrate_budgets_limits_and_ratios() -> None:
    cal = calibrate([("a", _run(5.0, 22)), ("b", _run(5.0, 4, peak_scale=1.1))])
    transcribe = next(f for f in cal.functions if f.function == "transcribe")
    peak = int(420 * MIB * 1.1)
    assert transcribe.peak_bytes == peak and transcribe.regimes == 2
    assert transcribe.budget_bytes == round_up(peak * 1.2, 16 * MIB)
    assert transcribe.budget_bytes % (16 * MIB) == 0 and transcribe.budget_below_limit
    assert transcribe.suggested_limit_bytes >= transcribe.budget_bytes
    text = render_calibration(cal)
    assert "budgets_source:" in text and "./vsearch report --calibrate a b" in text
    assert "  transcribe: 560Mi" in text  # 462 MiB x 1.2 = 554 -> 560
    # Ratios: run a has enough samples for a p95, run b only for p50 and max.
    a, b = cal.ratios
    assert a.p95 is not None and b.p95 is None and b.p50 is not None and b.max is not None


def test_significance_flags_a_real_regression_only() -> None:
    a = _run(5.0, 25)
    same = significance(a, _run(5.0, 25))
    assert not any(c.regression for c in same)
    slower = significance(a, _run(7.5, 25))
    lat = next(c for c in slower if c.figure == "latency p50")
    assert lat.regression and lat.p_value is not None and lat.p_value < 0.001
    assert lat.change is not None and lat.change > 0.3
    # Three samples a side cannot show anything at 5%: said, not flagged.
    few = next(c for c in significance(_run(5.0, 3), _run(50.0, 3)) if c.figure == "latency p50")
    assert not few.regression and "too few samples" in few.note
    failing = significance(a, _run(5.0, 25, fail_every=2))
    succ = next(c for c in failing if c.figure == "success rate")
    assert succ.regression and succ.b is not None and succ.b < 0.6
