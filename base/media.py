"""Probing and running ffmpeg for functions, with bad media mapped to clear 4xx errors.

Commands are built with ffmpeg-python and run through the invocation's ProcessRunner, so a
deadline stops them and their peak memory is measured.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg
from pydantic import BaseModel

from base.errors import BadInput, FunctionError, InputTooLarge
from base.processes import Completed, ProcessRunner


class MediaInfo(BaseModel):
    duration_s: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotation: int = 0
    video_codec: str | None = None
    pix_fmt: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    format_name: str = ""
    size_bytes: int = 0


def probe(runner: ProcessRunner, path: Path) -> MediaInfo:
    done = runner.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)]
    )
    if done.returncode != 0:
        tail = _without_paths(done.stderr_tail(300), [str(path)])
        raise BadInput(f"not a readable media file: {tail}", code="not_media")
    try:
        data = json.loads(done.stdout or b"{}")
    except ValueError as exc:
        raise BadInput("ffprobe gave no usable description", code="not_media") from exc
    return parse_probe(data)


def parse_probe(data: dict[str, Any]) -> MediaInfo:
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    # Cover art (an attached picture) is a "video" stream that is not a video.
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video and not audio:
        raise BadInput("the file has neither an audio nor a video stream", code="not_media")
    durations = [_float(fmt.get("duration"))] + [_float(s.get("duration")) for s in streams]
    duration = max((d for d in durations if d), default=0.0)
    if duration <= 0:
        raise BadInput("the media has no measurable duration", code="not_media")
    info = MediaInfo(
        duration_s=duration,
        has_audio=bool(audio),
        has_video=bool(video),
        format_name=str(fmt.get("format_name", "")),
        size_bytes=int(_float(fmt.get("size")) or 0),
    )
    if video:
        v = video[0]
        info.width, info.height = v.get("width"), v.get("height")
        info.fps = _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate"))
        info.rotation = _rotation(v)
        info.video_codec = v.get("codec_name")
        info.pix_fmt = v.get("pix_fmt")
    if audio:
        info.audio_sample_rate = int(_float(audio[0].get("sample_rate")) or 0) or None
        info.audio_channels = audio[0].get("channels")
    return info


def require_duration(info: MediaInfo, max_duration_s: float) -> None:
    if info.duration_s > max_duration_s:
        raise InputTooLarge(
            f"media lasts {info.duration_s:.1f} s, the limit is {max_duration_s:.0f} s",
            code="too_long",
        )


def run(runner: ProcessRunner, stream: Any, *, what: str) -> Completed:
    """Run an ffmpeg-python graph; a failure on the input is the caller's 422, else a 500."""
    args = ffmpeg.compile(stream, cmd="ffmpeg", overwrite_output=True)
    args = [args[0], "-nostdin", "-hide_banner", "-loglevel", "error", *args[1:]]
    done = runner.run(args)
    if done.returncode != 0:
        tail = _without_paths(done.stderr_tail(), args)
        if _looks_like_bad_input(tail):
            raise BadInput(f"{what} failed on the input: {tail}", code="corrupt_media")
        raise FunctionError(f"{what} failed (ffmpeg exit {done.returncode}): {tail}")
    if b"partial file" in done.stderr:
        # The index survived a truncation: ffmpeg stops early, warns, and still exits 0.
        raise BadInput(
            f"{what}: the input is truncated ({_without_paths(done.stderr_tail(200), args)})",
            code="truncated_media",
        )
    return done


def _without_paths(text: str, args: list[str]) -> str:
    """ffmpeg names its files by full path: a caller learns the file's name, not where the
    function keeps its scratch space."""
    for arg in sorted((a for a in args if a.startswith("/")), key=len, reverse=True):
        text = text.replace(arg, Path(arg).name)
    return text


def _looks_like_bad_input(stderr: str) -> bool:
    markers = (
        "Invalid data found",
        "moov atom not found",
        "could not find codec",
        "Error while decoding",
        "does not contain any stream",
        "Output file is empty",
        "End of file",
        "corrupt",
        "truncat",
        "matches no streams",
    )
    return any(m.lower() in stderr.lower() for m in markers)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _rate(text: Any) -> float | None:
    try:
        rate = float(Fraction(str(text)))
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _rotation(stream: dict[str, Any]) -> int:
    tags = stream.get("tags") or {}
    if "rotate" in tags:
        return int(_float(tags["rotate"])) % 360
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(_float(side["rotation"])) % 360
    return 0
