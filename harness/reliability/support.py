"""Helpers of the reliability tests: platforms with overrides, bucket snapshots, figures.

A figure is the one line each test ends with (sent / succeeded / failed cleanly / lost) plus
whatever that test measured; it is printed and written to `<results dir>/<test>.json`, where
the README quotes it from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
from pydantic import BaseModel, Field

from harness.embedded.gateway import GatewaySettings
from harness.embedded.platform import EmbeddedPlatform
from harness.embedded.replicas import PoolSettings
from harness.functions import FunctionDeclaration, load

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(os.environ.get("VSEARCH_RELIABILITY_DIR") or ROOT / ".vsearch" / "reliability")
#: Stage names as the orchestrator's error messages spell them, longest first for matching.
FUNCTIONS = sorted((d.name for d in load().functions), key=len, reverse=True)

Verdict = Literal["ok", "failed_cleanly", "lost"]
#: Every figure emitted in this session, for the terminal summary (conftest.py).
FIGURES: list[str] = []


# -- figures -------------------------------------------------------------------------------------


class RequestRow(BaseModel):
    """One request as a figure counts it."""

    request_id: str | None = None
    label: str = ""
    http_status: int | None = None
    error_code: str | None = None
    function: str | None = Field(None, description="the function the error names, if any")
    verdict: Verdict
    seconds: float | None = None
    note: str = ""


class Figure(BaseModel):
    test: str
    sent: int = 0
    succeeded: int = 0
    failed_cleanly: int = 0
    lost: int = 0
    seconds: float = 0.0
    measured: dict[str, Any] = Field(default_factory=dict)
    requests: list[RequestRow] = Field(default_factory=list)
    started_at: float = Field(default_factory=time.time)

    def add(self, row: RequestRow) -> RequestRow:
        self.requests.append(row)
        self.sent += 1
        if row.verdict == "ok":
            self.succeeded += 1
        elif row.verdict == "failed_cleanly":
            self.failed_cleanly += 1
        else:
            self.lost += 1
        return row

    def line(self) -> str:
        return (
            f"[{self.test}] sent {self.sent}, succeeded {self.succeeded}, "
            f"failed cleanly {self.failed_cleanly}, lost {self.lost} ({self.seconds:.1f} s)"
        )

    def emit(self, results_dir: Path = RESULTS_DIR) -> Path:
        """Print the figure and write it; called even when the test's assertions fail."""
        self.seconds = round(time.time() - self.started_at, 2)
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.test}.json"
        path.write_text(self.model_dump_json(indent=2) + "\n")
        text = "\n".join(
            [self.line()]
            + [
                f"    {key}: {json.dumps(value, default=str)[:600]}"
                for key, value in self.measured.items()
                if key != "table"
            ]
        )
        print("\n" + text)
        # Printed output is captured for passing tests; the terminal summary shows these.
        FIGURES.append(text)
        return path


@contextlib.contextmanager
def figure(test: str) -> Iterator[Figure]:
    fig = Figure(test=test)
    try:
        yield fig
    finally:
        fig.emit()


# -- declarations and platforms ------------------------------------------------------------------


def declarations(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    only: Iterable[str] | None = None,
) -> list[FunctionDeclaration]:
    """manifests/functions.yaml with per-function overrides ("*" = every function).

    `env` is merged into the declared env rather than replacing it (regimes' overrides replace
    it), so a test's MAX_DURATION_S does not drop transcribe's WHISPER_CPU_THREADS.
    """
    overrides = overrides or {}
    wanted = set(only) if only is not None else None
    out = []
    for decl in load().functions:
        if wanted is not None and decl.name not in wanted:
            continue
        data = decl.model_dump()
        for scope in ("*", decl.name):
            change = dict(overrides.get(scope, {}))
            env = change.pop("env", None)
            data.update(change)
            if "memory_limit" in change and "memory_request" not in change:
                # A lowered limit takes the declared request (a measured peak) down with it.
                data["memory_request"] = None
            if env:
                data["env"] = {**data["env"], **env}
        out.append(FunctionDeclaration.model_validate(data))
    return out


@dataclass(frozen=True)
class Run:
    """A platform this session started: where its outputs are, which secrets it generated."""

    state_dir: Path
    secrets: dict[str, str]
    s3_data_dir: Path | None


