"""ObjectStore against two real S3 servers: the embedded SeaweedFS and MinIO.

The cluster path stores everything in MinIO, the embedded platform in SeaweedFS; the same
assertions run against both so a difference between the servers (conditional writes, copy,
presigned URLs, multipart) shows up here rather than in a cluster run. MinIO is, in order:
the server `./vsearch platform build minio` built from its pinned Go module (a process on
loopback with a root account generated per run: harness/cluster/minio_server.py); else a
testcontainers container of the image pinned by digest in manifests/minio/minio.yaml (read
from there, so the tests and the cluster use one pin). It skips with both reasons when neither
is available (our CI machines cannot reach quay.io).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import string
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from base.config import StorageSettings
from base.errors import InputNotFound
from base.storage import ObjectStore, PreconditionFailed

ROOT = Path(__file__).resolve().parents[2]
MINIO_MANIFEST = ROOT / "manifests" / "minio" / "minio.yaml"
BUCKET = "vsearch-tests"


def minio_image() -> str:
    """The MinIO server image the cluster runs (``repo:tag@sha256:...``)."""
    for doc in yaml.safe_load_all(MINIO_MANIFEST.read_text()):
        if (doc or {}).get("kind") != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "minio":
                return str(container["image"])
    raise AssertionError(f"no minio container in {MINIO_MANIFEST}")


def _token(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _built_minio() -> tuple[Path | None, str]:
    """The MinIO server binary built from its pinned module, or why there is none."""
    from harness.cluster import builder

    binary = builder.cached("minio")
    if binary is not None:
        return binary, ""
    version = builder.pinned_version(builder.COMPONENTS["minio"])
    return None, (
        f"MinIO {version} is not built (./vsearch platform build minio, cache "
        f"{builder.cache_root()})"
    )


@pytest.fixture(scope="module")
def minio_store() -> Iterator[ObjectStore]:
    binary, not_built = _built_minio()
    if binary is not None:
        from harness.cluster.minio_server import MinioServer

        with MinioServer(binary, bucket=BUCKET) as server:
            yield ObjectStore(
                StorageSettings(
                    endpoint_url=server.endpoint_url,
                    bucket=BUCKET,
                    access_key=SecretStr(server.access_key),
                    secret_key=SecretStr(server.secret_key),
                )
            )
        return
    try:
        from docker.errors import DockerException
        from testcontainers.community.minio import MinioContainer
        from testcontainers.core.config import testcontainers_config
    except ImportError as exc:
        pytest.skip(f"{not_built}; testcontainers[minio] is not installed ({exc.name})")
    # TESTCONTAINERS_RYUK_DISABLED=true, set on the configuration itself (it reads the variable
    # once): Ryuk, the reaper container, is one more image to pull; we stop ours in `finally`.
    testcontainers_config.ryuk_disabled = True
    image = minio_image()
    user, password = _token(16), _token(32)
    try:
        container = MinioContainer(image, access_key=user, secret_key=password)
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unset, so /var/run/docker.sock")
        pytest.skip(f"{not_built}; no Docker engine (DOCKER_HOST {where}) for {image}: {exc}")
    # Newer MinIO releases read the root account from these; the container sets the old names.
    container.with_env("MINIO_ROOT_USER", user).with_env("MINIO_ROOT_PASSWORD", password)
    try:
        container.start()
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:300]
        with contextlib.suppress(DockerException):
            container.stop()  # whatever part of it was created
        pytest.skip(f"{not_built}; MinIO image {image} could not be pulled or started: {reason}")
    try:
        endpoint = container.get_config()["endpoint"]
        settings = StorageSettings(
            endpoint_url=f"http://{endpoint}",
            bucket=BUCKET,
            access_key=SecretStr(user),
            secret_key=SecretStr(password),
        )
        store = ObjectStore(settings)
        store.client.create_bucket(Bucket=BUCKET)
        yield store
    finally:
        container.stop()


@pytest.fixture(scope="module")
def seaweedfs_store(s3_server: Any) -> ObjectStore:
    return ObjectStore(StorageSettings.from_env(s3_server.env()))


@pytest.fixture(params=["seaweedfs", "minio"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def _prefix() -> str:
    return f"tests/servers/{uuid.uuid4().hex[:10]}"


def test_put_get_and_list(store: ObjectStore) -> None:
    prefix = _prefix()
    etag = store.put_bytes(f"{prefix}/a.bin", b"\x00hello\xff", content_type="image/jpeg")
    body, got_etag = store.get_bytes(f"{prefix}/a.bin")
    assert body == b"\x00hello\xff" and got_etag == etag
    head = store.client.head_object(Bucket=store.bucket, Key=f"{prefix}/a.bin")
    assert head["ContentType"] == "image/jpeg"
    store.put_json(f"{prefix}/b.json", {"x": [1, 2]})
    assert store.get_json(f"{prefix}/b.json")[0] == {"x": [1, 2]}
    assert sorted(store.list_keys(prefix + "/")) == [f"{prefix}/a.bin", f"{prefix}/b.json"]
    assert store.size(f"{prefix}/a.bin") == 7 and not store.exists(f"{prefix}/none")
    with pytest.raises(InputNotFound):
        store.get_bytes(f"{prefix}/none")


def test_streaming_multipart_roundtrip(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    # Above the 16 MiB threshold: a multipart upload and a ranged download.
    src.write_bytes(os.urandom(1 << 20) * 17 + b"tail")
    key = f"{_prefix()}/big.bin"
    assert store.upload(src, key) == src.stat().st_size
    dest = tmp_path / "back.bin"
    assert store.download(key, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()


def test_conditional_puts(store: ObjectStore) -> None:
    key = f"{_prefix()}/state.json"
    first = store.put_json(key, {"v": 1}, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": "second creator"}, if_none_match="*")
    second = store.put_json(key, {"v": 2}, if_match=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        store.put_json(key, {"v": "stale writer"}, if_match=first)
    assert store.get_json(key) == ({"v": 2}, second)


def test_server_side_copy(store: ObjectStore) -> None:
    prefix = _prefix()
    store.put_bytes(f"{prefix}/src.mp4", b"clip bytes", content_type="video/mp4")
    store.copy(f"{prefix}/src.mp4", f"{prefix}/copy/dst.mp4")
    assert store.get_bytes(f"{prefix}/copy/dst.mp4")[0] == b"clip bytes"
    with pytest.raises(InputNotFound):
        store.copy(f"{prefix}/missing.mp4", f"{prefix}/copy/none.mp4")


def test_presigned_urls_work_without_credentials_and_expire(store: ObjectStore) -> None:
    key = f"{_prefix()}/shared.mp4"
    store.put_bytes(key, b"shared clip")
    with httpx.Client(trust_env=False, timeout=10.0) as http:
        assert http.get(store.presign(key, expires_s=60)).content == b"shared clip"
        # The same object without a signature, and with a tampered one, is refused.
        unsigned = f"{store.settings.endpoint_url}/{store.bucket}/{key}"
        assert http.get(unsigned).status_code == 403
        tampered = store.presign(key, expires_s=60).replace("X-Amz-Expires=60", "X-Amz-Expires=61")
        assert http.get(tampered).status_code == 403
