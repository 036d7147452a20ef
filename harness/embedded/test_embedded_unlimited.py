"""Where cgroups cannot be used, the platform still runs replicas and says limits are off."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from harness.embedded.platform import EmbeddedPlatform
from harness.functions import FunctionDeclaration

MiB = 1 << 20


def test_without_cgroups_replicas_run_unlimited_and_are_sampled(
    s3_server: Any, tmp_path: Path
) -> None:
    echo = FunctionDeclaration(
        name="echo", module="harness.embedded.testing_functions.probe", memory_limit="64Mi"
    )
    with EmbeddedPlatform(tmp_path, [echo], s3=s3_server.env(), enforce_limits=False) as p:
        body = {"request_id": f"t-{uuid.uuid4().hex[:8]}", "input": {"allocate_mb": 96}}
        response = p.invoke("echo", body)

        # 96 MiB would not fit in 64Mi: proof that no limit applied.
        assert response.status_code == 200, response.text
        assert response.json()["outputs"]["allocated_mb"] == 96
        info = p.client.info()["vsearch"]
        assert info["limits_enforced"] is False
        assert info["limits_reason"] == "disabled by configuration"
        extras = p.function("echo")["vsearch"]
        assert extras["limits_enforced"] is False
        # psutil sampling still reports the replica's memory.
        deadline = time.monotonic() + 5
        while p.function("echo")["vsearch"]["replicas"][0]["memory_bytes"] < 20 * MiB:
            assert time.monotonic() < deadline
            time.sleep(0.2)
