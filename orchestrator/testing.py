"""Test doubles served over real HTTP: a scripted gateway and fake stage functions.

The orchestrator is tested against a real server (uvicorn on a loopback port, in a thread) so
retries, timeouts and connection pooling go through the same httpx code paths as in production.
The fake stages follow the contracts of .notes/STAGE-GUIDE.md and derive their answers from a
`FakeVideo` (where speech and objects are), so tests can check the pipeline's CONTENT: which
clip got which words and objects, what the search matched.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: A request config that transcribes each sentence in its own call (no packing), for tests of
#: the per-call fan-out: concurrency, retries and resume of one sentence's call.
PER_SENTENCE = {"speech_pack_s": 0}

#: Four sentences of a 22 s fake video: (start_s, end_s, words).
SPEECH = [
    (1.0, 4.0, "the quick brown fox jumps"),
    (6.0, 9.0, "please add two cups of flour"),
    (11.0, 14.0, "the red bus stops here"),
    (16.0, 19.0, "a dog walks by"),
]


@dataclass
class Call:
    function: str
    body: dict[str, Any]
    headers: dict[str, str]
    received: float
    finished: float = 0.0

    @property
    def step(self) -> str:
        return self.headers.get("x-vsearch-step", "")

    @property
    def fanout(self) -> int | None:
        return self.body.get("fanout")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Handler = Callable[[Call], Awaitable[Reply] | Reply]


def metrics(function: str, wall_s: float = 0.01, *, cold: bool = False) -> dict[str, Any]:
    return {
        "function": function,
        "replica": "fake",
        "pid": 1,
        "invocation": 1 if cold else 2,
        "cold_start": cold,
        "process_init_s": 0.0,
        "started_at": time.time(),
        "wall_s": wall_s,
        "cpu_s": wall_s,
        "children_cpu_s": 0.0,
        "peak_rss_bytes": 100 << 20,
        "peak_rss_scope": "invocation",
        "children_peak_rss_bytes": 0,
    }


def ok(call: Call, outputs: dict[str, Any], *, wall_s: float = 0.01, delay_s: float = 0.0) -> Reply:
    return Reply(
        200,
        {
            "status": "ok",
            "function": call.function,
            "request_id": call.body["request_id"],
            "fanout": call.fanout,
            "outputs": outputs,
            "metrics": metrics(call.function, wall_s or delay_s),
        },
        {"X-Duration-Seconds": f"{delay_s:.3f}"},
        delay_s,
    )


def error(
    call: Call,
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    delay_s: float = 0.0,
    from_gateway: bool = False,
) -> Reply:
    """An error envelope; from the function (runtime headers) unless `from_gateway`."""
    sent = {} if from_gateway else {"X-Duration-Seconds": f"{delay_s:.3f}"}
    return Reply(
        status,
        {
            "status": "error",
            "function": call.function,
            "request_id": None if from_gateway else call.body.get("request_id"),
            "error": {"code": code, "message": message},
        },
        {**sent, **(headers or {})},
        delay_s,
    )


class ScriptedGateway:
    """`POST /function/{name}` answered by per-function handlers; every call is recorded."""

    def __init__(self, handlers: dict[str, Handler] | None = None, port: int | None = None):
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.calls: list[Call] = []
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def _invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        call = Call(
            function=name,
            body=await request.json(),
            headers={k.lower(): v for k, v in request.headers.items()},
            received=time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        handler = self.handlers.get(name)
        if handler is None:
            return Response(f"function {name} not found", status_code=404)
        reply = handler(call)
        if not isinstance(reply, Reply):
            reply = await reply
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        call.finished = time.monotonic()
        if reply.body is None:
            return Response(b"", status_code=reply.status, headers=reply.headers)
        if isinstance(reply.body, bytes | str):
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    def start(self) -> ScriptedGateway:
        app = Starlette(routes=[Route("/function/{name}", self._invoke, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            # Scripted slow replies must not hold up a test's teardown.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("scripted gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------------------------
    def calls_to(self, function: str) -> list[Call]:
        return [c for c in self.calls if c.function == function]

    def steps(self) -> list[str]:
        return [c.step for c in self.calls]

    def max_overlap(self, function: str) -> int:
        """Most calls to `function` in flight at the same moment."""
        events = sorted(
            [(c.received, 1) for c in self.calls_to(function)]
            + [(c.finished, -1) for c in self.calls_to(function)]
        )
        level = peak = 0
        for _, delta in events:
            level += delta
            peak = max(peak, level)
        return peak


# -- fake stage functions ----------------------------------------------------------------------


@dataclass
class FakeVideo:
    """What the fake stages pretend the input contains."""

    bucket: str
    duration_s: float = 30.0
    has_audio: bool = True
    has_video: bool = True
    #: (start_s, end_s, sentence) per spoken sentence.
    speech: list[tuple[float, float, str]] = field(default_factory=list)
    #: (label, start_s, end_s) per object on screen.
    objects: list[tuple[str, float, float]] = field(default_factory=list)
    #: Seconds each function sleeps before answering.
    delays: dict[str, float] = field(default_factory=dict)


class FakeStages:
    """Contract-faithful fake answers for the eight stages, derived from a FakeVideo."""

    def __init__(self, video: FakeVideo) -> None:
        self.video = video
        self.transcripts: dict[str, str] = {}
        self.clips: dict[str, tuple[float, float]] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "extract-audio": self.extract_audio,
            "segment-speech": self.segment_speech,
            "cut-clips": self.cut_clips,
            "transcode-clip": self.transcode_clip,
            "transcribe": self.transcribe,
            "sample-frames": self.sample_frames,
            "detect-objects": self.detect_objects,
            "search": self.search,
        }

    def _uri(self, call: Call, name: str) -> str:
        return f"s3://{self.video.bucket}/requests/{call.body['request_id']}/{call.function}/{name}"

    def _ok(self, call: Call, outputs: dict[str, Any]) -> Reply:
        delay = self.video.delays.get(call.function, 0.0)
        return ok(call, outputs, wall_s=max(delay, 0.01), delay_s=delay)

    def extract_audio(self, call: Call) -> Reply:
        v = self.video
        media = {
            "duration_s": v.duration_s,
            "has_audio": v.has_audio,
            "has_video": v.has_video,
            "width": 320 if v.has_video else None,
            "height": 240 if v.has_video else None,
            "fps": 12.0 if v.has_video else None,
            "rotation": 0,
            "audio_sample_rate": 16000 if v.has_audio else None,
            "audio_channels": 1 if v.has_audio else None,
            "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
            "size_bytes": 1000,
        }
        return self._ok(
            call,
            {
                "video": call.body["input"]["video"],
                "audio": self._uri(call, "audio.wav") if v.has_audio else None,
                "has_audio": v.has_audio,
                "has_video": v.has_video,
                "media": media,
            },
        )

    def segment_speech(self, call: Call) -> Reply:
        segments = [
            {"index": i, "start_s": max(0.0, a - 0.2), "end_s": min(self.video.duration_s, b + 0.2)}
            for i, (a, b, _) in enumerate(self.video.speech)
        ]
        return self._ok(
            call,
            {
                "segments": segments,
                "top_db": 30.0,
                "speech_s": sum(s["end_s"] - s["start_s"] for s in segments),
                "segments_uri": self._uri(call, "segments.json"),
            },
        )

    def cut_clips(self, call: Call) -> Reply:
        clips = []
        for seg in call.body["config"]["segments"]:
            uri = self._uri(call, f"clip-{seg['index']:04d}.mp4")
            self.clips[uri] = (seg["start_s"], seg["end_s"])
            clips.append({**seg, "uri": uri, "duration_s": seg["end_s"] - seg["start_s"]})
        return self._ok(call, {"clips": clips})

    def transcode_clip(self, call: Call) -> Reply:
        n = call.fanout or 0
        start, end = self.clips[call.body["input"]["clip"]]
        wav = self._uri(call, f"clip-{n:04d}.wav")
        self.clips[wav] = (start, end)
        return self._ok(
            call,
            {
                "mp4": self._uri(call, f"clip-{n:04d}.mp4"),
                "wav": wav,
                "duration_s": end - start,
                "has_video": self.video.has_video,
            },
        )

    def transcribe(self, call: Call) -> Reply:
        n = call.fanout or 0
        cfg = call.body["config"]
        if "windows" in cfg:
            # Several windows of the whole audio in one call: one part per window.
            if call.body["input"]["audio"] in self.clips:
                return error(call, 400, "bad_window", "a window of a clip's audio")
            offset = cfg.get("time_offset_s", 0.0)
            parts = [
                self._transcript(call, w["start_s"], w["end_s"], f"transcript-{n:04d}-{k:02d}")
                for k, w in enumerate(cfg["windows"])
            ]
            whole = self._transcript(call, 0.0, 0.0, f"transcript-{n:04d}")
            whole.update(
                text=" ".join(p["text"] for p in parts if p["text"]),
                words=[w for p in parts for w in p["words"]],
                segments=[s for p in parts for s in p["segments"]],
                parts=parts,
            )
            return self._ok(call, whole) if offset == 0.0 else error(call, 400, "bad_offset", "")
        if "start_s" in cfg:
            # A window of the whole audio: times are already absolute.
            if call.body["input"]["audio"] in self.clips:
                return error(call, 400, "bad_window", "a window of a clip's audio")
            start, end = cfg["start_s"], cfg.get("end_s", self.video.duration_s)
            offset = start + cfg.get("time_offset_s", 0.0)
        else:
            start, end = self.clips[call.body["input"]["audio"]]
            offset = cfg.get("time_offset_s", 0.0)
        if abs(offset - start) > 1e-6:
            # The fake works on absolute times; a real stage adds time_offset_s to clip times,
            # so the pipeline must send the clip's start.
            return error(call, 400, "bad_offset", f"time_offset_s {offset} != clip start {start}")
        return self._ok(call, self._transcript(call, start, end, f"transcript-{n:04d}"))

    def _transcript(self, call: Call, start: float, end: float, name: str) -> dict[str, Any]:
        spoken = [s for s in self.video.speech if s[0] < end and s[1] > start]
        words: list[dict[str, Any]] = []
        for a, b, text in spoken:
            tokens = text.split()
            step = (b - a) / len(tokens)
            for k, token in enumerate(tokens):
                words.append(
                    {
                        "word": token,
                        "start_s": a + k * step,
                        "end_s": a + (k + 1) * step,
                        "probability": 0.9,
                    }
                )
        text = " ".join(s[2] for s in spoken)
        uri = self._uri(call, f"{name}.json")
        self.transcripts[uri] = text
        return {
            "text": text,
            "words": words,
            "segments": [{"start_s": a, "end_s": b, "text": t} for a, b, t in spoken],
            "language": "en",
            "duration_s": end - start,
            "model": "fake",
            "transcript_uri": uri,
        }

    def sample_frames(self, call: Call) -> Reply:
        if not self.video.has_video:
            return error(call, 422, "no_video", "the input has no video stream")
        cfg = call.body["config"]
        uri = call.body["input"]["video"]
        start, end = self.clips.get(uri, (0.0, self.video.duration_s))
        offset = cfg.get("time_offset_s", 0.0)
        if "start_s" in cfg:
            # A window of the whole video, in the video's timeline.
            start, end = cfg["start_s"], cfg.get("end_s", self.video.duration_s)
            offset += start
        duration = end - start
        interval = cfg.get("interval_s", 5.0)
        times = [
            k * interval for k in range(int(duration // interval) + 1) if k * interval < duration
        ]
        if duration < interval:
            times = [duration / 2]
        prefix = f"frames-{call.fanout or 0:04d}"
        frames = [
            {
                "index": i,
                "time_s": round(offset + t, 3),
                "uri": self._uri(call, f"{prefix}/frame-{i:05d}.jpg"),
                "width": 320,
                "height": 240,
            }
            for i, t in enumerate(times)
        ]
        return self._ok(call, {"frames": frames})

    def detect_objects(self, call: Call) -> Reply:
        frames = []
        for f in call.body["input"]["frames"]:
            objects = [
                {"label": label, "class_id": 0, "score": 0.9, "box": [10.0, 10.0, 100.0, 200.0]}
                for label, a, b in self.video.objects
                if a <= f["time_s"] <= b
            ]
            frames.append({**f, "width": 320, "height": 240, "objects": objects})
        return self._ok(call, {"model": "yolov4-tiny", "frames": frames})

    def search(self, call: Call) -> Reply:
        query = call.body["config"]["query"].lower()
        matches = []
        for t in call.body["input"]["transcripts"]:
            text = self.transcripts.get(t["transcript"], "")
            if query in text.lower().split():
                matches.append(
                    {
                        "clip_index": t["clip_index"],
                        "start_s": t["start_s"],
                        "end_s": t["end_s"],
                        "text": text,
                        "clip_uri": self._uri(call, f"match-{t['clip_index']:04d}.mp4"),
                        "words": [],
                    }
                )
        return self._ok(call, {"query": query, "matches": matches})


def run_request(
    store: Any,
    gateway_url: str,
    request_id: str,
    video_uri: str,
    config: dict[str, Any],
    *,
    policy: Any = None,
    settings: Any = None,
    deadline_s: float | None = None,
) -> Any:
    """Run one request in-process (as the handler would) against a gateway URL."""
    import httpx

    from orchestrator.client import Deadline, GatewayClient, RetryPolicy
    from orchestrator.contracts import Config
    from orchestrator.pipeline import Pipeline, PipelineSettings

    cfg = Config.model_validate(config)

    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            client = GatewayClient(
                gateway_url,
                http,
                policy or RetryPolicy(max_attempts=cfg.max_attempts, base_s=0.05),
            )
            pipeline = Pipeline(
                store=store,
                client=client,
                request_id=request_id,
                video_uri=video_uri,
                config=cfg,
                deadline=Deadline(deadline_s or cfg.deadline_s),
                settings=settings or PipelineSettings(progress_interval_s=0.0),
            )
            return await pipeline.run()

    return asyncio.run(go())
