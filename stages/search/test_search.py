"""search over stored transcripts: the right clips, their words and times, copied clips."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest


def search(
    invoke: Callable[..., httpx.Response],
    url: str,
    request_id: str,
    transcripts: list[dict[str, Any]],
    query: str,
    mode: str | None = None,
) -> dict[str, Any]:
    config = {"query": query} | ({"mode": mode} if mode else {})
    resp = invoke(
        url,
        {"request_id": request_id, "input": {"transcripts": transcripts}, "config": config},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["function"] == "search"
    assert body["outputs"]["query"] == query
    return body


def transcript_words(s3_server: Any, entry: dict[str, Any]) -> list[dict[str, Any]]:
    key = entry["transcript"].removeprefix(f"s3://{s3_server.bucket}/")
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    return list(json.loads(body)["words"])


def stored_keys(s3_server: Any, request_id: str) -> list[str]:
    listed = s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket, Prefix=f"requests/{request_id}/"
    )
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_phrase_in_one_clip_returns_that_clip_and_its_copy(
    corpus: list[dict[str, Any]],
    clip_files: list[Path],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
    s3_server: Any,
    sha256_of: Callable[[str], str],
) -> None:
    out = search(invoke, search_url, request_id, corpus, "brown fox jumps")["outputs"]
    assert [m["clip_index"] for m in out["matches"]] == [0]
    match = out["matches"][0]
    assert (match["start_s"], match["end_s"]) == (corpus[0]["start_s"], corpus[0]["end_s"])
    assert match["text"] == "The quick brown fox jumps over the lazy dog."
    words = transcript_words(s3_server, corpus[0])
    assert [w["word"] for w in match["words"]] == ["brown", "fox", "jumps"]
    assert [(w["start_s"], w["end_s"]) for w in match["words"]] == [
        (w["start_s"], w["end_s"]) for w in words[2:5]
    ]
    # The match is a server-side copy of exactly that clip, under this request's prefix.
    key = f"requests/{request_id}/search/match-0000.mp4"
    assert match["clip_uri"] == f"s3://{s3_server.bucket}/{key}"
    assert stored_keys(s3_server, request_id) == [key]
    assert sha256_of(match["clip_uri"]) == hashlib.sha256(clip_files[0].read_bytes()).hexdigest()
    assert sha256_of(match["clip_uri"]) != hashlib.sha256(clip_files[1].read_bytes()).hexdigest()


@pytest.mark.parametrize("query", ["cat", "bow", "categor", "con", "catenate"])
def test_part_of_a_word_is_no_exact_match(
    query: str,
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
    s3_server: Any,
) -> None:
    body = search(invoke, search_url, request_id, corpus, query, mode="exact")
    assert body["outputs"]["matches"] == [] and body["outputs"]["mode"] == "exact"
    assert stored_keys(s3_server, request_id) == []
    assert body["metrics"]["bytes_uploaded"] == 0
    # Tolerant: short queries stay exact; a long part of a word may match, never as exact.
    tolerant = search(invoke, search_url, request_id, corpus, query)["outputs"]
    if len(query) < 5:
        assert tolerant["matches"] == []
    assert all(m["kind"] != "exact" and m["score"] < 1.0 for m in tolerant["matches"])


def test_tolerant_mode_finds_split_and_merged_words_ranked_after_exact(
    corpus: list[dict[str, Any]],
    put_object: Callable[[str, bytes], str],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    # "two cups" heard as one made-up word, as tiny.en does with some voices.
    said = [" Add", " tucups", " of", " flour,", " then", " stir."]
    words = [
        {"word": w, "start_s": 30.0 + i, "end_s": 30.5 + i, "probability": 0.4 if i == 1 else 0.9}
        for i, w in enumerate(said)
    ]
    transcript = {
        "text": "".join(said).strip(),
        "words": words,
        "segments": [{"start_s": 30.0, "end_s": 36.0, "text": "".join(said)}],
    }
    uri = put_object(f"uploads/{request_id}/merged.json", json.dumps(transcript).encode())
    entry = {**corpus[0], "clip_index": 9, "start_s": 29.5, "end_s": 36.5, "transcript": uri}
    clips = [entry, *corpus]
    exact = search(invoke, search_url, request_id, clips, "two cups of flour", "exact")
    assert [m["clip_index"] for m in exact["outputs"]["matches"]] == [1]
    out = search(invoke, search_url, request_id, clips, "two cups of flour")["outputs"]
    assert out["mode"] == "tolerant"
    assert (out["matches"][0]["clip_index"], out["matches"][0]["kind"]) == (1, "exact")
    [merged] = [m for m in out["matches"] if m["clip_index"] == 9]
    assert merged["kind"] in ("phonetic", "fuzzy") and 0.66 <= merged["score"] < 1.0
    assert [w["word"] for w in merged["words"]] == ["tucups", "of", "flour,"]
    assert merged["words"][0]["start_s"] == 31.0  # absolute times, as transcribe wrote them
    assert {"heard": "tucups", "query": "two cups"} in merged["why"]
    # And the other way round: a query word run together, the transcript's words apart.
    out = search(invoke, search_url, request_id, corpus, "redbus stops")["outputs"]
    assert [(m["clip_index"], m["kind"]) for m in out["matches"]] == [(2, "phonetic")]


@pytest.mark.parametrize(
    ("query", "clip", "words"),
    [
        ("RED bus", 2, ["red", "bus"]),
        ("red, BUS!", 2, ["red", "bus"]),
        ("  Lazy   Dog. ", 0, ["lazy", "dog."]),
        ("dont we", 2, ["don\u2019t", "we?"]),
        ("don't WE", 2, ["don\u2019t", "we?"]),
        ("\uff26\uff4f\uff58", 0, ["fox"]),  # fullwidth letters (NFKC)
        ("ﬂour", 1, ["flour"]),  # a ligature pasted from a PDF (NFKC)
        ("categories", 2, ["categories,"]),
    ],
)
def test_case_punctuation_and_unicode_variants_match(
    query: str,
    clip: int,
    words: list[str],
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    out = search(invoke, search_url, request_id, corpus, query)["outputs"]
    assert [m["clip_index"] for m in out["matches"]] == [clip]
    assert [w["word"] for w in out["matches"][0]["words"]] == words


def test_phrase_across_whisper_segments_matches(
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
    s3_server: Any,
) -> None:
    out = search(invoke, search_url, request_id, corpus, "two cups of flour")["outputs"]
    assert [m["clip_index"] for m in out["matches"]] == [1]
    match = out["matches"][0]
    assert [w["word"] for w in match["words"]] == ["two", "cups", "of", "flour"]
    words = transcript_words(s3_server, corpus[1])
    assert match["words"][0]["start_s"] == words[2]["start_s"]
    assert match["words"][-1]["end_s"] == words[5]["end_s"]
    assert match["text"] == "Please add two cups of flour to the bowl."
    assert match["clip_uri"].endswith(f"requests/{request_id}/search/match-0001.mp4")


def test_word_in_every_clip_returns_each_clip_once(
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
    s3_server: Any,
) -> None:
    out = search(invoke, search_url, request_id, list(reversed(corpus)), "the")["outputs"]
    assert [m["clip_index"] for m in out["matches"]] == [0, 1, 2]
    # Every occurrence's word, in time order: "The ... the", "the", "The ... the".
    assert [[w["word"] for w in m["words"]] for m in out["matches"]] == [
        ["The", "the"],
        ["the"],
        ["The", "the"],
    ]
    for m in out["matches"]:
        starts = [w["start_s"] for w in m["words"]]
        assert starts == sorted(starts) and m["start_s"] <= starts[0] <= m["end_s"]
    assert stored_keys(s3_server, request_id) == [
        f"requests/{request_id}/search/match-{i:04d}.mp4" for i in range(3)
    ]


def test_no_match_is_an_empty_list(
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    for mode in ("exact", "tolerant"):
        out = search(invoke, search_url, request_id, corpus, "purple elephant", mode)["outputs"]
        assert out["matches"] == []
    # Words that exist, but not consecutively, are not the phrase.
    out = search(invoke, search_url, request_id, corpus, "quick fox", "exact")["outputs"]
    assert out["matches"] == []


def test_no_transcripts_is_an_empty_list(
    search_url: str, invoke: Callable[..., httpx.Response], request_id: str
) -> None:
    assert search(invoke, search_url, request_id, [], "anything")["outputs"]["matches"] == []


def test_transcript_without_word_times_matches_with_segment_times(
    corpus: list[dict[str, Any]],
    put_object: Callable[[str, bytes], str],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    transcript = {
        "text": " Turn left at the old mill. Then go straight.",
        "words": [],
        "segments": [
            {"start_s": 20.0, "end_s": 22.0, "text": " Turn left at the old mill."},
            {"start_s": 22.5, "end_s": 24.0, "text": " Then go straight."},
        ],
        "language": "en",
        "duration_s": 4.5,
        "model": "tiny.en",
        "transcript_uri": "",
    }
    uri = put_object(f"uploads/{request_id}/t.json", json.dumps(transcript).encode())
    entry = {**corpus[0], "clip_index": 7, "start_s": 19.8, "end_s": 24.3, "transcript": uri}
    out = search(invoke, search_url, request_id, [entry], "mill then go")["outputs"]
    [match] = out["matches"]
    assert (
        match["clip_index"] == 7 and match["text"] == "Turn left at the old mill. Then go straight."
    )
    assert [(w["word"], w["start_s"], w["end_s"]) for w in match["words"]] == [
        ("mill.", 20.0, 22.0),
        ("Then", 22.5, 24.0),
        ("go", 22.5, 24.0),
    ]


@pytest.mark.bench
def test_bench_search(
    benchmark: Any,
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    def run() -> dict[str, Any]:
        return search(invoke, search_url, request_id, corpus, "the red bus")

    body = benchmark.pedantic(run, rounds=3, iterations=1)
    assert [m["clip_index"] for m in body["outputs"]["matches"]] == [2]
    metrics = body["metrics"]
    assert metrics["bytes_uploaded"] == 0
    benchmark.extra_info["peak_rss_bytes"] = metrics["peak_rss_bytes"]
    benchmark.extra_info["children_peak_rss_bytes"] = metrics["children_peak_rss_bytes"]
    benchmark.extra_info["wall_s"] = metrics["wall_s"]
