"""One regime, end to end, without knowing the platform: offer the load, summarise, evaluate.

Preparation (scaling, verifying zero/ready replicas, applying declaration overrides) belongs to
the platform integration; it hands in a ``send`` (e.g. :class:`harness.workload.OrchestratorSender`)
and, optionally, a ``snapshot`` returning per-function platform figures (for the embedded
gateway: ``platform_from_statuses(GET /system/functions)``), taken before and after the load so
counters (OOM kills, cold starts) cover this regime only. The platform's peak memory is a
high-water mark since the platform started: restart (or reset) it between regimes for a
per-regime peak.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from harness.records import FunctionPlatform
from harness.regimes import Baseline, Regime, evaluate
from harness.report import RegimeResult
from harness.stats import summarize
from harness.workload import ProgressCallback, SendFn, run_open_loop

Snapshot = Callable[[], Mapping[str, FunctionPlatform] | Awaitable[Mapping[str, FunctionPlatform]]]


async def _take(snapshot: Snapshot | None) -> dict[str, FunctionPlatform]:
    if snapshot is None:
        return {}
    value = snapshot()
    if inspect.isawaitable(value):
        value = await value
    return dict(value)


async def run_regime(
    regime: Regime,
    send: SendFn,
    *,
    snapshot: Snapshot | None = None,
    progress: ProgressCallback | None = None,
    base_dir: Path | None = None,
    preparation_report: dict[str, Any] | None = None,
    baseline: Baseline | None = None,
) -> RegimeResult:
    """Run ``regime``'s workload open loop through ``send`` and judge it by its thresholds."""
    schedule = regime.schedule(base_dir)
    wl = regime.workload
    before = await _take(snapshot)
    result = await run_open_loop(
        schedule,
        send,
        max_in_flight=wl.max_in_flight,
        progress=progress,
        request_timeout_s=wl.request_timeout_s,
        drain_timeout_s=wl.drain_timeout_s,
        warmup=wl.warmup,
    )
    after = await _take(snapshot)
    platform = {name: snap.since(before.get(name)) for name, snap in after.items()}
    summary = summarize(
        result.records,
        regime=regime.name,
        platform=platform or None,
        run_duration_s=result.load.duration_s,
    )
    return RegimeResult(
        name=regime.name,
        summary=summary,
        load=result.load,
        violations=evaluate(summary, regime.thresholds, baseline=baseline),
        records=result.records,
        preparation=preparation_report,
        baseline=baseline,
    )
