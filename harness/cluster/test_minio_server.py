"""MinioServer on the binary `./vsearch platform build minio` built (skips when not built)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness.cluster import builder
from harness.cluster.minio_server import MinioServer, MinioServerError


@pytest.fixture(scope="module")
def server() -> MinioServer:
    binary = builder.cached("minio")
    if binary is None:
        pytest.skip(f"MinIO is not built: ./vsearch platform build minio ({builder.cache_root()})")
    with MinioServer(binary, bucket="probe") as running:
        yield running  # type: ignore[misc]


def test_runs_the_pinned_commit_on_loopback_with_its_own_account(server: MinioServer) -> None:
    record = builder.cached_record("minio")
    assert record is not None
    commit = record.version.rsplit("-", 1)[1]
    assert f"commit-id={commit}" in server.version()
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    client = server.client()
    client.put_object(Bucket="probe", Key="k", Body=b"v")
    assert client.get_object(Bucket="probe", Key="k")["Body"].read() == b"v"
    assert server.secret_key not in repr(server)


def test_a_wrong_secret_is_refused(server: MinioServer) -> None:
    import boto3

    wrong = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key="not-the-secret-" + os.urandom(4).hex(),
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as info:
        wrong.list_objects_v2(Bucket="probe")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_stop_ends_the_process_and_removes_its_data() -> None:
    binary = builder.cached("minio")
    if binary is None:
        pytest.skip("MinIO is not built: ./vsearch platform build minio")
    server = MinioServer(binary, bucket="gone").start()
    data_dir, proc = server.data_dir, server._proc
    assert data_dir is not None and data_dir.is_dir() and proc is not None
    assert server.startup_seconds is not None and server.startup_seconds < 60
    server.stop()
    assert proc.poll() is not None and not data_dir.exists()


def test_an_invalid_bucket_fails_at_once_with_minios_answer() -> None:
    binary = builder.cached("minio")
    if binary is None:
        pytest.skip("MinIO is not built: ./vsearch platform build minio")
    with pytest.raises(MinioServerError, match="InvalidBucketName"):
        MinioServer(binary, bucket="b", startup_timeout=30).start()


def test_the_built_mc_administers_the_built_minio(server: MinioServer, tmp_path: Path) -> None:
    mc = builder.cached("mc")
    if mc is None:
        pytest.skip("mc is not built: ./vsearch platform build mc")
    host = server.endpoint_url.removeprefix("http://")
    # The alias through the environment: the secret stays out of argv and of mc's config.
    env = dict(os.environ, MC_HOST_t=f"http://{server.access_key}:{server.secret_key}@{host}")

    def mc_run(*args: str) -> str:
        done = subprocess.run(
            [str(mc), "--config-dir", str(tmp_path / "mc"), "--no-color", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    (tmp_path / "x.txt").write_text("made by mc\n")
    mc_run("mb", "t/mc-bucket")
    mc_run("cp", str(tmp_path / "x.txt"), "t/mc-bucket/x.txt")
    assert mc_run("cat", "t/mc-bucket/x.txt") == "made by mc\n"
    body = server.client().get_object(Bucket="mc-bucket", Key="x.txt")["Body"].read()
    assert body == b"made by mc\n"
