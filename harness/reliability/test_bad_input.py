"""Hostile and bad input, table-driven (cases.py), through the gateway and the whole pipeline.

Every case must get a clear answer (its expected 4xx and error code, or a correct result for
valid input), leave the platform healthy, and change nothing in the bucket outside the request's
own prefix. The last test sends a good request and writes BAD_INPUT.md from the answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.records import check_content
from harness.reliability.cases import CASES, Case, Sent
from harness.reliability.media import QUERY, Media
from harness.reliability.support import (
    Answer,
    Figure,
    RequestRow,
    Rig,
    diff,
    named_function,
)
from harness.reliability.table import write

#: Filled by the cases in order; the last test renders it (only when every case ran).
ROWS: dict[str, dict[str, Any]] = {}
FIGURE = Figure(test="bad_input")


def where(answer: Answer) -> str:
    """Who refused: the stage the orchestrator names, the orchestrator itself, or the gateway."""
    stage = named_function(answer.message)
    if stage:
        return stage
    if answer.via_replica:
        return str(answer.body.get("function")) if isinstance(answer.body, dict) else "orchestrator"
    return "gateway" if answer.status is not None else "-"


def judge(case: Case, sent: Sent, rig: Rig, media: Media) -> tuple[list[str], str]:
    """Problems with the answer (empty: as expected) and the table's note."""
    answer, problems, note = sent.answer, [], ""
    if answer.status != case.status:
        problems.append(f"HTTP {answer.status}, expected {case.status}")
    if case.status == 200:
        result = answer.outputs or {}
        if case.mode and result.get("mode") != case.mode:
            problems.append(f"mode {result.get('mode')!r}, expected {case.mode!r}")
        if case.truth is not None and answer.outputs:
            checks = check_content(
                result, case.truth(media), query=QUERY, check_objects=case.check_objects
            )
            problems += [f"{c.name}: {c.detail}" for c in checks if c.status == "fail"]
        frames = result.get("frames_without_clip") or []
        if result.get("mode") == "whole_video" and not frames:
            problems.append("no frames sampled over the whole video")
        note = (
            f"{result.get('mode')}: {len(result.get('clips') or [])} clip(s), "
            f"{len(frames)} frame(s) over the video, {len(result.get('matches') or [])} match(es)"
            + (", content checked" if case.truth is not None else "")
        )
    else:
        if answer.code != case.code:
            problems.append(f"code {answer.code!r}, expected {case.code!r}")
        if answer.code is None and answer.status is not None:
            note = f"no error code; body {str(answer.body)[:60]!r}"
    if answer.request_id and answer.status != 200:
        # A request the orchestrator claimed must say so in its state, with the same code.
        state = rig.state(answer.request_id)
        if state is not None and (state.get("status"), state.get("error", {}).get("code")) != (
            "error",
            answer.code,
        ):
            problems.append(f"state {state.get('status')} {state.get('error')}")
    if sent.unchanged is not None:
        before, after = sent.unchanged()
        if before != after:
            problems.append(f"changed by an unauthorised call: {before} -> {after}")
    return problems, note


def params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"bug: {case.bug}")] if case.bug else [],
        )
        for case in CASES
    ]


@pytest.mark.parametrize("case", params())
def test_bad_input(case: Case, quiet: Rig, rel_media: Media) -> None:
    rig = quiet
    before = rig.keys()
    sent = case.send(rig, rel_media)
    answer = sent.answer
    after = rig.keys()
    own = sent.own
    outside = {
        kind: [k for k in keys if not (own and k.startswith(own))]
        for kind, keys in diff(before, after).items()
    }
    healthy = rig.healthy()
    problems, note = judge(case, sent, rig, rel_media)
    if case.bug:
        note = f"**bug**: {case.bug}" + (f"; {note}" if note else "")
    ok = not problems and healthy and not any(outside.values())
    verdict = (
        ("ok" if case.status == 200 else "failed_cleanly")
        if ok
        else ("failed_cleanly" if answer.clean_error and answer.status < 500 else "lost")
    )
    ROWS[case.id] = {
        "id": case.id,
        "group": case.group,
        "input": case.input,
        "status": answer.status,
        "code": answer.code,
        "where": where(answer) if answer.status != 200 else "-",
        "note": note,
        "expected": f"{case.status} {case.code or ''}".strip(),
        "as_expected": ok,
        "seconds": round(answer.seconds, 3),
    }
    FIGURE.add(
        RequestRow(
            request_id=answer.request_id,
            label=case.id,
            http_status=answer.status,
            error_code=answer.code,
            function=where(answer),
            verdict=verdict,
            seconds=round(answer.seconds, 3),
            note="; ".join(problems)[:300],
        )
    )

    assert healthy, "the gateway's /healthz failed after this input"
    assert not any(outside.values()), f"objects outside the request's prefix changed: {outside}"
    assert not problems, problems


def test_the_platform_is_healthy_afterwards_and_the_table_is_written(
    quiet: Rig, rel_media: Media
) -> None:
    rig, truth = quiet, rel_media.short
    answer = rig.search(rig.upload(truth.path), QUERY)
    checks = check_content(answer.outputs, truth, query=QUERY) if answer.outputs else []
    good = answer.status == 200 and bool(checks) and all(c.ok for c in checks)
    FIGURE.measured["good_request_after"] = f"{answer.status}, content ok: {good}"
    complete = len(ROWS) == len(CASES)
    if complete:
        rows = [ROWS[c.id] for c in CASES]
        meta = {
            "cases": len(rows),
            "as_expected": sum(r["as_expected"] for r in rows),
        }
        FIGURE.measured["table"] = rows
        FIGURE.measured["meta"] = meta
        write(rows, meta)
    else:
        FIGURE.test = "bad_input_partial"  # keeps bad_input.json (the table's source) whole
    FIGURE.emit()
    assert good, (answer.status, [c.detail for c in checks if not c.ok] or answer.body)
    if not complete:
        pytest.skip(f"only {len(ROWS)}/{len(CASES)} cases ran: BAD_INPUT.md left as it was")
