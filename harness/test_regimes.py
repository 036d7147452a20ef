"""regimes.yaml loads and validates; evaluate() names the regime, function, figure and limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from harness.functions import load as load_declarations
from harness.functions import parse_bytes
from harness.records import FunctionPlatform
from harness.regimes import (
    REGIMES_FILE,
    Baseline,
    Preparation,
    Regime,
    Thresholds,
    Workload,
    evaluate,
    load_regimes,
)
from harness.stats import summarize
from harness.synthetic import MIB, synthetic_platform, synthetic_records

# Figures for the budget check, measured on a busy 2-core host (harness/test_regimes_embedded.py):
# ~25 s per request when alone, 15 CPU-s each when requests share the cores, a deploy (warm:
# every model loads, 30-55 s; cold: S3 and gateway only) unless the previous regime had the same
# declarations, and for a cold regime ~90 s of replica starts before anything runs.
REQUEST_S = 25.0
CPU_S = 15.0
CORES = 2
DEPLOY_WARM_S = 45.0
DEPLOY_COLD_S = 5.0
COLD_STARTS_S = 90.0
#: All five run in `./vsearch test` after the baseline (~80 s): about 13 minutes on 2 cores.
CI_BUDGET_S = 780.0


def _estimate_s(regime: Regime, *, deploy: bool = True) -> float:
    schedule = _sched(regime)
    n = len(schedule)
    cold = regime.preparation.verify == "zero"
    if cold:
        prepare = (DEPLOY_COLD_S if deploy else 0.0) + COLD_STARTS_S
    else:
        prepare = DEPLOY_WARM_S if deploy else 0.0
    return prepare + max(schedule[-1] + REQUEST_S, n * CPU_S / CORES + REQUEST_S / 2)


def _estimate_set_s(regimes: list[Regime]) -> float:
    """In file order, a regime with the previous one's declarations reuses its deploy."""
    total, previous = 0.0, None
    for regime in regimes:
        declarations = regime.preparation.declarations
        total += _estimate_s(regime, deploy=declarations != previous)
        previous = declarations
    return total


def test_default_regimes_load() -> None:
    rs = load_regimes()
    # Ordered so that warm-burst reuses warm-steady's deploy.
    assert rs.names == ["warm-steady", "warm-burst", "overload", "cold-burst", "cold-steady"]
    assert rs.get("cold-burst").preparation.verify == "zero"
    assert rs.get("warm-steady").preparation.replicas_for("transcribe") == 1
    assert rs.get("cold-burst").preparation.replicas_for("search") == 0
    overload = rs.get("overload")
    assert overload.thresholds.min_admitted_success_rate == 1.0
    assert overload.thresholds.min_success_rate is None
    assert overload.preparation.overrides_for("orchestrator")["max_inflight"] == 2
    assert all(r.thresholds.max_oom_kills == 0 for r in rs.regimes)
    # Every function gets its measured budget (below its limit); the rest their limit.
    for r in rs.regimes:
        rules = r.thresholds.max_peak_memory
        assert rules.get("*") == "limit" and rules["transcribe"] == rs.budgets["transcribe"]
    limits = {d.name: d.memory_limit_bytes for d in load_declarations().functions}
    for fn, budget in rs.budgets.items():
        assert parse_bytes(str(budget)) < limits[fn], f"{fn}: budget not below its limit"


#: The CPU-bound cap the baseline measured on 2 cores (4.6 CPU-s per request).
CAPACITY = 0.43


def _sched(regime: Regime) -> list[float]:
    return list(
        regime.model_copy(update={"workload": regime.workload.with_capacity(CAPACITY)}).schedule()
    )


def test_ci_sizes_fit_the_time_budget() -> None:
    rs = load_regimes()
    ci = {r.name: r for r in rs.resolve("ci")}
    assert len(ci["warm-steady"].schedule()) == 4  # 4 at 0.03/s (1 warm-up)
    assert len(ci["cold-burst"].schedule()) == 3  # 3 at once
    over = _sched(ci["overload"])
    assert len(over) == 8 and over[-1] <= 6.0  # 8 at 4x the cap
    steady = ci["cold-steady"].schedule()
    # Requests further apart than a cold request plus the 5 s idle: each meets cold functions.
    assert len(steady) == 2 and steady[1] - steady[0] >= 55
    base = rs.baseline_for("ci")
    assert base is not None
    ordered = [base, *ci.values()]
    total = _estimate_set_s(ordered)
    assert total < CI_BUDGET_S, f"the regimes need ~{total:.0f}s"
    # Sharing warm-steady's deploy with warm-burst is part of what makes the set fit.
    assert total < sum(_estimate_s(r) for r in ordered)


def test_sizes_scale_counts() -> None:
    rs = load_regimes()
    small = {r.name: len(_sched(r)) for r in rs.resolve("small")}
    medium = {r.name: len(_sched(r)) for r in rs.resolve("medium")}
    large = {r.name: len(_sched(r)) for r in rs.resolve("large")}
    assert small["warm-steady"] == 21 and medium["warm-steady"] == 61
    assert medium["cold-steady"] == 6  # its own override
    assert large["cold-burst"] == 30
    assert all(large[n] >= medium[n] >= small[n] for n in small)
    only = rs.resolve("small", ["overload", "warm-steady"])
    assert [r.name for r in only] == ["overload", "warm-steady"]
    with pytest.raises(KeyError):
        rs.resolve("small", ["nope"])


