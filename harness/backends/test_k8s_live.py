"""The live cluster the environment names (`./vsearch test --cluster`): OpenFaaS and MinIO
answer, and the versions results.json will carry are real. Skipped, with the reason, when
VSEARCH_BACKEND does not name a usable cluster (the default tier never has one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.backends import from_env
from harness.backends.k8s import K8sBackend


@pytest.fixture(scope="module")
def live() -> Iterator[K8sBackend]:
    reason = from_env.cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    backend = K8sBackend(**from_env.k8s_options())
    backend.attach()
    try:
        yield backend
    finally:
        backend.keep_cluster = True  # only this process's port-forwards
        backend.teardown()


def test_live_cluster_versions_are_measured(live: K8sBackend) -> None:
    versions = live.platform_versions()
    k8s = versions["kubernetes"]
    assert str(k8s.get("gitVersion", "")).startswith("v"), versions
    # An unstamped build (go build of the module without -X) answers these placeholders.
    assert k8s.get("gitCommit") not in (None, "", "$Format:%H$"), versions
    assert not str(k8s.get("buildDate", "")).startswith("1970"), versions
    assert versions["openfaas"].get("gateway", {}).get("release"), versions
    assert versions["openfaas"].get("provider", {}).get("name"), versions
    assert versions["minio"].get("image_id") or versions["minio"].get("image"), versions


def test_live_functions_answer_through_the_gateway(live: K8sBackend) -> None:
    names = {s["name"] for s in live.api.functions()}
    assert names, "no functions deployed: run `./vsearch up --backend k8s` first"
    assert live.api.healthy()
