"""Platform images the local manifests name are pushed when the registry lacks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.cluster import platform_push
from harness.backends.cluster.tools import ClusterError

ROOT = Path(__file__).resolve().parents[3]
LOCAL = "127.0.0.1:5001"


class Recorder:
    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def run(self, args: list[str], **_: object) -> None:
        self.argvs.append(list(args))


def test_the_local_manifests_name_every_platform_image() -> None:
    files = sorted((ROOT / "manifests/openfaas/local").glob("*.yaml"))
    files.append(ROOT / "manifests/minio/local/kustomization.yaml")
    names = {name for name, _ in platform_push.referenced(files, LOCAL)}
    assert {"openfaas-gateway", "faas-provider", "prometheus", "minio"} <= names
    assert {"nats-streaming-server", "queue-worker"} <= names
    # Another registry's references are not ours to push.
    assert platform_push.referenced(files, "registry.example:5000") == []


def test_only_missing_images_are_pushed_at_the_tag_the_manifest_names(tmp_path: Path) -> None:
    runner = Recorder()
    built: list[str] = []

    def layout(name: str, out: Path) -> tuple[Path, str]:
        built.append(name)
        return out / name, "v1.2.3"

    pushed = platform_push.push_missing(
        runner,  # type: ignore[arg-type]
        LOCAL,
        [("faas-provider", "v1.2.3"), ("minio", "v9")],
        tmp_path,
        in_registry=lambda _registry, name, _tag: name == "minio",
        layout=layout,
    )
    assert pushed == [f"{LOCAL}/platform/faas-provider:v1.2.3"]
    assert built == ["faas-provider"]
    (argv,) = runner.argvs
    assert argv[:2] == ["skopeo", "copy"]
    assert argv[-2:] == [
        f"oci:{tmp_path / 'platform-layouts' / 'faas-provider'}:v1.2.3",
        f"docker://{LOCAL}/platform/faas-provider:v1.2.3",
    ]


def test_a_build_at_another_version_than_the_manifest_is_refused(tmp_path: Path) -> None:
    runner = Recorder()
    with pytest.raises(ClusterError, match="update the manifest's tag"):
        platform_push.push_missing(
            runner,  # type: ignore[arg-type]
            LOCAL,
            [("faas-provider", "v0.0.0-src.old")],
            tmp_path,
            in_registry=lambda *_: False,
            layout=lambda name, out: (out / name, "v0.0.0-src.new"),
        )
    assert runner.argvs == []
