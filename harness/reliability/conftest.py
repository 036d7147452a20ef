"""Fixtures of the reliability tests: one shared platform for the whole package.

Starting a platform with every function costs 30-60 s on two cores (model loads), so the fault,
overload, bad-input and security tests share one. Its declarations are overridden where the
tests need it, and every test leaves it as it found it (idle, every function ready):
- orchestrator: 2 requests at once on 1 replica, and the gateway queues at most 2 more per
  function, so overload turns into 429s within seconds instead of minutes;
- orchestrator lease 12 s, so a request whose orchestrator was killed can be resumed quickly;
- every function refuses media over 60 s or 1.5 MB (the 413 cases of the bad-input table).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.reliability.media import Media, media
from harness.reliability.support import FIGURES, RESULTS_DIR, Rig, declarations, start_platform

MAX_INPUT_BYTES = 1_500_000
MAX_DURATION_S = 60
SHARED_OVERRIDES: dict[str, dict[str, Any]] = {
    "*": {"env": {"MAX_DURATION_S": str(MAX_DURATION_S), "MAX_INPUT_BYTES": str(MAX_INPUT_BYTES)}},
    "orchestrator": {
        "max_inflight": 2,
        "max_replicas": 1,
        "env": {"ORCHESTRATOR_LEASE_S": "12"},
    },
}
SHARED_QUEUE_LIMIT = 2


@pytest.fixture(scope="session")
def rel_media() -> Media:
    return media()


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    state_dir = tmp_path_factory.mktemp("reliability-shared")
    platform = start_platform(
        state_dir, declarations(SHARED_OVERRIDES), queue_limit=SHARED_QUEUE_LIMIT
    )
    rig = Rig(platform)
    try:
        yield rig
    finally:
        rig.close()
        platform.stop()


@pytest.fixture
def quiet(shared: Rig) -> Rig:
    """The shared platform, idle and with every function ready (earlier tests kill replicas)."""
    shared.wait_idle(timeout_s=300)
    shared.wait_ready(timeout_s=300)
    return shared


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section(f"reliability figures (JSON in {RESULTS_DIR})")
        for text in FIGURES:
            terminalreporter.write_line(text)
