"""Probing and running ffmpeg for functions, with bad media mapped to clear 4xx errors.

Commands are built with ffmpeg-python and run through the invocation's ProcessRunner, so a
deadline stops them and their peak memory is measured.
"""

from __future__ import annotations

import json
import os
import re
import struct
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


def probe(runner: ProcessRunner, path: Path | str) -> MediaInfo:
    """ffprobe a file or a URL (a presigned GET of the object)."""
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


def known_or_probe(runner: ProcessRunner, path: Path | str, known: MediaInfo | None) -> MediaInfo:
    """The facts a caller passed along (the producer of the file probed it already, e.g.
    extract-audio the source video), else a probe. Each ffprobe run costs ~50 ms of CPU, nearly
    all of it its start-up (linking ~200 shared libraries), whatever the file."""
    return known if known is not None else probe(runner, path)


def mp4_duration(path: Path) -> float | None:
    """An MP4/MOV file's duration from its movie header (`moov/mvhd`), read in Python without
    running ffprobe; None when the file has no readable header (the caller then probes)."""
    try:
        with path.open("rb") as f:
            moov = _find_box(f, b"moov", path.stat().st_size)
            if moov is None:
                return None
            mvhd = _find_box(f, b"mvhd", moov)
            if mvhd is None:
                return None
            version = f.read(4)[0]
            if version == 1:
                timescale, duration = struct.unpack(">16xIQ", f.read(28))
            else:
                timescale, duration = struct.unpack(">8xII", f.read(16))
    except (OSError, struct.error, IndexError):
        return None
    return duration / timescale if timescale and duration else None


def mp4_video_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an MP4's first H.264 video track, from its sample description
    (`moov/trak/mdia/minf/stbl/stsd/avc1`), the coded size the encoder wrote; None when there is
    none or it cannot be read."""
    try:
        with path.open("rb") as f:
            moov = _find_box(f, b"moov", path.stat().st_size)
            while moov is not None:
                trak = _find_box(f, b"trak", moov)
                if trak is None:
                    return None
                size = _avc1_size(f, trak)
                if size is not None:
                    return size
                f.seek(trak)
    except (OSError, struct.error):
        return None
    return None


def _avc1_size(f: Any, trak: int) -> tuple[int, int] | None:
    end: int | None = trak
    for kind in (b"mdia", b"minf", b"stbl", b"stsd"):
        end = _find_box(f, kind, end) if end is not None else None
    if end is None:
        return None
    f.seek(8, 1)  # version, flags, entry count
    entry = _find_box(f, b"avc1", end)
    if entry is None:
        return None
    width, height = struct.unpack(">24xHH", f.read(28))
    return (width, height) if width and height else None


def _find_box(f: Any, kind: bytes, end: int) -> int | None:
    """Walk boxes from the current offset up to `end`; leave `f` at the start of the body of
    the first box of `kind` and return where that body ends."""
    while f.tell() + 8 <= end:
        start = f.tell()
        size, found = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", f.read(8))
            header = 16
        elif size == 0:
            size = end - start
        if size < header:
            return None
        if found == kind:
            return start + size
        f.seek(start + size)
    return None


def require_duration(info: MediaInfo, max_duration_s: float) -> None:
    if info.duration_s > max_duration_s:
        raise InputTooLarge(
            f"media lasts {info.duration_s:.1f} s, the limit is {max_duration_s:.0f} s",
            code="too_long",
        )


def run(runner: ProcessRunner, stream: Any, *, what: str) -> Completed:
    """Run an ffmpeg-python graph; a failure on the input is the caller's 422, else a 500."""
    args = ffmpeg.compile(stream, cmd=ffmpeg_binary(), overwrite_output=True)
    args = with_threads(args, _output_files(stream), ffmpeg_threads())
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


#: Threads per decoder and per encoder of every ffmpeg run (unset: ffmpeg's own choice, about
#: one per core). manifests/functions.yaml sets 1 for the ffmpeg functions: their replicas run
#: side by side on few cores, where more threads only add start-up and hand-off work.
THREADS_ENV = "FFMPEG_THREADS"
#: Which ffmpeg runs the stages' graphs: a path or a name on PATH (`ffmpeg`: the system's).
BINARY_ENV = "VSEARCH_FFMPEG"


def ffmpeg_binary() -> str:
    """VSEARCH_FFMPEG (a path, or a name on PATH), else the system's `ffmpeg`.

    Debian's ffmpeg links 215 shared libraries: each start costs 56-79 ms of CPU, 62% of it in
    the dynamic linker's symbol lookup (perf), and a request starts ffmpeg or ffprobe 11 times
    (the README's figures). A static
    build starts in about 1 ms: README, "A static ffmpeg", for the A/B and why it is not the
    default."""
    return os.environ.get(BINARY_ENV, "").strip() or "ffmpeg"


def ffmpeg_threads() -> int | None:
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number, not {value[:20]!r}") from None
    if not 0 <= threads <= 64:
        raise ValueError(f"{THREADS_ENV} must be 0 (auto) to 64, not {threads}")
    return threads


def with_threads(args: list[str], outputs: list[str], threads: int | None) -> list[str]:
    """`-threads N` before every input (its decoder) and before every output file (its
    encoders); `args` unchanged when `threads` is None."""
    if threads is None:
        return args
    flag = ["-threads", str(threads)]
    out: list[str] = []
    pending = set(outputs)
    for i, arg in enumerate(args):
        if i and arg == "-i":
            out.extend(flag)
        elif i and arg in pending and args[i - 1] != "-i":
            pending.discard(arg)
            out.extend(flag)
        out.append(arg)
    return out


def _output_files(stream: Any) -> list[str]:
    """The output file names of an ffmpeg-python graph (one output or merged outputs)."""
    node = stream.node
    nodes = (
        [edge.upstream_node for edge in node.incoming_edges]
        if isinstance(node, ffmpeg.nodes.MergeOutputsNode)
        else [node]
    )
    return [str(n.kwargs["filename"]) for n in nodes if "filename" in n.kwargs]


def _without_paths(text: str, args: list[str]) -> str:
    """ffmpeg names its files by full path: a caller learns the file's name, not where the
    function keeps its scratch space."""
    for arg in sorted((a for a in args if a.startswith("/")), key=len, reverse=True):
        text = text.replace(arg, Path(arg).name)
    # A presigned URL (an input read by range requests) carries a signature: only the
    # object's name goes into an error.
    for arg in (a for a in args if a.startswith(("http://", "https://", "file:"))):
        text = text.replace(arg, Path(arg.split("?", 1)[0]).name)
    return _SIGNED.sub(r"\1...", text)


_SIGNED = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s]+")


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
        # ffmpeg 7+ (the static build): a truncated input's decoder gives up, or its streams
        # deliver nothing at all.
        "decode error rate",
        "received no packets",
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
