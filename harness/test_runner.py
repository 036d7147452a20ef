"""The regime runner, the backend factory and `./vsearch bench|report` without a platform.

A fake Backend stands in for the platform and a mock transport for the orchestrator, so the
preparation checks, the accounting and the CLI's plumbing are tested in seconds; the real
thing runs in test_regimes_embedded.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import cli
from harness.backend import Backend
from harness.backends.factory import KNOWN, BackendUnavailable, create_backend
from harness.commands.bench import LiveDisplay, run_report
from harness.functions import FunctionDeclaration
from harness.records import check_structure
from harness.regimes import Baseline, Regime, load_regimes
from harness.report import render_summary, write_report
from harness.runner import (
    Media,
    PreparationError,
    RegimeRun,
    baseline_from,
    prepare,
    replica_cpu_by_function,
)
from harness.stats import resource_use
from harness.synthetic import demo_truth, envelope, good_result, pipeline_invocations
from harness.workload import OrchestratorSender, Progress, Video

FUNCTIONS = ["orchestrator", "transcribe", "search"]
MIB = 1 << 20
#: Ratio thresholds need the run's warm baseline (the mock orchestrator answers in ms).
BASELINE = Baseline(latency_s=1.0, cpu_s=4.0, cores=2)


class FakeBackend:
    """Replicas appear when scaled (unless told to stick); statuses are OpenFaaS-shaped."""

    name = "fake"

    def __init__(self, *, stuck: dict[str, int] | None = None) -> None:
        self.ready: dict[str, int] = {}
        self.target: dict[str, int] = {}
        self.stuck = dict(stuck or {})
        self.cpu: dict[str, float] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.deployed = False

    # lifecycle
    def deploy(self, declarations: list[FunctionDeclaration]) -> None:
        self.calls.append(("deploy", [d.name for d in declarations]))
        self.deployed = True
        self.ready = {d.name: d.min_replicas for d in declarations}

    def teardown(self) -> None:
        self.calls.append(("teardown",))
        self.deployed = False

    @property
    def gateway_url(self) -> str:
        return "http://gateway.test"

    def upload(self, path: Path, key: str) -> str:
        self.calls.append(("upload", key))
        return f"s3://bucket/{key}"

    def scale(self, function: str, replicas: int) -> None:
        self.calls.append(("scale", function, replicas))
        self.target[function] = replicas

    def wait_replicas(self, function: str, replicas: int, *, timeout_s: float) -> None:
        if function in self.stuck:
            self.ready[function] = self.stuck[function]
            raise TimeoutError(f"{function}: wanted {replicas} ready replicas, have ['x:starting']")
        self.ready[function] = replicas

    def ready_replicas(self, function: str) -> int:
        return self.ready.get(function, 0)

    def function_status(self) -> list[dict[str, Any]]:
        # Every call burns a little CPU in each replica, like a live platform between snapshots.
        out = []
        for fn, n in self.ready.items():
            self.cpu[fn] = self.cpu.get(fn, 0.0) + 2.0
            replicas = [{"name": f"{fn}-{i + 1}", "cpu_s": self.cpu[fn]} for i in range(n)]
            out.append(
                {
                    "name": fn,
                    "availableReplicas": n,
                    "vsearch": {
                        "memory_limit_bytes": 512 * MIB,
                        "peak_memory_bytes": 60 * MIB,  # within every budget
                        "cold_starts": 0,
                        "oom_kills": 0,
                        "replicas": replicas,
                    },
                }
            )
        return out

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [{"type": "scaled", "function": fn, "time": since} for fn in self.target]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


def _declarations() -> list[FunctionDeclaration]:
    return [FunctionDeclaration(name=n, module=n.replace("-", "_")) for n in FUNCTIONS]


def _regime(name: str = "warm-steady", **workload: Any) -> Regime:
    regime = load_regimes().resolve("ci", [name])[0]
    # The synthetic orchestrator envelope reports 150 MiB of RSS (the real one peaked at 91).
    rules = {**regime.thresholds.max_peak_memory, "orchestrator": "160Mi"}
    regime = regime.model_copy(
        update={"thresholds": regime.thresholds.model_copy(update={"max_peak_memory": rules})}
    )
    if workload:
        regime = regime.model_copy(update={"workload": regime.workload.model_copy(update=workload)})
    return regime


def test_fake_backend_is_a_backend() -> None:
    assert isinstance(FakeBackend(), Backend)


# --------------------------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------------------------


def test_prepare_scales_and_verifies_ready() -> None:
    backend = FakeBackend()
    report = prepare(backend, _regime("warm-steady"), FUNCTIONS)
    assert [c for c in backend.calls if c[0] == "scale"] == [("scale", f, 1) for f in FUNCTIONS]
    assert report["verified"] is True
    assert report["wanted_replicas"] == dict.fromkeys(FUNCTIONS, 1)
    assert report["ready_replicas_seen"] == dict.fromkeys(FUNCTIONS, 1)


def test_prepare_verifies_zero_for_cold() -> None:
    backend = FakeBackend()
    backend.ready = dict.fromkeys(FUNCTIONS, 1)
    report = prepare(backend, _regime("cold-burst"), FUNCTIONS)
    assert report["verify"] == "zero"
    assert report["ready_replicas_seen"] == dict.fromkeys(FUNCTIONS, 0)


def test_prepare_fails_when_replicas_do_not_come() -> None:
    backend = FakeBackend(stuck={"transcribe": 0})
    with pytest.raises(PreparationError, match="warm-steady: preparation failed: transcribe"):
        prepare(backend, _regime("warm-steady"), FUNCTIONS)


def test_prepare_fails_when_state_drifts_after_waiting() -> None:
    class Drifting(FakeBackend):
        def function_status(self) -> list[dict[str, Any]]:
            statuses = super().function_status()
            for s in statuses:
                if s["name"] == "search":
                    s["availableReplicas"] = 1  # a replica came back: not cold any more
            return statuses

    with pytest.raises(PreparationError, match=r"search: 1 ready, wanted 0"):
        prepare(Drifting(), _regime("cold-burst"), FUNCTIONS)


# --------------------------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------------------------


def _status(fn: str, replicas: dict[str, float]) -> dict[str, Any]:
    return {
        "name": fn,
        "availableReplicas": len(replicas),
        "vsearch": {"replicas": [{"name": n, "cpu_s": c} for n, c in replicas.items()]},
    }


def test_replica_cpu_counts_live_and_ended_replicas_once() -> None:
    before = [_status("transcribe", {"transcribe-1": 10.0})]
    after = [_status("transcribe", {"transcribe-1": 25.0, "transcribe-2": 7.0})]
    events = [
        {
            "type": "replica_stopped",
            "function": "transcribe",
            "replica": "transcribe-3",
            "cpu_s": 4,
        },
        # A live replica's stop event cannot exist; if it did, its CPU must not count twice.
        {"type": "replica_died", "function": "transcribe", "replica": "transcribe-2", "cpu_s": 7},
        {"type": "cold_start", "function": "transcribe", "replica": "transcribe-2"},
    ]
    assert replica_cpu_by_function(before, after, events) == {"transcribe": 15.0 + 7.0 + 4.0}


def test_replica_cpu_unknown_without_platform_extras() -> None:
    assert replica_cpu_by_function([], [{"name": "search", "availableReplicas": 1}], []) is None


def test_replica_cpu_unknown_when_replicas_report_none() -> None:
    # The k8s backend lists pods without CPU: that is unknown, never 0 CPU-s (which made the
    # regime's replica CPU per request 0 and its CPU-bound cap vanish).
    pods = [{"name": "search", "vsearch": {"replicas": [{"name": "search-abc", "ready": True}]}}]
    assert replica_cpu_by_function(pods, pods, []) is None


def test_resource_use_derives_the_cpu_bound_limit() -> None:
    use = resource_use(
        [],
        cores=2,
        window_s=100.0,
        ok=4,
        host_busy_cpu_s=150.0,
        harness_cpu_s=10.0,
        replica_cpu_s_by_function={"a": 30.0, "b": 10.0},
    )
    assert use.replica_cpu_s == 40.0
    assert use.replica_cpu_s_per_ok_request == 10.0
    assert use.cpu_bound_limit_per_s == pytest.approx(0.2)
    assert use.throughput_ok_per_s == pytest.approx(0.04)
    assert use.other_cpu_s == 100.0
    assert use.utilisation == pytest.approx(0.25)
    assert use.host_utilisation == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------
# A whole regime against the fake platform
# --------------------------------------------------------------------------------------------


def _orchestrator(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    result = good_result(request_id=body["request_id"], invocations=pipeline_invocations())
    return httpx.Response(200, json=envelope(result))


def test_regime_run_end_to_end(tmp_path: Path) -> None:
    backend = FakeBackend()
    phases: list[str] = []
    regime = _regime("warm-steady", rate=50.0, count=3, warmup=1)
    run = RegimeRun(
        backend,
        regime,
        Media(path=tmp_path / "demo.mp4", query="flour", truth=demo_truth()),
        declarations=_declarations(),
        on_phase=lambda phase, detail: phases.append(phase),
        cores=2,
        http=lambda timeout: httpx.AsyncClient(transport=httpx.MockTransport(_orchestrator)),
        baseline=BASELINE,
    )
    result = run.run()
    assert result.baseline == BASELINE
    assert phases == ["deploy", "prepare", "load", "teardown"]
    assert backend.calls[0] == ("deploy", FUNCTIONS) and backend.calls[-1] == ("teardown",)
    assert result.summary.outcomes.ok == 2 and result.passed, result.violations
    prep = result.preparation or {}
    assert prep["verified"] and prep["ready_replicas_seen"] == dict.fromkeys(FUNCTIONS, 1)
    assert prep["ready_replicas_after"] == dict.fromkeys(FUNCTIONS, 1)
    assert "deploy_s" in prep and prep["events_preparation"]["counts"] == {"scaled": 3}
    res = result.resources
    assert res is not None and res.cores == 2
    # Two snapshots, 2 CPU-s per replica between them, three functions; 3 ok (warm-up too).
    assert res.replica_cpu_s == pytest.approx(6.0)
    assert res.replica_cpu_s_per_ok_request == pytest.approx(2.0)
    assert res.stage_cpu_s_per_ok_request.n == 2

    files = write_report(tmp_path / "out", [result])
    text = render_summary([result])
    assert "CPU-bound ok/s" in text and "warm-steady" in text
    assert run_report([files["results"].parent]) == 0


class ClusterLikeBackend(FakeBackend):
    """Its functions run elsewhere: the cores are its own, not the harness host's."""

    def cpu_cores(self) -> tuple[float, str]:
        return 5.5, "allocatable CPU of the schedulable ready node(s) a, b"


