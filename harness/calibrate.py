"""Thresholds from measurement: memory budgets, limit sizing and latency ratios of past runs.

``./vsearch report --calibrate RUN...`` reads bench results and prints

- a YAML fragment for regimes.yaml: per function, its highest peak memory across every regime
  of the runs x ``headroom`` (1.2), rounded up to 16 MiB, with ``budgets_source`` saying the
  command, date and machine;
- the limit-sizing report every OpenFaaS user asks for: per function the peak across regimes,
  the current limit, a suggested request (the median regime's peak + 10%) and limit (the
  highest peak x 1.5, rounded up to 64 MiB);
- the latency ratios each regime measured against its run's warm baseline (p50, p95 where the
  sample supports it, max), to choose ratio thresholds with a stated margin.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from harness.report import RunResults, format_table, load_results
from harness.stats import min_samples_for

MIB = 1 << 20
BUDGET_HEADROOM = 1.2
BUDGET_STEP = 16 * MIB
LIMIT_HEADROOM = 1.5
LIMIT_STEP = 64 * MIB
REQUEST_HEADROOM = 1.1


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


class FunctionSizing(BaseModel):
    function: str
    peak_bytes: int = Field(description="highest peak over every regime of the runs")
    peak_regime: str
    median_peak_bytes: int = Field(description="median over regimes of each regime's peak")
    regimes: int
    limit_bytes: int | None = None
    budget_bytes: int
    suggested_request_bytes: int
    suggested_limit_bytes: int

    @property
    def budget_below_limit(self) -> bool:
        return self.limit_bytes is None or self.budget_bytes < self.limit_bytes


class RatioRow(BaseModel):
    run: str
    regime: str
    n: int
    baseline_s: float
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class Calibration(BaseModel):
    runs: list[str]
    functions: list[FunctionSizing]
    ratios: list[RatioRow]
    cpus: int
    created: str


def calibrate(runs: Sequence[tuple[str, RunResults]], *, cpus: int | None = None) -> Calibration:
    peaks: dict[str, list[tuple[int, str]]] = {}
    limits: dict[str, int] = {}
    ratios: list[RatioRow] = []
    for label, run in runs:
        for reg in run.regimes:
            for name, fs in reg.summary.functions.items():
                if fs.peak_memory_bytes:
                    peaks.setdefault(name, []).append((fs.peak_memory_bytes, reg.name))
                if fs.memory_limit_bytes:
                    limits[name] = fs.memory_limit_bytes
            base = reg.baseline
            lat = reg.summary.latency_ok_s
            if base is None or not lat.n or reg.name == "baseline":
                continue
            row = RatioRow(run=label, regime=reg.name, n=lat.n, baseline_s=base.latency_s)
            for stat in ("p50", "p95", "max"):
                value = lat.stat(stat)
                if stat.startswith("p") and lat.n < min_samples_for(float(stat[1:])):
                    continue
                if value is not None:
                    setattr(row, stat, value / base.latency_s)
            ratios.append(row)
    functions = []
    for name in sorted(peaks):
        values = peaks[name]
        peak, where = max(values)
        median = int(statistics.median(v for v, _ in values))
        budget = round_up(peak * BUDGET_HEADROOM, BUDGET_STEP)
        functions.append(
            FunctionSizing(
                function=name,
                peak_bytes=peak,
                peak_regime=where,
                median_peak_bytes=median,
                regimes=len(values),
                limit_bytes=limits.get(name),
                budget_bytes=budget,
                suggested_request_bytes=round_up(median * REQUEST_HEADROOM, BUDGET_STEP),
                suggested_limit_bytes=max(budget, round_up(peak * LIMIT_HEADROOM, LIMIT_STEP)),
            )
        )
    return Calibration(
        runs=[label for label, _ in runs],
        functions=functions,
        ratios=ratios,
        cpus=cpus or os.cpu_count() or 1,
        created=time.strftime("%Y-%m-%d", time.gmtime()),
    )


def _mi(n: int | None) -> str:
    return "-" if n is None else f"{math.ceil(n / MIB)}Mi"


def render_calibration(cal: Calibration) -> str:
    runs = " ".join(cal.runs)
    source = (
        f"./vsearch report --calibrate {runs} ({cal.created}, {platform.machine()}, "
        f"{cal.cpus} CPUs): peak across regimes x {BUDGET_HEADROOM}, rounded up to 16Mi"
    )
    lines = ["# regimes.yaml fragment", f'budgets_source: "{source}"', "budgets:"]
    for f in cal.functions:
        note = f"  # peak {_mi(f.peak_bytes)} in {f.peak_regime}, limit {_mi(f.limit_bytes)}"
        if not f.budget_below_limit:
            note += "  (NOT below the limit: raise the limit, or this budget cannot fail)"
        lines.append(f"  {f.function}: {_mi(f.budget_bytes)}{note}")
    lines += ["", "Limit sizing (per function, across every regime of the runs):"]
    rows = [
        (
            f.function,
            _mi(f.peak_bytes),
            f.peak_regime,
            _mi(f.median_peak_bytes),
            _mi(f.limit_bytes),
            f"{f.peak_bytes / f.limit_bytes:.0%}" if f.limit_bytes else "-",
            _mi(f.budget_bytes),
            _mi(f.suggested_request_bytes),
            _mi(f.suggested_limit_bytes),
        )
        for f in cal.functions
    ]
    head = (
        "function",
        "peak",
        "in regime",
        "median peak",
        "limit now",
        "peak/limit",
        "budget",
        "request",
        "limit",
    )
    lines.append(format_table(head, rows, align="lrlrrrrrr"))
    lines.append(
        f"request = median regime peak x {REQUEST_HEADROOM} (16Mi steps); limit = highest peak "
        f"x {LIMIT_HEADROOM} (64Mi steps), never below the budget"
    )
    if cal.ratios:
        lines += ["", "Latency over the run's warm baseline (p95 only where n >= 20):"]
        fmt = lambda x: "-" if x is None else f"{x:.2f}x"  # noqa: E731
        rows2 = [
            (r.run, r.regime, r.n, f"{r.baseline_s:.2f}s", fmt(r.p50), fmt(r.p95), fmt(r.max))
            for r in cal.ratios
        ]
        lines.append(format_table(("run", "regime", "n", "baseline", "p50", "p95", "max"), rows2))
    return "\n".join(lines)


def run_calibrate(dirs: Sequence[Path]) -> str:
    runs = [(Path(d).name or str(d), load_results(d)) for d in dirs]
    cpus = next((int(c) for _, r in runs if (c := r.platform.get("cpus"))), None)
    return render_calibration(calibrate(runs, cpus=cpus))
