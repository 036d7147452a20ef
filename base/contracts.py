"""Wire contracts shared by every function: the request envelope and the result envelope.

A function receives `{"request_id", "input", "config", "fanout"}` and answers
`{"status": "ok", "function", "request_id", "fanout", "outputs", "metrics"}`. `input` holds S3
URIs (claim checks), never media bytes; `outputs` is the function's own typed result model.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Request ids become S3 key segments, so they are restricted to a safe alphabet.
RequestId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", strict=True)
]
#: An S3 URI of an object the function reads (validated again by the storage layer).
S3Uri = Annotated[str, StringConstraints(pattern=r"^s3://[^/]+/.+$", max_length=1100)]

#: On every call the orchestrator makes for a request: when that request arrived (Unix seconds).
#: The embedded gateway serves the oldest request's work first (harness/embedded/priority.py).
REQUEST_ARRIVAL_HEADER = "X-Vsearch-Request-Arrival"


def parse_request_arrival(raw: str | None) -> float | None:
    """The arrival stamp of REQUEST_ARRIVAL_HEADER, or None when absent or unusable.

    A caller could send anything; a non-finite or non-positive stamp would jump every queue.
    """
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


InputT = TypeVar("InputT", bound=BaseModel)
ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Model(BaseModel):
    """Base for every contract: unknown fields are errors, so typos in a request surface."""

    model_config = ConfigDict(extra="forbid")


class NoConfig(Model):
    pass


class Event(BaseModel, Generic[InputT, ConfigT]):
    """What a handler receives: the envelope with `input` and `config` typed by the function."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId
    input: InputT
    config: ConfigT
    fanout: int | None = Field(default=None, ge=0, le=1_000_000)


class InvocationMetrics(BaseModel):
    """Telemetry of one invocation, measured by the process that served it."""

    function: str
    replica: str
    pid: int
    invocation: int = Field(description="1 for the first invocation this process started")
    cold_start: bool
    process_init_s: float = Field(description="process start to ready (imports, model load)")
    started_at: float = Field(description="unix time the handler started")
    wall_s: float
    cpu_s: float = Field(description="CPU seconds of this process plus its child processes")
    children_cpu_s: float
    peak_rss_bytes: int = Field(description="high-water RSS of this process")
    peak_rss_scope: Literal["invocation", "process"]
    children_peak_rss_bytes: int = Field(description="largest child (ffmpeg) peak RSS")
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    download_s: float = 0.0
    compute_s: float = 0.0
    upload_s: float = 0.0


class ErrorDetail(BaseModel):
    code: str
    message: str


class InvocationResult(BaseModel):
    status: Literal["ok"] = "ok"
    function: str
    request_id: str
    fanout: int | None = None
    outputs: dict[str, Any]
    metrics: InvocationMetrics


class ErrorResult(BaseModel):
    status: Literal["error"] = "error"
    function: str
    request_id: str | None = None
    error: ErrorDetail
    metrics: InvocationMetrics | None = None
