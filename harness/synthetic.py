"""Synthetic truths, orchestrator results and request records, for tests and report dry runs.

Shapes follow orchestrator/contracts.py (Output, InvocationRecord with nested metrics) and
harness/media/generate.py (VideoTruth), built as plain dicts so nothing here needs a platform.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from harness.records import (
    FunctionPlatform,
    RequestRecord,
    check_content,
    classify,
    invocations_from_result,
)

MIB = 1 << 20

DEMO_SENTENCES = (
    ("the quick brown fox jumps over the lazy dog", 1.0, 3.6),
    ("please add two cups of flour to the bowl", 6.6, 9.0),
    ("the red bus stops at the station every morning", 12.0, 14.8),
)

#: (function, memory limit, typical wall seconds, peak RSS MiB, child peak MiB)
FUNCTIONS: tuple[tuple[str, int, float, int, int], ...] = (
    ("extract-audio", 512 * MIB, 0.4, 60, 40),
    ("segment-speech", 1024 * MIB, 1.2, 180, 0),
    ("cut-clips", 768 * MIB, 0.8, 60, 70),
    ("transcode-clip", 512 * MIB, 0.6, 60, 50),
    ("transcribe", 1024 * MIB, 2.5, 420, 0),
    ("sample-frames", 512 * MIB, 0.3, 60, 40),
    ("detect-objects", 768 * MIB, 0.9, 300, 0),
    ("search", 256 * MIB, 0.1, 50, 0),
)
PER_CLIP = {"transcode-clip", "transcribe", "sample-frames", "detect-objects"}


def synthetic_platform(
    *,
    extra_mib: int = 0,
    peak_scale: float = 1.0,
    oom: dict[str, int] | None = None,
    **figures: Any,
) -> dict[str, FunctionPlatform]:
    """Platform figures of the stage functions in FUNCTIONS: each one's limit, and a peak of
    (its peak + its child's peak + extra_mib) x peak_scale; ``figures`` (cold_starts,
    warm_replicas...) the same for all."""
    return {
        name: FunctionPlatform(
            name=name,
            memory_limit_bytes=limit,
            peak_memory_bytes=int((peak + child + extra_mib) * MIB * peak_scale),
            oom_kills=(oom or {}).get(name, 0),
            **figures,
        )
        for name, limit, _, peak, child in FUNCTIONS
    }


def demo_truth(duration_s: float = 22.0) -> dict[str, Any]:
    """A VideoTruth dict like the demo video's: three sentences, a person seen 5-10 s."""
    return {
        "path": "demo.mp4",
        "duration_s": duration_s,
        "has_audio": True,
        "has_video": True,
        "sentences": [{"text": t, "start_s": a, "end_s": b} for t, a, b in DEMO_SENTENCES],
        "objects": [{"labels": ["person"], "start_s": 5.0, "end_s": 10.0, "photo": "zidane.jpg"}],
    }


def invocation(
    function: str,
    *,
    step: str | None = None,
    attempt: int = 1,
    fanout: int | None = None,
    wall_s: float = 1.0,
    peak_mib: int = 100,
    child_mib: int = 0,
    limit_bytes: int | None = None,
    cold: bool = False,
    cold_wait_s: float | None = None,
    queue_s: float = 0.0,
    outcome: str = "ok",
    started_at: float = 1_700_000_000.0,
) -> dict[str, Any]:
    """An orchestrator InvocationRecord (with the function's metrics nested)."""
    return {
        "function": function,
        "step": step or (f"{function}-{fanout}" if fanout is not None else function),
        "attempt": attempt,
        "fanout": fanout,
        "status_code": 200 if outcome == "ok" else 503,
        "outcome": outcome,
        "error_code": None,
        "started_at": started_at,
        "client_latency_s": wall_s + queue_s + (cold_wait_s or 0.0) + 0.01,
        "function_duration_s": wall_s + 0.005,
        "queue_s": queue_s,
        "cold_start_wait_s": cold_wait_s,
        "memory_limit_bytes": limit_bytes,
        "metrics": {
            "function": function,
            "replica": f"{function}-1",
            "pid": 1234,
            "invocation": 1 if cold else 2,
            "cold_start": cold,
            "process_init_s": 1.5,
            "started_at": started_at,
            "wall_s": wall_s,
            "cpu_s": wall_s * 0.9,
            "children_cpu_s": 0.0,
            "peak_rss_bytes": peak_mib * MIB,
            "peak_rss_scope": "invocation",
            "children_peak_rss_bytes": child_mib * MIB,
        },
        "reused": False,
    }


def pipeline_invocations(
    clips: int = 3, *, cold: bool = False, scale: float = 1.0, rng: random.Random | None = None
) -> list[dict[str, Any]]:
    out = []
    for name, limit, wall, peak, child in FUNCTIONS:
        fanouts: list[int | None] = list(range(clips)) if name in PER_CLIP else [None]
        for f in fanouts:
            jitter = rng.uniform(0.8, 1.25) if rng else 1.0
            out.append(
                invocation(
                    name,
                    fanout=f,
                    wall_s=round(wall * scale * jitter, 4),
                    peak_mib=peak,
                    child_mib=child,
                    limit_bytes=limit,
                    cold=cold,
                    cold_wait_s=2.0 if cold else None,
                )
            )
    return out


