"""Claim-check storage: key safety (pure) and transfers and conditions (real S3)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from base.config import StorageSettings
from base.errors import BadInput, InputNotFound, InputTooLarge, InvalidRequest
from base.storage import (
    ObjectStore,
    PreconditionFailed,
    request_key,
    safe_segment,
    upload_key,
    validate_key,
)


@pytest.mark.parametrize(
    "key",
    ["", "/abs/key", "a/../b", "..", "a//b", "a/./b", "a\\b", "x" * 901, "a/\x00b", "a/ b"],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_key(key)


def test_request_keys_are_deterministic() -> None:
    assert request_key("r1", "cut-clips", "clip-0001.mp4") == "requests/r1/cut-clips/clip-0001.mp4"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("uploads/abc/demo.mp4", "demo.mp4"),
        ("uploads/abc/My-Clip_1.MP4", "My-Clip_1.mp4"),
        ("uploads/abc/a=b.mov", "a_b.mov"),
        ("uploads/abc/...", "video"),
        ("uploads/abc/" + "x" * 180 + ".mp4", "x" * 100 + ".mp4"),
        ("uploads/abc/noext", "noext"),
        ("vidéo 日本 (1).MKV", "vid_o_1.mkv"),
    ],
)
def test_safe_segments_keep_names_recognisable(key: str, name: str) -> None:
    assert safe_segment(key) == name
    assert validate_key(name) == name


def test_upload_keys_hold_a_safe_name_under_the_tag() -> None:
    assert upload_key("inproc-1", "../My Talk.MP4") == "uploads/inproc-1/My_Talk.mp4"
    with pytest.raises(InvalidRequest):
        upload_key("a/../b", "x.mp4")


@pytest.fixture(scope="module")
def store(s3_server: Any) -> ObjectStore:
    return ObjectStore(StorageSettings.from_env(s3_server.env()))


def test_uri_must_name_the_configured_bucket(store: ObjectStore) -> None:
    assert store.key_of(f"s3://{store.bucket}/uploads/a.mp4") == "uploads/a.mp4"
    for uri in ["s3://elsewhere/a.mp4", "file:///etc/passwd", "uploads/a.mp4", 42]:
        with pytest.raises(InvalidRequest):
            store.key_of(uri)  # type: ignore[arg-type]


def test_streaming_transfer_roundtrip_and_limits(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 80_000)  # ~20 MB: multipart upload and download
    key = f"tests/{uuid.uuid4().hex[:8]}/big.bin"
    assert store.upload(src, key) == src.stat().st_size
    dest = tmp_path / "back.bin"
    assert store.download(key, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(InputTooLarge):
        store.download(key, tmp_path / "x", max_bytes=1000)
    with pytest.raises(InputNotFound):
        store.download(f"tests/{uuid.uuid4().hex}/none", tmp_path / "y")
    empty = f"tests/{uuid.uuid4().hex[:8]}/empty.mp4"
    store.put_bytes(empty, b"")
    with pytest.raises(BadInput):
        store.download(empty, tmp_path / "z")
    # Below the multipart threshold: one PUT, one streamed GET, the same checks.
    small = tmp_path / "small.jpg"
    small.write_bytes(bytes(range(256)) * 300)
    key = f"tests/{uuid.uuid4().hex[:8]}/small.jpg"
    assert store.upload(small, key, content_type="image/jpeg") == small.stat().st_size
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    assert head["ContentType"] == "image/jpeg"
    assert store.download(key, tmp_path / "s") == small.stat().st_size
    assert (tmp_path / "s").read_bytes() == small.read_bytes()
    with pytest.raises(InputTooLarge):
        store.download(key, tmp_path / "t", max_bytes=1000)


def test_read_url_serves_byte_ranges_after_the_download_checks(store: ObjectStore) -> None:
    import urllib.request

    key = f"tests/{uuid.uuid4().hex[:8]}/video.bin"
    store.put_bytes(key, bytes(range(256)) * 64)
    url = store.read_url(key, max_bytes=1 << 20)
    ranged = urllib.request.Request(url, headers={"Range": "bytes=1000-1009"})
    with urllib.request.urlopen(ranged, timeout=10) as got:  # what ffmpeg's seeks ask for
        assert got.status == 206 and got.read() == bytes(range(256))[1000 % 256 :][:10]
    with pytest.raises(InputTooLarge):
        store.read_url(key, max_bytes=1000)
    with pytest.raises(InputNotFound):
        store.read_url(f"tests/{uuid.uuid4().hex}/none")
    empty = f"tests/{uuid.uuid4().hex[:8]}/empty.mp4"
    store.put_bytes(empty, b"")
    with pytest.raises(BadInput):
        store.read_url(empty)


def test_conditional_writes_detect_lost_races(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4().hex[:8]}/state.json"
    etag = store.put_json(key, {"v": 1}, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": "other creator"}, if_none_match="*")
    new_etag = store.put_json(key, {"v": 2}, if_match=etag)
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": "stale writer"}, if_match=etag)
    value, current = store.get_json(key)
    assert value == {"v": 2} and current == new_etag


def test_a_broken_small_download_is_fetched_again(tmp_path: Path) -> None:
    """One GET per small object: a body that breaks off is fetched again, a short body too,
    and a store that keeps failing is a retryable StorageUnavailable, not a partial file."""
    from botocore.exceptions import ResponseStreamingError

    from base.errors import StorageUnavailable

    data = bytes(range(256)) * 10

    class Body:
        def __init__(self, fail: str | None) -> None:
            self.fail = fail

        def iter_chunks(self, size: int) -> Any:
            if self.fail == "reset":
                yield data[:100]
                raise ResponseStreamingError(error="connection reset")
            yield data[:100] if self.fail == "short" else data

        def close(self) -> None:
            pass

    class Client:
        def __init__(self, failures: list[str | None]) -> None:
            self.failures = failures

        def get_object(self, **_: Any) -> dict[str, Any]:
            fail = self.failures.pop(0) if self.failures else None
            return {"Body": Body(fail), "ContentLength": len(data)}

    settings = StorageSettings(endpoint_url=None, bucket="b", access_key="k", secret_key="s")
    store = ObjectStore(settings)
    store._client = Client(["reset", "short"])
    assert store.download("a/b.bin", tmp_path / "ok") == len(data)
    assert (tmp_path / "ok").read_bytes() == data
    store._client = Client(["reset", "reset", "reset"])
    with pytest.raises(StorageUnavailable):
        store.download("a/b.bin", tmp_path / "broken")
