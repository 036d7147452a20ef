"""search refuses bad queries and unusable transcripts clearly, and keeps serving afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest


def call(
    invoke: Callable[..., httpx.Response],
    url: str,
    request_id: str,
    transcripts: list[dict[str, Any]],
    query: Any = "red bus",
) -> httpx.Response:
    return invoke(
        url,
        {
            "request_id": request_id,
            "input": {"transcripts": transcripts},
            "config": {"query": query},
        },
    )


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error"
    if code:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("query", ["", "x" * 201, "   ", "?!…", None, 42])
def test_bad_query_is_400(
    query: Any,
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    assert_error(call(invoke, search_url, request_id, corpus, query), 400, "invalid_request")


def test_longest_query_is_accepted(
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    resp = call(invoke, search_url, request_id, corpus, "bus " * 49 + "busy")
    assert resp.status_code == 200 and resp.json()["outputs"]["matches"] == []


@pytest.mark.parametrize(
    "extra", [{"mode": "fuzzy"}, {"mode": None}, {"threshold": 1.5}, {"threshold": -0.1}]
)
def test_bad_mode_or_threshold_is_400(
    extra: dict[str, Any],
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
) -> None:
    body = {
        "request_id": "t-badmode",
        "input": {"transcripts": corpus},
        "config": {"query": "red bus", **extra},
    }
    assert_error(invoke(search_url, body), 400, "invalid_request")


def test_missing_query_is_400(
    corpus: list[dict[str, Any]], search_url: str, invoke: Callable[..., httpx.Response]
) -> None:
    body = {"request_id": "t-noquery", "input": {"transcripts": corpus}}
    assert_error(invoke(search_url, body), 400, "invalid_request")


def test_missing_transcript_is_404(
    corpus: list[dict[str, Any]],
    s3_server: Any,
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    gone = {**corpus[1], "transcript": f"s3://{s3_server.bucket}/uploads/nope/transcript.json"}
    assert_error(call(invoke, search_url, request_id, [corpus[0], gone]), 404, "input_not_found")


def test_missing_clip_of_a_match_is_404(
    corpus: list[dict[str, Any]],
    s3_server: Any,
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    gone = {**corpus[2], "clip": f"s3://{s3_server.bucket}/uploads/nope/clip.mp4"}
    assert_error(call(invoke, search_url, request_id, [gone]), 404, "input_not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"The quick brown fox (a plain-text transcript, not JSON)", "not_json"),
        (b'{"text": "truncated json', "not_json"),
        (b"\x00\x01\x02 binary", "not_json"),
        (b"[1, 2, 3]", "bad_transcript"),
        (b'{"text": "hi", "words": [{"word": " hi"}]}', "bad_transcript"),
        (b"", "empty_input"),
    ],
)
def test_unusable_transcript_is_422(
    body: bytes,
    code: str,
    corpus: list[dict[str, Any]],
    put_object: Callable[[str, bytes], str],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    uri = put_object(f"uploads/{request_id}/transcript.json", body)
    bad = {**corpus[0], "transcript": uri}
    assert_error(call(invoke, search_url, request_id, [bad, corpus[2]]), 422, code)


@pytest.mark.parametrize(
    ("field", "uri"),
    [
        ("transcript", "s3://someone-elses-bucket/t.json"),
        ("clip", "s3://someone-elses-bucket/c.mp4"),
        ("transcript", "s3://{bucket}/uploads/../requests/x/t.json"),
    ],
)
def test_foreign_bucket_or_unsafe_key_is_400(
    field: str,
    uri: str,
    corpus: list[dict[str, Any]],
    s3_server: Any,
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    bad = {**corpus[0], field: uri.format(bucket=s3_server.bucket)}
    resp = call(invoke, search_url, request_id, [bad])
    assert_error(resp, 400)
    assert resp.json()["error"]["code"] in {"foreign_bucket", "bad_key"}


@pytest.mark.parametrize(
    "transform",
    [
        lambda c: [c[0], {**c[1], "clip_index": 0}],  # duplicate clip index
        lambda c: [{k: v for k, v in c[0].items() if k != "clip"}],  # missing field
        lambda c: [{**c[0], "extra": 1}],  # unknown field
        lambda c: [{**c[0], "clip_index": -1}],
        lambda c: [{**c[0], "start_s": 5.0, "end_s": 1.0}],  # ends before it starts
        lambda c: {"clip": c[0]["clip"]},  # not a list
    ],
)
def test_malformed_input_is_400(
    transform: Callable[[list[dict[str, Any]]], Any],
    corpus: list[dict[str, Any]],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    assert_error(call(invoke, search_url, request_id, transform(corpus)), 400)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"request_id": "a b", "input": {}}'])
def test_malformed_body_is_400(body: bytes, search_url: str) -> None:
    resp = httpx.post(
        search_url + "/", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert_error(resp, 400)


def test_still_serves_after_bad_inputs(
    corpus: list[dict[str, Any]],
    put_object: Callable[[str, bytes], str],
    search_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    uri = put_object(f"uploads/{request_id}/junk.json", b"not json")
    assert (
        call(invoke, search_url, request_id, [{**corpus[0], "transcript": uri}]).status_code == 422
    )
    assert call(invoke, search_url, request_id, corpus, "").status_code == 400
    resp = call(invoke, search_url, request_id, corpus, "station every morning")
    assert resp.status_code == 200, resp.text
    [match] = resp.json()["outputs"]["matches"]
    assert match["clip_index"] == 2
    assert [w["word"] for w in match["words"]] == ["station", "every", "morning."]
    assert json.dumps(match)  # plain JSON all the way down
