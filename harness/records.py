"""What one benchmark request produced, and whether its content is right.

A request counts as a success only when the orchestrator's answer carries the content the video
is known to hold (``check_content`` against the generator's ``VideoTruth``), never on HTTP status
alone. Every time in a record is seconds since the start of the run (the schedule's zero), so
records of one run line up on one axis; latency is measured from the *scheduled* time.

The orchestrator answers in the runtime's envelope (``{"status", "outputs": {...}, "metrics"}``)
or, from ``GET /requests/{id}``, with the bare result; :func:`extract_result` accepts both, and
every reader here tolerates missing optional fields.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import jiwer
from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["ok", "failed_content", "error", "refused", "timeout", "not_sent"]
OUTCOMES: tuple[Outcome, ...] = (
    "ok",
    "failed_content",
    "error",
    "refused",
    "timeout",
    "not_sent",
)
Phase = Literal["warmup", "measure"]
CheckStatus = Literal["pass", "fail", "skip"]

GIB = float(1 << 30)

#: WER of all clip transcripts (in time order) against the spoken truth must stay below this.
WER_THRESHOLD = 0.35
#: Share of a truth sentence's words that must appear in the clips overlapping it.
SENTENCE_RECALL_THRESHOLD = 0.6
#: Slack (seconds) when comparing clip, match and detection times to truth spans.
TIME_TOLERANCE_S = 0.5


# --------------------------------------------------------------------------------------------
# Per-function invocations
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    out = _num(value)
    return None if out is None else int(out)


class InvocationSample(BaseModel):
    """One attempt at one function inside a request, flattened for tables and CSV.

    Built from the orchestrator's invocation records, whose function-measured figures sit under
    a nested ``metrics`` object (flat records are accepted too).
    """

    model_config = ConfigDict(extra="ignore")

    function: str
    step: str | None = None
    attempt: int = 1
    fanout: int | None = None
    status_code: int | None = None
    outcome: str | None = None
    error_code: str | None = None
    started_at: float | None = Field(None, description="unix time the attempt was sent")
    #: The function's own wall time of the handler (metrics.wall_s); None without metrics.
    wall_s: float | None = None
    #: Seen by the orchestrator: send to answer (client_latency_s).
    latency_s: float | None = None
    function_duration_s: float | None = None
    queue_s: float | None = None
    cold_start_wait_s: float | None = Field(None, description="caller waited for a replica start")
    cold_start: bool | None = Field(None, description="first invocation of the serving process")
    process_init_s: float | None = None
    #: Inside the function's wall time (when its metrics carry them): S3 download, the work,
    #: S3 upload.
    download_s: float | None = None
    compute_s: float | None = None
    upload_s: float | None = None
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    children_peak_rss_bytes: int | None = None
    memory_limit_bytes: int | None = None
    replica: str | None = None
    reused: bool = Field(False, description="taken from an earlier attempt's step record")

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> InvocationSample:
        nested = raw.get("metrics") if isinstance(raw.get("metrics"), Mapping) else {}
        merged: dict[str, Any] = {**nested, **{k: v for k, v in raw.items() if k != "metrics"}}

        def pick(*keys: str) -> Any:
            for key in keys:
                if merged.get(key) is not None:
                    return merged[key]
            return None

        # The function's own wall_s wins over the orchestrator's view when both exist.
        wall = nested.get("wall_s") if nested.get("wall_s") is not None else raw.get("wall_s")
        cold = pick("cold_start")
        return cls(
            function=str(pick("function") or "?"),
            step=pick("step"),
            attempt=_int(pick("attempt")) or 1,
            fanout=_int(pick("fanout")),
            status_code=_int(pick("status_code")),
            outcome=pick("outcome"),
            error_code=pick("error_code"),
            started_at=_num(pick("started_at")),
            wall_s=_num(wall),
            latency_s=_num(pick("client_latency_s", "latency_s")),
            function_duration_s=_num(pick("function_duration_s")),
            queue_s=_num(pick("queue_s")),
            cold_start_wait_s=_num(pick("cold_start_wait_s")),
            cold_start=None if cold is None else bool(cold),
            process_init_s=_num(pick("process_init_s")),
            download_s=_num(pick("download_s")),
            compute_s=_num(pick("compute_s")),
            upload_s=_num(pick("upload_s")),
            cpu_s=_num(pick("cpu_s")),
            peak_rss_bytes=_int(pick("peak_rss_bytes")),
            children_peak_rss_bytes=_int(pick("children_peak_rss_bytes")),
            memory_limit_bytes=_int(pick("memory_limit_bytes")),
            replica=pick("replica"),
            reused=bool(pick("reused") or False),
        )

    @property
    def exec_s(self) -> float | None:
        """Execution time: the function's own wall time, else what the caller saw."""
        if self.wall_s is not None:
            return self.wall_s
        return self.function_duration_s if self.function_duration_s is not None else None

    @property
    def footprint_bytes(self) -> int | None:
        """Process peak plus its largest child's peak (an upper bound of the container peak)."""
        if self.peak_rss_bytes is None:
            return None
        return self.peak_rss_bytes + (self.children_peak_rss_bytes or 0)

    @property
    def waited_for_cold_start(self) -> bool:
        return (self.cold_start_wait_s or 0.0) > 0.0

    def gb_s_measured(self) -> float | None:
        if self.wall_s is None or self.footprint_bytes is None:
            return None
        return self.wall_s * self.footprint_bytes / GIB

    def gb_s_configured(self, limit_bytes: int | None = None) -> float | None:
        limit = self.memory_limit_bytes or limit_bytes
        if self.wall_s is None or not limit:
            return None
        return self.wall_s * limit / GIB


