"""extract-audio (VideoSearcher ffmpeg-0): probe the input and extract its audio as PCM WAV.

The WAV is what segment-speech and transcribe consume, so it is decoded once here, at the rate
they expect (16 kHz mono s16), instead of by every later stage.
"""

from __future__ import annotations

import ffmpeg
from pydantic import Field

from base import media
from base.contracts import Event, Model, S3Uri
from base.media import MediaInfo
from base.runtime import Context, Function

AUDIO_NAME = "audio.wav"


class Input(Model):
    video: S3Uri


class Config(Model):
    sample_rate: int = Field(16000, ge=8000, le=48000)


class Output(Model):
    video: str
    audio: str | None
    has_audio: bool
    has_video: bool
    media: MediaInfo


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    path = ctx.download(event.input.video)
    info = media.probe(ctx.runner, path)
    media.require_duration(info, ctx.settings.max_duration_s)

    audio_uri: str | None = None
    if info.has_audio:
        wav = ctx.scratch(AUDIO_NAME)
        # The first audio track, explicitly: ffmpeg's own pick is the one with the most channels,
        # which need not be the main one.
        stream = ffmpeg.input(str(path))["a:0"]
        out = ffmpeg.output(
            stream,
            str(wav),
            acodec="pcm_s16le",
            ac=1,
            ar=event.config.sample_rate,
            map_metadata=-1,
            format="wav",
        )
        media.run(ctx.runner, out, what="audio extraction")
        audio_uri = ctx.upload(wav, AUDIO_NAME, content_type="audio/wav")

    return Output(
        video=event.input.video,
        audio=audio_uri,
        has_audio=info.has_audio,
        has_video=info.has_video,
        media=info,
    )


FUNCTION = Function(
    name="extract-audio",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    description="Probe a video and extract its first audio track as mono PCM WAV (16 kHz).",
)
