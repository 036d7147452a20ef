"""Request-level figures from the invocation records: critical path, overhead, cost.

The critical path is the longest chain of function wall times through the DAG as it actually
ran: the sequential head, the slowest branch of the slowest clip, then search. What the request
took beyond that (end_to_end - critical_path) is the platform's and orchestrator's share:
queueing, cold starts, retries, transfer of requests, bookkeeping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orchestrator.contracts import InvocationRecord, RequestMetrics

GIB = float(1 << 30)


@dataclass
class Node:
    wall_s: float
    deps: tuple[str, ...] = field(default_factory=tuple)


def critical_path(nodes: Mapping[str, Node]) -> float:
    """Longest weighted path; deps that are not nodes (skipped steps) count as zero."""
    memo: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in memo:
            node = nodes.get(name)
            if node is None:
                return 0.0
            memo[name] = node.wall_s + max((finish(d) for d in node.deps), default=0.0)
        return memo[name]

    return max((finish(name) for name in nodes), default=0.0)


def _footprint_gib(record: InvocationRecord) -> float:
    # The container holds the function process and its children (ffmpeg), so both count; the
    # two peaks need not coincide, which makes this an upper bound of the true peak.
    m = record.metrics
    assert m is not None
    return (m.peak_rss_bytes + m.children_peak_rss_bytes) / GIB


def summarise(
    records: Iterable[InvocationRecord],
    nodes: Mapping[str, Node],
    *,
    end_to_end_s: float,
    memory_limits: Mapping[str, int] | None = None,
) -> RequestMetrics:
    records = list(records)
    fresh = [r for r in records if not r.reused]
    measured = [r for r in fresh if r.metrics is not None]
    limits = dict(memory_limits or {})
    configured: float | None = 0.0
    for r in measured:
        limit = r.memory_limit_bytes or limits.get(r.function)
        if limit is None:
            configured = None
            break
        assert r.metrics is not None and configured is not None
        configured += r.metrics.wall_s * limit / GIB
    path = critical_path(nodes)
    return RequestMetrics(
        end_to_end_s=round(end_to_end_s, 4),
        critical_path_s=round(path, 4),
        overhead_s=round(end_to_end_s - path, 4),
        queueing_s=round(sum(r.queue_s or 0.0 for r in fresh), 4),
        cold_start_wait_s=round(sum(r.cold_start_wait_s or 0.0 for r in fresh), 4),
        retries=sum(1 for r in fresh if r.attempt > 1),
        cold_starts=sum(1 for r in fresh if (r.cold_start_wait_s or 0.0) > 0),
        first_invocations=sum(1 for r in measured if r.metrics and r.metrics.cold_start),
        invocations=len(fresh),
        steps_run=len({r.step for r in fresh if r.outcome == "ok"}),
        steps_reused=len({r.step for r in records if r.reused}),
        cost_gb_s_measured=round(
            sum(r.metrics.wall_s * _footprint_gib(r) for r in measured if r.metrics), 6
        ),
        cost_gb_s_configured=round(configured, 6) if configured is not None and measured else None,
    )


_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_memory_limits(text: str | None) -> dict[str, int]:
    """`FUNCTION_MEMORY_LIMITS="transcribe=1Gi,search=256Mi"` -> bytes per function."""
    limits: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, quantity = item.partition("=")
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", quantity.strip())
        if not name.strip() or not match:
            raise ValueError(f"FUNCTION_MEMORY_LIMITS: cannot read {item.strip()!r}")
        limits[name.strip()] = int(float(match.group(1)) * _UNITS[match.group(2) or ""])
    return limits