def invocations_from_result(body: Mapping[str, Any] | None) -> list[InvocationSample]:
    """Every function invocation a result reports, plus the orchestrator's own when enveloped."""
    if not isinstance(body, Mapping):
        return []
    out: list[InvocationSample] = []
    result = extract_result(body)
    metrics = (result or {}).get("metrics")
    if isinstance(metrics, Mapping):
        for raw in metrics.get("invocations") or []:
            if isinstance(raw, Mapping):
                out.append(InvocationSample.from_raw(raw))
    own = body.get("metrics") if "outputs" in body else None
    if isinstance(own, Mapping) and own.get("function"):
        out.append(InvocationSample.from_raw({**own, "step": "orchestrator", "outcome": "ok"}))
    return out


def extract_result(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pipeline result from a POST envelope (``outputs``), a GET status, or a bare result."""
    if not isinstance(body, Mapping):
        return None
    for key in ("outputs", "result"):
        inner = body.get(key)
        if isinstance(inner, Mapping) and ("clips" in inner or "matches" in inner):
            return dict(inner)
    if "clips" in body or "matches" in body:
        return dict(body)
    return None


# --------------------------------------------------------------------------------------------
# Platform view of a function (filled by the integration from /system/functions)
# --------------------------------------------------------------------------------------------


class FunctionPlatform(BaseModel):
    """What the platform says about one function over the run (limits, peaks, kills)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    memory_limit_bytes: int | None = None
    #: Highest memory of any replica during the run (cgroup or process-tree peak).
    peak_memory_bytes: int | None = None
    #: Page cache charged to the replica with that peak (cgroup figures include it).
    peak_file_cache_bytes: int | None = None
    oom_kills: int = 0
    cold_starts: int | None = None
    replica_starts: int | None = None
    replica_deaths: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    #: Ready replicas kept during the run (idle-cost basis); defaults to min_replicas.
    warm_replicas: int | None = None
    scale_to_zero_idle: float | None = None
    cpu_limit: float | None = None
    limits_enforced: bool | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> FunctionPlatform:
        """From an OpenFaaS ``FunctionStatus`` with the gateway's ``vsearch`` extras."""
        ext = status.get("vsearch") if isinstance(status.get("vsearch"), Mapping) else {}
        ready = status.get("availableReplicas")
        return cls(
            name=str(status.get("name")),
            memory_limit_bytes=_int(ext.get("memory_limit_bytes")),
            peak_memory_bytes=_int(ext.get("peak_memory_bytes")),
            peak_file_cache_bytes=_int(ext.get("peak_file_cache_bytes")),
            oom_kills=_int(ext.get("oom_kills")) or 0,
            cold_starts=_int(ext.get("cold_starts")),
            replica_starts=_int(ext.get("replica_starts")),
            replica_deaths=_int(ext.get("replica_deaths")),
            min_replicas=_int(ext.get("min_replicas")),
            max_replicas=_int(ext.get("max_replicas")),
            warm_replicas=_int(ready),
            scale_to_zero_idle=_num(ext.get("scale_to_zero_idle")),
            cpu_limit=_num(ext.get("cpu_limit")),
            limits_enforced=ext.get("limits_enforced"),
        )

    def since(self, before: FunctionPlatform | None) -> FunctionPlatform:
        """This snapshot with its counters made relative to ``before`` (taken at run start)."""
        if before is None:
            return self

        def delta(after: int | None, earlier: int | None) -> int | None:
            if after is None:
                return None
            return max(0, after - (earlier or 0))

        return self.model_copy(
            update={
                "oom_kills": delta(self.oom_kills, before.oom_kills) or 0,
                "cold_starts": delta(self.cold_starts, before.cold_starts),
                "replica_starts": delta(self.replica_starts, before.replica_starts),
                "replica_deaths": delta(self.replica_deaths, before.replica_deaths),
                "warm_replicas": before.warm_replicas
                if before.warm_replicas is not None
                else self.warm_replicas,
            }
        )


def platform_from_statuses(
    after: Iterable[Mapping[str, Any]], before: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, FunctionPlatform]:
    """``GET /system/functions`` at run end (and start) -> per-function figures of the run."""
    start = {s.name: s for s in map(FunctionPlatform.from_status, before or [])}
    out: dict[str, FunctionPlatform] = {}
    for status in after:
        snap = FunctionPlatform.from_status(status)
        out[snap.name] = snap.since(start.get(snap.name))
    return out


# --------------------------------------------------------------------------------------------
# Content checks
# --------------------------------------------------------------------------------------------


class CheckResult(BaseModel):
    name: str
    status: CheckStatus
    detail: str = ""
    value: float | None = None
    threshold: float | None = None

    @property
    def ok(self) -> bool:
        return self.status != "fail"


_NUMBERS = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    "10": "ten",
    "11": "eleven",
    "12": "twelve",
}


