"""Prometheus text exposition of the gateway's metrics, with OpenFaaS's metric names.

Hand-written rather than prometheus_client (not a dependency of ours): the gateway exposes a
few counters and one histogram, and the exposition format is simple and stable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from harness.embedded.replicas import ReplicaSet

#: Seconds; the OpenFaaS defaults stop at 10 s, our functions run for minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1


class GatewayMetrics:
    def __init__(self) -> None:
        self.invocations: dict[tuple[str, str], int] = defaultdict(int)
        self.durations: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)

    def observe(self, function: str, code: int, seconds: float) -> None:
        key = (function, str(code))
        self.invocations[key] += 1
        self.durations[key].observe(seconds)

    def invocation_count(self, function: str) -> int:
        return sum(n for (name, _), n in self.invocations.items() if name == function)

    def render(self, sets: Iterable[ReplicaSet]) -> str:
        sets = list(sets)
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("gateway_function_invocation_total", "counter", "Function invocations by code")
        for (fn, code), n in sorted(self.invocations.items()):
            out.append(
                f"gateway_function_invocation_total{_labels(function_name=fn, code=code)} {n}"
            )

        family("gateway_functions_seconds", "histogram", "Function call duration at the gateway")
        for (fn, code), hist in sorted(self.durations.items()):
            for bound, count in zip(BUCKETS, hist.counts, strict=True):
                labels = _labels(function_name=fn, code=code, le=_num(bound))
                out.append(f"gateway_functions_seconds_bucket{labels} {count}")
            labels = _labels(function_name=fn, code=code, le="+Inf")
            out.append(f"gateway_functions_seconds_bucket{labels} {hist.total}")
            base = _labels(function_name=fn, code=code)
            out.append(f"gateway_functions_seconds_sum{base} {_num(hist.sum)}")
            out.append(f"gateway_functions_seconds_count{base} {hist.total}")

        family("gateway_service_count", "gauge", "Ready replicas per function")
        for rs in sets:
            out.append(f"gateway_service_count{_labels(function_name=rs.name)} {rs.ready_count}")

        family("gateway_service_target", "gauge", "Target replicas per function")
        for rs in sets:
            out.append(f"gateway_service_target{_labels(function_name=rs.name)} {rs.target}")

        family("vsearch_function_queued", "gauge", "Calls waiting for a replica slot")
        for rs in sets:
            out.append(f"vsearch_function_queued{_labels(function_name=rs.name)} {rs.queued}")

        family("vsearch_function_memory_limit_bytes", "gauge", "Memory limit per replica")
        for rs in sets:
            limit = rs.decl.memory_limit_bytes
            out.append(
                f"vsearch_function_memory_limit_bytes{_labels(function_name=rs.name)} {limit}"
            )

        family(
            "vsearch_function_memory_peak_bytes",
            "gauge",
            "Highest peak memory of any replica of the function in this run",
        )
        for rs in sets:
            peak = rs.peak_memory_bytes
            out.append(f"vsearch_function_memory_peak_bytes{_labels(function_name=rs.name)} {peak}")

        family("vsearch_replica_memory_peak_bytes", "gauge", "Peak memory of a live replica")
        for rs in sets:
            for r in rs.replicas.values():
                labels = _labels(function_name=rs.name, replica=r.name)
                out.append(f"vsearch_replica_memory_peak_bytes{labels} {r.stats.peak_bytes}")

        family("vsearch_replica_cpu_seconds_total", "counter", "CPU time of a live replica")
        for rs in sets:
            for r in rs.replicas.values():
                labels = _labels(function_name=rs.name, replica=r.name)
                out.append(f"vsearch_replica_cpu_seconds_total{labels} {_num(r.stats.cpu_s)}")

        for name, attr, help_text in (
            ("vsearch_oom_kills_total", "oom_kills", "OOM kills in the function's replicas"),
            ("vsearch_cold_starts_total", "cold_starts", "Calls that waited for a replica start"),
            ("vsearch_replica_starts_total", "replica_starts", "Replica processes started"),
            ("vsearch_replica_deaths_total", "replica_deaths", "Replicas that died unasked"),
        ):
            family(name, "counter", help_text)
            for rs in sets:
                out.append(f"{name}{_labels(function_name=rs.name)} {getattr(rs, attr)}")
        return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))
