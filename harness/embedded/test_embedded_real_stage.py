"""A real stage (extract-audio, ffmpeg inside) behind the embedded gateway, limits and all."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from harness.embedded.platform import EmbeddedPlatform
from harness.functions import load

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("stages.extract_audio.handler") is None,
    reason="stages.extract_audio is not there yet",
)


@pytest.fixture(scope="module")
def platform(
    s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPlatform]:
    declaration = load().get("extract-audio")  # the real declaration: limits, timeout
    state_dir = tmp_path_factory.mktemp("stage-platform")
    with EmbeddedPlatform(state_dir, [declaration], s3=s3_server.env()) as p:
        yield p


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def test_extract_audio_through_the_gateway(
    platform: EmbeddedPlatform, s3_server: Any, tmp_path: Path
) -> None:
    from harness.media.generate import make_speech_video

    truth = make_speech_video(tmp_path / "talk.mp4", ["The quick brown fox jumps."])
    key = f"uploads/{uuid.uuid4().hex[:8]}/talk.mp4"
    s3 = s3_server.client()
    s3.upload_file(truth.path, s3_server.bucket, key)
    body = {
        "request_id": f"t-{uuid.uuid4().hex[:10]}",
        "input": {"video": f"s3://{s3_server.bucket}/{key}"},
    }

    response = platform.invoke("extract-audio", body, timeout_s=120)

    assert response.status_code == 200, response.text
    out = response.json()["outputs"]
    assert out["has_audio"] and out["has_video"]
    assert out["media"]["duration_s"] == pytest.approx(truth.duration_s, abs=0.1)
    wav = tmp_path / "audio.wav"
    s3.download_file(s3_server.bucket, out["audio"].split("/", 3)[3], str(wav))
    samples, rate = sf.read(wav)
    assert rate == 16000 and samples.ndim == 1
    assert len(samples) / rate == pytest.approx(truth.duration_s, abs=0.1)
    sentence = truth.sentences[0]
    speech = samples[int(sentence.start_s * rate) : int(sentence.end_s * rate)]
    quiet = samples[: int(max(0.05, sentence.start_s - 0.2) * rate)]
    assert _rms_db(speech) > _rms_db(quiet) + 25  # the words are where the truth says

    replica = platform.function("extract-audio")["vsearch"]["replicas"][0]
    if platform.limits_enforced:
        # The cgroup saw the replica and its ffmpeg child, within the declared limit.
        assert 0 < replica["peak_memory_bytes"] <= load().get("extract-audio").memory_limit_bytes
