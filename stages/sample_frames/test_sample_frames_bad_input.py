"""sample-frames refuses unusable requests with clear 4xx errors and keeps serving."""

from __future__ import annotations

from typing import Any

import pytest

from harness.media.generate import VideoTruth
from stages.bad_input_suite import BadInputSuite, object_size


class TestSampleFramesBadInput(BadInputSuite):
    MODULE = "stages.sample_frames"
    FIELD = "video"
    CONFIG = {"interval_s": 1.0}
    BAD_CONFIG = {"interval_s": 0}

    def check_good(self, out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
        times = [f["time_s"] for f in out["frames"]]
        want = [float(t) for t in range(int(truth.duration_s) + 1) if t < truth.duration_s - 0.05]
        assert times == pytest.approx(want, abs=0.05)
        assert {(f["width"], f["height"]) for f in out["frames"]} == {(320, 240)}
        assert object_size(s3, out["frames"][0]["uri"]) > 300  # a flat grey JPEG is ~700 bytes
