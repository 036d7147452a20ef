"""The VideoSearcher DAG for one request.

    import -+- sha256
            +- extract-audio - segment-speech -+- per sentence: transcribe (window of the WAV) --+
                                                +- per sentence: sample-frames (window of the     |
                                                |    video, by seeking) - detect-objects          |
                                                +- cut-clips (each clip's one encode) -           |
                                                     per clip: transcode-clip (remux + WAV) ------+
                                                                      search (every transcript) <-+
    no speech (silent or no audio track): sample-frames + detect-objects over the whole video
    no picture (audio only): the speech branch only

Right after segment-speech the three branches run side by side (clip_concurrency sentences at
once per branch): speech reads the audio extract-audio already made, vision seeks into the
source video, and only the delivery clips wait for cut-clips. Every completed call is recorded
under `requests/{id}/steps/` before the pipeline moves on, so a request re-sent after a crash or
a failure redoes only what had not finished. Search starts as soon as every transcript and
delivery clip exists; it does not wait for object detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from base.errors import FunctionError, InputTooLarge, StorageUnavailable
from base.storage import ObjectStore
from base.telemetry import log
from orchestrator.client import Deadline, GatewayClient, StageError
from orchestrator.contracts import (
    MAX_CLIPS,
    ClipResult,
    ClipView,
    Config,
    CutClipsOut,
    DetectedFrameView,
    DetectObjectsOut,
    ErrorInfo,
    ExtractAudioOut,
    FrameResult,
    FrameView,
    InvocationRecord,
    Match,
    MatchReason,
    Metrics,
    ObjectHit,
    Output,
    Progress,
    SampleFramesOut,
    SearchOut,
    SegmentSpeechOut,
    SegmentView,
    StepRecord,
    TranscodeOut,
    TranscribeOut,
    VideoInfo,
    Word,
)
from orchestrator.ingest import import_video, input_key, sha256_of
from orchestrator.metrics import Node, summarise
from orchestrator.state import (
    RequestConflict,
    RequestState,
    StepStore,
    fingerprint,
    write_progress,
    write_result,
)

V = TypeVar("V", bound=BaseModel)
#: The delivery clip: cut-clips encodes it once at this size and quality (transcode-clip's old
#: second encode), so transcode-clip keeps its video stream.
DELIVERY_MAX_WIDTH = 640
DELIVERY_CRF = 28
Mode = Literal["speech", "whole_video", "empty"]


@dataclass
class PipelineSettings:
    #: A running request whose lease is not renewed for this long may be taken over.
    lease_s: float = 60.0
    #: progress.json is rewritten at most this often (stage changes are written at once).
    progress_interval_s: float = 1.0
    #: Memory limit per function (bytes) when the gateway does not send it per response.
    memory_limits: dict[str, int] = field(default_factory=dict)
    #: Waits before each further try to record a failed request's error while storage is
    #: unavailable (an S3 restart took 11 s in CI), so the answer never contradicts the state.
    error_record_waits_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def _step_tag(index: int) -> str:
    return f"{index:04d}"


def first_error(exc: BaseException) -> BaseException:
    """The error a request reports: the first FunctionError inside (nested) task groups."""
    if isinstance(exc, BaseExceptionGroup):
        leaves: list[BaseException] = []
        stack: list[BaseException] = [exc]
        while stack:
            item = stack.pop(0)
            if isinstance(item, BaseExceptionGroup):
                stack[:0] = list(item.exceptions)
            else:
                leaves.append(item)
        for leaf in leaves:
            if isinstance(leaf, FunctionError):
                return leaf
        return next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])
    return exc


def error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, StageError):
        return ErrorInfo(
            status=exc.status,
            code=exc.code,
            message=exc.message,
            function=exc.function,
            step=exc.step,
        )
    if isinstance(exc, FunctionError):
        return ErrorInfo(status=exc.status, code=exc.code, message=exc.message)
    if isinstance(exc, asyncio.CancelledError):
        return ErrorInfo(status=504, code="timeout", message="the orchestrator was stopped")
    return ErrorInfo(status=500, code="internal", message=f"orchestrator: {type(exc).__name__}")


class Pipeline:
    """Runs one request; create one per request (it accumulates that request's records)."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        client: GatewayClient,
        request_id: str,
        video_uri: str,
        config: Config,
        deadline: Deadline,
        settings: PipelineSettings | None = None,
        started: float | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.request_id = request_id
        self.video_uri = video_uri
        self.config = config
        self.deadline = deadline
        self.settings = settings or PipelineSettings()
        self.started = started if started is not None else time.monotonic()
        self.state = RequestState(store, request_id, lease_s=self.settings.lease_s)
        self.steps = StepStore(store, request_id)
        self.records: list[InvocationRecord] = []
        self.nodes: dict[str, Node] = {}
        self.completed: set[str] = set()
        self.stage = "starting"
        self.clips_total: int | None = None
        self.clips_done = 0
        self.steps_done = 0
        self.steps_reused = 0
        self._last_progress = 0.0
        self._cancel_hash = threading.Event()

    # -- the request's life ---------------------------------------------------------------------
    async def run(self) -> Output:
        source_key = self.store.key_of(self.video_uri)  # foreign bucket or unsafe key: 400
        claim = await asyncio.to_thread(
            self.state.claim,
            source_uri=self.video_uri,
            fingerprint=fingerprint(self.video_uri, self.config.fingerprint_fields()),
            resume=self.config.resume,
        )
        if claim.kind == "done":
            log("request_already_done", request_id=self.request_id)
            return Output.model_validate(claim.result)
        if claim.kind == "takeover" and self.config.resume:
            self.completed = await asyncio.to_thread(self.steps.completed)
        log(
            "request_start",
            request_id=self.request_id,
            claim=claim.kind,
            attempt=claim.state.attempt,
            steps_recorded=len(self.completed),
            budget_s=round(self.deadline.remaining(), 1),
        )
        try:
            output = await self._with_heartbeat(self._dag(source_key))
            await asyncio.to_thread(
                write_result, self.store, self.request_id, output.model_dump(mode="json")
            )
            await asyncio.to_thread(self.state.finish_ok)
        except BaseException as exc:
            self._cancel_hash.set()
            error = first_error(exc)
            info = error_info(error)
            log(
                "request_failed",
                level="warning",
                request_id=self.request_id,
                **info.model_dump(exclude_none=True),
            )
            if not isinstance(error, RequestConflict):
                # A lost lease means the request is someone else's now: leave its state alone.
                await self._record_failure(info)
            if error is not exc and not isinstance(error, asyncio.CancelledError):
                raise error from None
            raise
        await self._progress("done")
        log(
            "request_done",
            request_id=self.request_id,
            mode=output.mode,
            clips=len(output.clips),
            matches=len(output.matches),
            **output.metrics.request.model_dump(
                include={"end_to_end_s", "critical_path_s", "retries", "steps_reused"}
            ),
        )
        return output

    async def _record_failure(self, info: ErrorInfo) -> None:
        # Shielded: a cancelled request must still leave `error` behind, or pollers would see
        # `running` until the lease expires.
        async def write() -> None:
            waits = self.settings.error_record_waits_s
            for attempt in range(len(waits) + 1):
                try:
                    await asyncio.to_thread(self.state.finish_error, info)
                    break
                except Exception as exc:
                    # Only an outage is worth waiting out; any other error would recur.
                    retry = isinstance(exc, StorageUnavailable) and attempt < len(waits)
                    log(
                        "state_write_failed",
                        # Given up: the request's state stays `running` until its lease ends.
                        level="warning" if retry else "error",
                        request_id=self.request_id,
                        error=repr(exc),
                        attempt=attempt + 1,
                        retry_in_s=waits[attempt] if retry else None,
                    )
                    if not retry:
                        break
                    await asyncio.sleep(waits[attempt])
            await self._progress("error")

        task = asyncio.ensure_future(write())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait({task}, timeout=10)

    async def _with_heartbeat(self, work: Awaitable[Output]) -> Output:
        async with asyncio.TaskGroup() as tg:
            beat = tg.create_task(self._heartbeat())
            try:
                return await work
            finally:
                beat.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await asyncio.to_thread(self.state.renew)
            except FunctionError as exc:
                if exc.status == 409:
                    raise  # another orchestrator owns the request now: stop working on it
                log(
                    "lease_renew_failed",
                    level="warning",
                    request_id=self.request_id,
                    error=str(exc),
                )

    # -- the DAG --------------------------------------------------------------------------------
    async def _dag(self, source_key: str) -> Output:
        await self._progress("import")
        imported = await self._local_step(
            "import",
            lambda: self._import(source_key),
        )
        video_uri = str(imported["uri"])
        async with asyncio.TaskGroup() as tg:
            hashed = tg.create_task(
                self._local_step(
                    "sha256",
                    lambda: {"sha256": sha256_of(self.store, imported["key"], self._cancel_hash)},
                )
            )
            analysed = tg.create_task(self._analyse(video_uri))
        ea, mode, clips, whole, matches = analysed.result()
        objects = [hit for clip in clips for hit in clip.objects]
        if whole is not None:
            objects.extend(hit for frame in whole for hit in frame.objects)
        objects.sort(key=lambda h: (h.frame_time_s, h.clip_index or 0, -h.score))
        video = VideoInfo(
            uri=video_uri,
            source_uri=self.video_uri,
            sha256=str(hashed.result()["sha256"]),
            size_bytes=int(imported["size_bytes"]),
            duration_s=ea.media.duration_s,
            has_audio=ea.has_audio,
            has_video=ea.has_video,
            width=ea.media.width,
            height=ea.media.height,
        )
        metrics = summarise(
            self.records,
            self.nodes,
            end_to_end_s=time.monotonic() - self.started,
            memory_limits=self.settings.memory_limits,
        )
        return Output(
            request_id=self.request_id,
            query=self.config.query,
            mode=mode,
            video=video,
            clips=clips,
            frames_without_clip=whole,
            objects=objects,
            matches=matches,
            metrics=Metrics(invocations=self.records, request=metrics),
        )

    def _import(self, source_key: str) -> dict[str, Any]:
        dest = input_key(self.request_id, source_key)
        size = import_video(self.store, source_key, dest)
        return {"key": dest, "uri": self.store.uri(dest), "size_bytes": size}

    async def _analyse(
        self, video_uri: str
    ) -> tuple[ExtractAudioOut, Mode, list[ClipResult], list[FrameResult] | None, list[Match]]:
        cfg = self.config
        await self._progress("extract-audio")
        ea = await self._step(
            "extract-audio",
            "extract-audio",
            ExtractAudioOut,
            {"video": video_uri},
            cfg.overrides("extract-audio"),
        )
        head = "extract-audio"
        segments = []
        if ea.has_audio and ea.audio:
            await self._progress("segment-speech")
            ss = await self._step(
                "segment-speech",
                "segment-speech",
                SegmentSpeechOut,
                {"audio": ea.audio},
                cfg.overrides("segment-speech"),
                deps=(head,),
            )
            segments, head = ss.segments, "segment-speech"
        if len(segments) > MAX_CLIPS:
            raise InputTooLarge(
                f"segment-speech found {len(segments)} sentences; at most {MAX_CLIPS} are cut "
                "(raise segment-speech's min_sentence_s or shorten the video)",
                code="too_many_segments",
            )
        if segments:
            clips, matches = await self._clips(
                sorted(segments, key=lambda s: s.index), ea, video_uri, head
            )
            return ea, "speech", clips, None, matches
        if ea.has_video:
            # No speech to cut clips from: look at the whole video, not at one second of it.
            await self._progress("frames")
            frames = await self._vision(
                "video",
                video_uri,
                media=ea.media.model_dump(mode="json"),
                offset_s=0.0,
                fanout=None,
                deps=(head,),
                limit=asyncio.Semaphore(cfg.clip_concurrency),
            )
            whole = [
                FrameResult(
                    index=f.index,
                    time_s=f.time_s,
                    uri=f.uri,
                    objects=_hits(f, None),
                )
                for f in frames
            ]
            return ea, "whole_video", [], whole, []
        return ea, "empty", [], None, []

    async def _clips(
        self, segments: list[SegmentView], ea: ExtractAudioOut, video_uri: str, head: str
    ) -> tuple[list[ClipResult], list[Match]]:
        cfg = self.config
        self.clips_total = len(segments)
        await self._progress("clips")
        duration = ea.media.duration_s
        # Clip times as cut-clips makes them: the sentence, clamped to the media.
        spans = {s.index: (s.start_s, min(s.end_s, duration)) for s in segments}
        wanted = sorted(spans)
        speech_slots = asyncio.Semaphore(cfg.clip_concurrency)
        vision_slots = asyncio.Semaphore(cfg.clip_concurrency)
        clip_slots = asyncio.Semaphore(cfg.clip_concurrency)

        def same_clips(out: CutClipsOut) -> str | None:
            got = sorted(c.index for c in out.clips)
            return None if got == wanted else f"clips {got[:10]} for segments {wanted[:10]}"

        async def cut_and_package() -> dict[int, tuple[ClipView, TranscodeOut]]:
            cut = await self._step(
                "cut-clips",
                "cut-clips",
                CutClipsOut,
                {"video": video_uri},
                {
                    # The delivery encode, done once here (transcode-clip then keeps the stream).
                    "max_width": DELIVERY_MAX_WIDTH,
                    "crf": DELIVERY_CRF,
                    **cfg.overrides("cut-clips"),
                    "media": ea.media.model_dump(mode="json"),
                    "segments": [s.model_dump(mode="json") for s in segments],
                },
                deps=(head,),
                check=same_clips,
            )

            async def package(clip: ClipView) -> tuple[ClipView, TranscodeOut]:
                async with clip_slots:
                    return clip, await self._step(
                        f"transcode-clip-{_step_tag(clip.index)}",
                        "transcode-clip",
                        TranscodeOut,
                        {"clip": clip.uri},
                        {**cfg.overrides("transcode-clip"), "media": clip.media},
                        fanout=clip.index,
                        deps=("cut-clips",),
                    )

            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(package(c)) for c in cut.clips]
            return {t.result()[0].index: t.result() for t in tasks}

        async def speech(pack: list[int]) -> dict[int, TranscribeOut]:
            def one_part_each(out: TranscribeOut) -> str | None:
                got = len(out.parts)
                return None if got == len(pack) else f"{got} parts for {len(pack)} windows"

            async with speech_slots:
                out = await self._step(
                    f"transcribe-{_step_tag(pack[0])}",
                    "transcribe",
                    TranscribeOut,
                    {"audio": ea.audio},
                    {
                        **cfg.overrides("transcribe"),
                        "time_offset_s": 0.0,
                        "windows": [{"start_s": spans[i][0], "end_s": spans[i][1]} for i in pack],
                    },
                    fanout=pack[0],
                    deps=(head,),
                    check=one_part_each,
                )
            return dict(zip(pack, out.parts, strict=True))

        async def vision(index: int) -> list[DetectedFrameView]:
            start, end = spans[index]
            return await self._vision(
                _step_tag(index),
                video_uri,
                media=ea.media.model_dump(mode="json"),
                offset_s=0.0,
                window=(start, end),
                fanout=index,
                deps=(head,),
                slots=vision_slots,
            )

        async def clips_done(task: asyncio.Task[dict[int, TranscribeOut]]) -> None:
            parts = await task  # awaited first: `+=` would read the count before the await
            self.clips_done += len(parts)
            await self._progress()

        packs = speech_packs(spans, cfg.speech_pack_s)
        async with asyncio.TaskGroup() as tg:
            packaged = tg.create_task(cut_and_package())
            speeches = [tg.create_task(speech(pack)) for pack in packs]
            frames = {i: tg.create_task(vision(i)) for i in wanted} if ea.has_video else {}
            for task in speeches:
                tg.create_task(clips_done(task))
            searched = tg.create_task(
                self._search(packaged, speeches, [f"transcribe-{_step_tag(p[0])}" for p in packs])
            )
        transcripts = {i: out for task in speeches for i, out in task.result().items()}
        results: list[ClipResult] = []
        for index, (clip, transcode) in sorted(packaged.result().items()):
            transcript = transcripts[index]
            found = frames[index].result() if index in frames else []
            results.append(
                ClipResult(
                    index=index,
                    start_s=clip.start_s,
                    end_s=clip.end_s,
                    transcript=transcript.text,
                    words=[Word(**w.model_dump()) for w in transcript.words],
                    objects=[h for f in found for h in _hits(f, index)],
                    clip_uri=transcode.mp4,
                    source_clip_uri=clip.uri,
                )
            )
        return results, searched.result()

    async def _vision(
        self,
        tag: str,
        video_uri: str,
        *,
        media: dict[str, Any],
        offset_s: float,
        fanout: int | None,
        deps: tuple[str, ...],
        limit: asyncio.Semaphore | None = None,
        window: tuple[float, float] | None = None,
        slots: asyncio.Semaphore | None = None,
    ) -> list[DetectedFrameView]:
        cfg = self.config
        config = {
            **cfg.overrides("sample-frames"),
            "interval_s": cfg.frame_interval_s,
            "time_offset_s": offset_s,
            # extract-audio probed this video already: sample-frames need not probe it again.
            "media": media,
        }
        if window is not None:
            config.update(start_s=window[0], end_s=window[1])
        async with slots or contextlib.nullcontext():
            sampled = await self._step(
                f"sample-frames-{tag}",
                "sample-frames",
                SampleFramesOut,
                {"video": video_uri},
                config,
                fanout=fanout,
                deps=deps,
            )
        frames = sorted(sampled.frames, key=lambda f: f.index)
        batches = [
            frames[i : i + cfg.detect_batch] for i in range(0, len(frames), cfg.detect_batch)
        ]

        async def detect(number: int, batch: list[FrameView]) -> list[DetectedFrameView]:
            def same_frames(out: DetectObjectsOut) -> str | None:
                want = sorted(f.index for f in batch)
                got = sorted(f.index for f in out.frames)
                return None if got == want else f"frames {got[:10]} for {want[:10]}"

            async def call() -> DetectObjectsOut:
                return await self._step(
                    f"detect-objects-{tag}-{number:02d}",
                    "detect-objects",
                    DetectObjectsOut,
                    {"frames": [f.model_dump(include={"uri", "time_s", "index"}) for f in batch]},
                    cfg.overrides("detect-objects"),
                    # Unique per call, in case the detector names outputs by fanout.
                    fanout=(fanout or 0) * 1000 + number,
                    deps=(f"sample-frames-{tag}",),
                    check=same_frames,
                )

            if limit is None:
                out = await call()
            else:
                async with limit:
                    out = await call()
            return out.frames

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(detect(n, b)) for n, b in enumerate(batches)]
        detected = [f for t in tasks for f in t.result()]
        return sorted(detected, key=lambda f: f.time_s)

    async def _search(
        self,
        packaged: asyncio.Task[dict[int, tuple[ClipView, TranscodeOut]]],
        speeches: list[asyncio.Task[dict[int, TranscribeOut]]],
        speech_steps: list[str],
    ) -> list[Match]:
        clips = await packaged
        done = await asyncio.gather(*speeches)
        transcripts = {i: out for parts in done for i, out in parts.items()}
        entries = [
            {
                "clip_index": index,
                "start_s": clip.start_s,
                "end_s": clip.end_s,
                "transcript": transcripts[index].transcript_uri,
                "clip": transcode.mp4,
            }
            for index, (clip, transcode) in sorted(clips.items())
        ]
        await self._progress("search")
        out = await self._step(
            "search",
            "search",
            SearchOut,
            {"transcripts": entries},
            {**self.config.overrides("search"), "query": self.config.query},
            deps=(
                *speech_steps,
                *(f"transcode-clip-{_step_tag(i)}" for i in sorted(clips)),
            ),
        )
        return [
            Match(
                clip_index=m.clip_index,
                start_s=m.start_s,
                end_s=m.end_s,
                text=m.text,
                clip_uri=m.clip_uri,
                words=[Word(**w.model_dump()) for w in m.words],
                score=m.score,
                kind=m.kind,
                why=[MatchReason(**w.model_dump()) for w in m.why],
            )
            # search's ranking: exact matches first, then by score; ties in time order.
            for m in sorted(
                out.matches, key=lambda m: (m.kind != "exact", -m.score, m.start_s, m.clip_index)
            )
        ]

    # -- steps ----------------------------------------------------------------------------------
    async def _step(
        self,
        step: str,
        function: str,
        view: type[V],
        input: dict[str, Any],
        config: dict[str, Any],
        *,
        fanout: int | None = None,
        deps: tuple[str, ...] = (),
        check: Callable[[V], str | None] | None = None,
    ) -> V:
        """One function call, or its record from an earlier attempt of this request."""
        if step in self.completed:
            record = await asyncio.to_thread(self.steps.get, step)
            if record is not None and record.function == function:
                try:
                    value = view.model_validate(record.outputs)
                except ValidationError:
                    value = None
                if value is not None and (check is None or check(value) is None):
                    self.records.extend(
                        r.model_copy(update={"reused": True}) for r in record.invocations
                    )
                    self.nodes[step] = Node(0.0, deps)
                    self.steps_reused += 1
                    await self._progress()
                    return value
        result = await self.client.call(
            function,
            request_id=self.request_id,
            step=step,
            input=input,
            config=config,
            deadline=self.deadline,
            fanout=fanout,
            records=self.records,
        )
        # Judge the answer by its content before recording it: a record is trusted on resume.
        try:
            value = view.model_validate(result.outputs)
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise StageError(
                502,
                "bad_response",
                f"{function} ({step}) answered outputs that break its contract: {problem}",
                function=function,
                step=step,
            ) from None
        problem = check(value) if check else None
        if problem:
            raise StageError(
                502,
                "bad_response",
                f"{function} ({step}) answered outputs that break its contract: {problem}",
                function=function,
                step=step,
            )
        await asyncio.to_thread(
            self.steps.put,
            StepRecord(
                step=step,
                function=function,
                outputs=result.outputs,
                invocations=result.attempts,
                completed_at=time.time(),
            ),
        )
        self.nodes[step] = Node(result.metrics.wall_s, deps)
        self.steps_done += 1
        await self._progress()
        return value

    async def _local_step(self, step: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Orchestrator-side work (copy, hash), recorded like a function step."""
        if step in self.completed:
            record = await asyncio.to_thread(self.steps.get, step)
            if record is not None:
                self.steps_reused += 1
                return record.outputs
        outputs = await asyncio.to_thread(work)
        await asyncio.to_thread(
            self.steps.put,
            StepRecord(
                step=step,
                function="orchestrator",
                outputs=outputs,
                invocations=[],
                completed_at=time.time(),
            ),
        )
        return outputs

    # -- progress -------------------------------------------------------------------------------
    async def _progress(self, stage: str | None = None) -> None:
        now = time.monotonic()
        if stage is None and now - self._last_progress < self.settings.progress_interval_s:
            return
        if stage is not None:
            self.stage = stage
        self._last_progress = now
        progress = Progress(
            request_id=self.request_id,
            stage=self.stage,
            clips_total=self.clips_total,
            clips_done=self.clips_done,
            steps_done=self.steps_done,
            steps_reused=self.steps_reused,
            updated_at=time.time(),
        )
        try:
            await asyncio.to_thread(write_progress, self.store, progress)
        except Exception as exc:  # progress is advisory; never fail a request over it
            log(
                "progress_write_failed",
                level="warning",
                request_id=self.request_id,
                error=repr(exc),
            )


#: Silence the transcribe function puts between packed windows (its PACK_GAP_S), with margin.
PACK_GAP_ESTIMATE_S = 1.0


def speech_packs(spans: dict[int, tuple[float, float]], pack_s: float) -> list[list[int]]:
    """Consecutive sentences grouped for one transcribe call each: a group's speech plus the
    silence between its windows stays within `pack_s` seconds (one Whisper window), so one
    encoder pass serves them all. A sentence longer than that is a group of its own; pack_s 0
    gives one call per sentence. Groups run side by side (clip_concurrency at once)."""
    packs: list[list[int]] = []
    length = 0.0
    for index in sorted(spans):
        start, end = spans[index]
        more = end - start
        if packs and pack_s > 0 and length + PACK_GAP_ESTIMATE_S + more <= pack_s:
            packs[-1].append(index)
            length += PACK_GAP_ESTIMATE_S + more
        else:
            packs.append([index])
            length = more
    return packs


def _hits(frame: DetectedFrameView, clip_index: int | None) -> list[ObjectHit]:
    return [
        ObjectHit(
            label=o.label,
            score=o.score,
            frame_time_s=frame.time_s,
            box=o.box,
            clip_index=clip_index,
        )
        for o in sorted(frame.objects, key=lambda o: -o.score)
    ]
