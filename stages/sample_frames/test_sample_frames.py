"""sample-frames: the right number of frames, at the right times, showing the right pictures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from harness.media.generate import (
    DEFAULT_PHOTO_FILL,
    Overlay,
    VideoTruth,
    demo_video,
    get_photo,
    make_audio_only,
    make_silent_video,
    make_video_without_audio,
)

MODULE = "stages.sample_frames"
W, H, FPS = 320, 240, 12
BACKGROUND = 0x30  # the generator's plain background (0x303030)
FRAME_TOL = 0.5 / FPS + 1e-3  # a reported time is the real time of the frame nearest the target


@pytest.fixture(scope="module")
def url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="module")
def twenty(media_dir: Path) -> VideoTruth:
    """20 s, the bus photo shown only around 10 s."""
    out = media_dir / "sample_frames" / "twenty.mp4"
    return make_silent_video(out, 20.0, objects=[Overlay("bus", 9.0, 11.0)], reuse=True)


def _call(invoke: Any, url: str, rid: str, uri: str, fanout: int | None = None, **cfg: Any) -> Any:
    body: dict[str, Any] = {"request_id": rid, "input": {"video": uri}, "config": cfg}
    if fanout is not None:
        body["fanout"] = fanout
    resp = invoke(url, body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _jpeg(s3_server: Any, uri: str) -> np.ndarray:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    data = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert data[:2] == b"\xff\xd8"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img is not None
    return img.astype(np.float32)


def _photo_box(name: str) -> tuple[int, int, int, int]:
    """Where the generator puts a photo: fitted into 95% of the frame, centred."""
    ph = cv2.imread(str(get_photo(name).path))
    bw, bh = int(W * DEFAULT_PHOTO_FILL), int(H * DEFAULT_PHOTO_FILL)
    scale = min(bw / ph.shape[1], bh / ph.shape[0])
    w, h = round(ph.shape[1] * scale), round(ph.shape[0] * scale)
    return (W - w) // 2, (H - h) // 2, w, h


def photo_similarity(frame: np.ndarray, name: str) -> float:
    """Correlation of the frame's photo region with the photo itself (1 = same picture)."""
    x, y, w, h = _photo_box(name)
    ph = cv2.imread(str(get_photo(name).path), cv2.IMREAD_GRAYSCALE)
    ph = cv2.resize(ph, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    # The inner 80% only: the box edges may be off by a pixel or two after rounding.
    mx, my = w // 10, h // 10
    a = frame[y + my : y + h - my, x + mx : x + w - mx].ravel()
    b = ph[my : h - my, mx : w - mx].ravel()
    if a.std() < 1e-3:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def is_background(frame: np.ndarray) -> bool:
    return abs(float(frame.mean()) - BACKGROUND) < 4 and float(frame.std()) < 4


def test_twenty_seconds_every_five_gives_0_5_10_15_with_the_photo_at_10(
    url: str, twenty: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    body = _call(invoke, url, request_id, upload(Path(twenty.path)), fanout=4)
    frames = body["outputs"]["frames"]
    assert [f["index"] for f in frames] == [0, 1, 2, 3]
    assert [f["time_s"] for f in frames] == pytest.approx([0, 5, 10, 15], abs=FRAME_TOL)
    prefix = f"s3://{s3_server.bucket}/requests/{request_id}/sample-frames/frames-0004/"
    assert [f["uri"] for f in frames] == [f"{prefix}frame-{i:05d}.jpg" for i in range(4)]
    pics = [_jpeg(s3_server, f["uri"]) for f in frames]
    for f, pic in zip(frames, pics, strict=True):
        assert (f["width"], f["height"]) == (W, H) == (pic.shape[1], pic.shape[0])
    # 10 s shows the bus photo (matching the photo itself, and busy where the background is
    # flat); the others are the plain background.
    assert photo_similarity(pics[2], "bus") > 0.8
    x, y, w, h = _photo_box("bus")
    assert float(pics[2][y : y + h, x : x + w].std()) > 25
    assert abs(float(pics[2][:, : x - 2].mean()) - BACKGROUND) < 6  # the margin stays flat
    for i in (0, 1, 3):
        assert is_background(pics[i]), i
        assert photo_similarity(pics[i], "bus") < 0.3


def test_time_offset_is_added_and_max_frames_caps(
    url: str, twenty: VideoTruth, upload: Any, invoke: Any, request_id: str
) -> None:
    uri = upload(Path(twenty.path))
    out = _call(invoke, url, request_id, uri, time_offset_s=100.0, max_frames=2)["outputs"]
    assert [f["time_s"] for f in out["frames"]] == pytest.approx([100, 105], abs=FRAME_TOL)


def test_a_window_of_the_whole_video_is_sampled_at_its_own_times(
    url: str, twenty: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    # What the orchestrator does: one sentence's span of the source video, no clip cut first.
    uri = upload(Path(twenty.path))
    out = _call(invoke, url, request_id, uri, fanout=2, start_s=4.0, end_s=16.0)["outputs"]
    assert [f["time_s"] for f in out["frames"]] == pytest.approx([4, 9, 14], abs=FRAME_TOL)
    (mid,) = _call(invoke, url, request_id + "-m", uri, start_s=8.5, end_s=11.5)["outputs"][
        "frames"
    ]
    assert mid["time_s"] == pytest.approx(10.0, abs=FRAME_TOL)
    assert photo_similarity(_jpeg(s3_server, mid["uri"]), "bus") > 0.8
    for config in ({"start_s": 25.0}, {"start_s": 5.0, "end_s": 4.0}):
        body = {"request_id": request_id + "-x", "input": {"video": uri}, "config": config}
        assert invoke(url, body).status_code in (400, 422)


def test_clip_shorter_than_the_interval_gives_its_middle_frame(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    truth = make_silent_video(
        media_dir / "sample_frames" / "two.mp4", 2.0, objects=[Overlay("zidane", 0.8, 1.2)],
        reuse=True,
    )  # fmt: skip
    out = _call(invoke, url, request_id, upload(Path(truth.path)), time_offset_s=7.5)["outputs"]
    (frame,) = out["frames"]
    assert frame["index"] == 0
    assert frame["time_s"] == pytest.approx(7.5 + 1.0, abs=FRAME_TOL)
    assert photo_similarity(_jpeg(s3_server, frame["uri"]), "zidane") > 0.8


def test_video_without_audio_is_sampled_over_its_whole_length(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str
) -> None:
    truth = make_video_without_audio(media_dir / "sample_frames" / "mute.mp4", 31.0, reuse=True)
    out = _call(invoke, url, request_id, upload(Path(truth.path)))["outputs"]
    times = [f["time_s"] for f in out["frames"]]
    assert times == pytest.approx([0, 5, 10, 15, 20, 25, 30], abs=FRAME_TOL)


def test_demo_at_a_finer_interval_and_smaller_width(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    demo = demo_video(media_dir / "demo")
    uri = upload(Path(demo.path))
    out = _call(invoke, url, request_id, uri, interval_s=2.5, width=160)["outputs"]
    frames = out["frames"]
    assert [f["time_s"] for f in frames] == pytest.approx(
        [2.5 * k for k in range(9)], abs=FRAME_TOL
    )
    assert {(f["width"], f["height"]) for f in frames} == {(160, 120)}
    person = demo.objects[0]
    for f in frames:
        pic = _jpeg(s3_server, f["uri"])
        assert pic.shape == (120, 160)
        big = cv2.resize(pic, (W, H), interpolation=cv2.INTER_LINEAR)
        inside = person.start_s + 0.2 < f["time_s"] < person.end_s - 0.2
        outside = f["time_s"] < person.start_s - 0.2 or f["time_s"] > person.end_s + 0.2
        if inside:
            assert photo_similarity(big, "zidane") > 0.8, f
        elif outside:
            assert is_background(big), f


def test_jpeg_quality_changes_the_size(
    url: str, twenty: VideoTruth, upload: Any, invoke: Any, request_id: str, s3_server: Any
) -> None:
    uri = upload(Path(twenty.path))

    def size_of_photo_frame(q: int) -> int:
        out = _call(invoke, url, f"{request_id}-{q}", uri, jpeg_quality=q)["outputs"]
        bucket, _, key = out["frames"][2]["uri"].removeprefix("s3://").partition("/")
        return int(s3_server.client().head_object(Bucket=bucket, Key=key)["ContentLength"])

    assert size_of_photo_frame(2) > 2 * size_of_photo_frame(31)


def test_audio_only_input_is_422_no_video(
    url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str
) -> None:
    truth = make_audio_only(media_dir / "sample_frames" / "a.m4a", ["nothing to see"], reuse=True)
    resp = invoke(url, {"request_id": request_id, "input": {"video": upload(Path(truth.path))}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "no_video"


@pytest.mark.bench
def test_bench_sample_frames(
    benchmark: Any, url: str, media_dir: Path, upload: Any, invoke: Any, request_id: str
) -> None:
    uri = upload(Path(demo_video(media_dir / "demo").path))

    def call() -> dict[str, Any]:
        return _call(invoke, url, request_id, uri)

    body = benchmark.pedantic(call, rounds=3, iterations=1)
    assert len(body["outputs"]["frames"]) == 5  # 0, 5, 10, 15, 20 of the 22 s demo
    m = body["metrics"]
    benchmark.extra_info.update(
        peak_rss_bytes=m["peak_rss_bytes"],
        children_peak_rss_bytes=m["children_peak_rss_bytes"],
        wall_s=m["wall_s"],
    )
