"""Every deployment regime of regimes.yaml, for real, on the embedded platform (or a cluster).

The platform is the embedded one unless ``VSEARCH_BACKEND=k8s`` names a cluster (with
``VSEARCH_KUBECONFIG`` etc., harness/backends/from_env.py): then the same regimes run on
OpenFaaS + MinIO there, e.g. ``bazel test //harness:regimes --test_env=VSEARCH_BACKEND=k8s
--test_env=VSEARCH_KUBECONFIG=$HOME/.cache/vsearch-cluster/kubeconfig``. A cluster asked for
and not usable fails the tests (with the reason); ``./vsearch test --cluster`` checks first and
skips the tier, saying why.

One parametrised test per regime (ids = regime names: ``pytest harness -k warm-steady``), in
the file's order. Consecutive regimes with the same declarations share one deploy (a warm one
loads every model); the gateway's measurement window restarts after each preparation, so every
regime's cold starts, OOM kills and peak memory are its own. pytest-benchmark times the load
phase (deploy, scale and verify are ``pedantic``'s setup) and stores the summary figures in
``extra_info``, so ``pytest harness -k cold-burst --benchmark-enable --benchmark-json=x.json``
gives JSON that ``pytest-benchmark compare`` reads. A missed threshold fails the test with the
Violation messages (which function, which figure, which limit).

All five run in ``./vsearch test`` (CI) at size ``ci``: about 10 minutes on 2 cores. The
baseline (regimes.yaml ``baseline:``, warm requests of the same video) runs first, on the deploy
warm-steady then reuses: latency ratio thresholds and the overload rate refer to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.backend import Backend
from harness.backends import from_env
from harness.backends.embedded import EmbeddedBackend
from harness.backends.factory import create_backend
from harness.media.generate import demo_video
from harness.regimes import Baseline, Regime, Thresholds, evaluate, load_regimes
from harness.report import RegimeResult, write_report
from harness.runner import Media, RegimeRun, measure_baseline

SIZE = "ci"
REGIMES = load_regimes().resolve(SIZE)
QUERY = "flour"
#: Generous: a small regime takes 1-4 minutes; the pytest-wide 600 s would cut a slow CI host.
REGIME_TIMEOUT_S = 900


def _param(regime: Regime) -> Any:
    return pytest.param(regime, id=regime.name, marks=[pytest.mark.timeout(REGIME_TIMEOUT_S)])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    truth = demo_video(tmp_path_factory.mktemp("regime-media"))
    return Media(path=Path(truth.path), query=QUERY, truth=truth, id="demo")


@pytest.fixture(scope="module")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("regime-platform")


@pytest.fixture(scope="module")
def backend(platform_dir: Path) -> Iterator[Backend]:
    """One backend for the module: a regime with the previous one's declarations reuses it."""
    name = from_env.backend_name()
    if name == "embedded":
        with EmbeddedBackend(platform_dir) as shared:
            yield shared
        return
    reason = from_env.cluster_unavailable()
    if reason is not None:
        pytest.fail(f"VSEARCH_BACKEND={name}: {reason}", pytrace=False)
    cluster = create_backend(name, **from_env.k8s_options())
    try:
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture(scope="module")
def baseline(backend: Backend, media: Media) -> Baseline:
    """The warm baseline of this module's run, measured once before the first regime."""
    regime = load_regimes().baseline_for(SIZE)
    assert regime is not None, "regimes.yaml has no baseline"
    try:
        measured, result = measure_baseline(backend, regime, media)
    except BaseException:
        backend.teardown()
        raise
    print(
        f"baseline: {measured.latency_s:.2f}s, {measured.cpu_s} CPU-s, "
        f"cap {measured.capacity_per_s}/s ({result.summary.outcomes.ok} ok)"
    )
    return measured


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, RegimeResult]]:
    """Results of the regimes run so far in this module, for tests that only re-judge them."""
    yield {}


