"""The regimes as benchmark tests on a real kind cluster (OpenFaaS CE + MinIO).

Skips, with the reason, unless every prerequisite is here: docker (with a running engine), kind,
kubectl, helm, and the function images (``VSEARCH_IMAGE_TAG`` naming images that are in the
local Docker engine, or ``VSEARCH_IMAGE_DIR`` holding their OCI layouts). Our development and
CI machines cannot pull kind/OpenFaaS/MinIO images, so there it always skips.

    VSEARCH_IMAGE_TAG=<tag> .venv/bin/python -m pytest harness/backends/test_kind_cluster.py

Each regime is prepared by the backend (warm: min replicas verified through the gateway API;
cold: pods deleted and verified not ready), driven open-loop with the demo video, and judged by
its thresholds in harness/regimes.yaml (success rates, peak memory against limits, OOM kills,
...). Results go to .vsearch/kind/results/<regime>.json; pod logs are collected on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends import kind as kb
from harness.bench import run_regime
from harness.functions import load
from harness.records import FunctionPlatform
from harness.regimes import Baseline, Regime, load_regimes
from harness.report import RegimeResult
from harness.workload import OrchestratorSender, Video, http_client

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("VSEARCH_KIND_CLUSTER", "vsearch-bench")
SIZE = os.environ.get("VSEARCH_BENCH_SIZE", "small")

pytestmark = [pytest.mark.slow, pytest.mark.bench]


def _why_not() -> str | None:
    """The first missing prerequisite, or None when a real run can go ahead."""
    missing = kb.missing_tools()
    if missing:
        return f"missing tools for the cluster path: {', '.join(missing)} (manifests/README.md)"
    engine = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if engine.returncode != 0:
        return f"no Docker engine answers `docker info`: {engine.stderr.strip()[:200]}"
    tag = os.environ.get("VSEARCH_IMAGE_TAG")
    if not tag:
        return "VSEARCH_IMAGE_TAG is not set: no function images to deploy"
    image_dir = os.environ.get("VSEARCH_IMAGE_DIR")
    names = load().names
    if image_dir:
        absent = [n for n in names if not (Path(image_dir) / n / "index.json").exists()]
        if absent and not shutil.which("skopeo"):
            return "VSEARCH_IMAGE_DIR is set but skopeo is not installed"
    else:
        registry = os.environ.get("VSEARCH_REGISTRY", "localhost:5001")
        refs = [f"{registry}/vsearch/{n}:{tag}" for n in names]
        found = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .RepoTags}}", *refs],
            capture_output=True,
            text=True,
            check=False,
        )
        present = {t for line in found.stdout.splitlines() for t in json.loads(line or "[]")}
        absent = [r for r in refs if r not in present]
    if absent:
        return f"function images absent: {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}"
    return None


REASON = _why_not()


def _regimes() -> list[Regime]:
    return load_regimes().resolve(SIZE)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def backend() -> Iterator[kb.KindBackend]:
    if REASON:
        pytest.skip(REASON)
    image_dir = os.environ.get("VSEARCH_IMAGE_DIR")
    backend = kb.KindBackend(
        cluster_name=CLUSTER,
        registry=os.environ.get("VSEARCH_REGISTRY", "localhost:5001"),
        image_tag=os.environ["VSEARCH_IMAGE_TAG"],
        image_dir=Path(image_dir) if image_dir else None,
        keep_cluster=os.environ.get("VSEARCH_KEEP_CLUSTER") == "1",
    )
    backend.deploy(load().functions)
    try:
        yield backend
    finally:
        backend.teardown()


@pytest.fixture(scope="module")
def videos(backend: kb.KindBackend, tmp_path_factory: pytest.TempPathFactory) -> list[Video]:
    from harness.media.generate import demo_video

    truth = demo_video(tmp_path_factory.mktemp("media"))
    uri = backend.upload(Path(truth.path), "bench/inputs/demo.mp4")
    return [Video(id="demo", uri=uri, truth=truth, query="flour")]


def _run(backend: kb.KindBackend, videos: list[Video], regime: Regime, **kw: Any) -> RegimeResult:
    report = backend.prepare(regime.preparation)

    def snapshot() -> dict[str, FunctionPlatform]:
        statuses = backend.function_status()
        return {s["name"]: FunctionPlatform.from_status(s) for s in statuses}

    async def run() -> RegimeResult:
        async with http_client() as client:
            sender = OrchestratorSender(client, backend.gateway_url, videos)
            return await run_regime(
                regime, sender, snapshot=snapshot, preparation_report=report, **kw
            )

    return asyncio.run(run())


@pytest.fixture(scope="module")
def baseline(backend: kb.KindBackend, videos: list[Video]) -> Baseline:
    """The run's warm baseline (regimes.yaml ``baseline:``): latency ratios refer to it."""
    from harness.runner import baseline_from

    regime = load_regimes().baseline_for(SIZE)  # type: ignore[arg-type]
    assert regime is not None
    return baseline_from(_run(backend, videos, regime), cores=os.cpu_count() or 1)


@pytest.mark.parametrize("regime", _regimes(), ids=lambda r: r.name)
def test_kind_regime_meets_its_thresholds(
    regime: Regime, backend: kb.KindBackend, videos: list[Video], baseline: Baseline
) -> None:
    if regime.preparation.overrides_for("*").get("scale_to_zero_idle"):
        pytest.skip(f"{regime.name} needs scale to zero after idle: OpenFaaS Pro only")
    if regime.workload.rate_x_capacity is not None:
        workload = regime.workload.with_capacity(baseline.capacity_per_s)
        regime = regime.model_copy(update={"workload": workload})
    try:
        result = _run(backend, videos, regime, baseline=baseline)
    except Exception:
        backend.collect_logs()
        raise
    out = backend.workdir / "results" / f"{regime.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"result": result.model_dump(mode="json"), "platform": backend.describe()},
            indent=2,
            default=str,
        )
    )
    violations = [str(v) for v in result.violations]
    if violations:
        backend.collect_logs()
    # The success and memory thresholds (and the rest of the regime's) must all hold.
    assert violations == [], "\n".join(violations)
