"""Cold start per function, zygote fork vs fresh interpreter, side by side in one run.

    .venv/bin/python -m harness.embedded.coldstart [--repeat 5] [--functions a,b] [--json F]

Two embedded platforms run at once with the real declarations at zero replicas: one forks
replicas from per-function zygotes, one starts fresh processes (VSEARCH_ZYGOTE=0's path). For
each repeat and function, each platform scales the function 0 -> 1 (the order alternates per
repeat) and the replica's start to ready is read from the platform (`start_s`: process start
or fork to /_/ready answering), with the phases the replica reported itself. Memory: the
replica's cgroup peak beside the zygote's own RSS/PSS (smaps_rollup) and cgroup usage, since a
forked replica's shared pages stay charged to its zygote.

Where a cold start goes, per function and mode (the second table): process start (a fork: fork
to the child taking over), imports, model load (the function's init), the rest up to ready
(HTTP server up, readiness seen), and the first call. The first call is measured on the zygote
platform by one search request with every function at zero, then the same request again: the
first call's extra time is a function's handler wall time in its replica's first invocation
minus that in later ones (all functions but the orchestrator, whose wall time holds the
pipeline's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.embedded.gateway import GatewaySettings
from harness.embedded.platform import EmbeddedPlatform
from harness.embedded.replicas import PoolSettings
from harness.functions import load
from harness.media.generate import make_speech_video
from harness.records import invocations_from_result

MiB = 1 << 20
#: The first-call request: real speech (transcribe, search), clips to cut and frames to detect on.
FIRST_CALL_SENTENCES = (
    "please add two cups of flour to the bowl",
    "the red bus stops at the station every morning",
)
FIRST_CALL_QUERY = "flour"
PHASES = ("process_start_s", "imports_s", "model_load_s")


def _platform(state: Path, decls: list[Any], zygote: bool) -> EmbeddedPlatform:
    settings = GatewaySettings(pool=PoolSettings(zygote=zygote))
    return EmbeddedPlatform(state, decls, s3="embedded", settings=settings).start()


def _wait_zygotes(platform: EmbeddedPlatform, names: list[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = {n: platform.function(n)["vsearch"]["zygote"] for n in names}
        if all(z and z["state"] == "ready" for z in status.values()):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"zygotes not warm: { {n: z['state'] for n, z in status.items()} }")
        time.sleep(0.2)


def _cold_start(platform: EmbeddedPlatform, name: str) -> dict[str, Any]:
    began = time.monotonic()
    platform.scale(name, 1, wait=True, timeout_s=300)
    scaled_s = time.monotonic() - began
    time.sleep(1.2)  # one stats sample after ready, for the replica's cgroup peak
    extras = platform.function(name)["vsearch"]
    replica = extras["replicas"][0]
    platform.scale(name, 0, wait=True, timeout_s=60)
    return {
        "start_s": replica["start_s"],
        "scale_to_ready_s": round(scaled_s, 4),
        "from_zygote": replica["from_zygote"],
        "startup": replica["startup"],
        "replica_peak_bytes": replica["peak_memory_bytes"],
        "zygote": extras["zygote"],
    }


def _first_calls(platform: EmbeddedPlatform, names: list[str], tmp: Path) -> dict[str, Any]:
    """One search request with every function at zero, then the same request warm: each
    function's handler wall times in first and later invocations of its replicas."""
    video = make_speech_video(tmp / "first-call.mp4", FIRST_CALL_SENTENCES)
    s3 = platform.s3_server
    if s3 is None:
        raise RuntimeError("the first-call request needs the platform's S3 server")
    key = f"uploads/coldstart-{uuid.uuid4().hex[:8]}/first-call.mp4"
    s3.client().upload_file(str(video.path), s3.bucket, key)
    for name in names:
        platform.scale(name, 0, wait=True, timeout_s=60)
    walls: dict[str, dict[str, list[float]]] = {n: {"first": [], "later": []} for n in names}
    for label in ("cold", "warm"):
        body = {
            "request_id": f"coldstart-{label}-{uuid.uuid4().hex[:8]}",
            "input": {"video": f"s3://{s3.bucket}/{key}"},
            "config": {"query": FIRST_CALL_QUERY},
        }
        response = platform.invoke("orchestrator", body, timeout_s=600)
        answer = response.json()
        if response.status_code != 200 or answer.get("status") != "ok":
            raise RuntimeError(f"first-call request failed: {response.status_code} {answer}")
        for sample in invocations_from_result(answer):
            if sample.function in walls and sample.wall_s is not None and sample.outcome == "ok":
                walls[sample.function]["first" if sample.cold_start else "later"].append(
                    sample.wall_s
                )
    for name in names:
        platform.scale(name, 0, wait=True, timeout_s=60)
    return walls