def summary_figures(result: RegimeResult) -> dict[str, Any]:
    """What goes into pytest-benchmark's extra_info: the figures a CI gate compares."""
    s = result.summary
    res = result.resources
    prep = result.preparation or {}
    return {
        "regime": result.name,
        "ok": s.outcomes.ok,
        "total": s.outcomes.total,
        "success_rate": s.success_rate,
        "admitted_success_rate": s.admitted_success_rate,
        "latency_p50_s": s.latency_ok_s.p50,
        "latency_p95_s": s.latency_ok_s.p95,
        "latency_max_s": s.latency_ok_s.max,
        "baseline_s": result.baseline.latency_s if result.baseline else None,
        "latency_p50_ratio": s.latency_ok_s.p50 / result.baseline.latency_s
        if result.baseline and s.latency_ok_s.p50
        else None,
        "overhead_p50_s": s.overhead_s.p50,
        "gb_s_per_ok_measured": s.cost.per_ok_request_measured_gb_s,
        "gb_s_per_ok_configured": s.cost.per_ok_request_configured_gb_s,
        "idle_gb_s": s.cost.idle_gb_s,
        "oom_kills": s.oom_kills,
        "cold_starts": sum(f.cold_starts for f in s.functions.values()),
        "peak_memory_mib": {
            name: round(f.peak_memory_bytes / (1 << 20), 1)
            for name, f in s.functions.items()
            if f.peak_memory_bytes
        },
        "peak_over_limit": {
            name: round(f.peak_over_limit, 3)
            for name, f in s.functions.items()
            if f.peak_over_limit is not None
        },
        "deploy_s": prep.get("deploy_s"),
        "ready_replicas_seen": prep.get("ready_replicas_seen"),
        "ready_replicas_after": prep.get("ready_replicas_after"),
        "throughput_ok_per_s": res.throughput_ok_per_s if res else None,
        "cpu_bound_limit_per_s": res.cpu_bound_limit_per_s if res else None,
        "stage_cpu_s_per_ok_request": res.stage_cpu_s_per_ok_request.mean if res else None,
        "other_host_cpu_s": res.other_cpu_s if res else None,
        "violations": [v.message for v in result.violations],
    }


@pytest.mark.parametrize("regime", [_param(r) for r in REGIMES])
def test_regime(
    regime: Regime,
    benchmark: Any,
    media: Media,
    backend: Backend,
    baseline: Baseline,
    runs: dict[str, RegimeResult],
    tmp_path: Path,
) -> None:
    run = RegimeRun(backend, regime, media, keep_platform=True, baseline=baseline)
    try:
        # setup (deploy or reuse, scale, verify) is not timed.
        result = benchmark.pedantic(run.load, setup=run.setup, rounds=1, iterations=1)
    except BaseException:
        # Whatever state it was left in, the next regime must not inherit it.
        backend.teardown()
        raise
    runs[regime.name] = result
    benchmark.extra_info.update(summary_figures(result))
    # $VSEARCH_REGIME_REPORTS keeps the reports (CI artifacts, `./vsearch report DIR...`).
    keep = os.environ.get("VSEARCH_REGIME_REPORTS")
    files = write_report(
        Path(keep) / regime.name if keep else tmp_path,
        [result],
        platform=run.platform_description,
    )
    print(f"{regime.name}: report in {files['results'].parent}")
    # Every figure names the platform it ran on (Kubernetes/OpenFaaS/MinIO or the embedded one).
    assert json.loads(files["results"].read_text())["versions"], "results.json has no versions"

    prep = result.preparation or {}
    assert prep.get("verified"), f"{regime.name}: the replica state was not verified: {prep}"
    if result.violations:
        pytest.fail(
            f"{regime.name}: {len(result.violations)} threshold(s) missed:\n"
            + "\n".join(f"  {v.message}" for v in result.violations),
            pytrace=False,
        )


def test_impossible_thresholds_fail(
    runs: dict[str, RegimeResult], media: Media, platform_dir: Path
) -> None:
    """A gate that cannot be met must fail, naming the function, the figure and the limit.

    Re-judges a regime already run in this module (free); run alone, it runs one warm request.
    """
    result = next(iter(runs.values()), None)
    if result is None:
        regime = load_regimes().get("warm-steady")
        one = regime.model_copy(
            update={"workload": regime.workload.model_copy(update={"count": 1, "warmup": 0})}
        )
        result = RegimeRun(EmbeddedBackend(platform_dir), one, media).run()
    assert result.summary.functions.get("transcribe"), "no transcribe figures to judge"

    # Above 100%: no run can reach it. The validator rightly refuses it in regimes.yaml, so
    # it is built unvalidated here.
    with pytest.raises(ValidationError):
        Thresholds(min_success_rate=1.01)
    impossible = Thresholds.model_construct(
        **{
            **Thresholds().model_dump(),
            "min_success_rate": 1.01,
            "max_peak_memory": {"transcribe": "1Mi"},
        }
    )
    violations = evaluate(result.summary, impossible)
    by_figure = {(v.figure, v.function): v for v in violations}

    memory = by_figure.get(("peak memory", "transcribe"))
    assert memory is not None, [v.message for v in violations]
    assert memory.limit == 1 << 20 and memory.value and memory.value > 1 << 20
    assert "transcribe" in memory.message and "> maximum 1 MiB" in memory.message

    success = by_figure.get(("success rate", None))
    assert success is not None, [v.message for v in violations]
    assert success.limit == 1.01
    assert "< minimum 101.0%" in success.message

    # Only transcribe has a memory rule here: no other function may be named for it.
    assert {v.function for v in violations if v.figure == "peak memory"} == {"transcribe"}
