"""What the harness observes of function pods: readiness, start times, cgroup memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.backends.cluster.tools import rfc3339

# Read inside a function container: the container's own cgroup (cgroup namespaces) on v2 or v1.
# The function images always have Python; they need not have a shell or coreutils.
CGROUP_PROBE = """
import json, os
out = {}
for key, path in [
    ("peak", "/sys/fs/cgroup/memory.peak"),
    ("current", "/sys/fs/cgroup/memory.current"),
    ("max", "/sys/fs/cgroup/memory.max"),
    ("events", "/sys/fs/cgroup/memory.events"),
    ("stat", "/sys/fs/cgroup/memory.stat"),
    ("v1_peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"),
    ("v1_current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ("v1_limit", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    ("v1_oom", "/sys/fs/cgroup/memory/memory.oom_control"),
    ("v1_stat", "/sys/fs/cgroup/memory/memory.stat"),
]:
    try:
        with open(path) as f:
            out[key] = f.read().strip()
    except OSError:
        pass
print(json.dumps(out))
""".strip()


@dataclass
class PodRecord:
    """One function pod as observed over time (kept after the pod is gone)."""

    uid: str
    name: str
    function: str
    created_at: float | None = None
    started_at: float | None = None
    ready_at: float | None = None
    gone_at: float | None = None
    ready: bool = False
    terminating: bool = False
    restarts: int = 0
    peak_memory_bytes: int | None = None
    memory_source: str | None = None
    #: Page cache charged to the pod at the last sample (part of a cgroup peak, reclaimable).
    file_cache_bytes: int | None = None
    oom_kills: set[str] = field(default_factory=set)
    ever_ready: bool = False


def pod_ready(pod: Mapping[str, Any]) -> tuple[bool, float | None]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True", rfc3339(cond.get("lastTransitionTime"))
    return False, None


def function_of(pod: Mapping[str, Any]) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get("faas_function", ""))


def parse_cgroup_probe(raw: Mapping[str, str]) -> tuple[int | None, str | None]:
    """(peak bytes, source) from the container's cgroup files, the best figure available."""
    for key, source in (
        ("peak", "cgroup v2 memory.peak"),
        ("v1_peak", "cgroup v1 memory.max_usage_in_bytes"),
        ("current", "cgroup v2 memory.current (no memory.peak on this kernel)"),
        ("v1_current", "cgroup v1 memory.usage_in_bytes"),
    ):
        value = raw.get(key, "")
        if value.isdigit():
            return int(value), source
    return None, None


def parse_file_cache(raw: Mapping[str, str]) -> int | None:
    """Page cache charged to the container's cgroup (v2 ``file``, v1 ``total_cache``).

    A cgroup's peak counts the file pages its processes first read: in a new pod that is its
    image's shared libraries (ffmpeg's, ~180 MiB), which the embedded platform's replicas do not
    pay for because the host read them long before."""
    for key, field_name in (("stat", "file"), ("v1_stat", "total_cache")):
        for line in raw.get(key, "").splitlines():
            name, _, value = line.partition(" ")
            if name == field_name and value.strip().isdigit():
                return int(value)
    return None
