"""Cold start per function, zygote fork vs fresh interpreter, side by side in one run.

    .venv/bin/python -m harness.embedded.coldstart [--repeat 3] [--functions a,b] [--json F]

Two embedded platforms run at once with the real declarations at zero replicas: one forks
replicas from per-function zygotes, one starts fresh processes (VSEARCH_ZYGOTE=0's path). For
each repeat and function, each platform scales the function 0 -> 1 (the order alternates per
repeat) and the replica's start to ready is read from the platform (`start_s`: process start
or fork to /_/ready answering), with the phases the replica reported itself. Memory: the
replica's cgroup peak beside the zygote's own RSS/PSS (smaps_rollup) and cgroup usage, since a
forked replica's shared pages stay charged to its zygote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.embedded.gateway import GatewaySettings
from harness.embedded.platform import EmbeddedPlatform
from harness.embedded.replicas import PoolSettings
from harness.functions import load

MiB = 1 << 20


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


def measure(names: list[str] | None, repeat: int) -> dict[str, Any]:
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
        finally:
            forked.stop()
            fresh.stop()
    return {"repeat": repeat, "functions": runs, "zygotes_at_warm": zygotes}


def table(result: dict[str, Any]) -> str:
    rows = [
        "| function | fresh start (s) | zygote fork to ready (s) | ratio | zygote warm-up: "
        "imports / preload (s) | replica cgroup peak at ready, fresh / forked (MiB) "
        "| zygote RSS / PSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["functions"].items():
        fresh = statistics.median(r["start_s"] for r in runs["fresh"])
        forked = statistics.median(r["start_s"] for r in runs["zygote"])
        assert all(r["from_zygote"] for r in runs["zygote"]), name
        z = runs["zygote"][-1]["zygote"]
        phases = z["phases"]
        fresh_peak = max(r["replica_peak_bytes"] for r in runs["fresh"]) / MiB
        forked_peak = max(r["replica_peak_bytes"] for r in runs["zygote"]) / MiB
        rows.append(
            f"| {name} | {fresh:.2f} | {forked:.2f} | {forked / fresh:.2f} | "
            f"{phases.get('imports_s', 0):.2f} / {phases.get('preload_s', 0):.2f} | "
            f"{fresh_peak:.0f} / {forked_peak:.0f} | "
            f"{z['rss_bytes'] / MiB:.0f} / {z['pss_bytes'] / MiB:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--functions", help="comma-separated names (default: all)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args(argv)
    names = args.functions.split(",") if args.functions else None
    result = measure(names, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
