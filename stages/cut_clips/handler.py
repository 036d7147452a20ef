"""cut-clips (VideoSearcher ffmpeg-1): cut one clip per speech segment, frame-accurately.

Stream copy (`-ss A -to B -c copy`) can only start a clip on a keyframe, so clips would begin up
to a GOP early and carry other speech; every clip is therefore re-encoded (libx264 + AAC). The
seek is on the input side: ffmpeg jumps to the keyframe before A and decodes (but drops) the
frames up to A, which is exact and far cheaper than decoding the whole video per clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import ffmpeg
from pydantic import Field, field_validator, model_validator

from base import media
from base.contracts import Event, Model, S3Uri
from base.errors import BadInput
from base.media import MediaInfo
from base.runtime import Context, Function

MAX_SEGMENTS = 500
#: A segment may end a little after the probed duration (rounding in segment-speech).
END_SLACK_S = 0.5

Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


class Segment(Model):
    index: int = Field(ge=0, le=999_999)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.end_s <= self.start_s:
            raise ValueError(f"segment {self.index}: end_s must be after start_s")
        return self


class Input(Model):
    video: S3Uri


class Config(Model):
    segments: list[Segment] = Field(max_length=MAX_SEGMENTS)
    video_codec: Literal["libx264"] = "libx264"
    preset: Preset = "veryfast"
    crf: int = Field(23, ge=0, le=51)
    #: Scale down to at most this width (never up); None keeps the source size. The
    #: orchestrator passes the delivery width, so this is the clip's only encode.
    max_width: int | None = Field(None, ge=16, le=7680)
    #: The input's media facts as its producer probed them (the orchestrator passes
    #: extract-audio's `media`); None: this function probes the input itself.
    media: MediaInfo | None = None

    @field_validator("segments")
    @classmethod
    def _unique(cls, segments: list[Segment]) -> list[Segment]:
        # Clip names come from the index; two equal indexes would overwrite each other.
        seen = [s.index for s in segments]
        if len(set(seen)) != len(seen):
            raise ValueError("segment indexes must be unique")
        return segments


class Clip(Model):
    index: int
    start_s: float
    end_s: float
    uri: str
    duration_s: float
    #: The clip's own facts (what transcode-clip needs, so it need not probe the clip again).
    media: MediaInfo | None = None


class Output(Model):
    clips: list[Clip]


def clip_name(index: int) -> str:
    return f"clip-{index:04d}.mp4"


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    if not cfg.segments:
        # No speech means no clips; validate the URI but skip the download.
        ctx.storage.key_of(event.input.video)
        return Output(clips=[])
    path = ctx.download(event.input.video)
    info = media.known_or_probe(ctx.runner, path, cfg.media)
    media.require_duration(info, ctx.settings.max_duration_s)
    for seg in cfg.segments:
        if seg.start_s >= info.duration_s or seg.end_s > info.duration_s + END_SLACK_S:
            raise BadInput(
                f"segment {seg.index} ({seg.start_s:.3f}-{seg.end_s:.3f} s) lies outside the "
                f"media (0-{info.duration_s:.3f} s)",
                code="segment_out_of_range",
            )

    clips: list[Clip] = []
    for seg in cfg.segments:
        ctx.check_cancelled()
        start, end = seg.start_s, min(seg.end_s, info.duration_s)
        out = ctx.scratch(clip_name(seg.index))
        graph = _cut(str(path), str(out), start, end, info, cfg)
        media.run(ctx.runner, graph, what="clip cut")
        made = _clip_facts(ctx, out, info)
        uri = ctx.upload(out, clip_name(seg.index), content_type="video/mp4")
        out.unlink(missing_ok=True)  # scratch stays small however many clips there are
        clips.append(
            Clip(
                index=seg.index,
                start_s=start,
                end_s=end,
                uri=uri,
                duration_s=made.duration_s,
                media=made,
            )
        )
    return Output(clips=clips)


def _clip_facts(ctx: Context, out: Path, source: MediaInfo) -> MediaInfo:
    """The clip's facts without an ffprobe run (~50 ms of CPU each): its length and coded size
    from its own mp4 headers, the rest as this function made it (H.264 yuv420p, upright, the
    source's streams and audio format). A clip whose headers cannot be read is probed."""
    duration = media.mp4_duration(out)
    size = media.mp4_video_size(out) if source.has_video else None
    if duration is None or (source.has_video and size is None):
        return media.probe(ctx.runner, out)
    width, height = size if size is not None else (None, None)
    return MediaInfo(
        duration_s=duration,
        has_audio=source.has_audio,
        has_video=source.has_video,
        width=width,
        height=height,
        fps=source.fps if source.has_video else None,
        video_codec="h264" if source.has_video else None,
        pix_fmt="yuv420p" if source.has_video else None,
        audio_sample_rate=source.audio_sample_rate if source.has_audio else None,
        audio_channels=source.audio_channels if source.has_audio else None,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=out.stat().st_size,
    )


def _cut(src: str, dest: str, start: float, end: float, info: MediaInfo, cfg: Config) -> object:
    # -ss before -i seeks (fast, and exact when re-encoding); -t on the output side, because
    # on the input side it also keeps the frame straddling the start and the clip runs a frame
    # or two long.
    inp = ffmpeg.input(src, ss=f"{start:.6f}")
    streams = []
    options: dict[str, object] = {
        "t": f"{end - start:.6f}",
        "movflags": "+faststart",
        "map_metadata": -1,
    }
    if info.has_video:
        video = inp["v:0"]
        if cfg.max_width is not None and (info.width or 0) > cfg.max_width:
            # Never upscale; both sides even (yuv420p), height following the aspect ratio.
            max_w = cfg.max_width - cfg.max_width % 2
            video = video.filter("scale", w=max_w, h=-2)
        elif (info.width or 0) % 2 or (info.height or 0) % 2:
            # yuv420p needs even dimensions; drop the odd last row/column.
            video = video.filter("crop", "trunc(iw/2)*2", "trunc(ih/2)*2")
        streams.append(video)
        options.update(vcodec=cfg.video_codec, preset=cfg.preset, crf=cfg.crf, pix_fmt="yuv420p")
    if info.has_audio:
        streams.append(inp["a:0"])
        options.update(acodec="aac")
    return ffmpeg.output(*streams, dest, **options)


FUNCTION = Function(
    name="cut-clips",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    description="Cut frame-accurate H.264/AAC clips of a video, one per speech segment.",
)
