"""segment-speech on generated speech: every sentence found where it was placed, nothing else."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

#: How far a segment boundary may sit from where the sentence was placed (padding included).
TOLERANCE_S = 0.5


def segment(
    invoke: Callable[..., Any], url: str, request_id: str, audio: str, **config: Any
) -> dict[str, Any]:
    resp = invoke(url, {"request_id": request_id, "input": {"audio": audio}, "config": config})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["function"] == "segment-speech"
    return body


def assert_matches_truth(segments: list[dict[str, Any]], truth: list[Any]) -> float:
    """One segment per sentence, in order, boundaries within TOLERANCE_S; returns max error."""
    found = [(s["start_s"], s["end_s"]) for s in segments]
    placed = [(t.start_s, t.end_s) for t in truth]
    assert len(found) == len(placed), f"found {found}, placed {placed}"
    assert [s["index"] for s in segments] == list(range(len(segments)))
    errors = []
    for (start, end), (t_start, t_end) in zip(found, placed, strict=True):
        assert start < end
        errors += [abs(start - t_start), abs(end - t_end)]
        # Padding widens, never narrows: the whole sentence lies inside its segment.
        assert start <= t_start + 0.05 and end >= t_end - 0.05, (start, end, t_start, t_end)
    assert max(errors) <= TOLERANCE_S, f"found {found}, placed {placed}"
    return max(errors)


@pytest.mark.parametrize("name", ["demo", "speech", "speech44"])
def test_every_sentence_found_where_it_was_placed(
    name: str,
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    media = seg_media[name]
    body = segment(invoke, seg_url, request_id, seg_uris[name])
    out = body["outputs"]
    assert_matches_truth(out["segments"], media.sentences)
    assert 24.0 <= out["top_db"] <= 49.0  # the search stays within the configured range
    for seg in out["segments"]:
        assert 0.0 <= seg["start_s"] < seg["end_s"] <= media.truth.duration_s + 0.01
    assert out["speech_s"] == pytest.approx(
        sum(s["end_s"] - s["start_s"] for s in out["segments"]), abs=0.01
    )
    # The padded sentences, not the recording: at most pad + 0.15 s of slack per boundary.
    spoken = sum(t.end_s - t.start_s for t in media.sentences)
    assert spoken <= out["speech_s"] <= spoken + len(media.sentences) * 2 * (0.15 + 0.15)


def test_segments_json_object_is_the_output(
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
    s3_server: Any,
) -> None:
    out = segment(invoke, seg_url, request_id, seg_uris["demo"])["outputs"]
    key = f"requests/{request_id}/segment-speech/segments.json"
    assert out["segments_uri"] == f"s3://{s3_server.bucket}/{key}"
    stored = json.loads(
        s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    )
    assert stored == {k: out[k] for k in ("segments", "top_db", "speech_s")}


def test_silence_has_no_segments(
    seg_uris: dict[str, str], seg_url: str, invoke: Callable[..., Any], request_id: str
) -> None:
    out = segment(invoke, seg_url, request_id, seg_uris["silent"])["outputs"]
    assert out["segments"] == [] and out["speech_s"] == 0.0
    assert 24.0 <= out["top_db"] <= 49.0


def test_digital_silence_has_no_segments(
    tmp_path: Path,
    upload: Callable[[Path], str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(16000 * 3, dtype=np.float32), 16000, subtype="PCM_16")
    out = segment(invoke, seg_url, request_id, upload(path))["outputs"]
    assert out["segments"] == []


def test_explicit_top_db_is_used(
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    out = segment(invoke, seg_url, request_id, seg_uris["speech"], top_db=30)["outputs"]
    assert out["top_db"] == 30.0
    assert_matches_truth(out["segments"], seg_media["speech"].sentences)


def test_min_sentence_drops_the_short_sentence(
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    truth = seg_media["speech"].sentences
    short = truth[0]
    assert short.end_s - short.start_s < 1.2  # "good morning"
    out = segment(invoke, seg_url, request_id, seg_uris["speech"], min_sentence_s=1.2)["outputs"]
    assert_matches_truth(out["segments"], truth[1:])


def test_long_runs_are_cut_at_quiet_points(
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    # A 2 s merge gap fuses the sentences into one run; 4 s caps must cut it in the pauses.
    max_s, pad = 4.0, 0.15
    out = segment(
        invoke, seg_url, request_id, seg_uris["speech"], merge_gap_s=2.0, max_segment_s=max_s
    )["outputs"]
    spans = [(s["start_s"], s["end_s"]) for s in out["segments"]]
    assert len(spans) >= 3
    assert all(e - s <= max_s + 2 * pad + 1e-6 for s, e in spans), spans
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start + 1e-6
    # Nothing spoken is lost: every sentence lies within the segments' union.
    for t in seg_media["speech"].sentences:
        covered = sum(max(0.0, min(e, t.end_s) - max(s, t.start_s)) for s, e in spans)
        assert covered >= 0.95 * (t.end_s - t.start_s), (t, spans)


@pytest.mark.parametrize(
    "config",
    [
        {"top_db_min": 40, "top_db_max": 30},
        {"top_db": 0},
        {"pad_s": -1},
        {"min_sentence_s": 5, "max_segment_s": 4},
        {"unknown_knob": 1},
    ],
)
def test_invalid_config_is_400(
    config: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    resp = invoke(
        seg_url, {"request_id": request_id, "input": {"audio": seg_uris["demo"]}, "config": config}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"


@pytest.mark.bench
def test_bench_segment_demo(
    benchmark: Any,
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., Any],
    request_id: str,
) -> None:
    def run() -> dict[str, Any]:
        return segment(invoke, seg_url, request_id, seg_uris["demo"])

    body = benchmark.pedantic(run, rounds=3, iterations=1)
    assert_matches_truth(body["outputs"]["segments"], seg_media["demo"].sentences)
    metrics = body["metrics"]
    benchmark.extra_info["peak_rss_bytes"] = metrics["peak_rss_bytes"]
    benchmark.extra_info["children_peak_rss_bytes"] = metrics["children_peak_rss_bytes"]
    benchmark.extra_info["wall_s"] = metrics["wall_s"]
