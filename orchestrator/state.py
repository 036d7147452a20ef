"""A request's durable state in S3: the lease-holding state object, step records, progress.

`state.json` is only ever written conditionally. Creating it uses If-None-Match: *, so of two
orchestrators starting the same id exactly one wins; every later write uses If-Match with the
ETag of the holder's last write, so an orchestrator that lost its lease (another took the request
over) finds out on its next write instead of overwriting the new owner's state. The holder
renews a lease while it works; a `running` state whose lease expired belongs to a crashed
orchestrator and may be taken over, reusing the step records it left behind.

Calls here are blocking (boto3); the pipeline runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from base.contracts import RequestId
from base.errors import FunctionError, InputNotFound
from base.storage import ObjectStore, PreconditionFailed, request_key
from base.telemetry import log
from orchestrator.contracts import ErrorInfo, Progress, StateDoc, StepRecord

_REQUEST_ID = re.compile(RequestId.__metadata__[0].pattern)  # type: ignore[attr-defined]


class RequestConflict(FunctionError):
    status = 409
    code = "conflict"


def fingerprint(source_uri: str, fields: dict[str, Any]) -> str:
    """What the request computes; a resumed id must compute the same thing."""
    body = json.dumps({"video": source_uri, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def state_key(request_id: str) -> str:
    return request_key(request_id, "state.json")


def result_key(request_id: str) -> str:
    return request_key(request_id, "result.json")


def progress_key(request_id: str) -> str:
    return request_key(request_id, "progress.json")


def step_key(request_id: str, step: str) -> str:
    return request_key(request_id, "steps", f"{step}.json")


@dataclass
class Claim:
    kind: Literal["new", "takeover", "done"]
    state: StateDoc
    #: The stored result when kind == "done" (the request finished earlier).
    result: dict[str, Any] | None = None


class RequestState:
    """The state object of one request, as held by one orchestrator."""

    def __init__(self, store: ObjectStore, request_id: str, *, lease_s: float = 60.0) -> None:
        self.store = store
        self.request_id = request_id
        self.lease_s = lease_s
        self.owner = secrets.token_hex(8)
        self.key = state_key(request_id)
        self.etag: str | None = None
        self.doc: StateDoc | None = None
        # The heartbeat and the final write run on different threads; each must see the other's
        # ETag, or the owner would fail its own If-Match.
        self._lock = threading.Lock()

    def claim(self, *, source_uri: str, fingerprint: str, resume: bool) -> Claim:
        """Create the state, or take over one left by a failed or crashed orchestrator."""
        now = time.time()
        doc = StateDoc(
            request_id=self.request_id,
            status="running",
            created_at=now,
            updated_at=now,
            owner=self.owner,
            lease_expires_at=now + self.lease_s,
            fingerprint=fingerprint,
            source_uri=source_uri,
        )
        try:
            self._write(doc, if_none_match="*")
            return Claim("new", doc)
        except PreconditionFailed:
            pass
        existing, etag = self._read()
        if existing.fingerprint != fingerprint:
            raise RequestConflict(
                f"request {self.request_id} exists with a different video or config; "
                "use a new request id"
            )
        if existing.status == "ok" and resume:
            try:
                result, _ = self.store.get_json(result_key(self.request_id))
            except InputNotFound:
                result = None
            if result is not None:
                return Claim("done", existing, result)
        if existing.status == "running" and existing.lease_expires_at > now:
            raise RequestConflict(
                f"request {self.request_id} is being processed by another orchestrator "
                f"(lease for {existing.lease_expires_at - now:.0f} s more)"
            )
        doc = doc.model_copy(
            update={"created_at": existing.created_at, "attempt": existing.attempt + 1}
        )
        self.etag = etag
        try:
            self._write(doc, if_match=etag)
        except PreconditionFailed:
            raise RequestConflict(
                f"request {self.request_id} was taken over by another orchestrator"
            ) from None
        log(
            "takeover",
            request_id=self.request_id,
            previous_status=existing.status,
            attempt=doc.attempt,
        )
        return Claim("takeover", doc)

    def renew(self) -> None:
        """Extend the lease; raises RequestConflict if another orchestrator took over."""
        self._update(status="running")

    def finish_ok(self) -> None:
        self._update(status="ok")

    def finish_error(self, error: ErrorInfo) -> None:
        self._update(status="error", error=error)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            assert self.doc is not None and self.etag is not None, "claim() first"
            if self.doc.status != "running":
                return  # finished already; a late heartbeat must not reopen the request
            now = time.time()
            doc = self.doc.model_copy(
                update={**changes, "updated_at": now, "lease_expires_at": now + self.lease_s}
            )
            try:
                self._write(doc, if_match=self.etag)
            except PreconditionFailed:
                raise RequestConflict(
                    f"request {self.request_id} was taken over by another orchestrator"
                ) from None

    def _write(self, doc: StateDoc, **condition: str) -> None:
        # updated_at and owner differ between writes, so two writes never share an ETag (S3
        # ETags are content hashes) and a stale If-Match cannot match by accident.
        self.etag = self.store.put_json(self.key, doc.model_dump(mode="json"), **condition)
        self.doc = doc

    def _read(self) -> tuple[StateDoc, str]:
        value, etag = self.store.get_json(self.key)
        return StateDoc.model_validate(value), etag


class StepStore:
    """`requests/{id}/steps/<step>.json`: one record per completed function call."""

    def __init__(self, store: ObjectStore, request_id: str) -> None:
        self.store = store
        self.request_id = request_id
        self.prefix = request_key(request_id, "steps") + "/"

    def completed(self) -> set[str]:
        """Names of the steps recorded so far (one listing instead of a GET per step)."""
        return {
            key[len(self.prefix) : -len(".json")]
            for key in self.store.list_keys(self.prefix)
            if key.endswith(".json")
        }

    def get(self, step: str) -> StepRecord | None:
        try:
            value, _ = self.store.get_json(step_key(self.request_id, step))
            return StepRecord.model_validate(value)
        except InputNotFound:
            return None
        except (FunctionError, ValidationError) as exc:
            # A damaged record is redone rather than trusted.
            log("step_record_unreadable", level="warning", step=step, error=str(exc)[:200])
            return None

    def put(self, record: StepRecord) -> None:
        self.store.put_json(step_key(self.request_id, record.step), record.model_dump(mode="json"))


def write_progress(store: ObjectStore, progress: Progress) -> None:
    store.put_json(progress_key(progress.request_id), progress.model_dump(mode="json"))


def write_result(store: ObjectStore, request_id: str, result: dict[str, Any]) -> None:
    store.put_json(result_key(request_id), result)


def valid_request_id(value: str) -> bool:
    return bool(_REQUEST_ID.fullmatch(value))


def read_status(store: ObjectStore, request_id: str) -> dict[str, Any] | None:
    """What `GET /requests/{id}` shows: state, progress, and the result once there is one."""
    try:
        value, _ = store.get_json(state_key(request_id))
    except InputNotFound:
        return None
    state = StateDoc.model_validate(value)
    out: dict[str, Any] = {
        "request_id": request_id,
        "status": state.status,
        "attempt": state.attempt,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }
    if state.status == "running" and state.lease_expires_at < time.time():
        # Nobody renewed the lease: the orchestrator died; re-sending the request resumes it.
        out["stalled"] = True
    if state.error is not None:
        out["error"] = state.error.model_dump(mode="json", exclude_none=True)
    with contextlib.suppress(InputNotFound):
        out["progress"], _ = store.get_json(progress_key(request_id))
    if state.status == "ok":
        with contextlib.suppress(InputNotFound):
            out["result"], _ = store.get_json(result_key(request_id))
    return out
