"""cut-clips: each clip is exactly its segment (time, sound and picture), checked on real media."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.media.generate import VideoTruth, demo_video, make_audio_only

MODULE = "stages.cut_clips"
W, H = 320, 240
BACKGROUND = 0x30  # the generator's plain background (0x303030)


@pytest.fixture(scope="module")
def demo(media_dir: Path) -> VideoTruth:
    return demo_video(media_dir / "demo")


@pytest.fixture(scope="module")
def url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="module")
def demo_uri(demo: VideoTruth, upload: Callable[[Path], str]) -> str:
    return upload(Path(demo.path))


def _fetch(s3_server: Any, uri: str, dest: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3_server.client().download_file(bucket, key, str(dest))
    return dest


def _ffmpeg_out(*args: str) -> bytes:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *args, "-"],
        capture_output=True,
        check=True,
    )
    return done.stdout


def frame_at(path: Path, t: float) -> np.ndarray:
    """The grey picture shown at time t (accurate input seek), as a HxW float array."""
    raw = _ffmpeg_out("-ss", f"{t:.4f}", "-i", str(path), "-frames:v", "1",
                      "-f", "rawvideo", "-pix_fmt", "gray")  # fmt: skip
    return np.frombuffer(raw, np.uint8).reshape(H, W).astype(np.float32)


def audio_of(path: Path) -> np.ndarray:
    raw = _ffmpeg_out("-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                      "-f", "f32le")  # fmt: skip
    return np.frombuffer(raw, np.float32)


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def span_db(x: np.ndarray, a: float, b: float) -> float:
    return db(x[int(a * 16000) : int(b * 16000)])


def probe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


def _ok(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    return body


def _body(request_id: str, uri: str, segments: list[Any], **config: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "input": {"video": uri},
        "config": {"segments": segments, **config},
    }


def shows_photo(frame: np.ndarray) -> bool:
    # The plain background is one flat grey; the overlaid photo fills 95% of the frame.
    return float(frame.std()) > 25 or abs(float(frame.mean()) - BACKGROUND) > 20


def test_clips_are_frame_accurate_in_time_sound_and_picture(
    url: str, demo: VideoTruth, demo_uri: str, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    s1, s2, _ = demo.sentences
    photo = demo.objects[0]  # person photo, 5-10 s
    segments = [
        {"index": 0, "start_s": 0.8, "end_s": 3.9},  # sentence 1, no photo
        {"index": 3, "start_s": 4.5, "end_s": 9.2},  # photo from 5.0 s, sentence 2
        {"index": 7, "start_s": 15.5, "end_s": 18.0},  # silence, no photo
        {"index": 9, "start_s": 3.0, "end_s": 4.5},  # the tail of sentence 1, then silence
    ]
    body = _ok(invoke(url, _body(request_id, demo_uri, segments)))
    clips = {c["index"]: c for c in body["outputs"]["clips"]}
    assert sorted(clips) == [0, 3, 7, 9]
    files: dict[int, Path] = {}
    for seg in segments:
        clip = clips[seg["index"]]
        name = f"clip-{seg['index']:04d}.mp4"
        assert clip["uri"] == f"s3://{s3_server.bucket}/requests/{request_id}/cut-clips/{name}"
        assert (clip["start_s"], clip["end_s"]) == (seg["start_s"], seg["end_s"])
        files[seg["index"]] = path = _fetch(s3_server, clip["uri"], tmp_path / name)
        info = probe(path)
        want = seg["end_s"] - seg["start_s"]
        assert float(info["format"]["duration"]) == pytest.approx(want, abs=0.1)
        assert clip["duration_s"] == pytest.approx(want, abs=0.1)
        v = next(s for s in info["streams"] if s["codec_type"] == "video")
        a = next(s for s in info["streams"] if s["codec_type"] == "audio")
        assert (v["codec_name"], a["codec_name"]) == ("h264", "aac")
        assert (v["width"], v["height"]) == (W, H)
        assert float(v["duration"]) == pytest.approx(want, abs=0.1)
        assert float(a["duration"]) == pytest.approx(want, abs=0.1)
        # The clip's facts (read from its mp4 headers, not probed) are what ffprobe says.
        facts = clip["media"]
        assert (facts["video_codec"], facts["pix_fmt"], facts["rotation"]) == (
            "h264",
            v["pix_fmt"],
            0,
        )
        assert (facts["width"], facts["height"]) == (v["width"], v["height"])
        assert facts["duration_s"] == pytest.approx(float(info["format"]["duration"]), abs=0.002)
        assert facts["has_audio"] and facts["has_video"]

    # Sound: speech clips are loud, the silent one is at the noise floor, and the boundary clip
    # turns quiet exactly where sentence 1 ends (3.6 s in the source = 0.6 s into the clip).
    x0 = audio_of(files[0])
    assert span_db(x0, s1.start_s - 0.8, s1.end_s - 0.8) > -30
    assert span_db(audio_of(files[7]), 0.1, 2.4) < -45
    x3 = audio_of(files[3])
    assert span_db(x3, s2.start_s - 4.5, s2.end_s - 4.5) > -30
    assert span_db(x3, 0.1, s2.start_s - 4.5 - 0.3) < -45
    x9 = audio_of(files[9])
    tail = s1.end_s - 3.0
    assert span_db(x9, 0.05, tail - 0.1) > -30
    assert span_db(x9, tail + 0.15, 1.45) < -45

    # Picture: the photo appears 0.5 s into clip 3 (5.0 s in the source). A keyframe-snapped cut
    # would start at the 4.0 s keyframe and still show background at 0.79 s.
    src = Path(demo.path)
    offset = 4.5
    before, after = 0.29, photo.start_s - offset + 0.29
    f_before, f_after = frame_at(files[3], before), frame_at(files[3], after)
    assert not shows_photo(f_before)
    assert shows_photo(f_after)
    # Same picture as the source at the same original time, and unlike the background.
    for r, frame in ((before, f_before), (after, f_after)):
        same = frame_at(src, offset + r)
        assert float(np.abs(frame - same).mean()) < 6, r
    assert float(np.abs(f_after - f_before).mean()) > 15
    assert not any(shows_photo(frame_at(files[0], r)) for r in (0.1, 1.5, 3.0))
    assert not shows_photo(frame_at(files[7], 1.0))


def test_max_width_scales_the_one_encode_down_never_up(
    url: str, demo_uri: str, invoke: Any, request_id: str, s3_server: Any, tmp_path: Path
) -> None:
    segments = [{"index": 1, "start_s": 6.0, "end_s": 9.0}]
    for max_width, want in ((161, (160, 120)), (640, (W, H))):
        rid = f"{request_id}-{max_width}"
        body = _ok(invoke(url, _body(rid, demo_uri, segments, max_width=max_width)))
        (clip,) = body["outputs"]["clips"]
        info = probe(_fetch(s3_server, clip["uri"], tmp_path / f"{max_width}.mp4"))
        v = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert (v["width"], v["height"], v["pix_fmt"]) == (*want, "yuv420p")
        assert (clip["media"]["width"], clip["media"]["height"]) == want
        assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.1)


def test_audio_only_input_gives_audio_clips(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    truth = make_audio_only(
        media_dir / "cut_clips" / "speech.m4a", ["a podcast has no picture at all"], reuse=True
    )
    s = truth.sentences[0]
    seg = {"index": 0, "start_s": s.start_s - 0.2, "end_s": s.end_s + 0.2}
    body = _ok(invoke(url, _body(request_id, upload(Path(truth.path)), [seg])))
    (clip,) = body["outputs"]["clips"]
    path = _fetch(s3_server, clip["uri"], tmp_path / "c.mp4")
    info = probe(path)
    assert [st["codec_type"] for st in info["streams"]] == ["audio"]
    want = seg["end_s"] - seg["start_s"]
    assert float(info["format"]["duration"]) == pytest.approx(want, abs=0.1)
    x = audio_of(path)
    assert span_db(x, 0.25, s.end_s - s.start_s) > -30


def test_no_segments_means_no_clips(url: str, demo_uri: str, invoke: Any, request_id: str) -> None:
    body = _ok(invoke(url, _body(request_id, demo_uri, [])))
    assert body["outputs"] == {"clips": []}


@pytest.mark.parametrize(
    ("segments", "status", "code"),
    [
        ([{"index": 0, "start_s": 30.0, "end_s": 31.0}], 422, "segment_out_of_range"),
        ([{"index": 0, "start_s": 2.0, "end_s": 1.0}], 400, "invalid_request"),
        ([{"index": 0, "start_s": -1.0, "end_s": 1.0}], 400, "invalid_request"),
        (
            [{"index": 1, "start_s": 1, "end_s": 2}, {"index": 1, "start_s": 3, "end_s": 4}],
            400,
            "invalid_request",
        ),
        ([{"index": i, "start_s": 0, "end_s": 1} for i in range(501)], 400, "invalid_request"),
    ],
    ids=["beyond-end", "reversed", "negative", "duplicate-index", "too-many"],
)
def test_bad_segments_are_refused(
    url: str, demo_uri: str, invoke: Any, request_id: str, segments: list[Any], status: int,
    code: str,
) -> None:  # fmt: skip
    resp = invoke(url, _body(request_id, demo_uri, segments))
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code


@pytest.mark.bench
def test_bench_cut_clips(
    benchmark: Any, url: str, demo: VideoTruth, demo_uri: str, invoke: Any, request_id: str
) -> None:
    segments = [
        {"index": i, "start_s": max(0.0, s.start_s - 0.25), "end_s": s.end_s + 0.25}
        for i, s in enumerate(demo.sentences)
    ]
    body_in = _body(request_id, demo_uri, segments)

    def call() -> dict[str, Any]:
        return _ok(invoke(url, body_in))

    body = benchmark.pedantic(call, rounds=3, iterations=1)
    assert len(body["outputs"]["clips"]) == 3
    m = body["metrics"]
    benchmark.extra_info.update(
        peak_rss_bytes=m["peak_rss_bytes"],
        children_peak_rss_bytes=m["children_peak_rss_bytes"],
        wall_s=m["wall_s"],
    )
