"""transcode-clip (VideoSearcher ffmpeg-2): package a clip for delivery and decode its audio.

One ffmpeg run with two outputs, so the clip is demuxed and its audio decoded once: an H.264/AAC
mp4 no wider than max_width (what search hands back to the user) and a mono PCM WAV at the
recogniser's rate. A clip that is already deliverable (H.264 yuv420p, even sides, not wider than
max_width: what cut-clips makes when the orchestrator gives it the delivery width) keeps its
video stream as it is (`-c:v copy`): each clip is encoded once, by cut-clips. Setting `crf`
asks for a re-encode at that quality.
"""

from __future__ import annotations

from typing import Literal

import ffmpeg
from pydantic import Field

from base import media
from base.contracts import Event, Model, S3Uri
from base.media import MediaInfo
from base.runtime import Context, Function

Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


DEFAULT_CRF = 28


class Input(Model):
    clip: S3Uri


class Config(Model):
    #: None: keep a deliverable video stream as it is, else encode at DEFAULT_CRF.
    crf: int | None = Field(None, ge=0, le=51)
    preset: Preset = "veryfast"
    max_width: int = Field(640, ge=16, le=7680)
    sample_rate: int = Field(16000, ge=8000, le=48000)
    #: The clip's media facts as cut-clips probed them; None: this function probes the clip.
    media: MediaInfo | None = None


class Output(Model):
    mp4: str
    wav: str
    duration_s: float
    has_video: bool


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    path = ctx.download(event.input.clip)
    info = media.known_or_probe(ctx.runner, path, cfg.media)
    media.require_duration(info, ctx.settings.max_duration_s)

    n = event.fanout or 0
    mp4, wav = ctx.scratch(f"clip-{n:04d}.mp4"), ctx.scratch(f"clip-{n:04d}.wav")
    inp = ffmpeg.input(str(path))
    av: list[object] = []
    mp4_opts: dict[str, object] = {"movflags": "+faststart", "map_metadata": -1}
    if info.has_video and cfg.crf is None and deliverable(info, cfg.max_width):
        av.append(inp["v:0"])
        mp4_opts.update(vcodec="copy")
    elif info.has_video:
        # Never upscale; both sides even (yuv420p), height following the aspect ratio.
        max_w = cfg.max_width - cfg.max_width % 2
        av.append(inp["v:0"].filter("scale", w=f"2*trunc(min(iw,{max_w})/2)", h=-2))
        crf = DEFAULT_CRF if cfg.crf is None else cfg.crf
        mp4_opts.update(vcodec="libx264", preset=cfg.preset, crf=crf, pix_fmt="yuv420p")
    if info.has_audio:
        av.append(inp["a:0"])
        mp4_opts.update(acodec="aac", **{"b:a": "96k"})
        audio = inp["a:0"]
    else:
        # A clip without sound still gets a WAV (silence of the same length), so transcribe
        # needs no special case and simply finds no words.
        audio = ffmpeg.input("anullsrc", f="lavfi", t=f"{info.duration_s:.6f}")["a"]
    wav_opts = {"acodec": "pcm_s16le", "ac": 1, "ar": cfg.sample_rate, "format": "wav"}
    graph = ffmpeg.merge_outputs(
        ffmpeg.output(*av, str(mp4), **mp4_opts),
        ffmpeg.output(audio, str(wav), map_metadata=-1, **wav_opts),
    )
    media.run(ctx.runner, graph, what="clip transcode")

    # The movie header says how long the mp4 is; a probe only where it cannot be read.
    duration = media.mp4_duration(mp4) or media.probe(ctx.runner, mp4).duration_s
    mp4_uri = ctx.upload(mp4, mp4.name, content_type="video/mp4")
    wav_uri = ctx.upload(wav, wav.name, content_type="audio/wav")
    return Output(mp4=mp4_uri, wav=wav_uri, duration_s=duration, has_video=info.has_video)


def deliverable(info: media.MediaInfo, max_width: int) -> bool:
    """Whether the video stream can go to the user as it is (no second encode)."""
    w, h = info.width or 0, info.height or 0
    return (
        info.video_codec == "h264"
        and info.pix_fmt == "yuv420p"
        and info.rotation == 0
        and 0 < w <= max_width
        and w % 2 == 0
        and h % 2 == 0
    )


FUNCTION = Function(
    name="transcode-clip",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    description="Compress a clip to a small H.264 mp4 (max_width) and decode a 16 kHz mono WAV.",
)