def measure(names: list[str] | None, repeat: int, first_call: bool = True) -> dict[str, Any]:
    decls = [
        d.model_copy(update={"min_replicas": 0, "scale_to_zero_idle": None})
        for d in load().functions
        if names is None or d.name in names
    ]
    names = [d.name for d in decls]
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        fresh = _platform(Path(tmp) / "fresh", decls, zygote=False)
        forked = _platform(Path(tmp) / "zygote", decls, zygote=True)
        try:
            zygotes = _wait_zygotes(forked, names, 600)
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {
                n: {"fresh": [], "zygote": []} for n in names
            }
            for i in range(repeat):
                for name in names:
                    order = [("fresh", fresh), ("zygote", forked)]
                    for mode, platform in order if i % 2 == 0 else order[::-1]:
                        runs[name][mode].append(_cold_start(platform, name))
            # Needs the whole pipeline: only when every function is measured.
            whole = {d.name for d in load().functions} <= set(names)
            first = _first_calls(forked, names, Path(tmp)) if first_call and whole else None
        finally:
            forked.stop()
            fresh.stop()
    return {
        "repeat": repeat,
        "functions": runs,
        "zygotes_at_warm": zygotes,
        "first_call_wall_s": first,
    }


def _median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: dict[str, Any]) -> str:
    rows = [
        "| function | fresh start, median / max (s) | zygote fork to ready, median / max (s) "
        "| ratio of medians | zygote warm-up: imports / preload (s) "
        "| replica cgroup peak at ready, fresh / forked (MiB) | zygote RSS / PSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["functions"].items():
        fresh = [r["start_s"] for r in runs["fresh"]]
        forked = [r["start_s"] for r in runs["zygote"]]
        assert all(r["from_zygote"] for r in runs["zygote"]), name
        z = runs["zygote"][-1]["zygote"]
        phases = z["phases"]
        fresh_peak = max(r["replica_peak_bytes"] for r in runs["fresh"]) / MiB
        forked_peak = max(r["replica_peak_bytes"] for r in runs["zygote"]) / MiB
        ratio = statistics.median(forked) / statistics.median(fresh)
        rows.append(
            f"| {name} | {statistics.median(fresh):.2f} / {max(fresh):.2f} | "
            f"{statistics.median(forked):.2f} / {max(forked):.2f} | {ratio:.2f} | "
            f"{phases.get('imports_s', 0):.2f} / {phases.get('preload_s', 0):.2f} | "
            f"{fresh_peak:.0f} / {forked_peak:.0f} | "
            f"{z['rss_bytes'] / MiB:.0f} / {z['pss_bytes'] / MiB:.0f} |"
        )
    return "\n".join(rows)


def phase_table(result: dict[str, Any]) -> str:
    """Where a cold start goes, medians over the repeats; the first call from _first_calls."""
    rows = [
        "| function | mode | process start (s) | imports (s) | model load (s) "
        "| rest to ready (s) | start to ready (s) | first call extra (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = result.get("first_call_wall_s") or {}
    for name, runs in result["functions"].items():
        for mode in ("fresh", "zygote"):
            starts = [r for r in runs[mode] if r["startup"]]
            cells = [_median(r["startup"].get(k, 0.0) for r in starts) for k in PHASES]
            rest = _median(
                r["start_s"] - sum(r["startup"].get(k, 0.0) for k in PHASES) for r in starts
            )
            extra = "-"
            walls = first.get(name)
            if mode == "zygote" and walls and name != "orchestrator":
                a, b = _median(walls["first"]), _median(walls["later"])
                extra = "-" if a is None or b is None else f"{a - b:+.2f}"
            rows.append(
                f"| {name} | {mode} | {' | '.join(_s(c) for c in cells)} | {_s(rest)} | "
                f"{_s(_median(r['start_s'] for r in runs[mode]))} | {extra} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--functions", help="comma-separated names (default: all)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument(
        "--no-first-call", action="store_true", help="skip the first-call search requests"
    )
    args = parser.parse_args(argv)
    names = args.functions.split(",") if args.functions else None
    result = measure(names, args.repeat, first_call=not args.no_first_call)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(table(result), file=sys.stderr)
    print(file=sys.stderr)
    print(phase_table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
