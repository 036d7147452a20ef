"""transcode-clip: a smaller mp4 that still shows the clip, and a 16 kHz mono WAV of its sound."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from harness.media.generate import (
    Overlay,
    Picture,
    VideoTruth,
    make_audio_only,
    make_speech_video,
    make_video_without_audio,
)

MODULE = "stages.transcode_clip"


@pytest.fixture(scope="module")
def url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> VideoTruth:
    """A 320x240 clip as cut-clips makes them: one sentence, a photo shown for a second."""
    return make_speech_video(
        media_dir / "transcode_clip" / "clip.mp4",
        ["the cat sat on the mat"],
        objects=[Overlay("bus", 0.5, 1.5)],
        picture=Picture(background="testsrc2"),
        reuse=True,
    )


@pytest.fixture(scope="module")
def wide(media_dir: Path) -> VideoTruth:
    picture = Picture(width=640, height=360, background="testsrc2")
    out = media_dir / "transcode_clip" / "wide.mp4"
    return make_speech_video(out, ["a wide picture"], picture=picture, reuse=True)


def _fetch(s3_server: Any, uri: str, dest: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3_server.client().download_file(bucket, key, str(dest))
    return dest


def probe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


def gray_frame(path: Path, t: float, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", f"{t}", "-i", str(path),
         "-frames:v", "1", "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(done.stdout, np.uint8).reshape(h, w).astype(np.float32)


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def _call(invoke: Any, url: str, rid: str, uri: str, fanout: int | None = None, **cfg: Any) -> Any:
    body: dict[str, Any] = {"request_id": rid, "input": {"clip": uri}, "config": cfg}
    if fanout is not None:
        body["fanout"] = fanout
    resp = invoke(url, body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_clip_becomes_mp4_and_16k_mono_wav_with_the_same_content(
    url: str, clip: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    body = _call(invoke, url, request_id, upload(Path(clip.path)), fanout=3)
    assert body["fanout"] == 3
    out = body["outputs"]
    prefix = f"s3://{s3_server.bucket}/requests/{request_id}/transcode-clip/"
    assert out["mp4"] == prefix + "clip-0003.mp4"
    assert out["wav"] == prefix + "clip-0003.wav"
    assert out["has_video"] is True
    assert out["duration_s"] == pytest.approx(clip.duration_s, abs=0.1)

    wav = _fetch(s3_server, out["wav"], tmp_path / "c.wav")
    meta = sf.info(str(wav))
    assert (meta.samplerate, meta.channels, meta.subtype) == (16000, 1, "PCM_16")
    assert meta.duration == pytest.approx(clip.duration_s, abs=0.1)
    x, sr = sf.read(str(wav), dtype="float32")
    s = clip.sentences[0]
    assert db(x[int(s.start_s * sr) : int(s.end_s * sr)]) > -30
    assert db(x[: int((s.start_s - 0.2) * sr)]) < -45
    assert db(x[int((s.end_s + 0.2) * sr) :]) < -45

    mp4 = _fetch(s3_server, out["mp4"], tmp_path / "c.mp4")
    info = probe(mp4)
    v = next(st for st in info["streams"] if st["codec_type"] == "video")
    a = next(st for st in info["streams"] if st["codec_type"] == "audio")
    assert (v["codec_name"], v["pix_fmt"], a["codec_name"]) == ("h264", "yuv420p", "aac")
    assert (v["width"], v["height"]) == (320, 240)  # under max_width 640: never upscaled
    assert float(info["format"]["duration"]) == pytest.approx(clip.duration_s, abs=0.1)
    # The picture survives compression: the photo frame matches the source frame.
    photo_t = (clip.objects[0].start_s + clip.objects[0].end_s) / 2
    got = gray_frame(mp4, photo_t, (320, 240))
    assert float(np.abs(got - gray_frame(Path(clip.path), photo_t, (320, 240))).mean()) < 8
    assert float(np.abs(got - gray_frame(Path(clip.path), 0.1, (320, 240))).mean()) > 20


def test_scales_down_to_max_width_keeping_aspect_and_even_sides(
    url: str, wide: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    uri = upload(Path(wide.path))
    for max_width in (200, 161):
        out = _call(invoke, url, f"{request_id}-{max_width}", uri, max_width=max_width)["outputs"]
        mp4 = _fetch(s3_server, out["mp4"], tmp_path / f"{max_width}.mp4")
        v = next(st for st in probe(mp4)["streams"] if st["codec_type"] == "video")
        w, h = v["width"], v["height"]
        assert w <= max_width and w >= max_width - 1
        assert w % 2 == 0 and h % 2 == 0
        assert w / h == pytest.approx(640 / 360, rel=0.03)
        assert mp4.stat().st_size < Path(wide.path).stat().st_size
        wav = sf.info(str(_fetch(s3_server, out["wav"], tmp_path / f"{max_width}.wav")))
        assert wav.duration == pytest.approx(wide.duration_s, abs=0.1)


def _video_md5(path: Path) -> str:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "md5", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_deliverable_clip_keeps_its_video_stream_no_second_encode(
    url: str, clip: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    # H.264 yuv420p under max_width (what cut-clips makes): the packets go through untouched.
    out = _call(invoke, url, request_id, upload(Path(clip.path)))
    mp4 = _fetch(s3_server, out["outputs"]["mp4"], tmp_path / "copy.mp4")
    assert _video_md5(mp4) == _video_md5(Path(clip.path))
    assert out["metrics"]["children_cpu_s"] < 1.0
    # Asking for a quality re-encodes.
    again = _call(invoke, url, f"{request_id}-crf", upload(Path(clip.path)), crf=30)
    mp4 = _fetch(s3_server, again["outputs"]["mp4"], tmp_path / "crf.mp4")
    assert _video_md5(mp4) != _video_md5(Path(clip.path))


def test_sample_rate_and_compression_are_configurable(
    url: str, wide: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    uri = upload(Path(wide.path))
    lo = _call(invoke, url, f"{request_id}-lo", uri, crf=40, sample_rate=8000)["outputs"]
    hi = _call(invoke, url, f"{request_id}-hi", uri, crf=18)["outputs"]
    lo_mp4, hi_mp4 = (_fetch(s3_server, o["mp4"], tmp_path / f"{n}.mp4") for n, o in
                      (("lo", lo), ("hi", hi)))  # fmt: skip
    assert lo_mp4.stat().st_size < hi_mp4.stat().st_size
    meta = sf.info(str(_fetch(s3_server, lo["wav"], tmp_path / "lo.wav")))
    assert (meta.samplerate, meta.channels) == (8000, 1)
    assert meta.duration == pytest.approx(wide.duration_s, abs=0.1)


def test_audio_only_clip(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    truth = make_audio_only(media_dir / "transcode_clip" / "a.m4a", ["no picture"], reuse=True)
    out = _call(invoke, url, request_id, upload(Path(truth.path)))["outputs"]
    assert out["has_video"] is False
    mp4 = _fetch(s3_server, out["mp4"], tmp_path / "a.mp4")
    assert [s["codec_type"] for s in probe(mp4)["streams"]] == ["audio"]
    x, sr = sf.read(str(_fetch(s3_server, out["wav"], tmp_path / "a.wav")), dtype="float32")
    assert sr == 16000 and len(x) / sr == pytest.approx(truth.duration_s, abs=0.1)
    s = truth.sentences[0]
    assert db(x[int(s.start_s * sr) : int(s.end_s * sr)]) > -30


def test_clip_without_audio_gets_a_silent_wav_of_its_length(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    truth = make_video_without_audio(media_dir / "transcode_clip" / "mute.mp4", 3.0, reuse=True)
    out = _call(invoke, url, request_id, upload(Path(truth.path)))["outputs"]
    assert out["has_video"] is True
    x, sr = sf.read(str(_fetch(s3_server, out["wav"], tmp_path / "m.wav")), dtype="float32")
    assert sr == 16000 and x.ndim == 1
    assert len(x) / sr == pytest.approx(3.0, abs=0.1)
    assert float(np.abs(x).max()) == 0.0
    mp4 = _fetch(s3_server, out["mp4"], tmp_path / "m.mp4")
    assert [s["codec_type"] for s in probe(mp4)["streams"]] == ["video"]


@pytest.mark.bench
def test_bench_transcode_clip(
    benchmark: Any, url: str, clip: VideoTruth, upload: Any, invoke: Any, request_id: str
) -> None:
    uri = upload(Path(clip.path))

    def call() -> dict[str, Any]:
        return _call(invoke, url, request_id, uri)

    body = benchmark.pedantic(call, rounds=3, iterations=1)
    assert body["outputs"]["has_video"] is True
    m = body["metrics"]
    benchmark.extra_info.update(
        peak_rss_bytes=m["peak_rss_bytes"],
        children_peak_rss_bytes=m["children_peak_rss_bytes"],
        wall_s=m["wall_s"],
    )
