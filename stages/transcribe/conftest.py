"""Fixtures for the transcribe tests: one served process, speech with known words, helpers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jiwer
import pytest

from harness.media.generate import VideoTruth, make_audio_only

SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "she opened the window to let in the fresh air",
    "the red bus stops at the station every morning",
)
#: A word unique to one sentence, to check word times against that sentence's known span.
KEYWORDS = {"fox": 0, "window": 1, "station": 2}
MAX_WER = 0.25


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).replace("'", "").split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalise(reference), normalise(hypothesis) or "<empty>"))


@pytest.fixture(scope="session")
def transcribe_url(start_function: Callable[..., str]) -> str:
    return start_function("stages.transcribe")


@pytest.fixture(scope="session")
def speech(media_dir: Path) -> VideoTruth:
    return make_audio_only(media_dir / "transcribe-speech.wav", SENTENCES, reuse=True)


@pytest.fixture(scope="session")
def speech_uri(speech: VideoTruth, upload: Callable[[Path], str]) -> str:
    return upload(Path(speech.path))


@pytest.fixture(scope="session")
def transcribe(invoke: Callable[..., httpx.Response]) -> Callable[..., dict[str, Any]]:
    """Invoke and require success; returns the whole result envelope."""

    def call(
        url: str,
        audio: str,
        request_id: str,
        config: dict[str, Any] | None = None,
        fanout: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"request_id": request_id, "input": {"audio": audio}}
        if config is not None:
            body["config"] = config
        if fanout is not None:
            body["fanout"] = fanout
        resp = invoke(url, body, timeout=120)
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        assert result["status"] == "ok"
        assert result["function"] == "transcribe"
        return result

    return call


def check_words(outputs: dict[str, Any], offset: float = 0.0) -> None:
    """Words are ordered, non-overlapping and inside [offset, offset + duration]."""
    last = offset
    for w in outputs["words"]:
        assert w["word"].strip() == w["word"] and w["word"]
        assert last <= w["start_s"] <= w["end_s"] <= offset + outputs["duration_s"] + 1e-3, w
        assert 0.0 <= w["probability"] <= 1.0
        last = w["end_s"]
    for s in outputs["segments"]:
        assert offset <= s["start_s"] <= s["end_s"] <= offset + outputs["duration_s"] + 1e-3


@pytest.fixture(scope="session")
def transcript_checks() -> Any:
    """The module-level helpers, for test modules (importlib mode cannot import conftest)."""

    class Helpers:
        SENTENCES = SENTENCES
        KEYWORDS = KEYWORDS
        MAX_WER = MAX_WER
        wer = staticmethod(wer)
        normalise = staticmethod(normalise)
        check_words = staticmethod(check_words)

    return Helpers
