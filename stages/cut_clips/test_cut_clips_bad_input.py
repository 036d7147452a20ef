"""cut-clips refuses unusable requests with clear 4xx errors and keeps serving."""

from __future__ import annotations

from typing import Any

import pytest

from harness.media.generate import VideoTruth
from stages.bad_input_suite import BadInputSuite, object_size


class TestCutClipsBadInput(BadInputSuite):
    MODULE = "stages.cut_clips"
    FIELD = "video"
    CONFIG = {"segments": [{"index": 2, "start_s": 0.2, "end_s": 0.9}]}
    BAD_CONFIG = {"segments": "all of them"}

    def check_good(self, out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
        (clip,) = out["clips"]
        assert clip["index"] == 2 and clip["uri"].endswith("/cut-clips/clip-0002.mp4")
        assert clip["duration_s"] == pytest.approx(0.7, abs=0.1)
        assert object_size(s3, clip["uri"]) > 1000
