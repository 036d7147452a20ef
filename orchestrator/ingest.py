"""Bringing the client's video into the request: a server-side copy and a streamed hash.

The request works on its own copy under `requests/{id}/input/`, so a client that deletes or
replaces its upload mid-request cannot change what the stages read, and the copy never passes
through the orchestrator. The hash is computed by streaming the object in chunks (memory stays
flat whatever the video's size).
"""

from __future__ import annotations

import hashlib
import threading

from botocore.exceptions import BotoCoreError, ClientError

from base.errors import InputNotFound, StorageUnavailable
from base.storage import ObjectStore, request_key, safe_segment

_CHUNK = 1 << 20


def input_key(request_id: str, source_key: str) -> str:
    return request_key(request_id, "input", safe_segment(source_key))


def import_video(store: ObjectStore, source_key: str, dest_key: str) -> int:
    """Copy the upload into the request (S3 CopyObject); returns its size in bytes."""
    size = store.size(source_key)  # a missing upload is the caller's 404, before any work
    store.copy(source_key, dest_key)  # and one deleted since then is too (ObjectStore.copy)
    return size


def sha256_of(store: ObjectStore, key: str, cancel: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    try:
        obj = store.client.get_object(Bucket=store.bucket, Key=key)
        body = obj["Body"]
        try:
            for chunk in body.iter_chunks(_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise InterruptedError("hashing cancelled")
                digest.update(chunk)
        finally:
            body.close()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise InputNotFound(f"no such object: {key}") from exc
        raise StorageUnavailable(f"object store error while hashing {key}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object store unreachable while hashing {key}") from exc
    return digest.hexdigest()
