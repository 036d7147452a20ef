"""A trace of one request: its DAG of invocations on a time axis, as a Gantt PNG and as Chrome
trace-event JSON (opens in Perfetto, https://ui.perfetto.dev, or chrome://tracing).

Each invocation is split, as far as its record carries the figures, into: waiting for a
replica start (``cold_start_wait_s``), queued at the gateway (``queue_s`` minus that wait),
S3 download, compute and S3 upload (the function's own ``download_s``/``compute_s``/
``upload_s``; without them, its ``wall_s`` as one "run" bar), and the rest of what the caller
saw (HTTP, envelope) as "other". Fields a record lacks are left out, never invented.

The critical path is found without knowing the pipeline's shape: from the invocation that ends
last, step back to the invocation that ended latest before this one started, and so on: in a
DAG whose steps start when their last dependency ends, that is the chain that set the latency.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
from pydantic import BaseModel

from harness.records import InvocationSample, RequestRecord

#: Gap allowed between a dependency's end and its successor's start on the critical path.
SLACK_S = 0.25

COLORS = {
    "cold start wait": "#d62728",
    "queued": "#ff9896",
    "download": "#1f77b4",
    "compute": "#2ca02c",
    "upload": "#9467bd",
    "run": "#2ca02c",
    "other": "#c7c7c7",
}


class Segment(BaseModel):
    kind: str
    start_s: float
    duration_s: float


class Bar(BaseModel):
    label: str
    function: str
    start_s: float
    end_s: float
    segments: list[Segment]
    critical: bool = False
    attempt: int = 1
    outcome: str | None = None


class RequestTrace(BaseModel):
    request_id: str
    latency_s: float | None
    bars: list[Bar]
    critical_path_s: float | None = None


def _segments(s: InvocationSample, start: float, total: float) -> list[Segment]:
    out: list[Segment] = []
    t = start
    cold = s.cold_start_wait_s or 0.0
    queued = max(0.0, (s.queue_s or 0.0) - cold)
    for kind, d in (("cold start wait", cold), ("queued", queued)):
        if d > 0:
            out.append(Segment(kind=kind, start_s=t, duration_s=d))
            t += d
    inner = [("download", s.download_s), ("compute", s.compute_s), ("upload", s.upload_s)]
    if any(d for _, d in inner):
        for kind, d in inner:
            if d:
                out.append(Segment(kind=kind, start_s=t, duration_s=d))
                t += d
    elif s.wall_s:
        out.append(Segment(kind="run", start_s=t, duration_s=s.wall_s))
        t += s.wall_s
    rest = start + total - t
    if rest > 0.001:
        out.append(Segment(kind="other", start_s=t, duration_s=rest))
    return out


def request_trace(record: RequestRecord) -> RequestTrace:
    """The record's fresh stage invocations on one axis (seconds from the first start)."""
    calls = [
        s
        for s in record.invocations
        if not s.reused and s.started_at is not None and s.step != "orchestrator"
    ]
    if not calls:
        return RequestTrace(request_id=record.request_id, latency_s=record.latency_s, bars=[])
    t0 = min(s.started_at for s in calls if s.started_at is not None)
    bars = []
    for s in sorted(calls, key=lambda c: (c.started_at or 0.0, c.step or "")):
        assert s.started_at is not None
        start = s.started_at - t0
        total = s.latency_s if s.latency_s is not None else (s.exec_s or 0.0)
        label = s.step or s.function
        if s.attempt > 1:
            label += f" (attempt {s.attempt})"
        bars.append(
            Bar(
                label=label,
                function=s.function,
                start_s=start,
                end_s=start + total,
                segments=_segments(s, start, total),
                attempt=s.attempt,
                outcome=s.outcome,
            )
        )
    path = critical_path(bars)
    for i in path:
        bars[i].critical = True
    span = bars[path[0]].end_s - bars[path[-1]].start_s if path else None
    return RequestTrace(
        request_id=record.request_id, latency_s=record.latency_s, bars=bars, critical_path_s=span
    )


