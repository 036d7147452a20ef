"""Claim-check storage over S3: media moves through the bucket, functions pass URIs.

Every key a function writes is `requests/{request_id}/{function}/{name}`, so a retried invocation
overwrites its own output and nothing else. Transfers stream to and from files (boto3's managed
transfer, multipart above a threshold): a whole video is never held in memory.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from base.config import StorageSettings
from base.errors import (
    BadInput,
    InputNotFound,
    InputTooLarge,
    InvalidRequest,
    StorageUnavailable,
)

MAX_KEY_LENGTH = 900
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,199}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LARGE = 16 << 20
_TRANSFER = TransferConfig(multipart_threshold=_LARGE, multipart_chunksize=_LARGE)
#: Tries of a single-GET download whose body broke off (boto3 retries the request itself).
_SMALL_ATTEMPTS = 3


class PreconditionFailed(Exception):
    """A conditional write lost the race (If-Match / If-None-Match)."""


def validate_key(key: str) -> str:
    """Accept only relative keys made of safe segments: no `..`, no absolute paths, bounded."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"object key must be 1..{MAX_KEY_LENGTH} characters", code="bad_key")
    if key.startswith("/") or "\\" in key or "//" in key:
        raise InvalidRequest("object key must be relative and normalised", code="bad_key")
    for segment in key.split("/"):
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise InvalidRequest(
                f"object key has an unsafe segment: {segment[:40]!r}", code="bad_key"
            )
    return key


def request_key(request_id: str, *parts: str) -> str:
    return validate_key("/".join(["requests", request_id, *parts]))


def upload_key(tag: str, name: str) -> str:
    """Where a client puts a video before a request copies it in: `uploads/{tag}/{name}`."""
    return validate_key(f"uploads/{tag}/{safe_segment(name)}")


def safe_segment(name: str) -> str:
    """A key segment from a file name or a key's last part, recognisable (validate_key accepts
    it): other characters become `_`, the stem is cut to 100 characters, the suffix kept."""
    name = _UNSAFE.sub("_", PurePosixPath(name).name).strip("._-")
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= 8:
        name = f"{stem[:100].rstrip('._-') or 'video'}.{ext.lower()}"
    else:
        name = name[:100].rstrip("._-")
    return name or "video"


def check_input_size(key: str, size: int, max_bytes: int | None) -> None:
    """Refuse an empty input, or one over `max_bytes`, before any byte of it is read."""
    if size == 0:
        raise BadInput(f"input object is empty (0 bytes): {key}", code="empty_input")
    if max_bytes is not None and size > max_bytes:
        raise InputTooLarge(f"input is {size} bytes, the limit is {max_bytes}")


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


@contextlib.contextmanager
def _missing_is_not_found(key: str) -> Iterator[None]:
    """S3's answer that the key (or the bucket) does not exist, as the caller's 404."""
    try:
        yield
    except ClientError as exc:
        if _is_missing(exc):
            raise InputNotFound(f"no such object: {key}") from exc
        raise


