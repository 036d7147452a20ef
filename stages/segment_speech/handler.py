"""segment-speech (VideoSearcher "librosa"): sentence timestamps from drops in loudness.

`librosa.effects.split` marks the frames louder than `peak - top_db`; pauses shorter than
`merge_gap_s` (between words) are bridged, blips shorter than `min_sentence_s` dropped, runs
longer than `max_segment_s` cut at their quietest point and every sentence padded by `pad_s`.
With `top_db` unset the value is searched in [top_db_min, top_db_max] (criterion in
segmenter.py). VideoSearcher kept sentences of at least 6 s; real sentences (and our test
media) are 1-4 s, so the default minimum is 0.5 s.
"""

from __future__ import annotations

import math
import threading
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from base.contracts import Event, Model, S3Uri
from base.media import MediaInfo, require_duration
from base.runtime import Context, Function
from base.telemetry import log
from stages.segment_speech import segmenter, wav
from stages.segment_speech.segmenter import Envelope, Params, Span

SEGMENTS_NAME = "segments.json"
#: Analysis frame (librosa's 2048 samples at 16 kHz) and hop; scaled for other sample rates.
FRAME_S = 0.128
HOP_DIVISOR = 4
#: Audio decoded and split at a time; bounds memory for hour-long inputs.
BLOCK_S = 120.0

_librosa: ModuleType | None = None
_librosa_lock = threading.Lock()


class Input(Model):
    audio: S3Uri


class Config(Model):
    top_db: float | None = Field(None, gt=0, le=120)
    top_db_min: float = Field(24.0, gt=0, le=120)
    top_db_max: float = Field(49.0, gt=0, le=120)
    min_sentence_s: float = Field(0.5, ge=0, le=60)
    merge_gap_s: float = Field(0.5, ge=0, le=10)
    pad_s: float = Field(0.15, ge=0, le=5)
    max_segment_s: float = Field(30.0, ge=1, le=3600)
    #: Loudest frame must exceed the noise floor by this much, else the audio has no speech.
    min_contrast_db: float = Field(12.0, ge=0, le=120)
    #: Searched thresholds stay this far above the noise floor.
    noise_margin_db: float = Field(6.0, ge=0, le=60)

    @model_validator(mode="after")
    def _ranges(self) -> Config:
        if self.top_db_min > self.top_db_max:
            raise ValueError("top_db_min must not exceed top_db_max")
        if self.min_sentence_s >= self.max_segment_s:
            raise ValueError("min_sentence_s must be below max_segment_s")
        return self


class Segment(Model):
    index: int
    start_s: float
    end_s: float


class Output(Model):
    segments: list[Segment]
    top_db: float
    speech_s: float
    segments_uri: str


def _load_librosa() -> ModuleType:
    """Import librosa and JIT-compile its numba kernels once per process (~10-40 s cold)."""
    global _librosa
    with _librosa_lock:
        if _librosa is None:
            import librosa  # lazy: this import is most of the cold start

            rng = np.random.default_rng(0)
            t = np.arange(16000, dtype=np.float32) / 16000
            y = (0.5 * np.sin(2 * np.pi * 220 * t) * (t > 0.5)).astype(np.float32)
            y += rng.uniform(-1e-3, 1e-3, y.size).astype(np.float32)
            librosa.effects.split(y, top_db=30, ref=float(np.abs(y).max()))
            _librosa = librosa
    return _librosa


def init() -> None:
    _load_librosa()
    log("librosa_ready")


