"""The orchestrator's own contract (Input, Config, Output) and its views of the stage outputs.

Stage outputs are read through tolerant views (unknown fields ignored) so a stage may add fields
without breaking the pipeline, while the fields the pipeline relies on are still checked: a 200
whose body lacks them is a broken stage, not a success.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from base.contracts import InvocationMetrics, Model, S3Uri

StageName = Literal[
    "extract-audio",
    "segment-speech",
    "cut-clips",
    "transcode-clip",
    "transcribe",
    "sample-frames",
    "detect-objects",
    "search",
]

#: Config keys the pipeline sets itself; an override of them would silently break the DAG
#: (wrong times, a different query), so it is refused instead.
RESERVED_CONFIG: dict[str, frozenset[str]] = {
    "cut-clips": frozenset({"segments"}),
    "transcribe": frozenset({"time_offset_s", "start_s", "end_s", "windows"}),
    "sample-frames": frozenset({"time_offset_s", "interval_s", "start_s", "end_s"}),
    "search": frozenset({"query"}),
}

#: cut-clips accepts at most this many segments per call.
MAX_CLIPS = 500


# -- request ------------------------------------------------------------------------------------


class Input(Model):
    video: S3Uri = Field(description="s3:// URI of the video, in the configured bucket")


#: Stage configs are flat or shallow; a deep override is an attack on the JSON encoder.
MAX_OVERRIDE_DEPTH = 8


def _depth(value: Any, limit: int = MAX_OVERRIDE_DEPTH + 1) -> int:
    """Nesting depth of JSON-like data, counting no further than `limit` (no deep recursion)."""
    level, frontier = 0, [value]
    while frontier and level < limit:
        children: list[Any] = []
        for item in frontier:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children:
            break
        level, frontier = level + 1, children
    return level


class Config(Model):
    query: str = Field(min_length=1, max_length=200, description="words to find in the speech")
    clip_concurrency: int = Field(4, ge=1, le=32, description="clips processed at the same time")
    frame_interval_s: float = Field(5.0, gt=0, le=3600, description="one frame every N seconds")
    detect_batch: int = Field(16, ge=1, le=64, description="frames per detect-objects call")
    speech_pack_s: float = Field(
        28.0,
        ge=0,
        le=30,
        description="sentences transcribed in one call, up to this many seconds of speech "
        "(one Whisper window costs the same for 3 s as for 30 s); 0: one call per sentence",
    )
    functions: dict[StageName, dict[str, Any]] = Field(
        default_factory=dict, description="per-function config passed through to that function"
    )
    deadline_s: float = Field(600.0, gt=0, le=3600, description="budget of the whole request")
    resume: bool = Field(True, description="reuse the step records of an earlier attempt")
    max_attempts: int = Field(4, ge=1, le=10, description="attempts per function call")

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain a word")
        return value.strip()

    @model_validator(mode="after")
    def _overrides(self) -> Config:
        if _depth(self.functions) > MAX_OVERRIDE_DEPTH:
            raise ValueError(f"functions: overrides nested deeper than {MAX_OVERRIDE_DEPTH}")
        for name, overrides in self.functions.items():
            clash = RESERVED_CONFIG.get(name, frozenset()) & overrides.keys()
            if clash:
                raise ValueError(f"functions.{name}: {sorted(clash)} are set by the orchestrator")
        return self

    def overrides(self, function: str) -> dict[str, Any]:
        return dict(self.functions.get(function, {}))  # type: ignore[call-overload]

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that change what a request produces (not how fast or how patiently)."""
        return self.model_dump(
            mode="json",
            include={"query", "frame_interval_s", "detect_batch", "speech_pack_s", "functions"},
        )


# -- result -------------------------------------------------------------------------------------


class Word(Model):
    word: str
    start_s: float
    end_s: float
    probability: float | None = None


class ObjectHit(Model):
    label: str
    score: float
    frame_time_s: float
    box: list[float] = Field(min_length=4, max_length=4)
    clip_index: int | None = Field(None, description="None for frames sampled over the video")


class ClipResult(Model):
    index: int
    start_s: float
    end_s: float
    transcript: str | None = Field(None, description="None when the input has no audio")
    words: list[Word] = Field(default_factory=list)
    objects: list[ObjectHit] = Field(default_factory=list)
    clip_uri: str = Field(description="the compressed clip (transcode-clip), else the cut clip")
    source_clip_uri: str = Field(description="the frame-accurate cut (cut-clips)")


class FrameResult(Model):
    index: int
    time_s: float
    uri: str
    objects: list[ObjectHit] = Field(default_factory=list)


class MatchReason(Model):
    heard: str = Field(description="transcript words (or words of an alternative hypothesis)")
    query: str = Field(description="the query words they matched")


class Match(Model):
    clip_index: int
    start_s: float
    end_s: float
    text: str
    clip_uri: str
    words: list[Word] = Field(default_factory=list)
    score: float = Field(1.0, description="0..1; 1.0 for an exact match")
    kind: Literal["exact", "phonetic", "fuzzy", "alternative"] = "exact"
    why: list[MatchReason] = Field(default_factory=list)


class VideoInfo(Model):
    uri: str = Field(description="the request's own copy under requests/{id}/input/")
    source_uri: str
    sha256: str
    size_bytes: int
    duration_s: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None


