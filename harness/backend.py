"""The platform interface the harness drives (after SeBS's `sebs/faas/system.py`).

One small interface per concern: a backend deploys the functions, prepares a regime's replica
state, invokes through an OpenFaaS-compatible gateway and reports what it measured. The embedded
backend (local processes) and the kind backend (OpenFaaS CE on Kubernetes) implement it, so the
same regimes and tests run against either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.functions import FunctionDeclaration


@runtime_checkable
class Backend(Protocol):
    #: "embedded" or "kind": recorded in every result.
    name: str

    # -- lifecycle -------------------------------------------------------------------------------
    def deploy(self, declarations: list[FunctionDeclaration]) -> None:
        """Bring up storage, the gateway and the functions; return when min replicas are ready."""

    def teardown(self) -> None:
        """Stop everything this backend started (a reused external cluster is left running)."""

    # -- where to send work ----------------------------------------------------------------------
    @property
    def gateway_url(self) -> str: ...

    def upload(self, path: Path, key: str) -> str:
        """Put a local file into the bucket the functions read; returns its s3:// URI."""

    # -- regime preparation ----------------------------------------------------------------------
    def scale(self, function: str, replicas: int) -> None:
        """Ask for a replica count (0 = cold: every replica of it stopped)."""

    def wait_replicas(self, function: str, replicas: int, *, timeout_s: float) -> None:
        """Block until exactly `replicas` are ready and none is starting or stopping."""

    def ready_replicas(self, function: str) -> int: ...

    # -- measurement -----------------------------------------------------------------------------
    def function_status(self) -> list[dict[str, Any]]:
        """`/system/functions`-shaped status with per-function measured figures (peak memory,
        limit, OOM kills, cold starts, invocations), as the gateway or cluster reports them."""

    def events(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Platform events (replica start/stop, cold starts, OOM kills) since a unix time."""

    def describe(self) -> dict[str, Any]:
        """What to record with a result: versions, limits enforced or not, and why."""
