"""extract-audio refuses unusable requests with clear 4xx errors and keeps serving."""

from __future__ import annotations

from typing import Any

import pytest

from harness.media.generate import VideoTruth
from stages.bad_input_suite import BadInputSuite, object_size


class TestExtractAudioBadInput(BadInputSuite):
    MODULE = "stages.extract_audio"
    FIELD = "video"
    BAD_CONFIG = {"sample_rate": "x"}

    def check_good(self, out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
        assert out["has_audio"] is True and out["audio"].endswith("/extract-audio/audio.wav")
        assert out["media"]["duration_s"] == pytest.approx(truth.duration_s, abs=0.1)
        # 16-bit mono at 16 kHz plus a small header: the WAV covers the whole input.
        size = object_size(s3, out["audio"])
        assert size == pytest.approx(truth.duration_s * 32000, abs=0.1 * 32000 + 200)