#: Every platform started by these tests, for the security scan of the run's outputs.
RUNS: list[Run] = []


def run_secrets(state_dir: Path) -> dict[str, str]:
    """The credentials a platform generated, from its credentials.json (what must not leak)."""
    creds = json.loads((state_dir / "credentials.json").read_text())
    return {
        "gateway password": creds["gateway"]["password"],
        "S3 access key": creds["s3"]["AWS_ACCESS_KEY_ID"],
        "S3 secret key": creds["s3"]["AWS_SECRET_ACCESS_KEY"],
    }


def start_platform(
    state_dir: Path,
    decls: list[FunctionDeclaration],
    *,
    queue_limit: int = 32,
    wait_ready: bool = True,
) -> EmbeddedPlatform:
    """A platform with its own SeaweedFS (so a test may restart it) and the given functions."""
    platform = EmbeddedPlatform(
        state_dir,
        decls,
        s3="embedded",
        settings=GatewaySettings(pool=PoolSettings(queue_limit=queue_limit)),
        wait_ready=wait_ready,
    )
    platform.start()
    server = platform.s3_server
    RUNS.append(
        Run(state_dir, run_secrets(state_dir), server.data_dir if server is not None else None)
    )
    return platform


# -- answers -------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What the orchestrator (or the gateway in front of it) answered to one POST."""

    request_id: str | None
    status: int | None
    body: Any
    seconds: float
    transport_error: str | None = None
    #: Answered through a replica (the gateway stamps X-Vsearch-Replica on proxied answers),
    #: not by the gateway's own checks in front of the functions.
    via_replica: bool = False

    @property
    def outputs(self) -> dict[str, Any] | None:
        if self.status == 200 and isinstance(self.body, dict):
            out = self.body.get("outputs")
            return out if isinstance(out, dict) else None
        return None

    @property
    def error(self) -> dict[str, Any]:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return dict(self.body["error"])
        return {}

    @property
    def code(self) -> str | None:
        code = self.error.get("code")
        return str(code) if code else None

    @property
    def message(self) -> str:
        return str(self.error.get("message") or "")

    @property
    def function(self) -> str | None:
        """The function an error names: `<function> (<step>) ...` in the orchestrator's words."""
        return named_function(self.message)

    @property
    def clean_error(self) -> bool:
        """An error with a status and a machine code: the client knows what happened."""
        return self.status is not None and self.status >= 400 and self.code is not None


def named_function(message: str) -> str | None:
    for name in FUNCTIONS:
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            return name
    return None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- a platform with its bucket ------------------------------------------------------------------