def _envelope(audio: wav.WavInfo, frame: int, hop: int, block: int, ctx: Context) -> Envelope:
    parts: list[np.ndarray] = []
    for start, y in wav.blocks(audio, block):
        ctx.check_cancelled()
        rms = segmenter.frame_rms(y, frame, hop)
        # A block yields one frame per hop plus one centred on its end, which the next block
        # also has: keep each block's own frames only (the last block keeps its extra one).
        own = -(-y.size // hop)
        parts.append(rms if start + y.size >= audio.frames else rms[:own])
    db = segmenter.rms_to_db(np.concatenate(parts)) if parts else np.zeros(0)
    return Envelope(db=db, hop_s=hop / audio.sample_rate, duration_s=audio.duration_s)


def _splitter(
    audio: wav.WavInfo, env: Envelope, frame: int, hop: int, block: int, ctx: Context
) -> segmenter.SplitFn:
    """`split(top_db)` -> raw non-silent spans of the whole file, via librosa.effects.split.

    librosa references `top_db` to the loudest frame of what it is given; blocks get the
    whole file's loudest RMS as a fixed `ref`, so the threshold is the same everywhere.
    A block boundary can at worst open a one-frame gap, which `merge_gaps` closes.
    """
    librosa = _load_librosa()
    ref = float(10 ** (env.peak_db / 20))
    sr = audio.sample_rate
    cache: dict[float, list[Span]] = {}
    whole: np.ndarray | None = None
    if audio.frames <= block:
        # Short recordings (the common case) are decoded once, not once per candidate.
        whole = np.concatenate([y for _, y in wav.blocks(audio, block)])

    def split(top_db: float) -> list[Span]:
        if top_db in cache:
            return cache[top_db]
        spans: list[Span] = []
        source: Any = [(0, whole)] if whole is not None else wav.blocks(audio, block)
        for start, y in source:
            ctx.check_cancelled()
            edges = librosa.effects.split(
                y, top_db=top_db, ref=ref, frame_length=frame, hop_length=hop
            )
            spans.extend(((start + a) / sr, (start + b) / sr) for a, b in edges)
        cache[top_db] = spans
        return spans

    return split


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    path = ctx.download(event.input.audio)
    audio = wav.open_wav(path)
    require_duration(
        MediaInfo(duration_s=audio.duration_s, has_audio=True, has_video=False),
        ctx.settings.max_duration_s,
    )
    frame = max(16, round(FRAME_S * audio.sample_rate))
    hop = max(1, frame // HOP_DIVISOR)
    # Blocks start on the hop grid so every block's frames line up with the envelope's.
    block = hop * max(1, math.ceil(BLOCK_S * audio.sample_rate / hop))

    with ctx.recorder.phase("compute"):
        env = _envelope(audio, frame, hop, block, ctx)
        params = Params(
            top_db_min=cfg.top_db_min,
            top_db_max=cfg.top_db_max,
            min_sentence_s=cfg.min_sentence_s,
            merge_gap_s=cfg.merge_gap_s,
            pad_s=cfg.pad_s,
            max_segment_s=cfg.max_segment_s,
            min_contrast_db=cfg.min_contrast_db,
            noise_margin_db=cfg.noise_margin_db,
        )
        split = _splitter(audio, env, frame, hop, block, ctx)
        result = segmenter.segment(env, split, params, cfg.top_db, ctx.check_cancelled)

    segments = [
        Segment(index=i, start_s=round(float(s), 3), end_s=round(float(e), 3))
        for i, (s, e) in enumerate(result.segments)
    ]
    body = {
        "segments": [s.model_dump() for s in segments],
        "top_db": float(result.top_db),
        "speech_s": round(float(result.speech_s), 3),
    }
    log(
        "segmented",
        request_id=event.request_id,
        duration_s=round(audio.duration_s, 3),
        peak_db=round(env.peak_db, 1),
        floor_db=round(env.floor_db, 1),
        top_db=result.top_db,
        segments=len(segments),
    )
    uri = ctx.upload_json(body, SEGMENTS_NAME)
    return Output(**body, segments_uri=uri)


FUNCTION = Function(
    name="segment-speech",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    init=init,
    preload=init,  # fork-safe (checked after a real fork): the zygote loads it once
    description="Sentence timestamps from loudness drops (librosa.effects.split) in a WAV.",
)
