"""Tests for the embedded SeaweedFS S3 launcher, against real ``weed mini`` processes."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from harness.embedded.s3_server import GRPC_OFFSET, HOST, S3ServerError, SeaweedS3

MB = 1024 * 1024


@pytest.fixture
def key_prefix() -> str:
    """Keys unique to one test, since the session server's bucket is shared."""
    return f"test-s3-server/{uuid.uuid4().hex}/"


@pytest.fixture(scope="module")
def second_server() -> Iterator[SeaweedS3]:
    """A server of this module's own, for tests that restart it or need two at once."""
    with SeaweedS3(bucket="second") as server:
        yield server


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _client_with_secret(server: SeaweedS3, secret: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _all_ports(server: SeaweedS3) -> set[int]:
    http = set(server.ports.values())
    return http | {port + GRPC_OFFSET for port in http}


def test_started_server_is_described_by_env(s3_server: SeaweedS3) -> None:
    env = s3_server.env()
    assert env["S3_ENDPOINT_URL"] == s3_server.endpoint_url
    assert env["S3_ENDPOINT_URL"].startswith(f"http://{HOST}:")
    assert env["S3_BUCKET"] == s3_server.bucket == "vsearch"
    assert env["AWS_ACCESS_KEY_ID"] == s3_server.access_key
    assert env["AWS_SECRET_ACCESS_KEY"] == s3_server.secret_key
    assert env["AWS_REGION"] == "us-east-1"
    assert s3_server.startup_seconds is not None
    assert 0 < s3_server.startup_seconds < s3_server.startup_timeout
    assert (s3_server.data_dir / "mini.options").is_file()


def test_put_get_round_trip(s3_server: SeaweedS3, key_prefix: str) -> None:
    s3 = s3_server.client()
    body = b"hello \x00\xff world" * 100
    s3.put_object(Bucket=s3_server.bucket, Key=key_prefix + "blob", Body=body)

    got = s3.get_object(Bucket=s3_server.bucket, Key=key_prefix + "blob")
    assert got["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=key_prefix)
    assert [obj["Key"] for obj in listed["Contents"]] == [key_prefix + "blob"]


def test_multipart_upload(s3_server: SeaweedS3, key_prefix: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(uuid.uuid4().bytes * (12 * MB // 16))
    # 5 MB is S3's minimum part size; 12 MB therefore makes three parts.
    transfer = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    s3 = s3_server.client()

    s3.upload_file(str(source), s3_server.bucket, key_prefix + "big", Config=transfer)

    head = s3.head_object(Bucket=s3_server.bucket, Key=key_prefix + "big")
    assert head["ContentLength"] == source.stat().st_size
    assert head["ETag"].strip('"').endswith("-3"), "expected a three-part multipart ETag"
    copy = tmp_path / "copy.bin"
    s3.download_file(s3_server.bucket, key_prefix + "big", str(copy))
    assert (
        hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


def test_wrong_credentials_are_rejected(s3_server: SeaweedS3, key_prefix: str) -> None:
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key_prefix + "x", Body=b"x")
    wrong_secret = _client_with_secret(s3_server, "not-the-secret")

    with pytest.raises(ClientError) as err:
        wrong_secret.get_object(Bucket=s3_server.bucket, Key=key_prefix + "x")
    assert _error(err) == ("SignatureDoesNotMatch", 403)

    # Anonymous requests must not get through either (weed allows everything without creds).
    url = f"{s3_server.endpoint_url}/{s3_server.bucket}/{key_prefix}x"
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(url, timeout=10)
    assert http_err.value.code == 403


def test_conditional_puts(s3_server: SeaweedS3, key_prefix: str) -> None:
    """If-None-Match / If-Match, which the orchestrator's state writes rely on."""
    s3, bucket, key = s3_server.client(), s3_server.bucket, key_prefix + "state.json"

    first = s3.put_object(Bucket=bucket, Key=key, Body=b"v1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=key, Body=b"clobber", IfNoneMatch="*")
    assert _error(err) == ("PreconditionFailed", 412)

    second = s3.put_object(Bucket=bucket, Key=key, Body=b"v2", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=key, Body=b"lost update", IfMatch=first["ETag"])
    assert _error(err) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=key_prefix + "absent", Body=b"x", IfMatch=second["ETag"])
    assert _error(err)[1] in (404, 412)

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v2"


def test_two_servers_do_not_collide(s3_server: SeaweedS3, second_server: SeaweedS3) -> None:
    assert not _all_ports(s3_server) & _all_ports(second_server)
    assert s3_server.data_dir != second_server.data_dir
    assert s3_server.secret_key != second_server.secret_key

    second_server.client().put_object(Bucket="second", Key="only-here", Body=b"2")
    buckets = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert "second" not in buckets
    # One server's credentials mean nothing to the other.
    with pytest.raises(ClientError) as err:
        s3_server.client().get_object(Bucket="second", Key="only-here")
    assert _error(err)[1] in (403, 404)


def test_restart_keeps_objects_endpoint_and_credentials(second_server: SeaweedS3) -> None:
    s3 = second_server.client()
    s3.put_object(Bucket="second", Key="survivor", Body=b"still here")
    before = (second_server.endpoint_url, second_server.access_key, second_server.data_dir)
    old_pid = second_server.pid

    second_server.restart()

    assert second_server.pid != old_pid
    assert (second_server.endpoint_url, second_server.access_key, second_server.data_dir) == before
    # The client made before the restart keeps working: same endpoint, same keys.
    assert s3.get_object(Bucket="second", Key="survivor")["Body"].read() == b"still here"


def test_secret_is_not_leaked(second_server: SeaweedS3) -> None:
    # Provoke an auth failure first: the likeliest moment for a server to log key material.
    bad = _client_with_secret(second_server, "wrong")
    with pytest.raises(ClientError):
        bad.list_objects_v2(Bucket="second")

    secret = second_server.secret_key
    assert secret not in repr(second_server)
    assert secret not in str(second_server)
    assert second_server.log_path.stat().st_size > 0
    assert secret not in second_server.log_path.read_text(errors="replace")
    assert secret not in (second_server.data_dir / "mini.options").read_text()


def test_caller_data_dir_is_kept_and_early_exit_is_reported(tmp_path: Path) -> None:
    data_dir = tmp_path / "s3-data"
    server = SeaweedS3(data_dir=data_dir)
    with server:
        server.client().put_object(Bucket="vsearch", Key="k", Body=b"v")
    assert not server.is_running()
    assert (data_dir / "weed.log").is_file()

    # Ports stay pinned for a caller-owned dir, so a squatter on one of them makes weed exit.
    # Squatting the master rather than the S3 port keeps the readiness probe from talking to
    # the squatter (and waiting out its read timeout) instead of failing fast.
    with socket.socket() as squatter:
        # SO_REUSEADDR: the just-stopped server's closed connections leave the port in TIME_WAIT.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, server.ports["master"]))
        squatter.listen()
        with pytest.raises(S3ServerError, match="weed exited") as err:
            server.start()
    assert str(server.ports["master"]) in str(err.value)  # the log tail names the port
    assert not server.is_running()
    assert data_dir.is_dir()


def test_port_race_is_retried_and_owned_data_dir_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checks sharing one server, since each server costs ~4 s of start plus stop."""
    import harness.embedded.s3_server as s3_server_module

    real_pick_ports = s3_server_module.pick_ports
    first = real_pick_ports()
    draws = [first]
    monkeypatch.setattr(
        s3_server_module, "pick_ports", lambda: draws.pop(0) if draws else real_pick_ports()
    )
    with socket.socket() as squatter:
        # Another process grabbing one of the drawn ports between our check and weed's bind.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, first["master"]))
        squatter.listen()
        with SeaweedS3() as server:
            assert server.ports != first
            server.client().put_object(Bucket="vsearch", Key="k", Body=b"v")
            data_dir, pid = server.data_dir, server.pid

    assert data_dir.name.startswith("vsearch-s3-")
    assert not data_dir.exists()
    assert not server.is_running()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not just signalled