@dataclass
class Rig:
    """A running platform plus what the tests do with it: upload, search, look at the bucket."""

    platform: EmbeddedPlatform
    uploads: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        server = self.platform.s3_server
        assert server is not None, "reliability rigs run their own SeaweedFS"
        self.server = server
        self.bucket = server.bucket
        self.s3 = server.client()
        self.http = httpx.Client(timeout=900.0, trust_env=False)

    @property
    def gateway_url(self) -> str:
        return self.platform.gateway_url

    def close(self) -> None:
        self.http.close()

    # -- input --------------------------------------------------------------------------------
    def upload(self, path: Path | str, name: str | None = None) -> str:
        """Upload a local file once (cached by path and name); returns its s3:// URI."""
        cache = f"{path}|{name}"
        if cache not in self.uploads:
            key = f"uploads/{uuid.uuid4().hex[:10]}/{name or Path(path).name}"
            self.s3.upload_file(str(path), self.bucket, key)
            self.uploads[cache] = f"s3://{self.bucket}/{key}"
        return self.uploads[cache]

    def put(self, data: bytes, key: str) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    # -- requests -----------------------------------------------------------------------------
    def post(
        self,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout_s: float = 600.0,
    ) -> Answer:
        """POST to the orchestrator through the gateway; never raises for an HTTP outcome."""
        url = f"{self.gateway_url}/function/orchestrator"
        t0 = time.monotonic()
        try:
            if content is not None:
                response = self.http.post(
                    url, content=content, headers=dict(headers or {}), timeout=timeout_s
                )
            else:
                response = self.http.post(
                    url, json=body, headers=dict(headers or {}), timeout=timeout_s
                )
        except httpx.HTTPError as exc:
            return Answer(
                request_id, None, None, time.monotonic() - t0, f"{type(exc).__name__}: {exc}"
            )
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text[:500]
        return Answer(
            request_id,
            response.status_code,
            payload,
            time.monotonic() - t0,
            via_replica="x-vsearch-replica" in response.headers,
        )

    def search(
        self,
        uri: str,
        query: str = "flour",
        *,
        request_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        timeout_s: float = 600.0,
    ) -> Answer:
        rid = request_id or new_id("rel")
        body = {
            "request_id": rid,
            "input": {"video": uri},
            "config": {"query": query, **(config or {})},
        }
        return self.post(body, request_id=rid, timeout_s=timeout_s)

    def state(self, request_id: str) -> dict[str, Any] | None:
        """GET /requests/{id} through the gateway (None: the orchestrator never saw it)."""
        url = f"{self.gateway_url}/function/orchestrator/requests/{request_id}"
        response = self.http.get(url, timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def verdict(self, answer: Answer, ok: Callable[[Answer], bool]) -> RequestRow:
        """ok, failed cleanly (a coded error, and the state agrees) or lost."""
        row = RequestRow(
            request_id=answer.request_id,
            http_status=answer.status,
            error_code=answer.code,
            function=answer.function,
            verdict="lost",
            seconds=round(answer.seconds, 3),
        )
        if answer.status == 200 and ok(answer):
            row.verdict = "ok"
        elif answer.clean_error and answer.code == "conflict":
            row.verdict = "failed_cleanly"  # the id belongs to a live request: refused, not run
        elif answer.clean_error:
            state = self.state(answer.request_id) if answer.request_id else None
            # Refused before the orchestrator claimed it (bad envelope, 429): nothing to find.
            # Claimed: its state must say error, or a poller would wait for it forever.
            if state is None or state.get("status") == "error":
                row.verdict = "failed_cleanly"
            else:
                row.note = f"answered {answer.status} but the state says {state.get('status')}"
        elif answer.transport_error:
            row.note = answer.transport_error[:200]
        else:
            row.note = f"HTTP {answer.status} without an error code"
        return row

    # -- the platform -------------------------------------------------------------------------
    def healthy(self) -> bool:
        return self.platform.client.healthy()

    def functions(self) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.platform.client.functions()}

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Until no call is in flight or queued anywhere (leftovers of an earlier test)."""
        deadline = time.monotonic() + timeout_s
        while True:
            busy = {
                name: (f["vsearch"]["inflight"], f["vsearch"]["queued"])
                for name, f in self.functions().items()
                if f["vsearch"]["inflight"] or f["vsearch"]["queued"]
            }
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"platform still busy after {timeout_s:.0f} s: {busy}")
            time.sleep(0.2)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until every function has its min replicas ready again (after kills)."""
        deadline = time.monotonic() + timeout_s
        while True:
            short = [
                n
                for n, f in self.functions().items()
                if f["availableReplicas"] < f["vsearch"]["min_replicas"]
            ]
            if not short:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout_s:.0f} s: {short}")
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        """Every process of the platform: gateway (this process), S3, replicas."""
        out = {"gateway": os.getpid()}
        if self.server.pid is not None:
            out["s3"] = self.server.pid
        for name, f in self.functions().items():
            for replica in f["vsearch"]["replicas"]:
                if replica["pid"]:
                    out[f"{name}/{replica['name']}"] = int(replica["pid"])
        return out

    # -- the bucket ---------------------------------------------------------------------------
    def keys(self, prefix: str = "") -> dict[str, str]:
        """key -> ETag of every object under prefix."""
        out: dict[str, str] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = item["ETag"]
        return out

    def snapshot(self, *, outside: Iterable[str] = ()) -> dict[str, str]:
        """key -> ETag of every object not under the given prefixes."""
        skip = tuple(outside)
        return {k: e for k, e in self.keys().items() if not (skip and k.startswith(skip))}

    def checksums(self, prefix: str = "") -> dict[str, str]:
        """key -> sha256 of the content (ETags could survive a lost body; hashes cannot)."""
        out = {}
        for key in self.keys(prefix):
            digest = hashlib.sha256()
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(1 << 20):
                digest.update(chunk)
            out[key] = digest.hexdigest()
        return out


