"""Payloads of the embedded gateway's API: the OpenFaaS shapes plus our `vsearch` extensions.

Field names follow the OpenFaaS gateway spec (camelCase) where the spec defines them, so
faas-cli-style clients and our cluster code read the embedded platform the same way. Our own
additions sit under a `vsearch` key so they can never collide with future OpenFaaS fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from base.contracts import ErrorDetail

EventType = Literal[
    "replica_started",
    "replica_ready",
    "replica_stopped",
    "replica_died",
    "start_failed",
    "oom_kill",
    "cold_start",
    "scaled",
    "scaled_to_zero",
    "window_reset",
]


class GatewayError(BaseModel):
    """The error envelope every function uses, so callers parse gateway errors the same way."""

    status: Literal["error"] = "error"
    function: str | None = None
    error: ErrorDetail


class ScaleRequest(BaseModel):
    # OpenFaaS requires namespace too; a single-namespace platform does not need it.
    model_config = ConfigDict(extra="ignore")

    serviceName: str | None = None
    namespace: str | None = None
    replicas: int = Field(ge=0, le=1000)


class FunctionResources(BaseModel):
    memory: str | None = None
    cpu: str | None = None

    @model_serializer
    def _omit_unset(self) -> dict[str, str]:
        # The spec's fields are strings, not nullable: an unset limit is absent, not null.
        return {k: v for k, v in (("memory", self.memory), ("cpu", self.cpu)) if v is not None}


class FunctionUsage(BaseModel):
    cpu: float = Field(description="CPU cores used since the previous sample (millicores/1000)")
    totalMemoryBytes: float


class ReplicaStatus(BaseModel):
    name: str
    pid: int | None
    state: Literal["starting", "ready", "draining", "stopping", "dead"]
    url: str
    inflight: int
    #: How long the newest call in flight has run (None between calls): fault tests kill a call
    #: that has just begun, not one whose answer is already on its way.
    newest_call_s: float | None = None
    invocations: int
    #: Callers that waited for this replica's process to start.
    cold_start_waits: int
    #: Process start to ready (interpreter, imports, model load).
    start_s: float | None
    started_at: float
    ready_at: float | None
    memory_bytes: int
    peak_memory_bytes: int
    cpu_s: float
    oom_kills: int
    #: Forked from the function's zygote rather than started as a fresh interpreter.
    from_zygote: bool = False
    #: The replica's own cold-start phases from its /_/ready (process_start_s, imports_s,
    #: model_load_s; a fork also says from_zygote, zygote_pid, fork_to_child_s).
    startup: dict[str, float | bool | int] | None = None


class ZygoteStatus(BaseModel):
    """A function's template process. Its pages are shared (copy-on-write) by the replicas it
    forked and stay charged to its own cgroup: replica peaks do not include them."""

    pid: int | None
    state: Literal["starting", "ready", "dead", "none", "given_up"]
    #: Zygote process start to warm (imports and preload done).
    ready_after_s: float | None
    #: process_start_s, imports_s, preload_s as the zygote measured them.
    phases: dict[str, float]
    #: /proc/PID/smaps_rollup: resident bytes, and proportional (shared pages split).
    rss_bytes: int
    pss_bytes: int
    #: The zygote's own cgroup (what it holds for its replicas).
    memory_bytes: int
    peak_memory_bytes: int
    starts: int
    replicas_forked: int
    given_up: str | None = None


class FunctionExtras(BaseModel):
    module: str
    videosearcher: str
    exec_timeout_s: float
    max_inflight: int
    memory_limit_bytes: int
    cpu_limit: float | None
    min_replicas: int
    max_replicas: int
    scale_to_zero_idle: float | None
    desired_replicas: int
    inflight: int
    queued: int
    queue_limit: int
    cold_starts: int
    replica_starts: int
    replica_deaths: int
    oom_kills: int
    #: Highest peak memory of any replica of this function during this run.
    peak_memory_bytes: int
    limits_enforced: bool
    limits_reason: str
    replicas: list[ReplicaStatus]
    #: None when zygotes are off (VSEARCH_ZYGOTE=0).
    zygote: ZygoteStatus | None = None


class FunctionStatus(BaseModel):
    """OpenFaaS `FunctionStatus` (components/schemas/FunctionStatus)."""

    name: str
    image: str
    namespace: str
    envProcess: str
    envVars: dict[str, str]
    constraints: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    labels: dict[str, str] | None
    annotations: dict[str, str] | None
    limits: FunctionResources | None
    requests: FunctionResources | None = None
    readOnlyRootFilesystem: bool = False
    invocationCount: int
    replicas: int
    availableReplicas: int
    createdAt: str
    usage: FunctionUsage | None
    vsearch: FunctionExtras


class VersionInfo(BaseModel):
    sha: str
    release: str
    commit_message: str | None = None


class ProviderInfo(BaseModel):
    provider: str
    orchestration: str
    version: VersionInfo


class PlatformInfo(BaseModel):
    limits_enforced: bool
    limits_reason: str
    cgroup_version: int | None
    functions: int
    started_at: float


class GatewayInfo(BaseModel):
    """OpenFaaS `GatewayInfo` (components/schemas/GatewayInfo)."""

    provider: ProviderInfo
    version: VersionInfo
    arch: str
    vsearch: PlatformInfo


class PlatformEvent(BaseModel):
    """One thing that happened to a replica; the harness reads these to explain its figures."""

    seq: int
    time: float = Field(description="unix time")
    type: EventType
    function: str
    replica: str | None = None
    pid: int | None = None
    message: str = ""
    limit_bytes: int | None = None
    peak_bytes: int | None = None
    exit_code: int | None = None
    #: cold_start: how long the caller waited; replica_ready: process start to ready.
    seconds: float | None = None
    replicas: int | None = None
    cpu_s: float | None = None
    invocations: int | None = None


class EventPage(BaseModel):
    events: list[PlatformEvent]
    #: Pass as `since` to get only later events.
    last_seq: int
