"""Pure pieces: config validation, key naming, critical path, request metrics, error choice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from base.errors import BadInput
from orchestrator.client import StageError
from orchestrator.contracts import Config, InvocationRecord
from orchestrator.handler import FUNCTION, new_request_id
from orchestrator.metrics import GIB, Node, critical_path, parse_memory_limits, summarise
from orchestrator.pipeline import first_error
from orchestrator.state import fingerprint, valid_request_id
from orchestrator.testing import metrics


def test_config_defaults_and_bounds() -> None:
    cfg = Config(query="  flour ")
    assert cfg.query == "flour"
    assert (cfg.clip_concurrency, cfg.frame_interval_s, cfg.detect_batch) == (4, 5.0, 16)
    assert (cfg.deadline_s, cfg.resume, cfg.max_attempts) == (600.0, True, 4)
    for bad in [
        {"query": ""},
        {"query": "   "},
        {"query": "x" * 201},
        {"query": "x", "clip_concurrency": 0},
        {"query": "x", "clip_concurrency": 33},
        {"query": "x", "detect_batch": 65},
        {"query": "x", "deadline_s": 0},
        {"query": "x", "functions": {"not-a-stage": {}}},
        {"query": "x", "functions": {"transcribe": {"time_offset_s": 3}}},
        {"query": "x", "functions": {"sample-frames": {"interval_s": 1}}},
        {"query": "x", "functions": {"cut-clips": {"segments": []}}},
        {"query": "x", "unknown": 1},
    ]:
        with pytest.raises(ValidationError):
            Config.model_validate(bad)
    ok = Config(query="x", functions={"transcribe": {"beam_size": 1}})  # type: ignore[dict-item]
    assert ok.overrides("transcribe") == {"beam_size": 1}
    assert ok.overrides("search") == {}


def test_fingerprint_ignores_how_but_not_what() -> None:
    base = Config(query="flour")
    faster = Config(query="flour", clip_concurrency=16, deadline_s=30, resume=False)
    other = Config(query="bowl")
    fp = fingerprint("s3://b/v.mp4", base.fingerprint_fields())
    assert fp == fingerprint("s3://b/v.mp4", faster.fingerprint_fields())
    assert fp != fingerprint("s3://b/v.mp4", other.fingerprint_fields())
    assert fp != fingerprint("s3://b/w.mp4", base.fingerprint_fields())


def test_request_ids_are_generated_when_missing_and_valid() -> None:
    rid = new_request_id()
    assert valid_request_id(rid)
    event = FUNCTION.parse({"input": {"video": "s3://b/k.mp4"}, "config": {"query": "x"}})
    assert valid_request_id(event.request_id)
    given = FUNCTION.parse(
        {"request_id": "mine-1", "input": {"video": "s3://b/k.mp4"}, "config": {"query": "x"}}
    )
    assert given.request_id == "mine-1"
    for bad in ["", "-x", "a/b", "../x", "x" * 65, "a b"]:
        assert not valid_request_id(bad)


def test_critical_path_takes_the_slowest_chain() -> None:
    nodes = {
        "extract-audio": Node(1.0),
        "segment-speech": Node(0.5, ("extract-audio",)),
        "cut-clips": Node(2.0, ("segment-speech",)),
        "transcode-clip-0000": Node(3.0, ("cut-clips",)),
        "transcribe-0000": Node(4.0, ("transcode-clip-0000",)),
        "transcode-clip-0001": Node(1.0, ("cut-clips",)),
        "transcribe-0001": Node(9.0, ("transcode-clip-0001",)),
        "sample-frames-0000": Node(0.5, ("cut-clips",)),
        "detect-objects-0000-00": Node(1.0, ("sample-frames-0000",)),
        "search": Node(0.25, ("transcribe-0000", "transcribe-0001")),
    }
    assert critical_path(nodes) == pytest.approx(1.0 + 0.5 + 2.0 + 1.0 + 9.0 + 0.25)
    # A reused step (not a node) costs nothing in this attempt.
    assert critical_path({"search": Node(0.25, ("transcribe-0001",))}) == 0.25
    assert critical_path({}) == 0.0


def record(function: str, wall: float, **kw: Any) -> InvocationRecord:
    m = metrics(function, wall, cold=kw.pop("cold", False))
    m["peak_rss_bytes"] = 256 << 20
    m["children_peak_rss_bytes"] = 256 << 20
    fields: dict[str, Any] = {
        "function": function,
        "step": kw.pop("step", function),
        "attempt": 1,
        "outcome": "ok",
        "started_at": 0.0,
        "client_latency_s": wall,
        "metrics": m,
    }
    return InvocationRecord.model_validate({**fields, **kw})


def test_request_metrics() -> None:
    records = [
        record("extract-audio", 2.0, queue_s=0.5, cold=True),
        record("transcribe", 4.0, cold_start_wait_s=1.5, cold=True),
        record("transcribe", 0.1, attempt=2, outcome="ok", step="transcribe-x"),
        record("search", 1.0, reused=True),
        InvocationRecord(
            function="transcribe",
            step="transcribe-x",
            attempt=1,
            outcome="retried",
            status_code=503,
            started_at=0.0,
            client_latency_s=0.01,
        ),
    ]
    nodes = {"extract-audio": Node(2.0), "transcribe": Node(4.0, ("extract-audio",))}
    out = summarise(records, nodes, end_to_end_s=7.5, memory_limits={"extract-audio": GIB})
    assert out.critical_path_s == 6.0 and out.overhead_s == 1.5
    assert out.queueing_s == 0.5 and out.cold_start_wait_s == 1.5
    assert out.retries == 1 and out.cold_starts == 1 and out.first_invocations == 2
    assert out.invocations == 4 and out.steps_reused == 1
    # Half a GiB (process + child peaks) for 2 + 4 + 0.1 s; the reused call is not counted.
    assert out.cost_gb_s_measured == pytest.approx(0.5 * 6.1)
    assert out.cost_gb_s_configured is None  # transcribe's limit is unknown
    limits = {"extract-audio": GIB, "transcribe": 2 * GIB}
    full = summarise(records, nodes, end_to_end_s=7.5, memory_limits=limits)
    assert full.cost_gb_s_configured == pytest.approx(2.0 + 2 * 4.1)


def test_memory_limits_from_the_environment() -> None:
    assert parse_memory_limits("transcribe=1Gi, search=256Mi,x=1000") == {
        "transcribe": 1 << 30,
        "search": 256 << 20,
        "x": 1000,
    }
    assert parse_memory_limits(None) == {}
    with pytest.raises(ValueError):
        parse_memory_limits("transcribe=lots")


def test_the_reported_error_is_the_first_function_error_in_nested_groups() -> None:
    stage = StageError(422, "bad_input", "x", function="transcribe", step="transcribe-0001")
    group = BaseExceptionGroup(
        "outer",
        [asyncio.CancelledError(), ExceptionGroup("inner", [ValueError("bug"), stage])],
    )
    assert first_error(group) is stage
    assert isinstance(first_error(ExceptionGroup("g", [ValueError("bug")])), ValueError)
    plain = BadInput("nope")
    assert first_error(plain) is plain
