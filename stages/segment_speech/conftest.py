"""Fixtures for segment-speech tests: WAVs of generated speech with known sentence times."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.media.generate import (
    SentenceTruth,
    VideoTruth,
    demo_video,
    make_silent_video,
    make_speech_video,
)

MODULE = "stages.segment_speech"
#: Varied lengths (0.7 s .. 3 s when spoken), default 1.5 s gaps; the first is the shortest.
SENTENCES = (
    "good morning",
    "the cat sat on the mat near the door",
    "we will meet again tomorrow morning at nine",
    "please remember to water the plants while i am away",
)


@dataclass(frozen=True)
class SpeechWav:
    wav: Path
    truth: VideoTruth

    @property
    def sentences(self) -> list[SentenceTruth]:
        return self.truth.sentences


def to_wav(src: Path, dest: Path, *, rate: int = 16000, channels: int = 1) -> Path:
    """What extract-audio does: first audio track as PCM s16 WAV."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
         "-map", "0:a:0", "-ac", str(channels), "-ar", str(rate), "-c:a", "pcm_s16le",
         "-map_metadata", "-1", str(dest)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return dest


@pytest.fixture(scope="session")
def seg_media(media_dir: Path) -> dict[str, SpeechWav]:
    """demo (3 sentences, 3 s gaps), speech (4 sentences, 1.5 s gaps), silence, a 44.1 kHz
    stereo copy of speech; each with its truth."""
    d = media_dir / "segment-speech"
    d.mkdir(exist_ok=True)
    demo = demo_video(d)
    speech = make_speech_video(d / "speech.mp4", SENTENCES, reuse=True)
    silent = make_silent_video(d / "silent.mp4", 6.0, reuse=True)
    return {
        "demo": SpeechWav(to_wav(Path(demo.path), d / "demo.wav"), demo),
        "speech": SpeechWav(to_wav(Path(speech.path), d / "speech.wav"), speech),
        "speech44": SpeechWav(
            to_wav(Path(speech.path), d / "speech44.wav", rate=44100, channels=2), speech
        ),
        "silent": SpeechWav(to_wav(Path(silent.path), d / "silent.wav"), silent),
    }


@pytest.fixture(scope="session")
def seg_url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="session")
def seg_uris(seg_media: dict[str, SpeechWav], upload: Callable[[Path], str]) -> dict[str, str]:
    return {name: upload(m.wav) for name, m in seg_media.items()}