def test_regime_run_takes_the_cores_of_the_platform(tmp_path: Path) -> None:
    run = RegimeRun(
        ClusterLikeBackend(),
        _regime("warm-steady", rate=50.0, count=3, warmup=1),
        Media(path=tmp_path / "demo.mp4", query="flour", truth=demo_truth()),
        declarations=_declarations(),
        http=lambda timeout: httpx.AsyncClient(transport=httpx.MockTransport(_orchestrator)),
    )
    result = run.run()
    res = result.resources
    assert res is not None and res.cores == 5.5 and "node(s) a, b" in (res.cores_source or "")
    baseline = baseline_from(result, run.cores or 0)
    assert baseline.cores == 5.5 and baseline.cores_source == res.cores_source
    assert baseline.cpu_s and baseline.capacity_per_s == pytest.approx(5.5 / baseline.cpu_s)
    assert json.loads(result.model_dump_json())["resources"]["cores_source"] == res.cores_source


class ReusingBackend(FakeBackend):
    """Like the embedded backend: the same declarations reuse the running platform."""

    def __init__(self) -> None:
        super().__init__()
        self.reused_deploys = 0
        self._declared: list[FunctionDeclaration] | None = None

    def deploy(self, declarations: list[FunctionDeclaration]) -> None:
        if self.deployed and declarations == self._declared:
            self.calls.append(("reuse",))
            self.reused_deploys += 1
            return
        super().deploy(declarations)
        self._declared = list(declarations)

    def start_window(self) -> None:
        self.calls.append(("start_window",))


