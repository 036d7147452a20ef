"""`./vsearch up|down|status`: the embedded platform in the background, with a state dir."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.embedded import __main__ as embedded
from harness.embedded.client import CREDENTIALS_FILE, STATE_FILE, GatewayClient
from harness.functions import DECLARATIONS


def up(state_dir: Path, *, timeout_s: float = 300.0, no_limits: bool = False) -> int:
    args = argparse.Namespace(
        state_dir=state_dir,
        manifest=DECLARATIONS,
        s3="auto",
        queue_limit=32,
        timeout=timeout_s,
        only="",
        no_limits=no_limits,
    )
    return int(embedded.up(args))


def down(state_dir: Path) -> int:
    return int(embedded.stop(argparse.Namespace(state_dir=state_dir, timeout=60.0)))


def status(state_dir: Path, *, as_json: bool) -> int:
    if not as_json:
        return int(embedded.show_status(argparse.Namespace(state_dir=state_dir, json=False)))
    # --json: the functions' list when healthy, else an error document (never plain text).
    from harness.commands import output

    def error(code: str, message: str) -> None:
        output.print_json({"status": "error", "error": {"code": code, "message": message}})

    if not running(state_dir):
        error("not_running", f"the embedded platform is not running ({state_dir})")
        return 3
    with GatewayClient.from_state_dir(state_dir) as client:
        if not client.healthy():
            error("unhealthy", f"the gateway at {client.gateway_url} is not healthy")
            return 1
        output.print_json(client.functions())
    return 0


def running(state_dir: Path) -> bool:
    return embedded._running(state_dir) is not None


class Connection:
    """What a client of a running platform needs: the gateway and the bucket's credentials."""

    def __init__(self, state_dir: Path) -> None:
        state = json.loads((state_dir / STATE_FILE).read_text())
        self.credentials: dict[str, Any] = json.loads((state_dir / CREDENTIALS_FILE).read_text())
        self.gateway_url: str = state["gateway_url"]
        self.bucket: str = state["bucket"]
        self.gateway = GatewayClient.from_state_dir(state_dir)

    def store(self) -> Any:
        # base's store: the same client settings (signing, retries, timeouts) the functions use.
        from base.config import StorageSettings
        from base.storage import ObjectStore

        return ObjectStore(StorageSettings.from_env(self.credentials["s3"]))

    def s3_client(self) -> Any:
        return self.store().client