class InvocationRecord(Model):
    """One HTTP attempt at one function, as the orchestrator saw it (plus the function's own
    metrics when it answered with them)."""

    function: str
    step: str
    attempt: int
    fanout: int | None = None
    status_code: int | None = Field(None, description="None when no HTTP answer came back")
    outcome: Literal["ok", "retried", "failed"]
    error_code: str | None = None
    started_at: float = Field(description="unix time the attempt was sent")
    client_latency_s: float
    function_duration_s: float | None = Field(None, description="X-Duration-Seconds")
    queue_s: float | None = Field(None, description="X-Vsearch-Queue-Seconds (gateway queue)")
    cold_start_wait_s: float | None = Field(None, description="X-Vsearch-Cold-Start-Seconds")
    memory_limit_bytes: int | None = None
    metrics: InvocationMetrics | None = None
    reused: bool = Field(False, description="taken from a step record of an earlier attempt")


class RequestMetrics(Model):
    end_to_end_s: float
    critical_path_s: float = Field(
        description="longest chain of function wall times through the DAG (this attempt only)"
    )
    overhead_s: float = Field(description="end_to_end_s - critical_path_s")
    queueing_s: float
    cold_start_wait_s: float
    retries: int
    cold_starts: int = Field(
        description="calls that waited for a replica to start (the gateway's cold-start header)"
    )
    first_invocations: int = Field(
        description="calls that were their process's first; an upper bound of cold starts "
        "where the gateway does not report waits (pre-started replicas count here too)"
    )
    invocations: int
    steps_run: int
    steps_reused: int
    cost_gb_s_measured: float = Field(
        description="sum of wall_s x (peak RSS + largest child peak RSS) in GiB"
    )
    cost_gb_s_configured: float | None = Field(
        None, description="sum of wall_s x memory limit in GiB, when every limit is known"
    )


class Metrics(Model):
    invocations: list[InvocationRecord]
    request: RequestMetrics


class Output(Model):
    request_id: str
    status: Literal["ok"] = "ok"
    query: str
    mode: Literal["speech", "whole_video", "empty"] = Field(
        description="speech: per-clip branches; whole_video: no speech, frames over the whole "
        "video; empty: neither speech nor a picture"
    )
    video: VideoInfo
    clips: list[ClipResult]
    frames_without_clip: list[FrameResult] | None = Field(
        None, description="frames sampled over the whole video (no speech to cut clips from)"
    )
    objects: list[ObjectHit] = Field(description="every detection, over clips and whole video")
    matches: list[Match]
    metrics: Metrics


# -- S3 records ---------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    function: str | None = None
    step: str | None = None


class StateDoc(BaseModel):
    """`requests/{id}/state.json`: written only with If-None-Match / If-Match."""

    request_id: str
    status: Literal["running", "ok", "error"]
    created_at: float
    updated_at: float
    owner: str = Field(description="random token of the orchestrator holding the lease")
    lease_expires_at: float
    attempt: int = Field(1, description="1 + the number of takeovers")
    fingerprint: str
    source_uri: str
    error: ErrorInfo | None = None


class Progress(BaseModel):
    request_id: str
    stage: str
    clips_total: int | None = None
    clips_done: int = 0
    steps_done: int = 0
    steps_reused: int = 0
    updated_at: float


class StepRecord(BaseModel):
    """`requests/{id}/steps/<step>.json`: what a completed step produced and what it cost."""

    step: str
    function: str
    outputs: dict[str, Any]
    invocations: list[InvocationRecord]
    completed_at: float


# -- views of stage outputs (the fields the pipeline relies on) ---------------------------------


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MediaView(_View):
    """Extract-audio's probe of the video; every fact is kept (extra="allow") because the
    pipeline passes them on to the stages that read the same video, so they need not probe."""

    model_config = ConfigDict(extra="allow")

    duration_s: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None


class ExtractAudioOut(_View):
    audio: str | None
    has_audio: bool
    has_video: bool
    media: MediaView


class SegmentView(_View):
    index: int
    start_s: float
    end_s: float


class SegmentSpeechOut(_View):
    segments: list[SegmentView]


class ClipView(_View):
    index: int
    start_s: float
    end_s: float
    uri: str
    #: cut-clips' probe of the clip, passed on to transcode-clip.
    media: dict[str, Any] | None = None


class CutClipsOut(_View):
    clips: list[ClipView]


class TranscodeOut(_View):
    mp4: str
    wav: str
    has_video: bool | None = None


class WordView(_View):
    word: str
    start_s: float
    end_s: float
    probability: float | None = None


class TranscribeOut(_View):
    text: str
    words: list[WordView]
    transcript_uri: str
    #: One per window when the call transcribed several (Config.speech_pack_s).
    parts: list[TranscribeOut] = Field(default_factory=list)


class FrameView(_View):
    index: int
    time_s: float
    uri: str


class SampleFramesOut(_View):
    frames: list[FrameView] = Field(min_length=1)


class DetectionView(_View):
    label: str
    score: float
    box: list[float] = Field(min_length=4, max_length=4)


class DetectedFrameView(_View):
    index: int
    time_s: float
    uri: str
    objects: list[DetectionView]


class DetectObjectsOut(_View):
    frames: list[DetectedFrameView]


class MatchReasonView(_View):
    heard: str
    query: str


class MatchView(_View):
    clip_index: int
    start_s: float
    end_s: float
    text: str
    clip_uri: str
    words: list[WordView] = Field(default_factory=list)
    score: float = 1.0
    kind: Literal["exact", "phonetic", "fuzzy", "alternative"] = "exact"
    why: list[MatchReasonView] = Field(default_factory=list)


class SearchOut(_View):
    matches: list[MatchView]