def normalize_text(text: str) -> str:
    """Lower case, no punctuation or apostrophes, small numbers spelled out."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


def _contains_phrase(text: str, phrase: str) -> bool:
    words, target = normalize_text(text).split(), normalize_text(phrase).split()
    if not target:
        return False
    return any(words[i : i + len(target)] == target for i in range(len(words) - len(target) + 1))


def _overlaps(a0: float, a1: float, b0: float, b1: float, tol: float) -> bool:
    return a0 < b1 + tol and b0 < a1 + tol


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _truth_dict(truth: Any) -> dict[str, Any]:
    if hasattr(truth, "model_dump"):
        return truth.model_dump()
    return dict(truth)


def _all_detections(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = []
    for clip in result.get("clips") or []:
        for obj in _get(clip, "objects") or []:
            hits.append(dict(obj))
    for obj in result.get("objects") or []:
        hits.append(dict(obj))
    for frame in result.get("frames_without_clip") or []:
        for obj in _get(frame, "objects") or []:
            hits.append({"frame_time_s": _get(frame, "time_s"), **dict(obj)})
    return hits


def expected_frame_times(result: Mapping[str, Any], interval_s: float | None) -> set[float]:
    """Times of the frames the pipeline examined: reported ones plus, given the sampling
    interval, the grid sample-frames uses per clip (0, interval, ...; a shorter clip: its middle).
    """
    times = {t for h in _all_detections(result) if (t := _num(h.get("frame_time_s"))) is not None}
    for frame in result.get("frames_without_clip") or []:
        if (t := _num(_get(frame, "time_s"))) is not None:
            times.add(t)
    if interval_s and interval_s > 0:
        for clip in result.get("clips") or []:
            start, end = _num(_get(clip, "start_s")), _num(_get(clip, "end_s"))
            if start is None or end is None or end <= start:
                continue
            length = end - start
            if length < interval_s:
                times.add(start + length / 2)
                continue
            k = 0
            while k * interval_s < length:
                times.add(start + k * interval_s)
                k += 1
    return times


def check_content(
    result: Mapping[str, Any] | None,
    truth: Any,
    *,
    query: str | None = None,
    wer_threshold: float = WER_THRESHOLD,
    sentence_recall: float = SENTENCE_RECALL_THRESHOLD,
    tolerance_s: float = TIME_TOLERANCE_S,
    check_objects: bool = True,
    frame_interval_s: float | None = 5.0,
) -> list[CheckResult]:
    """Compare an orchestrator result with what the video is known to contain.

    ``truth`` is a ``VideoTruth`` (or its dict). ``query`` defaults to the result's own query.
    A check is ``skip`` when the truth or the result gives nothing to judge it on (e.g. no frame
    was sampled while an object was visible); only ``fail`` makes a request unsuccessful.
    ``frame_interval_s`` is the request's ``frame_interval_s`` (to know which frames were looked
    at); None judges objects only where a detection was reported.
    """
    checks: list[CheckResult] = []
    body = extract_result(result) if isinstance(result, Mapping) else None
    if body is None:
        return [CheckResult(name="result", status="fail", detail="no result with clips/matches")]
    if body.get("status", "ok") != "ok":
        checks.append(CheckResult(name="result", status="fail", detail=f"{body.get('status')=}"))
    tr = _truth_dict(truth)
    sentences = [s for s in tr.get("sentences") or [] if normalize_text(_get(s, "text", ""))]
    objects = list(tr.get("objects") or [])
    duration = _num(tr.get("duration_s"))
    clips = sorted(
        (c for c in body.get("clips") or [] if isinstance(c, Mapping)),
        key=lambda c: _num(c.get("start_s")) or 0.0,
    )
    query = query if query is not None else body.get("query")

    # Clip times must be sane: ordered, inside the video.
    bad = [
        c.get("index")
        for c in clips
        if (s := _num(c.get("start_s"))) is None
        or (e := _num(c.get("end_s"))) is None
        or not s < e
        or s < -tolerance_s
        or (duration is not None and e > duration + tolerance_s)
    ]
    checks.append(
        CheckResult(
            name="clip_times",
            status="fail" if bad else "pass",
            detail=f"clips with invalid times: {bad}" if bad else f"{len(clips)} clips in range",
        )
    )

    if sentences:
        checks.append(
            CheckResult(
                name="clips",
                status="pass" if clips else "fail",
                detail=f"{len(clips)} clips for {len(sentences)} spoken sentences",
                value=float(len(clips)),
                threshold=1.0,
            )
        )
        speech_clips = [
            c
            for c in clips
            if any(
                _overlaps(
                    _num(c.get("start_s")) or 0.0,
                    _num(c.get("end_s")) or 0.0,
                    float(_get(s, "start_s")),
                    float(_get(s, "end_s")),
                    0.0,
                )
                for s in sentences
            )
        ]
        empty = [c.get("index") for c in speech_clips if not (c.get("transcript") or "").strip()]
        nonempty = sum(1 for c in clips if (c.get("transcript") or "").strip())
        checks.append(
            CheckResult(
                name="transcripts",
                status="fail" if empty or not nonempty else "pass",
                detail=f"empty transcripts in speech clips {empty}"
                if empty
                else f"{nonempty}/{len(clips)} clips transcribed",
            )
        )
        for i, sentence in enumerate(sentences):
            s0, s1 = float(_get(sentence, "start_s")), float(_get(sentence, "end_s"))
            text = _get(sentence, "text")
            around = [
                c
                for c in clips
                if _overlaps(
                    _num(c.get("start_s")) or 0.0, _num(c.get("end_s")) or 0.0, s0, s1, tolerance_s
                )
            ]
            heard = set(normalize_text(" ".join(c.get("transcript") or "" for c in around)).split())
            want = normalize_text(text).split()
            recall = sum(1 for w in want if w in heard) / len(want)
            checks.append(
                CheckResult(
                    name=f"sentence[{i}]",
                    status="pass" if around and recall >= sentence_recall else "fail",
                    detail=f"{text!r} at {s0:.1f}-{s1:.1f}s: "
                    + (
                        f"{recall:.0%} of its words in clips {[c.get('index') for c in around]}"
                        if around
                        else "no clip overlaps it"
                    ),
                    value=round(recall, 4),
                    threshold=sentence_recall,
                )
            )
        hypothesis = " ".join(c.get("transcript") or "" for c in clips)
        reference = " ".join(_get(s, "text") for s in sentences)
        wer = word_error_rate(reference, hypothesis)
        checks.append(
            CheckResult(
                name="wer",
                status="pass" if wer < wer_threshold else "fail",
                detail=f"WER {wer:.3f} (limit {wer_threshold}) of {len(clips)} transcripts",
                value=round(wer, 4),
                threshold=wer_threshold,
            )
        )
    else:
        checks.append(CheckResult(name="clips", status="skip", detail="video has no speech to cut"))

    if check_objects:
        checks.extend(_object_checks(body, objects, tolerance_s, frame_interval_s))

    if query:
        checks.append(_query_check(body, sentences, query, tolerance_s))
    return checks


def check_structure(result: Mapping[str, Any] | None) -> list[CheckResult]:
    """What can be judged of a result without knowing the video: a result with sane clip times.

    For videos that come without a truth file; the ``truth`` check is ``skip`` so the record
    shows that the content was not verified.
    """
    unknown = {"sentences": [], "objects": [], "duration_s": None}
    checks = check_content(result, unknown, query="", check_objects=False)
    checks = [c for c in checks if c.name != "clips"]  # "no speech to cut" would be a claim
    checks.append(
        CheckResult(name="truth", status="skip", detail="no ground truth: content not verified")
    )
    return checks


def _object_checks(
    body: Mapping[str, Any],
    objects: Sequence[Any],
    tolerance_s: float,
    frame_interval_s: float | None,
) -> list[CheckResult]:
    checks: list[CheckResult] = []
    detections = _all_detections(body)
    frame_times = expected_frame_times(body, frame_interval_s)
    for j, obj in enumerate(objects):
        o0, o1 = float(_get(obj, "start_s")), float(_get(obj, "end_s"))
        labels = [str(label) for label in _get(obj, "labels") or []]
        name = f"objects[{j}]"
        inside = [
            h
            for h in detections
            if (t := _num(h.get("frame_time_s"))) is not None
            and o0 - tolerance_s <= t <= o1 + tolerance_s
        ]
        if not labels:
            continue
        # A frame right at an edge may or may not show the overlay; judge inner frames only.
        frames_inside = [t for t in frame_times if o0 + 0.1 <= t <= o1 - 0.1]
        if not inside and not frames_inside:
            checks.append(
                CheckResult(
                    name=name,
                    status="skip",
                    detail=f"no frame examined while {labels} visible at {o0:.1f}-{o1:.1f}s",
                )
            )
            continue
        found = {str(h.get("label")) for h in inside}
        missing = [label for label in labels if label not in found]
        checks.append(
            CheckResult(
                name=name,
                status="fail" if missing else "pass",
                detail=f"{labels} at {o0:.1f}-{o1:.1f}s: "
                + (f"missing {missing}, saw {sorted(found)}" if missing else "all detected"),
            )
        )
    return checks


def _query_check(
    body: Mapping[str, Any], sentences: Sequence[Any], query: str, tolerance_s: float
) -> CheckResult:
    expected = [s for s in sentences if _contains_phrase(_get(s, "text", ""), query)]
    matches = [m for m in body.get("matches") or [] if isinstance(m, Mapping)]

    def spans(m: Mapping[str, Any]) -> tuple[float, float]:
        return _num(m.get("start_s")) or 0.0, _num(m.get("end_s")) or 0.0

    missed = [
        _get(s, "text")
        for s in expected
        if not any(
            _overlaps(*spans(m), float(_get(s, "start_s")), float(_get(s, "end_s")), tolerance_s)
            for m in matches
        )
    ]
    spurious = [
        m.get("clip_index")
        for m in matches
        if not any(
            _overlaps(*spans(m), float(_get(s, "start_s")), float(_get(s, "end_s")), tolerance_s)
            for s in expected
        )
    ]
    ok = not missed and not spurious
    detail = f"query {query!r}: {len(matches)} matches for {len(expected)} expected sentences"
    if missed:
        detail += f"; missed {missed}"
    if spurious:
        detail += f"; matches outside the expected sentences: clips {spurious}"
    return CheckResult(
        name="query_match",
        status="pass" if ok else "fail",
        detail=detail,
        value=float(len(matches)),
        threshold=float(len(expected)),
    )


def content_ok(checks: Iterable[CheckResult]) -> bool:
    return all(c.ok for c in checks)


# --------------------------------------------------------------------------------------------
# One request
# --------------------------------------------------------------------------------------------


class Attempt(BaseModel):
    """One client-side send of a request (there is more than one only with client retries)."""

    sent_s: float
    finished_s: float | None = None
    http_status: int | None = None
    error_code: str | None = None


class RequestRecord(BaseModel):
    index: int
    request_id: str
    video: str | None = Field(None, description="catalogue id of the input video")
    phase: Phase = "measure"
    scheduled_s: float = Field(description="when the schedule says to send it (run seconds)")
    sent_s: float | None = Field(None, description="when it was actually sent; None: not sent")
    finished_s: float | None = None
    latency_s: float | None = Field(None, description="finished_s - scheduled_s")
    http_status: int | None = None
    outcome: Outcome
    error_code: str | None = None
    error_message: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    invocations: list[InvocationSample] = Field(default_factory=list)
    request_metrics: dict[str, Any] | None = Field(
        None, description="the orchestrator's metrics.request, as reported"
    )
    client_retries: int = Field(0, description="extra client-side sends (off by default)")
    attempts: list[Attempt] = Field(default_factory=list)

    @property
    def send_lag_s(self) -> float | None:
        return None if self.sent_s is None else self.sent_s - self.scheduled_s

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def admitted(self) -> bool:
        """Sent and not turned away by the platform (the overload regime's denominator)."""
        return self.outcome not in ("refused", "not_sent")

    def finalize_timing(self) -> RequestRecord:
        if self.finished_s is not None:
            self.latency_s = round(self.finished_s - self.scheduled_s, 6)
        return self

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "fail"]


def classify(
    http_status: int | None,
    checks: Sequence[CheckResult] | None = None,
    *,
    timed_out: bool = False,
) -> Outcome:
    """The outcome of an answered (or unanswered) request; content decides success."""
    if timed_out:
        return "timeout"
    if http_status is None:
        return "error"
    if http_status == 429:
        return "refused"
    if http_status == 504:
        return "timeout"
    if http_status != 200:
        return "error"
    if checks is None or not content_ok(checks) or not checks:
        return "failed_content"
    return "ok"