def critical_path(bars: Sequence[Bar], slack_s: float = SLACK_S) -> list[int]:
    """Indices from the last-ending bar back to the first: each one's predecessor is the bar
    that ended latest at or before its start (within ``slack_s``)."""
    if not bars:
        return []
    current = max(range(len(bars)), key=lambda i: bars[i].end_s)
    path = [current]
    while True:
        start = bars[current].start_s
        before = [i for i, b in enumerate(bars) if i not in path and b.end_s <= start + slack_s]
        if not before:
            return path
        current = max(before, key=lambda i: bars[i].end_s)
        path.append(current)


def plot_trace(trace: RequestTrace, title: str = "") -> Any:
    n = len(trace.bars)
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.32 * n + 1.5)))
    if not n:
        ax.text(0.5, 0.5, "no invocation timings", ha="center", transform=ax.transAxes)
        return fig
    seen: set[str] = set()
    for row, bar in enumerate(trace.bars):
        for seg in bar.segments:
            label = seg.kind if seg.kind not in seen else None
            seen.add(seg.kind)
            ax.barh(
                row, seg.duration_s, left=seg.start_s, height=0.6,
                color=COLORS.get(seg.kind, "gray"), label=label,
                edgecolor="black" if bar.critical else "none",
                linewidth=1.2 if bar.critical else 0,
            )  # fmt: skip
    ax.set_yticks(range(n))
    ax.set_yticklabels([("* " if b.critical else "") + b.label for b in trace.bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the request's first invocation")
    crit = "-" if trace.critical_path_s is None else f"{trace.critical_path_s:.2f}s"
    lat = "-" if trace.latency_s is None else f"{trace.latency_s:.2f}s"
    ax.set_title(
        (title + "\n" if title else "")
        + f"request {trace.request_id}: latency {lat}, critical path (* outlined) {crit}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return fig


def chrome_trace(trace: RequestTrace) -> dict[str, Any]:
    """Chrome trace-event format: one thread per invocation row, complete ("X") events in
    microseconds, the invocation as the parent slice and its phases nested inside."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": trace.request_id}}
    ]
    for tid, bar in enumerate(trace.bars, start=1):
        events.append(
            {"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": bar.label}}
        )
        events.append(
            {
                "ph": "X",
                "pid": 1,
                "tid": tid,
                "name": bar.function,
                "cat": "critical" if bar.critical else "invocation",
                "ts": round(bar.start_s * 1e6),
                "dur": round((bar.end_s - bar.start_s) * 1e6),
                "args": {"critical_path": bar.critical, "attempt": bar.attempt,
                         "outcome": bar.outcome},
            }
        )  # fmt: skip
        for seg in bar.segments:
            events.append(
                {
                    "ph": "X",
                    "pid": 1,
                    "tid": tid,
                    "name": seg.kind,
                    "cat": "phase",
                    "ts": round(seg.start_s * 1e6),
                    "dur": max(1, round(seg.duration_s * 1e6)),
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def pick_request(records: Sequence[RequestRecord]) -> RequestRecord | None:
    """The measured successful request of median latency (a typical one), else any."""
    ok = sorted(
        (r for r in records if r.ok and r.phase != "warmup" and r.latency_s is not None),
        key=lambda r: r.latency_s or 0.0,
    )
    if ok:
        return ok[len(ok) // 2]
    return next((r for r in records if r.invocations), None)


def write_trace(out: Path, name: str, records: Sequence[RequestRecord]) -> dict[str, Path]:
    record = pick_request(records)
    if record is None:
        return {}
    trace = request_trace(record)
    png, js = out / f"trace_{name}.png", out / f"trace_{name}.json"
    js.write_text(json.dumps(chrome_trace(trace)) + "\n")
    fig = plot_trace(trace, title=f"{name}: the median-latency request")
    try:
        fig.savefig(png, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return {f"trace {name}": png, f"trace {name} (Perfetto)": js}
