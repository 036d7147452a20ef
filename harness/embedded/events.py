"""The platform's event log: replica starts and stops, deaths, OOM kills, cold starts.

Bounded in memory (a long benchmark must not grow the gateway without limit) and mirrored to
the structured log, so events survive in the serve log even after they age out of the buffer.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from base.telemetry import log
from harness.embedded.models import EventType, PlatformEvent


class EventLog:
    def __init__(self, capacity: int = 20_000) -> None:
        self._events: deque[PlatformEvent] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        self.last_seq = 0

    def record(self, type: EventType, function: str, **fields: Any) -> PlatformEvent:
        event = PlatformEvent(
            seq=next(self._seq), time=time.time(), type=type, function=function, **fields
        )
        self._events.append(event)
        self.last_seq = event.seq
        level = "warning" if type in ("oom_kill", "replica_died", "start_failed") else "info"
        log(
            f"platform.{type}", level=level, **event.model_dump(exclude_none=True, exclude={"type"})
        )
        return event

    def query(
        self,
        *,
        since: int = 0,
        type: str | None = None,
        function: str | None = None,
        limit: int = 10_000,
    ) -> list[PlatformEvent]:
        found = [
            e
            for e in self._events
            if e.seq > since
            and (type is None or e.type == type)
            and (function is None or e.function == function)
        ]
        return found[-limit:] if limit > 0 else found
