"""search --baseline: the per-stage CPU breakdown of the side-by-side comparison (no platform)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.commands.search import comparison, render_comparison, stage_figures


def _answer(calls: list[tuple[str, float, float]], *, reused: str | None = None) -> dict[str, Any]:
    """An orchestrator answer whose invocations are (function, cpu_s, children_cpu_s)."""
    invocations = [
        {
            "function": name,
            "reused": name == reused,
            "metrics": {
                "cpu_s": cpu,
                "children_cpu_s": children,
                "wall_s": 1.0,
                "download_s": 0.1,
                "upload_s": 0.05,
                "bytes_downloaded": 1000,
                "bytes_uploaded": 10,
            },
        }
        for name, cpu, children in calls
    ]
    request = {"end_to_end_s": 4.0, "critical_path_s": 3.8, "overhead_s": 0.2}
    outputs = {"matches": [{"clip_index": 1}], "metrics": {"invocations": invocations}}
    outputs["metrics"]["request"] = request
    return {"status": "ok", "outputs": outputs, "client_wall_s": 4.3}


def test_stage_figures_sum_fresh_invocations_per_function() -> None:
    answer = _answer(
        [
            ("transcribe", 0.6, 0.05),
            ("transcribe", 0.7, 0.05),
            ("cut-clips", 1.5, 1.4),
            ("search", 9.0, 0.0),
        ],
        reused="search",  # a reused result cost this request nothing
    )
    stages = stage_figures(answer)
    assert set(stages) == {"cut-clips", "transcribe"}
    assert stages["transcribe"]["calls"] == 2
    assert stages["transcribe"]["cpu_s"] == pytest.approx(1.3)
    assert stages["transcribe"]["children_cpu_s"] == pytest.approx(0.1)
    assert stages["transcribe"]["download_s"] == pytest.approx(0.2)
    assert stages["transcribe"]["bytes_moved"] == 2020
    assert stages["cut-clips"]["cpu_s"] == pytest.approx(1.5)


def test_comparison_reports_median_stage_cpu_side_by_side() -> None:
    pairs = []
    for k in range(3):
        serverless = _answer([("transcribe", 1.0 + k, 0.1), ("cut-clips", 2.0, 1.9)])
        base_answer = _answer([("transcribe", 0.5 + k, 0.0), ("cut-clips", 2.0, 1.9)])
        base = {
            "status": "ok",
            "wall_s": 8.0,
            "function_cpu_s": 2.5 + k,
            "stages": stage_figures(base_answer),
            "matches": [1],
        }
        pairs.append((serverless, base))
    cmp = comparison(pairs)
    stages = cmp["stage_cpu_s_p50"]
    assert stages["transcribe"] == {"serverless": 2.0, "baseline": 1.5, "ratio": 1.333}
    assert stages["cut-clips"]["ratio"] == 1.0
    assert cmp["rows"][0]["serverless"]["stages"]["transcribe"]["cpu_s"] == 1.0
    text = render_comparison(cmp)
    assert "transcribe 2.00/1.50" in text and "cut-clips 2.00/2.00" in text