def test_regimes_with_the_same_declarations_share_a_deploy(tmp_path: Path) -> None:
    backend = ReusingBackend()
    media = Media(path=tmp_path / "demo.mp4", query="flour", truth=demo_truth())
    preps = []
    for name in ("warm-steady", "warm-burst"):
        run = RegimeRun(
            backend,
            _regime(
                name, count=2, **({"rate": 50.0, "warmup": 0} if name == "warm-steady" else {})
            ),
            media,
            declarations=_declarations(),
            cores=2,
            http=lambda timeout: httpx.AsyncClient(transport=httpx.MockTransport(_orchestrator)),
            keep_platform=True,
            baseline=BASELINE,
        )
        result = run.run()
        assert result.passed, result.violations
        preps.append(result.preparation or {})
    kinds = [c[0] for c in backend.calls]
    assert kinds.count("deploy") == 1 and kinds.count("reuse") == 1
    assert "teardown" not in kinds, "keep_platform: the caller tears down"
    # The window starts after each preparation's scaling, before the load.
    for start in (i for i, k in enumerate(kinds) if k == "start_window"):
        assert kinds[start - 1] == "scale" or kinds[start - 1] == "upload", kinds
    assert kinds.count("start_window") == 2
    assert [p["platform_reused"] for p in preps] == [False, True]
    assert preps[1]["measurement_window"] == "from the end of preparation"


