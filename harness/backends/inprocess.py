"""The in-process baseline: the monolith that "going serverless" is measured against.

The same stage handlers (`stages.*.handler.FUNCTION`) and the same DAG (`orchestrator.pipeline`)
run in one warm Python process, one call at a time: no gateway, no HTTP, no replicas, and the
object store is a local directory (a hard link instead of an S3 transfer). Each model is loaded
once, before the first request. What is left is the pipeline's own work (the same ffmpeg
commands, librosa, Whisper, YOLO), done sequentially.

It is the one harness module that imports stages/ and orchestrator/ (everything else in
harness/ drives the functions over process and HTTP boundaries only): a baseline that ran other
code than the functions would not measure what serverless costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.config import RuntimeSettings, StorageSettings
from base.contracts import ErrorResult, InvocationResult
from base.errors import InputNotFound, InputTooLarge
from base.runtime import FunctionServer
from base.storage import (
    ObjectStore,
    PreconditionFailed,
    check_input_size,
    upload_key,
    validate_key,
)
from harness.functions import load as load_functions
from harness.workload import new_request_id

#: The stage functions the pipeline calls, by name -> module, as manifests/functions.yaml
#: declares them (the orchestrator is the pipeline itself here).
STAGES: dict[str, str] = {
    fn.name: fn.module for fn in load_functions().functions if fn.module.startswith("stages.")
}
BUCKET = "vsearch"


class _Body:
    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        while chunk := self._file.read(size):
            yield chunk

    def read(self) -> bytes:
        return self._file.read()

    def close(self) -> None:
        self._file.close()


class _LocalClient:
    """The one boto3 call the pipeline makes directly (streaming get_object for the hash)."""

    def __init__(self, store: LocalObjectStore) -> None:
        self._store = store

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        path = self._store.path(Key)
        if not path.is_file():
            raise InputNotFound(f"no such object: {Key}")
        return {"Body": _Body(path), "ContentLength": path.stat().st_size}


class LocalObjectStore(ObjectStore):
    """ObjectStore over a directory: same keys, URIs, limits and conditional writes as S3."""

    def __init__(self, root: Path, bucket: str = BUCKET) -> None:
        # No boto3 client: nothing here leaves the machine, so no credentials exist either.
        self.root = root
        self.bucket = bucket
        self.settings = StorageSettings(
            endpoint_url=None, bucket=bucket, access_key="local", secret_key="local"
        )
        self._lock = threading.Lock()
        self._client = _LocalClient(self)

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def size(self, key: str) -> int:
        path = self.path(key)
        if not path.is_file():
            raise InputNotFound(f"no such object: {key}")
        return path.stat().st_size

    def download(self, key: str, dest: Path, *, max_bytes: int | None = None) -> int:
        size = self.size(key)
        check_input_size(key, size, max_bytes)
        _link(self.path(key), dest)
        return size

    def upload(self, path: Path, key: str, *, content_type: str | None = None) -> int:
        _link(path, self.path(key))
        return path.stat().st_size

    def put_bytes(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> str:
        path = self.path(key)
        with self._lock:
            current = _etag(path.read_bytes()) if path.is_file() else None
            if if_none_match == "*" and current is not None:
                raise PreconditionFailed(key)
            if if_match is not None and if_match != current:
                raise PreconditionFailed(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(body)
            tmp.replace(path)
        return _etag(body)

    def get_bytes(self, key: str, *, max_bytes: int = 16 << 20) -> tuple[bytes, str]:
        if self.size(key) > max_bytes:
            raise InputTooLarge(f"{key} is larger than {max_bytes} bytes")
        body = self.path(key).read_bytes()
        return body, _etag(body)

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix.rstrip("/") else self.root
        top = base if base.is_dir() else base.parent
        if not top.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in top.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith("."))

    def copy(self, source_key: str, dest_key: str) -> None:
        source = self.path(source_key)
        if not source.is_file():
            raise InputNotFound(f"no such object: {source_key}")
        _link(source, self.path(dest_key))

    def presign(self, key: str, *, expires_s: int = 900) -> str:
        return self.path(key).as_uri()


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


def _link(source: Path, dest: Path) -> None:
    """A hard link where possible (no bytes copied), else a copy; replaces `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


class InProcessClient:
    """GatewayClient's `call` without a gateway: the handler runs in this process, one call at a
    time (the monolith is sequential), on a worker thread so the pipeline's loop stays free."""

    def __init__(self, servers: dict[str, FunctionServer]) -> None:
        self.servers = servers
        self._one_at_a_time = threading.Lock()

    async def call(
        self,
        function: str,
        *,
        request_id: str,
        step: str,
        input: dict[str, Any],
        config: dict[str, Any],
        deadline: Any,
        fanout: int | None = None,
        records: list[Any] | None = None,
    ) -> Any:
        from orchestrator.client import CallResult, StageError
        from orchestrator.contracts import InvocationRecord

        body: dict[str, Any] = {"request_id": request_id, "input": input, "config": config}
        if fanout is not None:
            body["fanout"] = fanout
        server = self.servers[function]
        started_at, t0 = time.time(), time.monotonic()

        def run() -> tuple[int, Any]:
            with self._one_at_a_time:
                return server.call_here(body, deadline=time.monotonic() + deadline.remaining())

        status, payload = await asyncio.to_thread(run)
        ok = isinstance(payload, InvocationResult)
        record = InvocationRecord(
            function=function,
            step=step,
            attempt=1,
            fanout=fanout,
            status_code=status,
            outcome="ok" if ok else "failed",
            error_code=None if ok else payload.error.code,
            started_at=started_at,
            client_latency_s=round(time.monotonic() - t0, 4),
            function_duration_s=payload.metrics.wall_s if payload.metrics else None,
            metrics=payload.metrics,
        )
        if records is not None:
            records.append(record)
        if not ok:
            assert isinstance(payload, ErrorResult)
            raise StageError(
                status,
                payload.error.code,
                f"{function} ({step}): {payload.error.message}",
                function=function,
                step=step,
            )
        return CallResult(outputs=payload.outputs, metrics=payload.metrics, attempts=[record])


@dataclass
class BaselineRun:
    """One request through the baseline: its answer and what it cost this process."""

    answer: dict[str, Any]
    wall_s: float
    cpu_s: float


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class InProcessBaseline:
    """Load every stage once (`start`), then `search` videos sequentially in this process."""

    name = "inprocess"

    def __init__(self, root: Path | None = None) -> None:
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="vsearch-inprocess-"))
        self.store = LocalObjectStore(self.root / BUCKET)
        self.servers: dict[str, FunctionServer] = {}
        #: Seconds per stage for import + init (model load), measured by `start`.
        self.load_s: dict[str, float] = {}

    def start(self) -> None:
        settings = RuntimeSettings(replica="inprocess")
        for name, module in STAGES.items():
            t0 = time.monotonic()
            function = importlib.import_module(f"{module}.handler").FUNCTION
            server = FunctionServer(function, settings, self.store)
            server.init()
            self.servers[name] = server
            self.load_s[name] = round(time.monotonic() - t0, 3)

    def close(self) -> None:
        for server in self.servers.values():
            server.executor.shutdown(wait=False)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> InProcessBaseline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(self, path: Path, key: str) -> str:
        self.store.upload(path, key)
        return self.store.uri(key)

    def search(self, video: Path, query: str, config: dict[str, Any] | None = None) -> BaselineRun:
        """One request, answered in the orchestrator's envelope (`status`, `outputs`)."""
        from orchestrator.client import Deadline
        from orchestrator.contracts import Config, Output
        from orchestrator.pipeline import Pipeline, error_info

        if not self.servers:
            self.start()
        request_id = new_request_id("inproc")
        uri = self.upload(video, upload_key(request_id, video.name))
        cfg = Config.model_validate({"query": query, **(config or {})})
        cpu0, t0 = _cpu_now(), time.monotonic()
        pipeline = Pipeline(
            store=self.store,
            client=InProcessClient(self.servers),  # type: ignore[arg-type]
            request_id=request_id,
            video_uri=uri,
            config=cfg,
            deadline=Deadline(cfg.deadline_s),
            started=t0,
        )
        try:
            output: Output = asyncio.run(pipeline.run())
            answer: dict[str, Any] = {
                "status": "ok",
                "function": "orchestrator",
                "request_id": request_id,
                "outputs": output.model_dump(mode="json"),
            }
        except Exception as exc:
            info = error_info(exc)
            answer = {
                "status": "error",
                "function": "orchestrator",
                "request_id": request_id,
                "error": {"code": info.code, "message": info.message},
                "http_status": info.status,
            }
        return BaselineRun(answer=answer, wall_s=time.monotonic() - t0, cpu_s=_cpu_now() - cpu0)
