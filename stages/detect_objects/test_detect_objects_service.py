"""detect-objects as deployed: a real function process, frames in a real S3, known content."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.embedded.function_process import FunctionProcess, FunctionStartError
from stages.detect_objects.conftest import MODULE, PersonVideo, labels_of, ok_outputs

Invoke = Callable[..., httpx.Response]
Refs = Callable[..., list[dict[str, Any]]]


def test_person_found_only_in_the_frames_that_show_the_photo(
    detect_url: str, invoke: Invoke, request_id: str, person_video: PersonVideo, frame_refs: Refs
) -> None:
    times = [t for t, _ in person_video.frames]
    frames = frame_refs([p for _, p in person_video.frames], times)
    # Frame indices as a later clip would number them: they must come back unchanged.
    for ref in frames:
        ref["index"] += 100
    out = ok_outputs(invoke(detect_url, {"request_id": request_id, "input": {"frames": frames}}))
    assert out["model"] == "yolov4-tiny"
    assert [(f["index"], f["time_s"], f["uri"]) for f in out["frames"]] == [
        (r["index"], r["time_s"], r["uri"]) for r in frames
    ]
    assert {(f["width"], f["height"]) for f in out["frames"]} == {(320, 240)}

    start, end = person_video.span
    with_person = [f["time_s"] for f in out["frames"] if "person" in labels_of(f)]
    assert with_person == [t for t in times if start <= t <= end]
    for f in out["frames"]:
        if start <= f["time_s"] <= end:
            person = max(
                (o for o in f["objects"] if o["label"] == "person"), key=lambda o: o["score"]
            )
            assert person["score"] >= 0.5
            x1, y1, x2, y2 = person["box"]
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
            # The photo (16:9, 95% of the width) is centred: Zidane is in its right half.
            assert (x1 + x2) / 2 > 160
        for o in f["objects"]:
            assert o["class_id"] >= 0 and 0.25 <= o["score"] <= 1


def test_sample_photos_in_one_batch(
    detect_url: str, invoke: Invoke, request_id: str, photo: Callable[[str], Path], frame_refs: Refs
) -> None:
    frames = frame_refs([photo("zidane"), photo("bus")], [3.0, 8.5])
    out = ok_outputs(invoke(detect_url, {"request_id": request_id, "input": {"frames": frames}}))
    zidane, bus = out["frames"]
    assert (zidane["width"], zidane["height"]) == (1280, 720)
    assert (bus["width"], bus["height"]) == (810, 1080)
    assert "person" in labels_of(zidane, 0.5)
    assert {"bus", "person"} <= labels_of(bus, 0.5)
    for f in (zidane, bus):
        scores = [o["score"] for o in f["objects"]]
        assert scores == sorted(scores, reverse=True)
        for o in f["objects"]:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= f["width"] and 0 <= y1 < y2 <= f["height"]


def test_config_knobs_change_the_result(
    detect_url: str, invoke: Invoke, request_id: str, photo: Callable[[str], Path], frame_refs: Refs
) -> None:
    frames = frame_refs([photo("bus"), photo("zidane")])

    def run(config: dict[str, Any]) -> list[dict[str, Any]]:
        body = {"request_id": request_id, "input": {"frames": frames}, "config": config}
        return ok_outputs(invoke(detect_url, body))["frames"]

    only_bus = run({"labels": ["bus"]})
    assert labels_of(only_bus[0]) == {"bus"} and only_bus[1]["objects"] == []
    strict = run({"score_threshold": 0.9})
    assert all(o["score"] >= 0.9 for f in strict for o in f["objects"])
    assert labels_of(strict[0]) == {"person"} and strict[1]["objects"] == []
    assert len(run({"max_objects": 1})[0]["objects"]) == 1
    # At 608 the network also sees the man on the left of zidane.jpg.
    wide = run({"input_size": 608, "labels": ["person"], "score_threshold": 0.5})[1]
    assert sorted((o["box"][0] + o["box"][2]) / 2 > 640 for o in wide["objects"]) == [False, True]


def test_frames_of_different_clips_with_the_same_name_stay_apart(
    detect_url: str,
    invoke: Invoke,
    request_id: str,
    photo: Callable[[str], Path],
    plain_frames: dict[str, Path],
    upload: Callable[..., str],
) -> None:
    # sample-frames writes frames-NNNN/frame-00000.jpg for every clip.
    prefix = f"requests/{request_id}/sample-frames"
    frames = [
        {"uri": upload(plain_frames["solid"], f"{prefix}/frames-0000/frame-00000.jpg"),
         "time_s": 0.0, "index": 0, "width": 320, "height": 240},
        {"uri": upload(photo("zidane"), f"{prefix}/frames-0001/frame-00000.jpg"),
         "time_s": 5.0, "index": 0, "width": 1280, "height": 720},
    ]  # fmt: skip
    out = ok_outputs(invoke(detect_url, {"request_id": request_id, "input": {"frames": frames}}))
    assert out["frames"][0]["objects"] == []
    assert "person" in labels_of(out["frames"][1], 0.5)


def test_a_bad_model_dir_stops_the_function_at_start(
    s3_server: Any, tmp_path: Path, photo: Callable[[str], Path]
) -> None:
    env = {**s3_server.env(), "YOLO_MODEL_DIR": str(tmp_path / "nowhere")}
    proc = FunctionProcess(MODULE, env, log_path=tmp_path / "fn.log").start()
    try:
        with pytest.raises(FunctionStartError, match=r"lacks yolov4-tiny\.cfg"):
            proc.wait_ready(timeout_s=60)
    finally:
        proc.stop()


@pytest.mark.bench
def test_bench_detect_frames(
    benchmark: Any,
    detect_url: str,
    invoke: Invoke,
    person_video: PersonVideo,
    frame_refs: Refs,
) -> None:
    frames = frame_refs([p for _, p in person_video.frames], [t for t, _ in person_video.frames])

    def call() -> dict[str, Any]:
        body = {"request_id": f"b-{uuid.uuid4().hex[:12]}", "input": {"frames": frames}}
        response = invoke(detect_url, body)
        ok_outputs(response)
        return response.json()["metrics"]

    metrics = benchmark.pedantic(call, rounds=3, iterations=1)
    benchmark.extra_info["frames"] = len(frames)
    benchmark.extra_info["input_size"] = 416
    benchmark.extra_info["wall_s"] = metrics["wall_s"]
    benchmark.extra_info["wall_s_per_frame"] = metrics["wall_s"] / len(frames)
    benchmark.extra_info["compute_s"] = metrics["compute_s"]
    benchmark.extra_info["peak_rss_bytes"] = metrics["peak_rss_bytes"]
    benchmark.extra_info["children_peak_rss_bytes"] = metrics["children_peak_rss_bytes"]
    assert metrics["peak_rss_bytes"] < 768 << 20  # the declared memory limit
