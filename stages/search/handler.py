"""search (VideoSearcher "grep"): find the clips whose transcript contains the query.

Matching rules are in matcher.py. Each matching clip is copied (server-side, no bytes through
this function) to `match-NNNN.mp4`, NNNN being its clip index, so a retry overwrites only its
own copies.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from botocore.exceptions import ClientError
from pydantic import Field, ValidationError, field_validator, model_validator

from base.contracts import Event, Model, S3Uri
from base.errors import BadInput, InputNotFound, InvalidRequest
from base.runtime import Context, Function
from stages.search import matcher

MAX_QUERY_CHARS = 200
MAX_TRANSCRIPTS = 2000
#: A transcript of a 3 h video is ~3 MB of JSON; anything far larger is not a transcript.
MAX_TRANSCRIPT_BYTES = 16 << 20
#: Concurrent S3 requests (GETs of transcripts, copies of clips).
IO_THREADS = 8


class ClipTranscript(Model):
    clip_index: int = Field(ge=0, le=1_000_000)
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    transcript: S3Uri
    clip: S3Uri


class Input(Model):
    transcripts: list[ClipTranscript] = Field(max_length=MAX_TRANSCRIPTS)

    @model_validator(mode="after")
    def _unique_clips(self) -> Input:
        indices = [t.clip_index for t in self.transcripts]
        if len(set(indices)) != len(indices):
            raise ValueError("clip_index values must be unique")
        return self


class Config(Model):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    mode: Literal["exact", "tolerant"] = Field(
        "tolerant",
        description="exact: whole words as transcribed; tolerant: also phrases the recogniser "
        "got slightly wrong (phonetic, fuzzy, alternative hypotheses), ranked by score",
    )
    threshold: float = Field(
        matcher.THRESHOLD, ge=0.0, le=1.0, description="lowest score of a tolerant match"
    )

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not matcher.normalize(value):
            raise ValueError("query must contain at least one word (letters or digits)")
        return value


class MatchedWord(Model):
    word: str
    start_s: float
    end_s: float
    probability: float


class Why(Model):
    heard: str = Field(description="the transcript words (or alternative hypothesis words)")
    query: str = Field(description="the query words they were matched to")


class Match(Model):
    clip_index: int
    start_s: float
    end_s: float
    text: str
    clip_uri: str
    words: list[MatchedWord]
    score: float = Field(1.0, ge=0.0, le=1.0, description="1.0 for an exact match")
    kind: matcher.Kind = "exact"
    why: list[Why] = Field(default_factory=list)


class Output(Model):
    query: str
    mode: Literal["exact", "tolerant"] = "tolerant"
    matches: list[Match] = Field(description="exact matches first, then by score, clip order")


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def _fetch_transcript(ctx: Context, uri: str) -> tuple[matcher.Transcript, int]:
    ctx.check_cancelled()
    key = ctx.storage.key_of(uri)
    body, _ = ctx.storage.get_bytes(key, max_bytes=MAX_TRANSCRIPT_BYTES)
    if not body:
        raise BadInput(f"transcript is empty (0 bytes): {key}", code="empty_input")
    try:
        transcript = matcher.Transcript.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise BadInput(f"transcript {key} is not JSON", code="not_json") from None
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise BadInput(
            f"{key} is not a transcript ({where}: {first['msg']})", code="bad_transcript"
        ) from None
    return transcript, len(body)


def _copy_clip(ctx: Context, clip: ClipTranscript) -> str:
    ctx.check_cancelled()
    name = f"match-{clip.clip_index:04d}.mp4"
    dest = ctx.output_key(name)
    try:
        ctx.storage.copy(ctx.storage.key_of(clip.clip), dest)
    except ClientError as exc:
        if _is_missing(exc):
            raise InputNotFound(f"no such clip: {clip.clip}") from None
        raise
    return ctx.storage.uri(dest)


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    cfg = event.config
    query = matcher.normalize(cfg.query)
    clips = sorted(event.input.transcripts, key=lambda c: c.clip_index)
    # Every URI is checked before any request, so a bad one fails the call without side effects.
    for clip in clips:
        ctx.storage.key_of(clip.transcript)
        ctx.storage.key_of(clip.clip)
        if clip.end_s < clip.start_s:
            raise InvalidRequest(f"clip {clip.clip_index}: end_s is before start_s")

    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="search-io") as pool:
        with ctx.recorder.phase("download"):
            fetched = list(pool.map(lambda c: _fetch_transcript(ctx, c.transcript), clips))
        ctx.recorder.bytes_downloaded += sum(size for _, size in fetched)

        found: list[tuple[ClipTranscript, matcher.Transcript, matcher.Hit]] = []
        with ctx.recorder.phase("compute"):
            for clip, (transcript, _) in zip(clips, fetched, strict=True):
                ctx.check_cancelled()
                hit = matcher.search(
                    query,
                    transcript,
                    clip.start_s,
                    clip.end_s,
                    mode=cfg.mode,
                    threshold=cfg.threshold,
                )
                if hit is not None:
                    found.append((clip, transcript, hit))
            found.sort(key=lambda f: matcher.rank_key(f[2].kind, f[2].score, f[0].clip_index))

        # Server-side copies: nothing passes through this function, so bytes_uploaded stays 0.
        with ctx.recorder.phase("upload"):
            uris = list(pool.map(lambda f: _copy_clip(ctx, f[0]), found))

    matches = [
        Match(
            clip_index=clip.clip_index,
            start_s=clip.start_s,
            end_s=clip.end_s,
            text=transcript.text.strip(),
            clip_uri=uri,
            words=[_word(w) for w in hit.words],
            score=hit.score,
            kind=hit.kind,
            why=[Why(heard=heard, query=q) for heard, q in hit.why],
        )
        for (clip, transcript, hit), uri in zip(found, uris, strict=True)
    ]
    return Output(query=cfg.query, mode=cfg.mode, matches=matches)


def _word(w: matcher.Word) -> MatchedWord:
    return MatchedWord(
        word=w.word.strip(), start_s=w.start_s, end_s=w.end_s, probability=w.probability
    )


FUNCTION = Function(
    name="search",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    description="Find the clips whose transcript contains the query; copy them as matches.",
)