def diff(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    """What changed between two key -> ETag/hash maps."""
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
    }


# -- processes -----------------------------------------------------------------------------------


def processes_matching(
    *needles: str, names: Iterable[str] = ("ffmpeg", "ffprobe")
) -> dict[int, str]:
    """pid -> name of live (not zombie) processes called one of `names` with an argument that
    contains every needle."""
    wanted = set(names)
    found = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        info = proc.info
        if info["name"] not in wanted or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(all(n in part for n in needles) for part in info["cmdline"] or []):
            found[int(info["pid"])] = str(info["name"])
    return found


class ProcessWatch:
    """Samples the process table in the background: which matching processes ever existed."""

    def __init__(self, *needles: str, interval_s: float = 0.02) -> None:
        self.needles = needles
        self.interval_s = interval_s
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="process-watch")

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.seen.update(processes_matching(*self.needles))
            self._stop.wait(self.interval_s)


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()


# -- what a request left in the bucket -----------------------------------------------------------


def request_prefix(request_id: str) -> str:
    return f"requests/{request_id}/"


#: A sentence's transcript inside its transcribe call's: transcript-{first clip}-{k}.json.
TRANSCRIPT_PART = r"transcribe/transcript-(\d{4})-(\d{2})\.json"


def expected_steps(result: Mapping[str, Any], packs: Iterable[int] | None = None) -> set[str]:
    """The step records a finished request has: one per call of its DAG, none twice. `packs`:
    the first clip of each transcribe call (sentences sharing one Whisper window share one
    call); None: one call per clip."""
    steps = {"import", "sha256", "extract-audio"}
    clips = [int(c["index"]) for c in result.get("clips") or []]
    if result.get("video", {}).get("has_audio"):
        steps.add("segment-speech")
    if clips:
        steps |= {"cut-clips", "search"}
    steps |= {f"transcribe-{i:04d}" for i in (clips if packs is None else packs)}
    for i in clips:
        steps.add(f"transcode-clip-{i:04d}")
        if result.get("video", {}).get("has_video"):
            steps |= {f"sample-frames-{i:04d}", f"detect-objects-{i:04d}-00"}
    return steps


def output_problems(keys: Iterable[str], result: Mapping[str, Any]) -> list[str]:
    """Lost or duplicated outputs of one request, from its keys (relative to its prefix).

    Every per-clip output is named by the clip's index, so the keys of a finished request are
    fixed by its clips: exactly one of each, nothing for a clip that does not exist.
    """
    keys = set(keys)
    problems = []
    clips = sorted(int(c["index"]) for c in result.get("clips") or [])
    if len(set(clips)) != len(clips):
        problems.append(f"clip indexes repeat: {clips}")
    for required in ("result.json", "state.json"):
        if required not in keys:
            problems.append(f"no {required}")
    # Each clip's transcript is part k of the call that began at clip p (p + k = the clip), and
    # each such call also stored its whole transcript as transcript-{p}.json.
    parts = [(int(m[1]), int(m[2])) for k in keys if (m := re.fullmatch(TRANSCRIPT_PART, k))]
    packs = sorted({p for p, _ in parts})
    if sorted(p + k for p, k in parts) != clips:
        problems.append(f"{TRANSCRIPT_PART}: parts {sorted(parts)} for clips {clips}")
    steps = {k[len("steps/") : -len(".json")] for k in keys if k.startswith("steps/")}
    want = expected_steps(result, packs)
    if steps != want:
        problems.append(f"steps missing {sorted(want - steps)}, extra {sorted(steps - want)}")
    for pattern, expected in (
        (r"cut-clips/clip-(\d{4})\.mp4", clips),
        (r"transcode-clip/clip-(\d{4})\.mp4", clips),
        (r"transcode-clip/clip-(\d{4})\.wav", clips),
        (r"transcribe/transcript-(\d{4})\.json", packs),
    ):
        found = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k)))
        if found != expected:
            problems.append(f"{pattern}: indexes {found}, expected {expected}")
    return problems