def test_overrides_apply_to_declarations() -> None:
    decls = load_declarations().functions
    cold = load_regimes().get("cold-steady").preparation.apply(decls)
    assert all(d.min_replicas == 0 and d.scale_to_zero_idle == 5 for d in cold)
    over = {d.name: d for d in load_regimes().get("overload").preparation.apply(decls)}
    assert over["orchestrator"].max_inflight == 2 and over["orchestrator"].max_replicas == 1
    assert over["transcribe"].max_inflight == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "steady", "count": 3},  # no rate
        {"kind": "steady", "rate": 1, "count": 3, "duration_s": 4},  # both
        {"kind": "burst"},  # no count
        {"kind": "ramp", "start_rate": 1, "duration_s": 3},
        {"kind": "zipf", "count": 1},
        {"kind": "burst", "count": 1, "surprise": True},  # unknown field
    ],
)
def test_workload_validation(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Workload.model_validate(bad)


def test_regime_validation() -> None:
    with pytest.raises(ValidationError, match="unknown fields"):
        Preparation.model_validate({"declarations": {"*": {"memory": "1Gi"}}})
    with pytest.raises(ValidationError, match="verify: zero"):
        Preparation.model_validate({"replicas": {"*": 1}, "verify": "zero"})
    with pytest.raises(ValidationError, match="scale_to_zero_idle"):
        Regime.model_validate(
            {
                "name": "cold-steady",
                "preparation": {"declarations": {"*": {"scale_to_zero_idle": 30}}},
                "workload": {"kind": "steady", "rate": 0.1, "count": 3},
            }
        )
    with pytest.raises(ValidationError):
        Thresholds.model_validate({"max_peak_memory": {"*": "lots"}})
    with pytest.raises(ValidationError):
        Thresholds.model_validate({"min_success_rate": 1.5})


def test_duplicate_regimes_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load(REGIMES_FILE.read_text())
    raw["regimes"].append(raw["regimes"][0])
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValidationError, match="duplicate"):
        load_regimes(path)


def _platform(oom: dict[str, int] | None = None, peak_scale: float = 1.0) -> dict:
    return synthetic_platform(oom=oom, peak_scale=peak_scale, cold_starts=1) | {
        "orchestrator": FunctionPlatform(
            name="orchestrator", memory_limit_bytes=512 * MIB, peak_memory_bytes=160 * MIB
        )
    }


def test_evaluate_passes_a_good_run() -> None:
    platform = {
        n: p.model_copy(update={"cold_starts": 0, "peak_memory_bytes": 60 * MIB})
        for n, p in _platform().items()
    }
    baseline = Baseline(latency_s=10.0, cpu_s=8.0, cores=2)
    for size in ("ci", "small"):
        regime = load_regimes().resolve(size, ["warm-steady"])[0]  # type: ignore[arg-type]
        n = len(regime.schedule()) - regime.workload.warmup
        summary = summarize(synthetic_records(n), regime="warm-steady", platform=platform)
        # The synthetic orchestrator reports 150 MiB of RSS (the real one peaked at 91 MiB).
        rules = {**regime.thresholds.max_peak_memory, "orchestrator": "160Mi"}
        thresholds = regime.thresholds.model_copy(update={"max_peak_memory": rules})
        assert evaluate(summary, thresholds, baseline=baseline) == []


def test_evaluate_impossible_thresholds_name_the_figure() -> None:
    summary = summarize(
        synthetic_records(4, fail_every=2), regime="warm-steady", platform=_platform()
    )
    thresholds = Thresholds(
        min_success_rate=1.0,
        max_p95_latency_s=0.001,
        max_peak_memory={"*": "limit", "transcribe": "100Mi"},
        max_cold_starts=0,
    )
    violations = evaluate(summary, thresholds)
    by_figure = {(v.figure, v.function): v for v in violations}
    success = by_figure[("success rate", None)]
    assert "success rate 50.0% < minimum 100.0%" in success.message
    assert success.message.startswith("warm-steady: ")
    assert "2 wrong content" in success.message
    # Two samples cannot support a p95: that gate fails for want of samples, not silently.
    p95 = by_figure[("p95 latency", None)]
    assert "not enough samples (n=2, p95 needs >= 20)" in p95.message
    mem = by_figure[("peak memory", "transcribe")]
    assert mem.message.startswith("warm-steady: transcribe: peak memory 420 MiB")
    assert "maximum 100 MiB" in mem.message and mem.limit == 100 * MIB
    assert ("peak memory", "search") not in by_figure  # within its limit
    assert by_figure[("cold starts", None)].value > 0  # type: ignore[operator]


