"""Inputs of the reliability tests, generated once into a cache dir (seconds, offline tools).

Valid inputs carry their ground truth (`VideoTruth`) so a 200 is judged by its content; the
hostile ones are built to hit one specific check each (probe, size, duration, key rules).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.media.generate import (
    Overlay,
    VideoTruth,
    demo_video,
    make_audio_only,
    make_bad_files,
    make_speech_video,
    make_video_without_audio,
)
from harness.reliability.support import ROOT

MEDIA_DIR = ROOT / ".vsearch" / "media" / "reliability"

SHORT_SENTENCE = "please add two cups of flour to the bowl"
#: What the short videos are searched for.
QUERY = "flour"

#: A tiny but well-formed PDF (header, one empty page, xref, trailer).
PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
    b"0000000101 00000 n \ntrailer<</Size 4/Root 1 0 R>>\nstartxref\n170\n%%EOF\n"
)


def _ffmpeg(*args: str | Path) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.strip()[-1000:]}")


def _once(path: Path, make: Callable[[Path], None]) -> Path:
    if not path.exists() or path.stat().st_size == 0:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        make(tmp)
        tmp.replace(path)
    return path


@dataclass(frozen=True)
class Media:
    """Every input, by role: the valid ones with their ground truth, the others as files."""

    demo: VideoTruth
    short: VideoTruth
    audio_only: VideoTruth
    no_audio: VideoTruth
    fps_7_5: VideoTruth
    rotated: VideoTruth
    one_frame: Path
    long: Path
    large: Path
    pdf: Path
    bad: dict[str, Path]


@functools.cache
def media(out_dir: Path = MEDIA_DIR) -> Media:
    out_dir.mkdir(parents=True, exist_ok=True)
    demo = demo_video(out_dir.parent)  # shared with `./vsearch demo`'s cache
    short = make_speech_video(
        out_dir / "short.mp4",
        [SHORT_SENTENCE],
        objects=[Overlay("zidane", 0.5, 2.5)],
        lead_s=0.5,
        tail_s=0.5,
        reuse=True,
    )
    audio_only = make_audio_only(out_dir / "audio-only.m4a", [SHORT_SENTENCE], reuse=True)
    no_audio = make_video_without_audio(
        out_dir / "no-audio.mp4", 8.0, objects=[Overlay("zidane", 1.0, 7.0)], reuse=True
    )

    def derived(name: str, *ffmpeg_args: str) -> VideoTruth:
        path = _once(out_dir / name, lambda tmp: _ffmpeg("-i", short.path, *ffmpeg_args, tmp))
        return short.model_copy(update={"path": str(path)})

    # Re-encoded at 7.5 fps (a rate no encoder default produces) and with a display matrix
    # saying "rotate 90" (phones write these); speech and its times are unchanged.
    fps = derived("fps-7.5.mp4", "-vf", "fps=7.5", "-c:v", "libx264", "-preset", "veryfast",
                  "-c:a", "copy")  # fmt: skip
    fps = fps.model_copy(update={"fps": 7.5})
    rotated = derived("rotated-90.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90")
    one_frame = _once(
        out_dir / "one-frame.mp4",
        lambda tmp: _ffmpeg("-f", "lavfi", "-i", "color=c=0x808080:s=320x240:r=12",
                            "-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp),
    )  # fmt: skip
    # 90 s of nearly nothing: a few kB, so only the duration check can refuse it.
    long = _once(
        out_dir / "long-90s.mp4",
        lambda tmp: _ffmpeg("-f", "lavfi", "-i", "color=c=0x303030:s=64x48:r=2:d=90",
                            "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "90",
                            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                            "-b:a", "8k", tmp),
    )  # fmt: skip
    # 4 s, lossless: a short, valid video of ~2.3 MB, so only the size check can refuse it.
    large = _once(
        out_dir / "large-lossless.mp4",
        lambda tmp: _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=640x480:r=25:d=4",
                            "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "4",
                            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
                            "-c:a", "aac", tmp),
    )  # fmt: skip
    pdf = out_dir / "report.mp4"
    if not pdf.exists():
        pdf.write_bytes(PDF_BYTES)
    bad_names = ("empty", "notes", "truncated", "random", "truncated_faststart")
    bad = {name: out_dir / "bad" / f"{name}.mp4" for name in bad_names}
    if not all(p.exists() for p in bad.values()):
        bad = make_bad_files(out_dir / "bad", include_partial=True)
    return Media(
        demo=demo,
        short=short,
        audio_only=audio_only,
        no_audio=no_audio,
        fps_7_5=fps,
        rotated=rotated,
        one_frame=one_frame,
        long=long,
        large=large,
        pdf=pdf,
        bad=bad,
    )
