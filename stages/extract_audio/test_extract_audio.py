"""extract-audio against a real function process, real S3 and generated media of known content."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from harness.media.generate import (
    VideoTruth,
    demo_video,
    make_audio_only,
    make_video_without_audio,
)

MODULE = "stages.extract_audio"


@pytest.fixture(scope="module")
def demo(media_dir: Path) -> VideoTruth:
    return demo_video(media_dir / "demo")


@pytest.fixture(scope="module")
def url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


def _fetch(s3_server: Any, uri: str, dest: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3_server.client().download_file(bucket, key, str(dest))
    return dest


def _db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def _span_db(x: np.ndarray, sr: int, a: float, b: float) -> float:
    return _db(x[int(a * sr) : int(b * sr)])


def _ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    return body


def test_demo_audio_has_the_speech_where_the_truth_says(
    url: str, demo: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    uri = upload(Path(demo.path))
    body = _ok(invoke(url, {"request_id": request_id, "input": {"video": uri}}))
    out = body["outputs"]
    assert body["function"] == "extract-audio"
    assert out["video"] == uri
    assert out["has_audio"] is True and out["has_video"] is True
    info = out["media"]
    assert (info["width"], info["height"]) == (320, 240)
    assert info["fps"] == pytest.approx(12.0)
    assert info["duration_s"] == pytest.approx(demo.duration_s, abs=0.1)
    assert info["audio_sample_rate"] == 16000 and info["audio_channels"] == 1
    assert out["audio"] == f"s3://{s3_server.bucket}/requests/{request_id}/extract-audio/audio.wav"

    wav = _fetch(s3_server, out["audio"], tmp_path / "audio.wav")
    meta = sf.info(str(wav))
    assert (meta.samplerate, meta.channels, meta.subtype) == (16000, 1, "PCM_16")
    assert meta.duration == pytest.approx(demo.duration_s, abs=0.1)
    x, sr = sf.read(str(wav), dtype="float32")
    for s in demo.sentences:
        assert _span_db(x, sr, s.start_s, s.end_s) > -30, s.text
    # The noise floor between and after the sentences is ~-59 dBFS.
    pairs = zip(demo.sentences, demo.sentences[1:], strict=False)
    gaps = [(0.1, 0.8)] + [(a.end_s + 0.3, b.start_s - 0.3) for a, b in pairs]
    gaps.append((demo.sentences[-1].end_s + 0.3, demo.duration_s - 0.2))
    for a, b in gaps:
        assert _span_db(x, sr, a, b) < -45, (a, b)
    # Speech starts where the truth says (20 ms windows, first one clearly above the floor).
    win = sr // 50
    env = np.sqrt(np.mean(x[: len(x) // win * win].reshape(-1, win) ** 2, axis=1))
    onset = np.flatnonzero(20 * np.log10(env + 1e-12) > -40)[0] * win / sr
    assert onset == pytest.approx(demo.sentences[0].start_s, abs=0.06)
    assert body["metrics"]["children_peak_rss_bytes"] > 0


def test_sample_rate_is_configurable(
    url: str, demo: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    body = _ok(
        invoke(
            url,
            {
                "request_id": request_id,
                "input": {"video": upload(Path(demo.path))},
                "config": {"sample_rate": 8000},
            },
        )
    )
    wav = _fetch(s3_server, body["outputs"]["audio"], tmp_path / "a.wav")
    meta = sf.info(str(wav))
    assert (meta.samplerate, meta.channels) == (8000, 1)
    assert meta.duration == pytest.approx(demo.duration_s, abs=0.1)
    x, sr = sf.read(str(wav), dtype="float32")
    s = demo.sentences[1]
    assert _span_db(x, sr, s.start_s, s.end_s) > -30


def test_video_without_audio_is_valid_and_has_no_audio(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    truth = make_video_without_audio(media_dir / "extract_audio" / "mute.mp4", 4.0, reuse=True)
    uri = upload(Path(truth.path))
    body = _ok(invoke(url, {"request_id": request_id, "input": {"video": uri}}))
    out = body["outputs"]
    assert out["audio"] is None
    assert out["has_audio"] is False and out["has_video"] is True
    assert out["media"]["duration_s"] == pytest.approx(4.0, abs=0.1)
    assert out["media"]["audio_sample_rate"] is None
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"requests/{request_id}/")
    assert listed.get("KeyCount", 0) == 0


def test_audio_only_input_still_yields_audio(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    truth = make_audio_only(
        media_dir / "extract_audio" / "speech.m4a", ["an audio file with no picture"], reuse=True
    )
    uri = upload(Path(truth.path))
    body = _ok(invoke(url, {"request_id": request_id, "input": {"video": uri}}))
    out = body["outputs"]
    assert out["has_video"] is False and out["has_audio"] is True
    assert out["media"]["width"] is None
    x, sr = sf.read(str(_fetch(s3_server, out["audio"], tmp_path / "a.wav")), dtype="float32")
    assert sr == 16000 and x.ndim == 1
    assert len(x) / sr == pytest.approx(truth.duration_s, abs=0.1)
    s = truth.sentences[0]
    assert _span_db(x, sr, s.start_s, s.end_s) > -30
    assert _span_db(x, sr, 0.1, s.start_s - 0.2) < -45


@pytest.mark.bench
def test_bench_extract_audio(
    benchmark: Any, url: str, demo: VideoTruth, upload: Any, invoke: Any, request_id: str
) -> None:
    uri = upload(Path(demo.path))

    def call() -> dict[str, Any]:
        return _ok(invoke(url, {"request_id": request_id, "input": {"video": uri}}))

    body = benchmark.pedantic(call, rounds=3, iterations=1)
    assert body["outputs"]["has_audio"] is True
    m = body["metrics"]
    benchmark.extra_info.update(
        peak_rss_bytes=m["peak_rss_bytes"],
        children_peak_rss_bytes=m["children_peak_rss_bytes"],
        wall_s=m["wall_s"],
    )
