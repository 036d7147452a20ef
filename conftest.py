"""Repo-wide pytest fixtures, shared by the tests under base/, stages/, orchestrator/ and harness/.

Keep each fixture group under its own heading; put fixtures used by one package only in that
package's conftest.py instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.embedded.s3_server import SeaweedS3

# --- Embedded S3 (SeaweedFS) ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One S3 server for the whole session; ~1-2 s to start, so not one per test.

    Tests share its bucket: use unique key prefixes (e.g. from ``tmp_path.name`` or ``uuid4``).
    Tests that restart or break a server should start their own ``SeaweedS3`` instead.
    """
    with SeaweedS3() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedS3) -> dict[str, str]:
    """Env vars pointing a child process at the session's S3 server (merge into os.environ)."""
    return s3_server.env()


# --- Termination ---------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Bazel's test timeout and CI limits send SIGTERM: tear fixtures down (platforms, S3
    servers, cgroups) as on Ctrl-C instead of leaving them running."""
    from harness.termination import unwind_on_termination

    unwind_on_termination()
