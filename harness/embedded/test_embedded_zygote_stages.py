"""Real stages forked from their zygote answer real requests (models and threads after fork).

transcribe: the zygote makes everything but the CTranslate2 model (the int8 copy of the
weights, read into the page cache; the parsed tokenizer; the mel filters); the replica loads
the model (its worker threads would not survive a fork). detect-objects: the zygote loads the
network and runs its first forward pass (OpenCV's thread pool started), the replica reuses it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jiwer
import pytest

from harness.embedded.function_process import process_env
from harness.embedded.zygote import ForkedProcess, ZygoteProcess
from harness.media.generate import get_photo, make_audio_only

SENTENCES = ("the quick brown fox jumps over the lazy dog", "please add two cups of flour")


@pytest.fixture
def forked(tmp_path: Path, s3_server: Any) -> Iterator[Any]:
    started: list[Any] = []

    def start(module: str) -> tuple[ZygoteProcess, ForkedProcess]:
        zygote = ZygoteProcess(
            module, process_env(s3_server.env()), log_path=tmp_path / "zygote.log"
        ).start()
        started.append(zygote)
        assert zygote.wait_ready(300), zygote.log_tail()
        env = {**s3_server.env(), "REPLICA_NAME": "forked-1"}
        replica = ForkedProcess(zygote, module, env, log_path=tmp_path / "replica.log").start()
        started.append(replica)
        replica.wait_ready(120)
        return zygote, replica

    yield start
    for process in reversed(started):
        process.stop()


def _upload(s3_server: Any, path: Path) -> str:
    key = f"uploads/{uuid.uuid4().hex[:8]}/{path.name}"
    s3_server.client().upload_file(str(path), s3_server.bucket, key)
    return f"s3://{s3_server.bucket}/{key}"


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def test_a_forked_transcribe_replica_transcribes(
    forked: Any, s3_server: Any, tmp_path: Path
) -> None:
    speech = make_audio_only(tmp_path / "speech.wav", SENTENCES)
    zygote, replica = forked("stages.transcribe")
    ready = httpx.get(replica.url + "/_/ready").json()
    assert ready["startup"]["from_zygote"] is True and ready["pid"] == replica.pid
    assert ready["startup"]["zygote_pid"] == zygote.pid
    assert ready["startup"]["model_load_s"] > 0  # the model loads in the replica, not the zygote
    body = {
        "request_id": f"z-{uuid.uuid4().hex[:8]}",
        "input": {"audio": _upload(s3_server, Path(speech.path))},
    }
    response = httpx.post(replica.url + "/", json=body, timeout=120)
    assert response.status_code == 200, response.text + replica.log_tail()
    text = response.json()["outputs"]["text"]
    assert jiwer.wer(_words(speech.transcript), _words(text) or "<empty>") < 0.25, text
    # The replica loaded the int8 copy its zygote made, with the tokenizer its zygote parsed.
    lines = replica.log_path.read_text().splitlines()
    loaded = [json.loads(x) for x in lines if x.startswith("{") and '"model_loaded"' in x]
    assert len(loaded) == 1 and loaded[0]["int8_copy_error"] is None, loaded
    assert loaded[0]["prepared_pid"] == zygote.pid
    assert "-int8-" in Path(loaded[0]["path"]).name


def test_a_forked_detect_objects_replica_detects(forked: Any, s3_server: Any) -> None:
    zygote, replica = forked("stages.detect_objects")
    # The network was loaded (and run once) in the zygote: the replica's init has nothing left.
    assert zygote.phases["preload_s"] > 0
    ready = httpx.get(replica.url + "/_/ready").json()
    assert ready["startup"]["from_zygote"] is True
    photo = _upload(s3_server, get_photo("zidane").path)
    body = {
        "request_id": f"z-{uuid.uuid4().hex[:8]}",
        "input": {"frames": [{"uri": photo, "time_s": 0.0, "index": 0}]},
        "config": {"input_size": 608},
    }
    response = httpx.post(replica.url + "/", json=body, timeout=120)
    assert response.status_code == 200, response.text + replica.log_tail()
    frame = response.json()["outputs"]["frames"][0]
    # As the in-process model tests find at 608: both people, one in each half of zidane.jpg.
    people = [o for o in frame["objects"] if o["label"] == "person" and o["score"] >= 0.5]
    centres = sorted((o["box"][0] + o["box"][2]) / 2 for o in people)
    assert len(centres) == 2, frame
    assert centres[0] < frame["width"] / 2 < centres[1]