def test_evaluate_memory_over_limit_and_oom() -> None:
    summary = summarize(
        synthetic_records(2),
        regime="overload",
        platform=_platform(oom={"transcribe": 2}, peak_scale=2.5),
    )
    violations = evaluate(summary, Thresholds(max_peak_memory={"*": "90%"}))
    msgs = [v.message for v in violations]
    assert any(m.startswith("overload: transcribe: 2 OOM kills > maximum 0") for m in msgs)
    mem = [v for v in violations if v.figure == "peak memory"]
    # transcribe: 420 MiB x 2.5 = 1050 MiB > 90% of 1024 MiB
    t = next(v for v in mem if v.function == "transcribe")
    assert "(platform)" in t.message and "1050 MiB" in t.message


def test_a_platform_peak_names_the_page_cache_inside_it() -> None:
    # A k8s pod's cgroup peak counts the image's shared libraries it first read.
    platform = _platform()
    platform["extract-audio"] = platform["extract-audio"].model_copy(
        update={"peak_memory_bytes": 242 * MIB, "peak_file_cache_bytes": 176 * MIB}
    )
    summary = summarize(synthetic_records(2), regime="cold-burst", platform=platform)
    # Checked against the peak less the cache, never below the process tree's measured RSS.
    measured = summary.functions["extract-audio"].peak_rss_bytes_measured
    assert measured and measured > 66 * MIB
    assert evaluate(summary, Thresholds(max_peak_memory={"extract-audio": "160Mi"})) == []
    (v,) = evaluate(summary, Thresholds(max_peak_memory={"extract-audio": measured - 1}))
    assert "(measured RSS; platform 242 MiB incl. 176 MiB cache)" in v.message
    # Working memory over the budget still fails.
    platform["extract-audio"] = platform["extract-audio"].model_copy(
        update={"peak_memory_bytes": 400 * MIB, "peak_file_cache_bytes": 176 * MIB}
    )
    summary = summarize(synthetic_records(2), regime="cold-burst", platform=platform)
    (v,) = evaluate(summary, Thresholds(max_peak_memory={"extract-audio": "160Mi"}))
    assert "224 MiB (platform 400 MiB less 176 MiB page cache) > maximum 160 MiB" in v.message


def test_evaluate_admitted_success_and_cold_start_requirement() -> None:
    records = synthetic_records(6, refuse_every=3)
    summary = summarize(records, regime="overload", platform=_platform())
    assert summary.outcomes.refused == 2
    ok = Thresholds(min_admitted_success_rate=1.0)
    assert evaluate(summary, ok) == []
    strict = Thresholds(min_success_rate=1.0)
    assert [v.figure for v in evaluate(summary, strict)] == ["success rate"]
    # A "cold" regime in which functions never started cold is flagged per function.
    warm = summarize(synthetic_records(2), regime="cold-burst")
    cold = evaluate(warm, Thresholds(min_cold_starts_per_function=1))
    assert cold and all(v.figure == "cold starts" and v.function for v in cold)
    assert "the regime was not cold" in cold[0].message


def test_evaluate_unknown_limit_and_no_requests() -> None:
    summary = summarize([], regime="empty")
    v = evaluate(summary, Thresholds(min_success_rate=1.0))
    assert {x.figure for x in v} == {"requests", "success rate"}
    no_limit = summarize(synthetic_records(1), regime="x")  # orchestrator limit unknown
    msgs = [x.message for x in evaluate(no_limit, Thresholds(max_peak_memory={"*": "limit"}))]
    assert any("orchestrator" in m and "memory limit unknown" in m for m in msgs)


def test_run_regime_end_to_end_without_a_platform() -> None:
    import asyncio

    from harness.bench import run_regime
    from harness.records import RequestRecord, check_content, classify, invocations_from_result
    from harness.synthetic import demo_truth, envelope, good_result

    regime = Regime.model_validate(
        {
            "name": "tiny",
            "workload": {"kind": "steady", "rate": 50, "count": 4, "warmup": 1},
            "thresholds": {"min_success_rate": 1.0, "max_oom_kills": 0},
        }
    )
    calls = {"n": 0}

    def snapshot() -> dict[str, FunctionPlatform]:
        calls["n"] += 1
        oom = 0 if calls["n"] == 1 else 1  # one OOM kill during the regime
        return {
            "transcribe": FunctionPlatform(
                name="transcribe", memory_limit_bytes=1 << 30, oom_kills=3 + oom, warm_replicas=1
            )
        }

    async def send(i: int, scheduled_at: float) -> RequestRecord:
        body = envelope(good_result(request_id=f"r{i}"))
        checks = check_content(body, demo_truth())
        return RequestRecord(
            index=i,
            request_id=f"r{i}",
            scheduled_s=scheduled_at,
            http_status=200,
            outcome=classify(200, checks),
            checks=checks,
            invocations=invocations_from_result(body),
        )

    result = asyncio.run(run_regime(regime, send, snapshot=snapshot))
    assert result.summary.outcomes.total == 3 and result.summary.warmup is not None
    assert result.summary.success_rate == 1.0
    assert result.summary.functions["transcribe"].oom_kills == 1  # the delta, not the counter
    assert [v.figure for v in result.violations] == ["OOM kills"]
    assert result.load is not None and result.load.issued == 4
