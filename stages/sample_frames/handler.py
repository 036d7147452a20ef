"""sample-frames (VideoSearcher ffmpeg-3): JPEG frames at t = 0, interval, 2*interval, ...

One decoding pass: a `select` filter keeps the frame nearest each target time and a `metadata`
filter writes the kept frames' real timestamps to a file, so the reported times are the times of
the pictures actually written (not the requested ones), also for variable-frame-rate input.
A video shorter than one interval gets its middle frame, so every clip yields at least one.
"""

from __future__ import annotations

import struct
from pathlib import Path

import ffmpeg
from pydantic import Field

from base import media
from base.contracts import Event, Model, S3Uri
from base.errors import BadInput
from base.media import MediaInfo
from base.runtime import Context, Function

#: Tag the metadata filter attaches, only so that its print mode has something to print.
_TAG = "vsearch.sampled"


class Input(Model):
    video: S3Uri


class Config(Model):
    interval_s: float = Field(5.0, gt=0, le=86_400)
    time_offset_s: float = Field(0.0, ge=0)
    max_frames: int = Field(500, ge=1, le=10_000)
    width: int | None = Field(None, ge=16, le=7680)
    jpeg_quality: int = Field(4, ge=2, le=31)


class Frame(Model):
    index: int
    time_s: float
    uri: str
    width: int
    height: int


class Output(Model):
    frames: list[Frame]


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    path = ctx.download(event.input.video)
    info = media.probe(ctx.runner, path)
    media.require_duration(info, ctx.settings.max_duration_s)
    if not info.has_video:
        raise BadInput("the input has no video stream to sample frames from", code="no_video")

    # Names carry the fanout (clip index), so the frames of all clips of a request can share
    # one prefix without overwriting each other.
    frames_dir = ctx.scratch(f"frames-{event.fanout or 0:04d}/frame-00000.jpg").parent
    times_file = ctx.scratch("frame-times.txt")
    first, step = _grid(info, cfg.interval_s)
    select = _select_expr(first, step, info.fps)
    limit = cfg.max_frames if step else 1
    graph = _sample(path, frames_dir, times_file, select, limit, cfg)
    media.run(ctx.runner, graph, what="frame sampling")
    written = sorted(frames_dir.glob("frame-*.jpg"))
    if not written:
        # The video stream ends before the first target (e.g. it is shorter than the audio):
        # its first decodable picture is still better than no frame at all.
        graph = _sample(path, frames_dir, times_file, None, 1, cfg)
        media.run(ctx.runner, graph, what="frame sampling")
        written = sorted(frames_dir.glob("frame-*.jpg"))
    if not written:
        raise BadInput("the video stream has no decodable frame", code="no_frames")
    times = _read_times(times_file)
    if len(times) < len(written):
        raise RuntimeError(f"ffmpeg reported {len(times)} frame times for {len(written)} frames")

    frames: list[Frame] = []
    for i, (jpg, t) in enumerate(zip(written, times, strict=False)):
        width, height = jpeg_size(jpg)
        name = f"{frames_dir.name}/frame-{i:05d}.jpg"
        uri = ctx.upload(jpg, name, content_type="image/jpeg")
        frames.append(
            Frame(
                index=i,
                time_s=round(t + cfg.time_offset_s, 4),
                uri=uri,
                width=width,
                height=height,
            )
        )
    return Output(frames=frames)


def _grid(info: MediaInfo, interval_s: float) -> tuple[float, float]:
    """First target time and step; step 0 means a single frame."""
    if info.duration_s < interval_s:
        return info.duration_s / 2, 0.0
    return 0.0, interval_s


def _select_expr(first: float, step: float, fps: float | None) -> str:
    # Boundaries sit half a frame before each target, so each target takes its nearest frame
    # rather than the next one (a 29.97 fps frame at 4.9997 s is the frame "at 5 s").
    half = 0.5 / fps if fps else 0.001
    t0 = f"{first - half:.6f}"
    if not step:
        return f"gte(t,{t0})*isnan(prev_selected_t)"
    bucket = f"floor((t-{t0})/{step:.6f})"
    prev_bucket = f"floor((prev_selected_t-{t0})/{step:.6f})"
    return f"gte(t,{t0})*if(isnan(prev_selected_t),1,gt({bucket},{prev_bucket}))"


def _sample(
    path: Path,
    frames_dir: Path,
    times_file: Path,
    select: str | None,
    limit: int,
    cfg: Config,
) -> object:
    for old in frames_dir.glob("frame-*.jpg"):
        old.unlink()
    video = ffmpeg.input(str(path))["v:0"]
    if select is not None:
        video = video.filter("select", select)
    video = video.filter("metadata", mode="add", key=_TAG, value="1")
    video = video.filter("metadata", mode="print", file=str(times_file))
    if cfg.width is not None:
        video = video.filter("scale", w=cfg.width - cfg.width % 2, h=-2)
    return ffmpeg.output(
        video,
        str(frames_dir / "frame-%05d.jpg"),
        fps_mode="vfr",
        start_number=0,
        **{"frames:v": limit, "q:v": cfg.jpeg_quality},
    )


def _read_times(path: Path) -> list[float]:
    """pts_time of each frame from the metadata filter's print file, in output order."""
    times: list[float] = []
    if not path.exists():
        return times
    for line in path.read_text().splitlines():
        if line.startswith("frame:") and "pts_time:" in line:
            value = line.rsplit("pts_time:", 1)[1].strip()
            try:
                times.append(float(value))
            except ValueError:
                continue
    return times


def jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header, without decoding the picture."""
    with path.open("rb") as f:
        if f.read(2) != b"\xff\xd8":
            raise RuntimeError(f"{path.name} is not a JPEG")
        while True:
            marker = f.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                break
            if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                continue  # markers without a length field
            (length,) = struct.unpack(">H", f.read(2))
            # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
            if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">xHH", f.read(5))
                return width, height
            f.seek(length - 2, 1)
    raise RuntimeError(f"{path.name} has no JPEG frame header")


FUNCTION = Function(
    name="sample-frames",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    description="Sample JPEG frames of a video every interval_s seconds (at least one).",
)
