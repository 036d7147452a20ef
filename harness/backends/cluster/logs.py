"""Pod logs, events and descriptions of a cluster's namespaces, for a failed deploy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from harness.backends.cluster.tools import Runner


def collect_logs(
    runner: Runner, kubectl: Sequence[str], namespaces: Sequence[str], dest: Path
) -> Path:
    """Logs (current and previous) of every pod, events and pod descriptions, per namespace."""
    dest.mkdir(parents=True, exist_ok=True)
    for ns in namespaces:
        listed = runner.run([*kubectl, "get", "pods", "--namespace", ns, "-o", "json"], check=False)
        if listed.returncode != 0:
            continue
        (dest / f"{ns}.pods.json").write_text(listed.stdout)
        for pod in json.loads(listed.stdout or "{}").get("items") or []:
            name = pod["metadata"]["name"]
            restarted = any(
                int(cs.get("restartCount") or 0) > 0
                for cs in (pod.get("status") or {}).get("containerStatuses") or []
            )
            for previous in (False, True) if restarted else (False,):
                logs = runner.run(
                    [*kubectl, "logs", "--namespace", ns, name, "--all-containers",
                     "--timestamps", *(["--previous"] if previous else [])],
                    check=False,
                )  # fmt: skip
                suffix = ".previous.log" if previous else ".log"
                (dest / f"{ns}.{name}{suffix}").write_text(logs.stdout + logs.stderr)
        events = runner.run(
            [*kubectl, "get", "events", "--namespace", ns, "-o", "json"], check=False
        )
        (dest / f"{ns}.events.json").write_text(events.stdout)
        described = runner.run([*kubectl, "describe", "pods", "--namespace", ns], check=False)
        (dest / f"{ns}.describe.txt").write_text(described.stdout)
    return dest
