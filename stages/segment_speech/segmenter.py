"""Sentence segmentation from loudness: the pure part of segment-speech (no I/O, no librosa).

Times are seconds. Frame `j` of the loudness envelope is centred at `j * hop_s` (librosa's
`center=True` convention), so envelope indices and split boundaries share one grid.

How `top_db` is chosen when the caller leaves it open (see `choose_top_db`):
1. The envelope gives the loudest frame (`peak_db`) and a noise floor (`floor_db`, the 10th
   percentile of frames that are not digital silence). A recording whose loudest frame is
   less than `min_contrast_db` above its floor holds no speech: no segments at all.
2. A `top_db` whose threshold (`peak_db - top_db`) lies within `noise_margin_db` of the floor
   would call the noise itself speech (everything merges into one segment), so only values
   up to `peak_db - floor_db - noise_margin_db` are candidates (at least `top_db_min`).
3. Each candidate is split, merged and filtered; a threshold that sits in the valley between
   silence and speech barely changes the result when moved by a dB, so the winner is the
   middle of the widest run of consecutive candidates giving the same non-zero number of
   segments, all no longer than `max_segment_s` (ties: more segments, then lower `top_db`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Frames quieter than this are digital silence (zero padding), not a noise floor.
DIGITAL_SILENCE_DB = -90.0
#: librosa's amplitude_to_db default floor (amin=1e-5) expressed in dB.
MIN_DB = -100.0
FLOOR_PERCENTILE = 10.0

Span = tuple[float, float]


@dataclass(frozen=True)
class Params:
    top_db_min: float = 24.0
    top_db_max: float = 49.0
    top_db_step: float = 1.0
    min_sentence_s: float = 0.5
    merge_gap_s: float = 0.5
    pad_s: float = 0.15
    max_segment_s: float = 30.0
    min_contrast_db: float = 12.0
    noise_margin_db: float = 6.0


@dataclass(frozen=True)
class Envelope:
    """Per-frame RMS loudness of a whole recording, in dB relative to full scale."""

    db: np.ndarray
    hop_s: float
    duration_s: float

    @property
    def peak_db(self) -> float:
        return float(self.db.max()) if self.db.size else MIN_DB

    @property
    def floor_db(self) -> float:
        audible = self.db[self.db > DIGITAL_SILENCE_DB]
        if audible.size == 0:
            return MIN_DB
        return float(np.percentile(audible, FLOOR_PERCENTILE))

    @property
    def contrast_db(self) -> float:
        return self.peak_db - self.floor_db


def rms_to_db(rms: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(rms, 1e-5))


def frame_rms(y: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS of centred, zero-padded frames, as librosa.feature.rms computes it.

    A running sum of squares keeps memory at one float64 per sample instead of librosa's
    frame_length / hop_length copies of the signal.
    """
    if y.size == 0:
        return np.zeros(0, dtype=np.float32)
    half = frame // 2
    padded = np.concatenate(
        [np.zeros(half, np.float64), y.astype(np.float64) ** 2, np.zeros(half, np.float64)]
    )
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    n_frames = 1 + y.size // hop
    starts = np.arange(n_frames) * hop
    ends = np.minimum(starts + frame, padded.size)
    power = (csum[ends] - csum[starts]) / frame
    return np.sqrt(np.maximum(power, 0.0)).astype(np.float32)


# -- interval post-processing ---------------------------------------------------------------