def _is_precondition(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in (409, 412)


#: One boto3 session per process: its loader caches the S3 service model, whose parsing is
#: most of a client's creation (0.2-0.6 s on a loaded host; ~0.01 s once cached).
_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def _client(**kwargs: Any) -> Any:
    global _session
    with _session_lock:  # a boto3 session is not thread-safe; its clients are
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


def warm() -> None:
    """Load the S3 service model once, offline (a zygote does this so its forks do not)."""
    _client(
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="warm-up",
        aws_secret_access_key="warm-up",
        region_name="us-east-1",
    )


class ObjectStore:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = _client(
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key.get_secret_value(),
            aws_secret_access_key=settings.secret_key.get_secret_value(),
            region_name=settings.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                # Standard mode retries throttling and connection errors with backoff, which
                # rides out a restart of the S3 server.
                retries={"max_attempts": 8, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
            ),
        )

    @property
    def client(self) -> Any:
        return self._client

    # -- URIs ---------------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{validate_key(key)}"

    def key_of(self, uri: str) -> str:
        """The key of an `s3://bucket/key` URI, refusing other buckets and unsafe keys."""
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise InvalidRequest("input must be an s3:// URI", code="bad_uri")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket != self.bucket:
            raise InvalidRequest(
                f"input must be in the configured bucket, not {bucket[:64]!r}",
                code="foreign_bucket",
            )
        return validate_key(key)

    # -- objects ------------------------------------------------------------------------------
    def size(self, key: str) -> int:
        with _missing_is_not_found(key):
            head = self._call(self._client.head_object, Bucket=self.bucket, Key=key)
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except InputNotFound:
            return False
        return True

    def download(self, key: str, dest: Path, *, max_bytes: int | None = None) -> int:
        """Stream an object to `dest`; refuse empty or oversize objects before transferring.

        Below the multipart threshold one GET streams straight into `dest` (its length checked
        before the body is read); boto3's managed transfer, which starts a thread pool per
        call (~4 ms of CPU more per object, measured), is kept for large objects."""
        for attempt in range(_SMALL_ATTEMPTS):
            with _missing_is_not_found(key):
                obj = self._call(self._client.get_object, Bucket=self.bucket, Key=key)
            size = int(obj.get("ContentLength", 0))
            if size == 0 or (max_bytes is not None and size > max_bytes) or size >= _LARGE:
                obj["Body"].close()
                break
            try:
                with dest.open("wb") as out:
                    for chunk in obj["Body"].iter_chunks(1 << 20):
                        out.write(chunk)
            except BotoCoreError as exc:  # botocore wraps urllib3 read timeouts and resets
                if attempt + 1 == _SMALL_ATTEMPTS:
                    raise StorageUnavailable(
                        f"object store read failed: {type(exc).__name__}"
                    ) from exc
                continue
            if dest.stat().st_size != size:
                if attempt + 1 == _SMALL_ATTEMPTS:
                    raise StorageUnavailable(f"object store sent a short body for {key}")
                continue
            return size
        check_input_size(key, size, max_bytes)
        with _missing_is_not_found(key):
            self._call(self._client.download_file, self.bucket, key, str(dest), Config=_TRANSFER)
        return size

    def upload(self, path: Path, key: str, *, content_type: str | None = None) -> int:
        """Store a file; below the multipart threshold as one PUT streamed from the file,
        above it with boto3's managed (multipart) transfer."""
        size = path.stat().st_size
        if size < _LARGE:
            extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
            with path.open("rb") as body:
                self._call(
                    self._client.put_object,
                    Bucket=self.bucket,
                    Key=validate_key(key),
                    Body=body,
                    **extra,
                )
            return size
        self._call(
            self._client.upload_file,
            str(path),
            self.bucket,
            validate_key(key),
            ExtraArgs={"ContentType": content_type} if content_type else None,
            Config=_TRANSFER,
        )
        return size

    def put_bytes(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> str:
        """Write a small object; with a condition, raise PreconditionFailed on a lost race."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": validate_key(key),
            "Body": body,
            "ContentType": content_type,
        }
        if if_match:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = if_none_match
        try:
            return str(self._call(self._client.put_object, **kwargs)["ETag"])
        except ClientError as exc:
            if _is_precondition(exc):
                raise PreconditionFailed(key) from exc
            raise

    def put_json(self, key: str, value: Any, **conditions: str | None) -> str:
        body = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        return self.put_bytes(key, body, content_type="application/json", **conditions)

    def get_bytes(self, key: str, *, max_bytes: int = 16 << 20) -> tuple[bytes, str]:
        """A small object's body and ETag (JSON state, transcripts), bounded in size."""
        with _missing_is_not_found(key):
            obj = self._call(self._client.get_object, Bucket=self.bucket, Key=validate_key(key))
        if int(obj.get("ContentLength", 0)) > max_bytes:
            obj["Body"].close()
            raise InputTooLarge(f"{key} is larger than {max_bytes} bytes")
        return obj["Body"].read(), str(obj["ETag"])

    def get_json(self, key: str) -> tuple[Any, str]:
        body, etag = self.get_bytes(key)
        try:
            return json.loads(body), etag
        except ValueError as exc:
            raise BadInput(f"{key} is not JSON") from exc

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in self._call(paginator.paginate, Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def copy(self, source_key: str, dest_key: str) -> None:
        """Server-side copy inside the bucket (no bytes through this process)."""
        with _missing_is_not_found(source_key):
            self._call(
                self._client.copy_object,
                Bucket=self.bucket,
                Key=validate_key(dest_key),
                CopySource={"Bucket": self.bucket, "Key": validate_key(source_key)},
            )

    def read_url(self, key: str, *, max_bytes: int | None = None, expires_s: int = 600) -> str:
        """A presigned GET URL for a tool that reads only the bytes it needs with range
        requests (ffmpeg seeking into a video) instead of a download of the whole object. The
        same checks as `download` first (missing, empty, too large). The URL carries a
        signature: pass it to a child process, never to a log or an error message."""
        check_input_size(key, self.size(validate_key(key)), max_bytes)
        return self.presign(key, expires_s=expires_s)

    def presign(self, key: str, *, expires_s: int = 900) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        )

    @staticmethod
    def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Map an unreachable or failing S3 server to a retryable 503 for the caller."""
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status >= 500:
                raise StorageUnavailable(f"object store error {status}") from exc
            raise
        except (
            EndpointConnectionError,
            BotoCoreError,
            S3UploadFailedError,
            S3TransferFailedError,
        ) as exc:
            raise StorageUnavailable(f"object store unreachable: {type(exc).__name__}") from exc
