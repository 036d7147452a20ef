"""sample-frames (VideoSearcher ffmpeg-3): JPEG frames at t = start, start + interval, ...

Frames are taken by seeking, not by decoding the whole video: for each target time ffmpeg seeks
on the input side (`-ss` before `-i`: to the keyframe before it, then decodes only up to the
target) and writes one picture, several targets per ffmpeg run. With `-copyts` a `metadata`
filter writes each written picture's real timestamp, so the reported times are the times of the
pictures actually written (not the requested ones). Each target takes its nearest frame: the
seek point sits half a frame before it. A window (`start_s`/`end_s`) samples one sentence of a
whole video without a clip being cut first; a window or video shorter than one interval gets its
middle frame, so every clip yields at least one.
"""

from __future__ import annotations

import struct
from pathlib import Path

import ffmpeg
from pydantic import Field, model_validator

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
    #: Sample only this window (seconds in the video's timeline); times stay in that timeline.
    start_s: float | None = Field(None, ge=0.0, le=1e7)
    end_s: float | None = Field(None, gt=0.0, le=1e7)
    #: The input's media facts as its producer probed them (the orchestrator passes
    #: extract-audio's `media`); None: this function probes the input itself.
    media: MediaInfo | None = None

    @model_validator(mode="after")
    def _window(self) -> Config:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


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
    # ffmpeg reads the video over a presigned URL with range requests: each seek fetches the
    # index and the frames it decodes, not the whole object (a download per sentence would
    # move the whole video once per sentence).
    ctx.check_cancelled()
    key = ctx.storage.key_of(event.input.video)
    source = ctx.storage.read_url(key, max_bytes=ctx.settings.max_input_bytes)
    info = media.known_or_probe(ctx.runner, source, cfg.media)
    media.require_duration(info, ctx.settings.max_duration_s)
    if not info.has_video:
        raise BadInput("the input has no video stream to sample frames from", code="no_video")

    # Names carry the fanout (clip index), so the frames of all clips of a request can share
    # one prefix without overwriting each other.
    frames_dir = ctx.scratch(f"frames-{event.fanout or 0:04d}/frame-00000.jpg").parent
    start = cfg.start_s or 0.0
    end = info.duration_s if cfg.end_s is None else min(cfg.end_s, info.duration_s)
    if start >= info.duration_s or end <= start:
        raise BadInput(
            f"window {start:.3f}-{cfg.end_s or info.duration_s:.3f} s lies outside the video "
            f"(0-{info.duration_s:.3f} s)",
            code="window_out_of_range",
        )
    targets = _targets(start, end, cfg.interval_s, cfg.max_frames)
    half = 0.5 / info.fps if info.fps else 0.001
    written, times = [], []
    for first in range(0, len(targets), _PER_RUN):
        ctx.check_cancelled()
        batch = targets[first : first + _PER_RUN]
        outs = [frames_dir / f"frame-{first + i:05d}.jpg" for i in range(len(batch))]
        logs = [ctx.scratch(f"times-{first + i:05d}.txt") for i in range(len(batch))]
        graph = _seek(source, batch, half, outs, logs, cfg)
        media.run(ctx.runner, graph, what="frame sampling")
        for jpg, log_file in zip(outs, logs, strict=True):
            got = _read_times(log_file)
            if jpg.exists() and got:  # a target past the video stream's end writes nothing
                written.append(jpg)
                times.append(got[0])
    if not written:
        # The video stream ends before the first target (e.g. it is shorter than the audio):
        # its first decodable picture is still better than no frame at all.
        times_file = ctx.scratch("frame-times.txt")
        graph = _sample(source, frames_dir, times_file, None, 1, cfg)
        media.run(ctx.runner, graph, what="frame sampling")
        written = sorted(frames_dir.glob("frame-*.jpg"))
        times = _read_times(times_file)
    if not written:
        raise BadInput("the video stream has no decodable frame", code="no_frames")
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


#: Targets per ffmpeg run (one input and one output each): bounds open decoders and argv.
_PER_RUN = 16


def _targets(start: float, end: float, interval_s: float, limit: int) -> list[float]:
    """start, start + interval, ... before end; a window shorter than one interval: its
    middle."""
    if end - start < interval_s:
        return [start + (end - start) / 2]
    count = min(limit, int((end - start) / interval_s - 1e-9) + 1)
    return [start + k * interval_s for k in range(count)]


def _seek(
    source: str,
    targets: list[float],
    half: float,
    outs: list[Path],
    logs: list[Path],
    cfg: Config,
) -> object:
    # The seek point sits half a frame before each target, so each target takes its nearest
    # frame rather than the next one (a 29.97 fps frame at 4.9997 s is the frame "at 5 s").
    # -copyts keeps the video's own timestamps, so the metadata filter prints real times.
    outputs = []
    for target, out, log_file in zip(targets, outs, logs, strict=True):
        out.unlink(missing_ok=True)
        video = ffmpeg.input(source, ss=f"{max(0.0, target - half):.6f}", copyts=None)["v:0"]
        video = video.filter("metadata", mode="add", key=_TAG, value="1")
        video = video.filter("metadata", mode="print", file=str(log_file))
        if cfg.width is not None:
            video = video.filter("scale", w=cfg.width - cfg.width % 2, h=-2)
        outputs.append(ffmpeg.output(video, str(out), **{"frames:v": 1, "q:v": cfg.jpeg_quality}))
    return ffmpeg.merge_outputs(*outputs)


def _sample(
    source: str,
    frames_dir: Path,
    times_file: Path,
    select: str | None,
    limit: int,
    cfg: Config,
) -> object:
    for old in frames_dir.glob("frame-*.jpg"):
        old.unlink()
    video = ffmpeg.input(source)["v:0"]
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