def test_regime_run_tears_down_when_preparation_fails(tmp_path: Path) -> None:
    backend = FakeBackend(stuck={"search": 0})
    run = RegimeRun(
        backend,
        _regime("warm-steady"),
        Media(path=tmp_path / "v.mp4", query="flour"),
        declarations=_declarations(),
    )
    with pytest.raises(PreparationError):
        run.run()
    assert backend.calls[-1] == ("teardown",)


# --------------------------------------------------------------------------------------------
# Factory and CLI
# --------------------------------------------------------------------------------------------


def test_missing_backend_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KNOWN, "kind", ("harness.backends.not_written_yet", "KindBackend"))
    with pytest.raises(BackendUnavailable, match=r"harness/backends/not_written_yet\.py"):
        create_backend("kind")
    with pytest.raises(BackendUnavailable, match="unknown backend 'nope'"):
        create_backend("nope")


def test_factory_passes_only_accepted_options(tmp_path: Path) -> None:
    backend = create_backend("embedded", state_dir=tmp_path, enforce_limits=False, extra=1)
    assert backend.name == "embedded" and backend.gateway_url == ""


def test_bench_kind_without_module_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in a checkout without harness/backends/kind.py (it is written concurrently).
    monkeypatch.setitem(KNOWN, "kind", ("harness.backends.kind_absent", "KindBackend"))
    assert cli.main(["bench", "warm-steady", "--backend", "kind"]) == 2
    err = capsys.readouterr().err
    assert "the kind backend is not available" in err and "--backend embedded" in err


def test_bench_unknown_regime_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "warm-stedy"]) == 2
    err = capsys.readouterr().err
    assert "unknown regime(s) warm-stedy" in err and "warm-steady" in err


def test_bench_video_needs_a_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not empty")
    assert cli.main(["bench", "warm-steady", "--video", str(video)]) == 2
    assert "--video needs --query" in capsys.readouterr().err


def test_report_without_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_live_display_logs_progress_lines_off_terminal() -> None:
    stream = io.StringIO()
    regime = _regime("cold-burst")
    with LiveDisplay(stream) as display:
        display.phase(regime)("deploy", "fresh platform")
        display.progress(regime)(
            Progress(
                issued=3,
                completed=1,
                failed=1,
                not_sent=0,
                in_flight=1,
                elapsed_s=12.0,
                completion_rate=0.2,
                issue_rate=0.0,
                scheduled=3,
            )
        )
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[cold-burst] deploy") and "fresh platform" in lines[0]
    assert "sent 3/3  completed 1  failed 1  in flight 1  rate 0.20/s" in lines[1]


# --------------------------------------------------------------------------------------------
# A video without ground truth (--video without VIDEO.truth.json)
# --------------------------------------------------------------------------------------------


def test_check_structure_passes_a_sane_result_and_says_it_is_unverified() -> None:
    checks = check_structure(good_result())
    assert {c.name: c.status for c in checks}.get("truth") == "skip"
    assert all(c.status != "fail" for c in checks)
    bad = good_result()
    bad["clips"][0]["end_s"] = bad["clips"][0]["start_s"] - 1.0
    assert any(c.name == "clip_times" and c.status == "fail" for c in check_structure(bad))


@pytest.mark.parametrize(("require_truth", "outcome"), [(True, "failed_content"), (False, "ok")])
def test_sender_without_truth(require_truth: bool, outcome: str) -> None:
    async def go() -> Any:
        transport = httpx.MockTransport(_orchestrator)
        async with httpx.AsyncClient(transport=transport) as client:
            sender = OrchestratorSender(
                client,
                "http://gateway.test",
                [Video(id="talk", uri="s3://bucket/talk.mp4")],
                query="flour",
                require_truth=require_truth,
            )
            return await sender(0, 0.0)

    record = asyncio.run(go())
    assert record.outcome == outcome
    assert (record.error_code == "no_truth") is require_truth