def good_result(
    truth: dict[str, Any] | None = None,
    *,
    query: str = "flour",
    request_id: str = "r-1",
    invocations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A correct orchestrator Output for ``truth`` (whisper-like capitals, digits, stops)."""
    truth = truth or demo_truth()
    clips = []
    spoken = {
        "please add two cups of flour to the bowl": "Please add 2 cups of flour to the bowl.",
    }
    for i, s in enumerate(truth["sentences"]):
        text = spoken.get(s["text"], s["text"].capitalize() + ".")
        start, end = max(0.0, s["start_s"] - 0.3), s["end_s"] + 0.3
        clips.append(
            {
                "index": i,
                "start_s": start,
                "end_s": end,
                "transcript": text,
                "words": [],
                "objects": [],
                "clip_uri": f"s3://b/requests/{request_id}/transcode-clip/clip-{i:04d}.mp4",
                "source_clip_uri": f"s3://b/requests/{request_id}/cut-clips/clip-{i:04d}.mp4",
            }
        )
    for obj in truth.get("objects") or []:
        for clip in clips:
            mid = (clip["start_s"] + clip["end_s"]) / 2
            if obj["start_s"] <= mid <= obj["end_s"]:
                for label in obj["labels"]:
                    clip["objects"].append(
                        {
                            "label": label,
                            "score": 0.9,
                            "frame_time_s": mid,
                            "box": [10.0, 10.0, 200.0, 220.0],
                            "clip_index": clip["index"],
                        }
                    )
    matches = [
        {
            "clip_index": c["index"],
            "start_s": c["start_s"],
            "end_s": c["end_s"],
            "text": c["transcript"],
            "clip_uri": c["clip_uri"].replace("transcode-clip/clip", "search/match"),
            "words": [],
        }
        for c in clips
        if query.lower() in c["transcript"].lower()
    ]
    invs = invocations if invocations is not None else pipeline_invocations(len(clips))
    return {
        "request_id": request_id,
        "status": "ok",
        "query": query,
        "mode": "speech",
        "video": {
            "uri": f"s3://b/requests/{request_id}/input/video.mp4",
            "source_uri": "s3://b/videos/demo.mp4",
            "sha256": "0" * 64,
            "size_bytes": 123456,
            "duration_s": truth["duration_s"],
            "has_audio": True,
            "has_video": True,
        },
        "clips": clips,
        "frames_without_clip": None,
        "objects": [o for c in clips for o in c["objects"]],
        "matches": matches,
        "metrics": {
            "invocations": invs,
            "request": {
                "end_to_end_s": 12.0,
                "critical_path_s": 10.5,
                "overhead_s": 1.5,
                "queueing_s": 0.0,
                "cold_start_wait_s": 0.0,
                "retries": 0,
                "cold_starts": 0,
                "invocations": len(invs),
                "steps_run": len(invs),
                "steps_reused": 0,
                "cost_gb_s_measured": 1.0,
                "cost_gb_s_configured": 5.0,
            },
        },
    }


def envelope(result: dict[str, Any], *, wall_s: float = 12.0) -> dict[str, Any]:
    """The runtime's POST answer around an orchestrator result (with its own metrics)."""
    return {
        "status": "ok",
        "function": "orchestrator",
        "request_id": result["request_id"],
        "fanout": None,
        "outputs": result,
        "metrics": invocation("orchestrator", wall_s=wall_s, peak_mib=150)["metrics"],
    }


def broken(result: dict[str, Any], how: str) -> dict[str, Any]:
    """A copy of ``result`` with one kind of wrong content."""
    bad = copy.deepcopy(result)
    if how == "dummy_transcripts":
        for c in bad["clips"]:
            c["transcript"] = "Dummy transcript"
    elif how == "no_clips":
        bad["clips"], bad["matches"], bad["objects"] = [], [], []
    elif how == "one_second":
        bad["clips"] = bad["clips"][:1]
        bad["clips"][0]["end_s"] = 1.0
    elif how == "no_objects":
        for c in bad["clips"]:
            c["objects"] = []
        bad["objects"] = []
    elif how == "wrong_match":
        bad["matches"] = [{**bad["matches"][0], "clip_index": 2, "start_s": 11.7, "end_s": 15.1}]
    elif how == "no_match":
        bad["matches"] = []
    else:
        raise ValueError(how)
    return bad


def synthetic_records(
    n: int,
    *,
    seed: int = 0,
    fail_every: int = 0,
    refuse_every: int = 0,
    rate: float = 0.5,
    cold: bool = False,
    base_latency_s: float = 10.0,
) -> list[RequestRecord]:
    """Plausible records of a run: latency noise, every k-th failing or refused."""
    rng = random.Random(seed)
    truth = demo_truth()
    out = []
    for i in range(n):
        scheduled = i / rate
        latency = base_latency_s * rng.uniform(0.8, 1.6) + (5.0 if cold else 0.0)
        if refuse_every and i % refuse_every == refuse_every - 1:
            out.append(
                RequestRecord(
                    index=i,
                    request_id=f"r-{i}",
                    video="demo",
                    scheduled_s=scheduled,
                    sent_s=scheduled + 0.001,
                    finished_s=scheduled + 0.05,
                    http_status=429,
                    outcome="refused",
                    error_code="overloaded",
                ).finalize_timing()
            )
            continue
        result = good_result(
            truth,
            request_id=f"r-{i}",
            invocations=pipeline_invocations(3, cold=cold and i == 0, rng=rng),
        )
        if fail_every and i % fail_every == fail_every - 1:
            result = broken(result, "dummy_transcripts")
        checks = check_content(result, truth)
        body = envelope(result)
        out.append(
            RequestRecord(
                index=i,
                request_id=f"r-{i}",
                video="demo",
                scheduled_s=scheduled,
                sent_s=scheduled + rng.uniform(0, 0.003),
                finished_s=scheduled + latency,
                http_status=200,
                outcome=classify(200, checks),
                checks=checks,
                invocations=invocations_from_result(body),
                request_metrics=result["metrics"]["request"],
            ).finalize_timing()
        )
    return out
