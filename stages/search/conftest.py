"""Fixtures for search tests: transcripts as transcribe writes them, and small clip files."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.media.generate import make_video_without_audio

MODULE = "stages.search"

#: (clip start, clip end, whisper segments) of three clips of the demo video. Clip 1 has one
#: sentence split over two segments; clip 2 has words that contain "cat" without being "cat"
#: and a typographic apostrophe.
CLIPS: list[tuple[float, float, list[str]]] = [
    (0.85, 3.75, [" The quick brown fox jumps over the lazy dog."]),
    (6.45, 8.95, [" Please add two cups", " of flour to the bowl."]),
    (
        11.65,
        16.2,
        [
            " The red bus stops at the station every morning.",
            " We concatenate categories, don\u2019t we?",
        ],
    ),
]


def build_transcript(segments: list[str], start_s: float, end_s: float) -> dict[str, Any]:
    """A transcript shaped like transcribe's output (faster-whisper words: leading space,
    punctuation attached), word times spread evenly over the clip, video-relative."""
    texts = [seg.split() for seg in segments]
    n = sum(len(t) for t in texts)
    step = (end_s - start_s - 0.2) / n
    words: list[dict[str, Any]] = []
    segs: list[dict[str, Any]] = []
    t = start_s + 0.1
    for seg, seg_words in zip(segments, texts, strict=True):
        first = t
        for w in seg_words:
            words.append(
                {
                    "word": f" {w}",
                    "start_s": round(t, 3),
                    "end_s": round(t + 0.8 * step, 3),
                    "probability": 0.93,
                }
            )
            t += step
        segs.append({"start_s": round(first, 3), "end_s": round(t, 3), "text": seg})
    return {
        "text": "".join(segments).strip(),
        "words": words,
        "segments": segs,
        "language": "en",
        "duration_s": round(end_s - start_s, 3),
        "model": "tiny.en",
        "transcript_uri": "",
    }


@pytest.fixture(scope="session")
def search_url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


@pytest.fixture(scope="session")
def clip_files(media_dir: Path) -> list[Path]:
    """One small, distinct mp4 per clip (different lengths, so different bytes)."""
    d = media_dir / "search"
    return [
        Path(make_video_without_audio(d / f"clip-{i:04d}.mp4", 1.0 + 0.5 * i, reuse=True).path)
        for i in range(len(CLIPS))
    ]


@pytest.fixture(scope="session")
def put_object(s3_server: Any) -> Callable[[str, bytes], str]:
    client = s3_server.client()

    def put(key: str, body: bytes) -> str:
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=body)
        return f"s3://{s3_server.bucket}/{key}"

    return put


@pytest.fixture(scope="session")
def corpus(
    clip_files: list[Path],
    upload: Callable[..., str],
    put_object: Callable[[str, bytes], str],
) -> list[dict[str, Any]]:
    """The search input for the three clips, stored as the pipeline would store them."""
    prefix = f"requests/pipe-{uuid.uuid4().hex[:8]}"
    entries = []
    for i, ((start, end, segments), clip) in enumerate(zip(CLIPS, clip_files, strict=True)):
        transcript = build_transcript(segments, start, end)
        t_uri = put_object(
            f"{prefix}/transcribe/transcript-{i:04d}.json", json.dumps(transcript).encode()
        )
        c_uri = upload(clip, f"{prefix}/transcode-clip/clip-{i:04d}.mp4")
        entries.append(
            {"clip_index": i, "start_s": start, "end_s": end, "transcript": t_uri, "clip": c_uri}
        )
    return entries


@pytest.fixture(scope="session")
def sha256_of(s3_server: Any) -> Callable[[str], str]:
    client = s3_server.client()

    def digest(uri: str) -> str:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()

    return digest
