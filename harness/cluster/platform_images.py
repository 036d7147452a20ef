"""The local platform's images: FROM-scratch OCI layouts of the programs the builder made.

Each image holds one static binary (plus the writable directories it needs) and is named
``127.0.0.1:5001/platform/<name>:<tag>``, the tag being the built module version, so that a
rebuild at another version is another image. ``write_layouts`` writes the OCI layouts that
``skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://127.0.0.1:5001/platform/NAME:TAG``
pushes (or ``export_tar`` turns into what ``ctr -n k8s.io images import`` loads).

What the images lack next to upstream's: no shell, no CA bundle (MinIO's and mc's https
clients have no roots: the local platform speaks plain HTTP inside the cluster), no /etc/passwd
(the user is numeric).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness.cluster import builder
from harness.cluster.oci_image import BuiltImage, ImageFile, ImageSpec, build_layout

REGISTRY = "127.0.0.1:5001"
NOBODY = "65534:65534"

log = logging.getLogger("vsearch.platform")


class PlatformImage(BaseModel):
    """How one platform program becomes an image (the binary comes from the builder)."""

    model_config = ConfigDict(frozen=True)

    name: str  # image name under <registry>/platform/
    component: str  # builder component whose binary the image carries
    path: str  # where the binary sits in the image
    args: tuple[str, ...] = ()  # the image's CMD (the manifests may override it)
    env: tuple[str, ...] = ()
    user: str = NOBODY
    directories: tuple[tuple[str, int], ...] = (("/tmp", 0o1777),)
    ports: tuple[str, ...] = ()

    def spec(self, binary: Path, tag: str, registry: str = REGISTRY) -> ImageSpec:
        return ImageSpec(
            name=f"{registry}/platform/{self.name}:{tag}",
            files={self.path: ImageFile(source=binary)},
            directories=dict(self.directories),
            entrypoint=(self.path,),
            cmd=self.args,
            env=("PATH=/usr/bin:/bin", *self.env),
            user=self.user,
            exposed_ports=self.ports,
            labels={"org.opencontainers.image.source": "vsearch harness/cluster/platform_images"},
        )


IMAGES: dict[str, PlatformImage] = {
    i.name: i
    for i in (
        PlatformImage(
            name="openfaas-gateway",
            component="openfaas-gateway",
            path="/usr/bin/gateway",
            ports=("8080/tcp", "8082/tcp"),
        ),
        PlatformImage(
            name="faas-provider",
            component="faas-provider",
            path="/usr/bin/faas-provider",
            ports=("8081/tcp",),
        ),
        PlatformImage(
            name="echo-function",
            component="echo-function",
            path="/usr/bin/echo-function",
            ports=("8080/tcp",),
        ),
        PlatformImage(
            name="nats-streaming-server",
            component="nats-streaming-server",
            # Where upstream's nats-streaming image has it: the chart's nats-dep.yaml runs
            # command ["/nats-streaming-server"].
            path="/nats-streaming-server",
            ports=("4222/tcp", "8222/tcp"),
        ),
        PlatformImage(
            name="queue-worker",
            component="queue-worker",
            path="/worker",  # as the queue-worker's own Dockerfile names it (CMD ["/worker"])
        ),
        PlatformImage(
            name="prometheus",
            component="prometheus",
            path="/usr/bin/prometheus",
            # As prom/prometheus' Dockerfile: config under /etc/prometheus, TSDB under
            # /prometheus (manifests/openfaas/local/prometheus.yaml mounts an emptyDir there).
            directories=(("/tmp", 0o1777), ("/etc/prometheus", 0o755), ("/prometheus", 0o777)),
            ports=("9090/tcp",),
            args=(
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
            ),
        ),
        PlatformImage(
            name="minio",
            component="minio",
            path="/usr/bin/minio",
            # manifests/minio runs it as 1000:1000 with --certs-dir on /tmp and /data a volume.
            user="1000:1000",
            directories=(("/tmp", 0o1777), ("/data", 0o777)),
            ports=("9000/tcp",),
            args=("server", "/data"),
        ),
        PlatformImage(
            name="mc",
            component="mc",
            path="/usr/bin/mc",
            env=("MC_CONFIG_DIR=/tmp/.mc",),  # no home directory in a scratch image
        ),
    )
}


def tag_for(version: str) -> str:
    """An image tag from a module version (tags allow [A-Za-z0-9_.-], at most 128)."""
    tag = "".join(c if c.isalnum() or c in "_.-" else "_" for c in version)
    return tag[:128]


def write_layouts(
    names: Sequence[str],
    out: Path,
    *,
    cache: Path | None = None,
    binary_of: Callable[[str], tuple[Path, str]] | None = None,
    registry: str = REGISTRY,
) -> dict[str, BuiltImage]:
    """Write the OCI layout of each named image under ``out/<name>``.

    ``binary_of(component) -> (binary, version)`` defaults to the builder's cached build; an
    image whose program is not built raises ``PlatformBuildError`` (build it first).
    """

    def cached(component: str) -> tuple[Path, str]:
        record = builder.cached_record(component, cache=cache)
        binary = builder.cached(component, cache=cache)
        if record is None or binary is None:
            raise builder.PlatformBuildError(
                f"{component} is not built: ./vsearch platform build {component}"
            )
        return binary, record.version

    find = binary_of or cached
    built: dict[str, BuiltImage] = {}
    for name in names:
        image = IMAGES[name]
        binary, version = find(image.component)
        spec = image.spec(binary, tag_for(version), registry)
        built[name] = build_layout(spec, out / name)
        log.info(
            json.dumps(
                {
                    "event": "platform_image_layout",
                    "name": spec.name,
                    "digest": built[name].manifest_digest,
                    "size": built[name].size,
                }
            )
        )
    return built
