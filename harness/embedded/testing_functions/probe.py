"""`probe`: echoes a message, optionally after sleeping, allocating memory or exiting.

One module serves several test declarations (echo, sleep, hog): the behaviour is chosen per
request so one replica process can be reused across test cases.
"""

from __future__ import annotations

import os
import time

from pydantic import Field

from base.contracts import Event, Model, NoConfig
from base.runtime import Context, Function, serve

_CHUNK = 8 << 20


class Input(Model):
    message: str = ""
    sleep_s: float = Field(0.0, ge=0, le=600)
    #: Touch this many MiB (real pages, not lazily zeroed ones) and hold them until the reply.
    allocate_mb: int = Field(0, ge=0, le=1 << 16)
    #: Exit the whole process abruptly with this code (a crash, not an error reply).
    exit_code: int | None = Field(None, ge=0, le=255)


class Output(Model):
    message: str
    pid: int
    replica: str
    allocated_mb: int
    gateway_url: str | None
    #: The request's arrival as the handler's context has it (the gateway's stamp).
    request_arrival: float | None = None


def handle(event: Event[Input, NoConfig], ctx: Context) -> Output:
    spec = event.input
    deadline = time.monotonic() + spec.sleep_s
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    if spec.exit_code is not None:
        os._exit(spec.exit_code)
    held: list[bytes] = []
    # Chunked so the cgroup sees usage grow the way a real decoder's would.
    for _ in range(0, spec.allocate_mb << 20, _CHUNK):
        held.append(b"\x01" * _CHUNK)
    allocated = len(held) * _CHUNK >> 20
    held.clear()
    return Output(
        message=spec.message,
        pid=os.getpid(),
        replica=ctx.settings.replica,
        allocated_mb=allocated,
        gateway_url=os.environ.get("GATEWAY_URL"),
        request_arrival=ctx.request_arrival,
    )


FUNCTION = Function(
    name="probe",
    input_model=Input,
    config_model=NoConfig,
    output_model=Output,
    handle=handle,
    description="test-only: echo, sleep, allocate or crash on request",
)

if __name__ == "__main__":
    serve(FUNCTION)
