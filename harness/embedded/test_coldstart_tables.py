"""The cold-start report's arithmetic: medians and maxima per mode, the phases, the first call."""

from __future__ import annotations

from typing import Any

from harness.embedded.coldstart import phase_table, table

ZYGOTE = {
    "phases": {"imports_s": 0.25, "preload_s": 0.5},
    "rss_bytes": 100 << 20,
    "pss_bytes": 50 << 20,
}


def _run(start_s: float, forked: bool, load_s: float) -> dict[str, Any]:
    startup = {"process_start_s": 0.05 if forked else 1.0, "imports_s": 0.5, "model_load_s": load_s}
    return {
        "start_s": start_s,
        "from_zygote": forked,
        "startup": {**startup, "from_zygote": forked},
        "replica_peak_bytes": 64 << 20,
        "zygote": ZYGOTE if forked else None,
    }


def _result(first: dict[str, Any] | None) -> dict[str, Any]:
    runs = {
        "fresh": [_run(3.0, False, 1.0), _run(5.0, False, 1.2), _run(4.0, False, 1.1)],
        "zygote": [_run(1.0, True, 0.2), _run(1.4, True, 0.4), _run(0.6, True, 0.3)],
    }
    return {"functions": {"transcribe": runs, "orchestrator": runs}, "first_call_wall_s": first}


def _row(text: str, *cells: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {' | '.join(cells)} |")]
    assert len(rows) == 1, text
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_the_start_table_gives_median_and_max_per_mode() -> None:
    row = _row(table(_result(None)), "transcribe")
    assert row[1:4] == ["4.00 / 5.00", "1.00 / 1.40", "0.25"]
    assert row[4] == "0.25 / 0.50" and row[6] == "100 / 50"


def test_the_phase_table_splits_each_start_and_adds_the_first_call() -> None:
    first = {
        "transcribe": {"first": [1.5, 1.7], "later": [1.2, 1.0, 1.1]},
        "orchestrator": {"first": [9.0], "later": [4.0]},
    }
    text = phase_table(_result(first))
    fresh = _row(text, "transcribe", "fresh")
    # rest = start - (process start + imports + model load): 3.0-2.5, 5.0-2.7, 4.0-2.6
    assert fresh[2:] == ["1.00", "0.50", "1.10", "1.40", "4.00", "-"]
    forked = _row(text, "transcribe", "zygote")
    assert forked[2:] == ["0.05", "0.50", "0.30", "0.25", "1.00", "+0.50"]
    # The orchestrator's handler waits for the whole pipeline: no first-call figure.
    assert _row(text, "orchestrator", "zygote")[-1] == "-"
    assert _row(phase_table(_result(None)), "transcribe", "zygote")[-1] == "-"
