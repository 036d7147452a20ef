"""Pure parts of segment-speech: interval post-processing, the top_db choice, WAV checks.

No librosa here (its import alone takes seconds); the function tests cover the real split.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from base.errors import BadInput
from stages.segment_speech import segmenter, wav
from stages.segment_speech.segmenter import Envelope, Params

HOP_S = 0.032


def envelope(db: list[float] | np.ndarray, duration_s: float | None = None) -> Envelope:
    arr = np.asarray(db, dtype=np.float32)
    return Envelope(db=arr, hop_s=HOP_S, duration_s=duration_s or arr.size * HOP_S)


def test_merge_bridges_word_pauses_not_sentence_gaps() -> None:
    words = [(1.0, 1.3), (1.4, 1.9), (2.05, 2.6), (4.1, 4.5), (4.6, 5.0)]
    assert segmenter.merge_gaps(words, 0.5) == [(1.0, 2.6), (4.1, 5.0)]
    assert segmenter.merge_gaps(words, 0.05) == words
    assert segmenter.merge_gaps([], 0.5) == []


def test_merge_handles_unsorted_and_nested_spans() -> None:
    assert segmenter.merge_gaps([(3.0, 4.0), (1.0, 5.0), (0.0, 0.5)], 0.2) == [
        (0.0, 0.5),
        (1.0, 5.0),
    ]


def test_drop_short_keeps_the_minimum_itself() -> None:
    spans = [(0.0, 0.3), (1.0, 1.5), (2.0, 4.0)]
    assert segmenter.drop_short(spans, 0.5) == [(1.0, 1.5), (2.0, 4.0)]


def test_pad_clamps_to_duration_and_never_overlaps_neighbours() -> None:
    spans = [(0.05, 1.0), (1.2, 2.0), (5.0, 9.95)]
    padded = segmenter.pad_and_clamp(spans, 0.15, 10.0)
    assert padded[0] == pytest.approx((0.0, 1.1))  # start clamped to 0; end meets the midpoint
    assert padded[1] == pytest.approx((1.1, 2.15))
    assert padded[2] == pytest.approx((4.85, 10.0))  # end clamped to the duration
    for (_, end), (start, _) in itertools.pairwise(padded):
        assert end <= start


def test_cap_cuts_at_the_quietest_frame() -> None:
    db = np.full(1000, -10.0)
    quiet = 400  # 12.8 s
    db[quiet] = -40.0
    env = envelope(db)
    pieces = segmenter.cap_length([(0.0, 30.0)], env, max_s=20.0, min_piece_s=0.5)
    assert pieces == [(0.0, pytest.approx(quiet * HOP_S)), (pytest.approx(quiet * HOP_S), 30.0)]


def test_cap_splits_repeatedly_until_every_piece_fits() -> None:
    env = envelope(np.random.default_rng(1).uniform(-30, -10, 4000))
    pieces = segmenter.cap_length([(1.0, 121.0), (125.0, 126.0)], env, max_s=10.0, min_piece_s=0.5)
    assert all(e - s <= 10.0 + 1e-9 for s, e in pieces)
    assert all(e - s >= 2.5 - 1e-9 for s, e in pieces[:-1])  # no slivers (margin = max/4)
    assert pieces[0][0] == 1.0 and pieces[-2][1] == 121.0 and pieces[-1] == (125.0, 126.0)
    for (_, end), (start, _) in itertools.pairwise(pieces):
        assert end <= start  # contiguous pieces, in time order


def test_candidates_stop_short_of_the_noise_floor() -> None:
    # Peak -10 dB, floor -50 dB: thresholds deeper than 40 - 6 = 34 dB would reach the noise.
    db = np.concatenate([np.full(90, -50.0), np.full(10, -10.0)])
    cands = segmenter.candidate_top_dbs(envelope(db), Params())
    assert cands[0] == 24.0 and cands[-1] == 34.0
    # A floor too close for any candidate still yields one value in range.
    noisy = np.concatenate([np.full(90, -25.0), np.full(10, -10.0)])
    assert segmenter.candidate_top_dbs(envelope(noisy), Params()) == [24.0]


def test_choose_top_db_takes_the_middle_of_the_widest_plateau() -> None:
    three = [(1.0, 3.0), (5.0, 8.0), (10.0, 12.0)]
    results = [(24.0, [(1.0, 2.0)] * 5), (25.0, three), (26.0, three), (27.0, three)]
    results += [(28.0, three), (29.0, three), (30.0, [(0.0, 13.0)]), (31.0, [(0.0, 13.0)])]
    assert segmenter.choose_top_db(results, max_segment_s=30.0) == 27.0


def test_choose_top_db_skips_implausibly_long_segments() -> None:
    collapsed = [(0.0, 100.0)]
    two = [(1.0, 3.0), (5.0, 8.0)]
    results = [(24.0, two), (25.0, two)] + [(t, collapsed) for t in range(26, 40)]
    assert segmenter.choose_top_db(results, max_segment_s=30.0) == 24.0
    # With nothing plausible it falls back to any non-empty plateau, then to the middle.
    assert segmenter.choose_top_db([(t, collapsed) for t in (24.0, 25.0, 26.0)], 30.0) == 25.0
    assert segmenter.choose_top_db([(t, []) for t in (24.0, 25.0, 26.0)], 30.0) == 25.0


def test_segment_with_no_contrast_has_no_speech() -> None:
    env = envelope(np.random.default_rng(2).uniform(-60, -58, 300))

    def split(top_db: float) -> list[tuple[float, float]]:
        raise AssertionError("a recording without contrast must not be split")

    result = segmenter.segment(env, split, Params(), None)
    assert result.segments == [] and result.speech_s == 0.0
    assert 24.0 <= result.top_db <= 49.0


def test_segment_end_to_end_with_a_fake_split() -> None:
    db = np.full(400, -60.0)  # 12.8 s
    db[30:90] = -12.0
    db[200:260] = -15.0
    env = envelope(db)
    words = {0: [(1.0, 1.6), (1.7, 2.9)], 1: [(6.4, 8.3)]}

    def split(top_db: float) -> list[tuple[float, float]]:
        return [*words[0], *words[1], (11.0, 11.1)]  # the blip is dropped as too short

    result = segmenter.segment(env, split, Params(), None)
    assert result.segments == [
        pytest.approx((0.85, 3.05)),
        pytest.approx((6.25, 8.45)),
    ]
    assert result.speech_s == pytest.approx(2.2 + 2.2)
    assert 24.0 <= result.top_db <= 49.0


def test_frame_rms_matches_the_definition() -> None:
    rng = np.random.default_rng(3)
    y = rng.uniform(-0.5, 0.5, 5000).astype(np.float32)
    frame, hop = 400, 100
    rms = segmenter.frame_rms(y, frame, hop)
    padded = np.pad(y.astype(np.float64), frame // 2)
    expected = [np.sqrt(np.mean(padded[i * hop : i * hop + frame] ** 2)) for i in range(rms.size)]
    assert rms.size == 1 + y.size // hop
    np.testing.assert_allclose(rms, expected, rtol=1e-4)


# -- WAV validation --------------------------------------------------------------------------


def write_wav(path: Path, seconds: float = 1.0, sr: int = 16000) -> Path:
    y = (0.1 * np.sin(np.arange(int(seconds * sr)) / 10)).astype(np.float32)
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def test_open_wav_reads_a_good_file(tmp_path: Path) -> None:
    info = wav.open_wav(write_wav(tmp_path / "a.wav", 1.5))
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 24000)
    assert info.duration_s == pytest.approx(1.5)
    blocks = list(wav.blocks(info, 10000))
    assert [start for start, _ in blocks] == [0, 10000, 20000]
    assert sum(b.size for _, b in blocks) == 24000


def test_truncated_wav_is_refused(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BadInput) as err:
        wav.open_wav(cut)
    assert err.value.code == "truncated_audio"


def test_streamed_wav_with_unknown_size_is_accepted(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav")
    data = bytearray(good.read_bytes())
    pos = data.index(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    wav.check_riff(streamed)  # no exception: the size is unknown, not wrong


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"Meeting notes, not audio\n" * 20, "not_wav"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not_wav"),
    ],
)
def test_garbage_is_refused(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(BadInput) as err:
        wav.open_wav(path)
    assert err.value.code == code


def test_wav_without_samples_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.raises(BadInput) as err:
        wav.open_wav(path)
    assert err.value.code == "empty_audio"


def test_flac_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000, format="FLAC")
    with pytest.raises(BadInput) as err:
        wav.open_wav(path)
    assert err.value.code == "not_wav"
