"""transcode-clip refuses unusable requests with clear 4xx errors and keeps serving."""

from __future__ import annotations

from typing import Any

import pytest

from harness.media.generate import VideoTruth
from stages.bad_input_suite import BadInputSuite, object_size


class TestTranscodeClipBadInput(BadInputSuite):
    MODULE = "stages.transcode_clip"
    FIELD = "clip"
    CONFIG = {"max_width": 160}
    BAD_CONFIG = {"max_width": -5}

    def check_good(self, out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
        assert out["mp4"].endswith("/transcode-clip/clip-0000.mp4")
        assert out["duration_s"] == pytest.approx(truth.duration_s, abs=0.1)
        size = object_size(s3, out["wav"])
        assert size == pytest.approx(truth.duration_s * 32000, abs=0.1 * 32000 + 200)
