"""The capacity regime: raise an open-loop rate step by step until success or latency breaks.

Rates are multiples of the CPU-bound cap measured in the same run (the baseline request's
cores / CPU-seconds), so the steps fit any machine. A step is *sustainable* when every request
succeeded and its slowest request stayed within ``max_latency_ratio`` x the warm baseline (the
steps are too short for an honest p95: with n < 20 a p95 is the maximum, so the maximum is what
is gated, under its own name). Below capacity latency stays flat; above it the open-loop queue
grows with every arrival and the last requests of a step wait ever longer.

The result: the highest sustainable rate, the CPU-bound cap and their ratio (how much of the
CPUs' throughput the platform turns into answers), and a plot. The stepping (:func:`next_rate`)
and judging (:func:`judge_step`) are pure, tested on synthetic records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
from pydantic import BaseModel, Field

from harness.records import RequestRecord
from harness.regimes import Baseline, CapacityConfig
from harness.stats import RegimeSummary


def completion_rate(records: Sequence[RequestRecord]) -> float | None:
    """The pace of answers once they come: (ok - 1) / (last - first successful finish)."""
    done = sorted(r.finished_s for r in records if r.ok and r.finished_s is not None)
    if len(done) < 2 or done[-1] <= done[0]:
        return None
    return (len(done) - 1) / (done[-1] - done[0])


class CapacityStep(BaseModel):
    rate_x: float = Field(description="offered rate / CPU-bound cap")
    rate_per_s: float
    total: int
    ok: int
    success_rate: float | None
    p50_s: float | None
    max_s: float | None
    max_ratio: float | None = Field(None, description="slowest success / baseline latency")
    goodput_per_s: float | None
    completion_rate_per_s: float | None = Field(
        None, description="(ok - 1) / (last answer - first answer): the pace answers came at"
    )
    sustainable: bool
    reason: str = ""


class CapacityResult(BaseModel):
    baseline: Baseline
    cpu_bound_cap_per_s: float
    steps: list[CapacityStep]
    sustainable_rate_per_s: float | None
    sustainable_goodput_per_s: float | None
    ratio_to_cap: float | None = Field(None, description="sustainable rate / CPU-bound cap")
    stopped: str = ""


def judge_step(
    summary: RegimeSummary,
    *,
    rate_x: float,
    rate_per_s: float,
    baseline: Baseline,
    config: CapacityConfig,
    records: Sequence[RequestRecord] = (),
) -> CapacityStep:
    oc = summary.outcomes
    pace = completion_rate([r for r in records if r.phase != "warmup"])
    lat = summary.latency_ok_s
    ratio = lat.max / baseline.latency_s if lat.max is not None else None
    reasons = []
    rate = summary.success_rate
    if rate is None or rate < config.min_success_rate:
        reasons.append(
            f"success {oc.ok}/{oc.total} < {config.min_success_rate:.0%} "
            f"({oc.refused} refused, {oc.error + oc.timeout} errors/timeouts)"
        )
    if ratio is None or ratio > config.max_latency_ratio:
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        reasons.append(f"slowest request {shown} the baseline > {config.max_latency_ratio:g}x")
    if records and (pace is None or pace < config.min_completion_ratio * rate_per_s):
        shown = "-" if pace is None else f"{pace:.3f}/s"
        reasons.append(
            f"answers came at {shown} < {config.min_completion_ratio:.0%} of the offered "
            f"{rate_per_s:.3f}/s (a queue is building)"
        )
    return CapacityStep(
        rate_x=rate_x,
        rate_per_s=rate_per_s,
        total=oc.total,
        ok=oc.ok,
        success_rate=rate,
        p50_s=lat.p50,
        max_s=lat.max,
        max_ratio=ratio,
        goodput_per_s=summary.throughput_ok_per_s,
        completion_rate_per_s=pace,
        sustainable=not reasons,
        reason="; ".join(reasons),
    )


def next_rate(steps: Sequence[CapacityStep], config: CapacityConfig) -> float | None:
    """The next step's rate as a multiple of the cap, or None to stop.

    Up by ``step_x`` while steps are sustainable; the first broken step after a sustainable
    one ends the search; while none was sustainable yet, halve (the first guess was too high).
    """
    if not steps:
        return config.start_x
    if len(steps) >= config.max_steps:
        return None
    last = steps[-1]
    if last.sustainable:
        return last.rate_x + config.step_x
    if any(s.sustainable for s in steps):
        return None
    return last.rate_x / 2


def capacity_result(
    steps: Sequence[CapacityStep], baseline: Baseline, config: CapacityConfig
) -> CapacityResult:
    cap = baseline.capacity_per_s
    if not cap:
        raise ValueError("the baseline has no CPU-seconds: no CPU-bound cap to step against")
    good = [s for s in steps if s.sustainable]
    best = max(good, key=lambda s: s.rate_per_s) if good else None
    if len(steps) >= config.max_steps and steps and steps[-1].sustainable:
        stopped = f"max_steps ({config.max_steps}) reached while still sustainable"
    elif steps and not steps[-1].sustainable:
        stopped = f"broke at {steps[-1].rate_per_s:.3f}/s: {steps[-1].reason}"
    else:
        stopped = "no step run"
    return CapacityResult(
        baseline=baseline,
        cpu_bound_cap_per_s=cap,
        steps=list(steps),
        sustainable_rate_per_s=best.rate_per_s if best else None,
        sustainable_goodput_per_s=best.goodput_per_s if best else None,
        ratio_to_cap=best.rate_per_s / cap if best else None,
        stopped=stopped,
    )


def render_capacity_result(result: CapacityResult) -> str:
    from harness.report import format_table

    b = result.baseline
    rows = [
        (
            f"{s.rate_x:.2f}x",
            f"{s.rate_per_s:.3f}/s",
            f"{s.ok}/{s.total}",
            "-" if s.p50_s is None else f"{s.p50_s:.2f}s",
            "-" if s.max_s is None else f"{s.max_s:.2f}s",
            "-" if s.max_ratio is None else f"{s.max_ratio:.2f}x",
            "-" if s.completion_rate_per_s is None else f"{s.completion_rate_per_s:.3f}/s",
            "sustainable" if s.sustainable else f"BROKEN: {s.reason}",
        )
        for s in result.steps
    ]
    head = ("x cap", "offered", "ok", "p50", "max", "max/base", "answer pace", "verdict")
    lines = [format_table(head, rows, align="rrrrrrrl")]
    lines.append(
        f"CPU-bound cap: {b.cores:g} cores / {b.cpu_s:.2f} CPU-s per request = "
        f"{result.cpu_bound_cap_per_s:.3f} req/s (baseline: warm request {b.latency_s:.2f}s)"
    )
    if result.sustainable_rate_per_s is None:
        lines.append(f"sustainable rate: none found ({result.stopped})")
    else:
        lines.append(
            f"sustainable rate: {result.sustainable_rate_per_s:.3f} req/s = "
            f"{result.ratio_to_cap:.0%} of the CPU-bound cap ({result.stopped})"
        )
    return "\n".join(lines)


def plot_capacity(result: CapacityResult) -> Any:
    """Offered rate against goodput (y = x while sustainable) and the slowest request's
    latency over the baseline, with the CPU-bound cap and the sustainable rate marked."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    steps = sorted(result.steps, key=lambda s: s.rate_per_s)
    xs = [s.rate_per_s for s in steps]
    if not steps:
        ax.text(0.5, 0.5, "no steps", ha="center", transform=ax.transAxes)
        return fig
    top = max([*xs, result.cpu_bound_cap_per_s]) * 1.15
    ax.plot([0, top], [0, top], color="lightgray", lw=1, label="goodput = offered")
    pace = [s.completion_rate_per_s or 0 for s in steps]
    ax.plot(xs, pace, "o-", label="answer pace (ok/s between first and last answer)")
    ax.plot(xs, [s.goodput_per_s or 0 for s in steps], "s:", label="ok / step duration")
    for s, p in zip(steps, pace, strict=True):
        if not s.sustainable:
            ax.plot([s.rate_per_s], [p], "x", color="red", ms=10)
    ax.axvline(result.cpu_bound_cap_per_s, color="black", ls="--", lw=1, label="CPU-bound cap")
    if result.sustainable_rate_per_s is not None:
        ax.axvline(
            result.sustainable_rate_per_s, color="green", lw=1.5,
            label=f"sustainable {result.sustainable_rate_per_s:.3f}/s "
            f"({result.ratio_to_cap:.0%} of cap)",
        )  # fmt: skip
    ax.set_xlabel("offered rate (requests/s, open loop)")
    ax.set_ylabel("successful requests/s")
    ax.set_title("Capacity: goodput against offered load (x = broken step)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2.plot(xs, [s.max_ratio or 0 for s in steps], "o-", label="slowest request / baseline")
    ratios = [(s.p50_s or 0) / result.baseline.latency_s for s in steps]
    ax2.plot(xs, ratios, "s--", label="p50 / baseline")
    ax2.axvline(result.cpu_bound_cap_per_s, color="black", ls="--", lw=1)
    ax2.set_xlabel("offered rate (requests/s)")
    ax2.set_ylabel("latency / warm baseline latency")
    ax2.set_title("Latency over the warm baseline per step")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    return fig