def merge_gaps(spans: Sequence[Span], gap_s: float) -> list[Span]:
    """Join spans separated by less than `gap_s`: pauses between words, not between sentences."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] < gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def drop_short(spans: Sequence[Span], min_s: float) -> list[Span]:
    return [(s, e) for s, e in spans if e - s >= min_s]


def cap_length(
    spans: Sequence[Span], env: Envelope, max_s: float, min_piece_s: float
) -> list[Span]:
    """Split spans longer than `max_s` at their quietest frame until none is.

    The cut is searched at least `margin` from both ends (a quarter of `max_s`, or
    `min_piece_s` if larger, but never more than half the span), so every cut makes progress
    and no sliver is produced.
    """
    out: list[Span] = []
    todo = list(reversed(spans))
    while todo:
        start, end = todo.pop()
        length = end - start
        if length <= max_s:
            out.append((start, end))
            continue
        margin = min(max(0.25 * max_s, min_piece_s), 0.5 * length)
        lo = int(np.ceil((start + margin) / env.hop_s))
        hi = int(np.floor((end - margin) / env.hop_s))
        hi = min(hi, env.db.size - 1)
        if hi < lo:
            cut = 0.5 * (start + end)
        else:
            cut = (lo + int(np.argmin(env.db[lo : hi + 1]))) * env.hop_s
        if not start < cut < end:
            cut = 0.5 * (start + end)
        # Left piece first so output stays in time order.
        todo.append((cut, end))
        todo.append((start, cut))
    return out


def pad_and_clamp(spans: Sequence[Span], pad_s: float, duration_s: float) -> list[Span]:
    """Widen each span by `pad_s` to keep soft onsets and tails, never past a neighbour.

    Neighbours share at most the midpoint of the gap between them, so padded clips never
    overlap (spans cut by `cap_length` touch and so get no padding at the cut).
    """
    out: list[Span] = []
    for i, (start, end) in enumerate(spans):
        lo = max(0.0, start - pad_s)
        hi = min(duration_s, end + pad_s)
        if i > 0:
            lo = max(lo, 0.5 * (spans[i - 1][1] + start))
        if i + 1 < len(spans):
            hi = min(hi, 0.5 * (end + spans[i + 1][0]))
        out.append((lo, hi))
    return out


def sentences(raw: Sequence[Span], p: Params) -> list[Span]:
    """Raw non-silent intervals -> sentence spans (before capping and padding)."""
    return drop_short(merge_gaps(raw, p.merge_gap_s), p.min_sentence_s)


# -- choosing top_db ---------------------------------------------------------------------------


def candidate_top_dbs(env: Envelope, p: Params) -> list[float]:
    """Thresholds to try: the configured range, minus those reaching into the noise floor."""
    limit = env.contrast_db - p.noise_margin_db
    count = int(np.floor((p.top_db_max - p.top_db_min) / p.top_db_step + 1e-9)) + 1
    values = [round(p.top_db_min + i * p.top_db_step, 6) for i in range(count)]
    usable = [v for v in values if v <= limit]
    return usable or [p.top_db_min]


def choose_top_db(results: Sequence[tuple[float, list[Span]]], max_segment_s: float) -> float:
    """The middle of the widest plateau of equal, plausible segment counts (see module doc).

    `results` are (top_db, sentence spans before capping) in increasing top_db order.
    """
    if not results:
        raise ValueError("no candidate top_db values")

    def plausible(spans: list[Span]) -> bool:
        return bool(spans) and all(e - s <= max_segment_s for s, e in spans)

    best: tuple[int, int, float] | None = None  # (width, count, -first top_db)
    best_run: list[float] = []
    for require_plausible in (True, False):
        run: list[float] = []
        run_count = -1
        for top_db, spans in [*results, (float("nan"), [])]:
            ok = plausible(spans) if require_plausible else bool(spans)
            count = len(spans) if ok else -1
            if run and count == run_count:
                run.append(top_db)
                continue
            if run:
                key = (len(run), run_count, -run[0])
                if best is None or key > best:
                    best, best_run = key, run
            run, run_count = ([top_db], count) if ok else ([], -1)
        if best_run:
            return best_run[(len(best_run) - 1) // 2]
    # Nothing separated speech from silence at any threshold: report the middle candidate.
    return results[(len(results) - 1) // 2][0]


@dataclass(frozen=True)
class Segmentation:
    segments: list[Span]
    top_db: float
    speech_s: float


SplitFn = Callable[[float], list[Span]]


def segment(
    env: Envelope,
    split: SplitFn,
    p: Params,
    top_db: float | None,
    check: Callable[[], None] = lambda: None,
) -> Segmentation:
    """Find sentences: `split(top_db)` returns the raw non-silent spans (librosa split)."""
    if env.db.size == 0 or env.contrast_db < p.min_contrast_db:
        chosen = top_db if top_db is not None else 0.5 * (p.top_db_min + p.top_db_max)
        return Segmentation([], chosen, 0.0)
    if top_db is None:
        results: list[tuple[float, list[Span]]] = []
        for candidate in candidate_top_dbs(env, p):
            check()
            results.append((candidate, sentences(split(candidate), p)))
        top_db = choose_top_db(results, p.max_segment_s)
        spans = dict(results)[top_db]
    else:
        spans = sentences(split(top_db), p)
    check()
    capped = cap_length(spans, env, p.max_segment_s, p.min_sentence_s)
    padded = pad_and_clamp(capped, p.pad_s, env.duration_s)
    speech_s = sum(e - s for s, e in padded)
    return Segmentation(padded, top_db, speech_s)
