"""bench's regime and capacity loops over one session, on a fake backend and fake regime runs
(synthetic records): the order of results, the platform log, the single teardown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.commands import bench
from harness.report import RegimeResult
from harness.runner import Media
from harness.stats import summarize
from harness.synthetic import synthetic_records


class FakeBackend:
    def __init__(self) -> None:
        self.teardowns = 0

    def teardown(self) -> None:
        print("fake backend: teardown")  # a platform's own output: belongs in platform.log
        self.teardowns += 1


class FakeRun:
    """RegimeRun's surface that bench uses; each run is told apart by its description."""

    calls: list[tuple[str, bool]] = []

    def __init__(self, backend: Any, regime: Any, media: Any, **kwargs: Any) -> None:
        self.regime = regime
        self.baseline = kwargs.get("baseline")
        self.cores = 2
        self.platform_description: dict[str, Any] = {}

    def run(self) -> RegimeResult:
        print(f"fake platform: running {self.regime.name}")
        self.calls.append((self.regime.name, self.baseline is not None))
        self.platform_description = {"backend": "fake", "run": len(self.calls)}
        records = synthetic_records(4, seed=len(self.calls), base_latency_s=2.0)
        name = self.regime.name
        return RegimeResult(name=name, summary=summarize(records, regime=name), records=records)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeBackend:
    backend = FakeBackend()
    FakeRun.calls = []
    monkeypatch.setattr(bench, "_create_backend", lambda *args: backend)
    monkeypatch.setattr("harness.runner.RegimeRun", FakeRun)
    media = Media(path=tmp_path / "v.mp4", query="flour", truth=None, id="v")
    monkeypatch.setattr(bench, "media_for", lambda *args: (media, False, "fake media"))
    return backend


def test_bench_runs_the_baseline_first_and_reports_every_regime_in_order(
    fakes: FakeBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = bench.run_bench(["warm-steady", "cold-burst"], size="ci", out=out)
    assert code in (0, 1)  # 1: the synthetic records may miss a threshold
    # warm-steady's thresholds are ratios to the baseline, so the baseline runs first.
    assert FakeRun.calls == [("baseline", False), ("warm-steady", True), ("cold-burst", True)]
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["regimes"]] == ["baseline", "warm-steady", "cold-burst"]
    assert results["platform"]["run"] == 3  # the description of the latest run
    assert fakes.teardowns == 1
    log = (out / "platform.log").read_text()
    assert "running cold-burst" in log and "fake backend: teardown" in log
    captured = capsys.readouterr()
    assert "fake platform" not in captured.out + captured.err
    assert "[warm-steady] done" in captured.err


def test_capacity_steps_after_the_baseline_and_reports_each_step(
    fakes: FakeBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cap"
    code = bench.run_capacity(size="ci", out=out)
    assert code in (0, 1)
    names = [name for name, _ in FakeRun.calls]
    assert names[0] == "baseline" and len(names) >= 2
    assert names[1:] == [f"capacity-step{i}" for i in range(1, len(names))]
    assert all(with_baseline for _, with_baseline in FakeRun.calls[1:])
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["regimes"]] == names
    assert results["platform"]["run"] == len(names)
    capacity = json.loads((out / "capacity.json").read_text())
    assert len(capacity["steps"]) == len(names) - 1
    assert fakes.teardowns == 1
    err = capsys.readouterr().err
    # The baseline's result line is shown; a step's line is its capacity verdict.
    assert "[baseline] done" in err and "[capacity-step1] done" not in err
    assert "capacity-step1 at 0.50x cap" in err
