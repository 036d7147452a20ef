"""The in-process baseline: its local object store keeps S3's rules, and a real request through
the real handlers gives the right answer on the generated demo video."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import get_args

import pytest

from base.errors import BadInput, InputNotFound, InvalidRequest
from base.storage import PreconditionFailed
from harness.backends.inprocess import STAGES, InProcessBaseline, LocalObjectStore
from harness.commands.search import comparison
from harness.media.generate import demo_video
from harness.records import check_content, content_ok
from orchestrator.contracts import StageName


def test_the_baseline_loads_every_stage_the_pipeline_calls_in_its_order() -> None:
    assert tuple(STAGES) == get_args(StageName)
    assert all(module == "stages." + name.replace("-", "_") for name, module in STAGES.items())


def test_local_store_keeps_keys_uris_and_conditions(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "bucket")
    etag = store.put_json("requests/r1/state.json", {"a": 1}, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_json("requests/r1/state.json", {"a": 2}, if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_json("requests/r1/state.json", {"a": 2}, if_match='"stale"')
    store.put_json("requests/r1/state.json", {"a": 3}, if_match=etag)
    assert store.get_json("requests/r1/state.json")[0] == {"a": 3}
    assert store.list_keys("requests/r1/") == ["requests/r1/state.json"]
    assert store.key_of(store.uri("requests/r1/state.json")) == "requests/r1/state.json"
    with pytest.raises(InvalidRequest):
        store.key_of("s3://other/requests/r1/state.json")
    with pytest.raises(InvalidRequest):
        store.put_bytes("requests/../etc", b"x")
    with pytest.raises(InputNotFound):
        store.download("requests/r1/missing", tmp_path / "x")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    store.upload(empty, "requests/r1/empty")
    with pytest.raises(BadInput):
        store.download("requests/r1/empty", tmp_path / "y")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> object:
    return demo_video(tmp_path_factory.mktemp("media"))


def test_baseline_answers_the_demo_with_the_functions_own_content(demo: object) -> None:
    video = Path(demo.path)  # type: ignore[attr-defined]
    with InProcessBaseline() as baseline:
        assert set(baseline.load_s) == {
            "extract-audio", "segment-speech", "cut-clips", "transcode-clip", "transcribe",
            "sample-frames", "detect-objects", "search",
        }  # fmt: skip
        run = baseline.search(video, "flour")
    assert run.answer["status"] == "ok", run.answer
    checks = check_content(run.answer, demo, query="flour")
    assert content_ok(checks), [c for c in checks if c.status == "fail"]
    result = run.answer["outputs"]
    assert [m["clip_index"] for m in result["matches"]] == [1]
    # Sequential: no two stage calls overlap in time.
    calls = sorted(
        (i["metrics"]["started_at"], i["metrics"]["started_at"] + i["metrics"]["wall_s"])
        for i in result["metrics"]["invocations"]
    )
    assert all(b[0] >= a[1] - 0.01 for a, b in itertools.pairwise(calls))
    assert run.cpu_s > 0 and run.wall_s >= result["metrics"]["request"]["critical_path_s"] * 0.99
    base = {"status": "ok", "wall_s": 2 * run.wall_s, "function_cpu_s": 1.0, "matches": [1]}
    cmp = comparison([(run.answer, base)])
    assert cmp["pairs_ok"] == 1 and cmp["same_matches"]
    assert cmp["ratio"]["end_to_end"] == pytest.approx(
        result["metrics"]["request"]["end_to_end_s"] / (2 * run.wall_s), rel=0.01
    )
