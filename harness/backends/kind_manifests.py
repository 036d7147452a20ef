"""OpenFaaS manifests of vsearch's functions for the cluster path, from manifests/functions.yaml.

One rendering, three views of it, so they cannot disagree:

- :func:`deployment_request`: the gateway's ``FunctionDeployment`` JSON (POST/PUT
  ``/system/functions``). The kind backend deploys with this, because OpenFaaS CE has no Function
  CRD controller: the operator is Pro-only (the chart refuses ``operator.create`` without Pro) and
  CE manages functions through the REST API, as faas-cli does.
- :func:`function_resource`: the same function as an ``openfaas.com/v1`` ``Function`` (for
  OpenFaaS Pro and GitOps, and for review: ``python -m harness.backends.kind_manifests``).
- :func:`expected_deployment`: the ``apps/v1`` Deployment faas-netes CE builds from the request
  with our helm values (probes, non-root uid, read-only root with a /tmp emptyDir, secrets as
  files). Tests validate it as a Kubernetes object offline; after a deploy the backend compares
  the live Deployment with it, so a platform that behaves differently is noticed.

The timeout chain (watchdog contract): ``exec_timeout`` <= the function server's read/write
timeouts <= the gateway's ``upstream_timeout`` < the gateway's and faas-netes' read/write
timeouts. :func:`gateway_timeouts` derives the platform's side from the longest function.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.functions import FunctionDeclaration, load

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OPENFAAS_VALUES = MANIFESTS / "openfaas" / "values.yaml"

DEFAULT_REGISTRY = "localhost:5001"
REPOSITORY_PREFIX = "vsearch"

# OpenFaaS Community Edition limits (faas-netes pkg/handlers/replica_reader.go).
CE_MAX_REPLICAS = 5
#: The idler's labels (OpenFaaS Pro's names; platforms/cluster/provider reads the same).
SCALE_ZERO_LABEL = "com.openfaas.scale.zero"
SCALE_ZERO_DURATION_LABEL = "com.openfaas.scale.zero-duration"
CE_MAX_FUNCTIONS = 15

FUNCTION_NAMESPACE = "openfaas-fn"
OPENFAAS_NAMESPACE = "openfaas"
STORAGE_NAMESPACE = "vsearch"
#: The gateway as functions inside the cluster reach it (the orchestrator calls the stages).
GATEWAY_IN_CLUSTER = f"http://gateway.{OPENFAAS_NAMESPACE}.svc.cluster.local:8080"
S3_ENDPOINT_IN_CLUSTER = f"http://minio.{STORAGE_NAMESPACE}.svc.cluster.local:9000"
S3_BUCKET = "vsearch"
S3_REGION = "us-east-1"
#: The Secret (in openfaas-fn) holding the functions' S3 account; each key becomes a file.
S3_SECRET = "vsearch-s3"
S3_ACCESS_KEY_ITEM = "s3-access-key-id"
S3_SECRET_KEY_ITEM = "s3-secret-access-key"
#: The gateway's basic auth, copied from the chart's openfaas/basic-auth into the function
#: namespace for the orchestrator only: it prewarms the chain through the scale API.
GATEWAY_SECRET = "vsearch-gateway"
GATEWAY_USER_ITEM = "gateway-user"
GATEWAY_PASSWORD_ITEM = "gateway-password"
#: The keys of each Secret a function may name (faas-netes projects them all as files).
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    S3_SECRET: (S3_ACCESS_KEY_ITEM, S3_SECRET_KEY_ITEM),
    GATEWAY_SECRET: (GATEWAY_USER_ITEM, GATEWAY_PASSWORD_ITEM),
}
#: Where faas-netes mounts every secret a function names (pkg/k8s/secrets.go).
SECRETS_MOUNT = "/var/openfaas/secrets"

#: faas-netes CE: the function's HTTP port and both probes are hard-coded (main.go, probes.go);
#: the chart's functions.*Probe values are not read. Mirrored here for expected_deployment.
RUNTIME_PORT = 8080
HEALTH_PATH = "/_/health"
CE_PROBE = {
    "initialDelaySeconds": 2,
    "timeoutSeconds": 1,
    "periodSeconds": 2,
    "successThreshold": 1,
    "failureThreshold": 3,
}
#: faas-netes' uid for function containers when setNonRootUser is on (pkg/k8s/securityContext.go).
NON_ROOT_UID = 12000

#: Margins of the timeout chain, in seconds. The function server gets a little longer than its
#: own deadline to send the 504 it answers at exec_timeout; the gateway waits a little longer
#: than that; its own connections outlive the upstream wait.
FUNCTION_IO_MARGIN_S = 5.0
UPSTREAM_MARGIN_S = 5.0
GATEWAY_MARGIN_S = 10.0

#: CPU requested per replica when the declaration sets no CPU limit: small, so that every
#: function's min replica plus OpenFaaS and MinIO fit on a 2-core node; CPU is not limited.
DEFAULT_CPU_REQUEST_M = 50

#: Functions that cannot run with a read-only root filesystem, and why. Everything else gets
#: readOnlyRootFilesystem (faas-netes then mounts an emptyDir at /tmp, where the runtime keeps
#: each invocation's scratch directory).
WRITABLE_ROOT: dict[str, str] = {
    "segment-speech": (
        "librosa's numba kernels are cached with cache=True; numba refuses to load them unless "
        "the cache directory (NUMBA_CACHE_DIR=/var/cache/numba in the image, warmed at build) is "
        "writable, and without a usable cache librosa's import fails"
    ),
}

#: Environment the rendering owns; a declaration's `env` may not override these.
RESERVED_ENV = frozenset(
    {
        "exec_timeout",
        "read_timeout",
        "write_timeout",
        "max_inflight",
        "max_queued",
        "PORT",
        "S3_ENDPOINT_URL",
        "S3_BUCKET",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID_FILE",
        "AWS_SECRET_ACCESS_KEY_FILE",
        "GATEWAY_URL",
        "FUNCTION_MEMORY_LIMITS",
    }
)

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9._-]+)*$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


class RenderError(ValueError):
    """The declarations cannot be rendered for OpenFaaS CE as asked."""


# --------------------------------------------------------------------------------------------
# Durations and timeouts
# --------------------------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration, the form the watchdog and the gateway read ("905s")."""
    if seconds <= 0 or not math.isfinite(seconds):
        raise ValueError(f"not a positive duration: {seconds!r}")
    return f"{seconds:g}s"


def parse_go_duration(text: str) -> float:
    """A Go duration ("1m05s", "910s", "1h", "500ms") in seconds."""
    text = text.strip()
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(frozen=True)
class FunctionTimeouts:
    exec_s: float
    read_s: float
    write_s: float


def function_timeouts(decl: FunctionDeclaration) -> FunctionTimeouts:
    exec_s = decl.exec_timeout_s
    return FunctionTimeouts(exec_s, exec_s + FUNCTION_IO_MARGIN_S, exec_s + FUNCTION_IO_MARGIN_S)


@dataclass(frozen=True)
class GatewayTimeouts:
    upstream_s: float
    read_s: float
    write_s: float

    def helm_set(self) -> list[str]:
        """`--set` arguments for the openfaas chart (gateway and faas-netes alike)."""
        up = go_duration(self.upstream_s)
        rd, wr = go_duration(self.read_s), go_duration(self.write_s)
        return [
            f"gateway.upstreamTimeout={up}",
            f"gateway.readTimeout={rd}",
            f"gateway.writeTimeout={wr}",
            f"faasnetes.readTimeout={rd}",
            f"faasnetes.writeTimeout={wr}",
        ]


def gateway_timeouts(declarations: Iterable[FunctionDeclaration]) -> GatewayTimeouts:
    longest = max(function_timeouts(d).write_s for d in declarations)
    upstream = longest + UPSTREAM_MARGIN_S
    return GatewayTimeouts(upstream, upstream + GATEWAY_MARGIN_S, upstream + GATEWAY_MARGIN_S)


def values_timeouts(values: Mapping[str, Any]) -> GatewayTimeouts:
    """The timeouts a values file sets (faas-netes' default to the gateway's, as in the chart)."""
    gw = values.get("gateway") or {}
    fn = values.get("faasnetes") or {}
    read = parse_go_duration(str(fn.get("readTimeout") or gw["readTimeout"]))
    write = parse_go_duration(str(fn.get("writeTimeout") or gw["writeTimeout"]))
    gw_read = parse_go_duration(str(gw["readTimeout"]))
    gw_write = parse_go_duration(str(gw["writeTimeout"]))
    return GatewayTimeouts(
        parse_go_duration(str(gw["upstreamTimeout"])), min(read, gw_read), min(write, gw_write)
    )


def load_values(path: Path = OPENFAAS_VALUES) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()) or {})


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRefs:
    """Where each function's image is: ``<registry>/vsearch/<function>:<tag>@<digest>``.

    The tag and digests come from the image build; the backend fills in digests it read back
    from the registry after pushing. Refs are pinned by digest unless ``require_digest`` is off
    (only for rendering drafts: the backend never deploys an unpinned ref).
    """

    tag: str
    registry: str = DEFAULT_REGISTRY
    digests: Mapping[str, str] = field(default_factory=dict)
    require_digest: bool = True

    def __post_init__(self) -> None:
        if not _TAG.fullmatch(self.tag):
            raise RenderError(f"not a valid image tag: {self.tag!r}")
        if self.tag == "latest":
            raise RenderError("the tag 'latest' is not a pin; pass the build's tag")
        if not _REGISTRY.fullmatch(self.registry):
            raise RenderError(f"not a registry (host[:port][/path]): {self.registry!r}")
        for name, digest in self.digests.items():
            if not _DIGEST.fullmatch(digest):
                raise RenderError(f"{name}: not a sha256 digest: {digest!r}")

    def repository(self, function: str) -> str:
        return f"{self.registry.rstrip('/')}/{REPOSITORY_PREFIX}/{function}"

    def tagged(self, function: str) -> str:
        return f"{self.repository(function)}:{self.tag}"

    def ref(self, function: str) -> str:
        digest = self.digests.get(function)
        if digest:
            return f"{self.tagged(function)}@{digest}"
        if self.require_digest:
            raise RenderError(
                f"{function}: no digest for {self.tagged(function)}; image refs must be pinned"
            )
        return self.tagged(function)

    def with_registry(self, registry: str) -> ImageRefs:
        return ImageRefs(self.tag, registry, self.digests, self.require_digest)


def is_pinned(ref: str) -> bool:
    """``repo:tag@sha256:<64 hex>``, or at least ``repo@sha256:...``."""
    name, sep, digest = ref.partition("@")
    return bool(sep) and bool(_DIGEST.fullmatch(digest)) and bool(name)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _cpu_quantity(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def scale_labels(decl: FunctionDeclaration) -> tuple[dict[str, str], list[str]]:
    """com.openfaas.scale.min/max within CE's bounds, and notes on what was changed."""
    notes: list[str] = []
    lo = decl.min_replicas
    hi = decl.max_replicas
    if lo < 1:
        # CE keeps >= 1 replica (replicas 0 is refused with 400); cold starts are made by
        # deleting pods instead (harness/backends/kind.py).
        notes.append(f"{decl.name}: min_replicas {lo} -> 1 (CE cannot scale to zero)")
        lo = 1
    if hi > CE_MAX_REPLICAS:
        notes.append(f"{decl.name}: max_replicas {hi} -> {CE_MAX_REPLICAS} (CE limit)")
        hi = CE_MAX_REPLICAS
    if lo > hi:
        raise RenderError(f"{decl.name}: min_replicas {lo} > max_replicas {hi} on CE")
    labels = {"com.openfaas.scale.min": str(lo), "com.openfaas.scale.max": str(hi)}
    if decl.scale_to_zero_idle is not None:
        # OpenFaaS Pro's idler labels; CE's faas-netes has no idler, our provider
        # (platforms/cluster/provider, --openfaas local) has one that reads them.
        labels[SCALE_ZERO_LABEL] = "true"
        labels[SCALE_ZERO_DURATION_LABEL] = go_duration(decl.scale_to_zero_idle)
        notes.append(
            f"{decl.name}: scale_to_zero_idle {decl.scale_to_zero_idle:g}s needs an idler: "
            "our provider (--openfaas local) or OpenFaaS Pro; none in CE"
        )
    return labels, notes


def environment(
    decl: FunctionDeclaration, declarations: Sequence[FunctionDeclaration]
) -> dict[str, str]:
    clash = sorted(set(decl.env) & RESERVED_ENV)
    if clash:
        raise RenderError(f"{decl.name}: env may not set {clash} (the rendering owns them)")
    t = function_timeouts(decl)
    env = {
        "exec_timeout": go_duration(t.exec_s),
        "read_timeout": go_duration(t.read_s),
        "write_timeout": go_duration(t.write_s),
        "max_inflight": str(decl.max_inflight),
        "max_queued": str(decl.max_queued),
        "PORT": str(RUNTIME_PORT),
        "S3_ENDPOINT_URL": S3_ENDPOINT_IN_CLUSTER,
        "S3_BUCKET": S3_BUCKET,
        "AWS_REGION": S3_REGION,
        # Credentials as files (base/config.py reads NAME_FILE): never in the function's env,
        # the Deployment or /system/functions.
        "AWS_ACCESS_KEY_ID_FILE": f"{SECRETS_MOUNT}/{S3_ACCESS_KEY_ITEM}",
        "AWS_SECRET_ACCESS_KEY_FILE": f"{SECRETS_MOUNT}/{S3_SECRET_KEY_ITEM}",
        # Same as the embedded platform gives every function.
        "GATEWAY_URL": GATEWAY_IN_CLUSTER,
    }
    if decl.name == "orchestrator":
        # The CE gateway reports no limits; the orchestrator records them with each invocation.
        env["FUNCTION_MEMORY_LIMITS"] = ",".join(f"{d.name}={d.memory_limit}" for d in declarations)
        # The scale API's credentials, as files (orchestrator/prewarm.py).
        env["GATEWAY_AUTH_USER_FILE"] = f"{SECRETS_MOUNT}/{GATEWAY_USER_ITEM}"
        env["GATEWAY_AUTH_PASSWORD_FILE"] = f"{SECRETS_MOUNT}/{GATEWAY_PASSWORD_ITEM}"
    env.update(decl.env)
    return env


def resources(decl: FunctionDeclaration) -> tuple[dict[str, str], dict[str, str]]:
    """(limits, requests). Memory is requested at the function's measured peak with headroom
    (`memory_request`, else its limit) and limited at `memory_limit`: a laptop-sized node
    schedules the whole set, and a replica that outgrows its own limit is still OOM-killed."""
    limits = {"memory": decl.memory_limit}
    requests = {"memory": decl.memory_request or decl.memory_limit}
    cpu_request_m = DEFAULT_CPU_REQUEST_M
    if decl.cpu_limit is not None:
        limits["cpu"] = _cpu_quantity(decl.cpu_limit)
        cpu_request_m = min(cpu_request_m, max(1, round(decl.cpu_limit * 1000)))
    requests["cpu"] = f"{cpu_request_m}m"
    return limits, requests


def annotations(decl: FunctionDeclaration) -> dict[str, str]:
    return {
        # Honoured by OpenFaaS Pro; CE always probes /_/health (kept so both agree).
        "com.openfaas.health.http.path": HEALTH_PATH,
        "com.openfaas.ready.http.path": "/_/ready",
        "vsearch/module": decl.module,
        "vsearch/videosearcher": decl.videosearcher,
    }


@dataclass(frozen=True)
class RenderedFunction:
    name: str
    request: dict[str, Any]
    notes: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return str(self.request["image"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.request["labels"])

    @property
    def min_replicas(self) -> int:
        return int(self.request["labels"]["com.openfaas.scale.min"])

    @property
    def max_replicas(self) -> int:
        return int(self.request["labels"]["com.openfaas.scale.max"])


def deployment_request(
    decl: FunctionDeclaration,
    images: ImageRefs,
    declarations: Sequence[FunctionDeclaration] | None = None,
) -> RenderedFunction:
    """The FunctionDeployment body for POST/PUT /system/functions."""
    labels, notes = scale_labels(decl)
    limits, requests = resources(decl)
    body: dict[str, Any] = {
        "service": decl.name,
        "image": images.ref(decl.name),
        "namespace": FUNCTION_NAMESPACE,
        "envVars": environment(decl, declarations or [decl]),
        "labels": {**labels, "app.kubernetes.io/part-of": "vsearch"},
        "annotations": annotations(decl),
        "secrets": secrets_of(decl),
        "limits": limits,
        "requests": requests,
        "readOnlyRootFilesystem": decl.name not in WRITABLE_ROOT,
    }
    return RenderedFunction(decl.name, body, tuple(notes))


def secrets_of(decl: FunctionDeclaration) -> list[str]:
    """Every function reads S3; only the orchestrator holds the gateway's credentials."""
    return [S3_SECRET, GATEWAY_SECRET] if decl.name == "orchestrator" else [S3_SECRET]


def function_resource(fn: RenderedFunction) -> dict[str, Any]:
    """The same function as an openfaas.com/v1 Function (OpenFaaS Pro's operator, GitOps)."""
    r = fn.request
    return {
        "apiVersion": "openfaas.com/v1",
        "kind": "Function",
        "metadata": {
            "name": r["service"],
            "namespace": r["namespace"],
            "labels": {"app.kubernetes.io/part-of": "vsearch"},
        },
        "spec": {
            "name": r["service"],
            "image": r["image"],
            "labels": dict(r["labels"]),
            "annotations": dict(r["annotations"]),
            "environment": dict(r["envVars"]),
            "secrets": list(r["secrets"]),
            "limits": dict(r["limits"]),
            "requests": dict(r["requests"]),
            "readOnlyRootFilesystem": r["readOnlyRootFilesystem"],
        },
    }


def expected_deployment(
    fn: RenderedFunction,
    values: Mapping[str, Any] | None = None,
    *,
    secret_keys: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The Deployment faas-netes CE makes of ``fn`` (handlers/deploy.go makeDeploymentSpec)."""
    values = load_values() if values is None else values
    functions = values.get("functions") or {}
    r = fn.request
    name = r["service"]
    if functions.get("httpProbe", False):
        handler: dict[str, Any] = {"httpGet": {"path": HEALTH_PATH, "port": RUNTIME_PORT}}
    else:
        handler = {"exec": {"command": ["cat", "/tmp/.lock"]}}
    probe = {**handler, **CE_PROBE}
    security: dict[str, Any] = {"readOnlyRootFilesystem": bool(r["readOnlyRootFilesystem"])}
    if functions.get("setNonRootUser", False):
        security["runAsUser"] = NON_ROOT_UID
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if r["readOnlyRootFilesystem"]:
        volumes.append({"name": "temp", "emptyDir": {}})
        mounts.append({"name": "temp", "mountPath": "/tmp", "readOnly": False})
    if r["secrets"]:
        volume = f"{name}-projected-secrets"
        keys = SECRET_KEYS if secret_keys is None else secret_keys
        sources = [
            {"secret": {"name": s, "items": [{"key": k, "path": k} for k in keys[s]]}}
            for s in r["secrets"]
        ]
        volumes.append({"name": volume, "projected": {"sources": sources}})
        mounts.append({"name": volume, "readOnly": True, "mountPath": SECRETS_MOUNT})
    env = [{"name": k, "value": v} for k, v in sorted(r["envVars"].items())]
    annotations_ = {"prometheus.io.scrape": "false", **r["annotations"]}
    container: dict[str, Any] = {
        "name": name,
        "image": r["image"],
        "ports": [{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": {"limits": dict(r["limits"]), "requests": dict(r["requests"])},
        "imagePullPolicy": "Always",
        "livenessProbe": probe,
        "readinessProbe": dict(probe),
        "securityContext": security,
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": r["namespace"],
            "labels": {"faas_function": name},
            "annotations": annotations_,
        },
        "spec": {
            "replicas": fn.min_replicas,
            "selector": {"matchLabels": {"faas_function": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {
                    "labels": {"faas_function": name, **r["labels"]},
                    "annotations": dict(annotations_),
                },
                "spec": {
                    "containers": [container],
                    "volumes": volumes,
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                },
            },
        },
    }


@dataclass(frozen=True)
class Rendering:
    functions: tuple[RenderedFunction, ...]
    gateway: GatewayTimeouts
    notes: tuple[str, ...]

    def get(self, name: str) -> RenderedFunction:
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [fn.name for fn in self.functions]


def render(declarations: Sequence[FunctionDeclaration], images: ImageRefs) -> Rendering:
    if not declarations:
        raise RenderError("no functions to render")
    if len(declarations) > CE_MAX_FUNCTIONS:
        raise RenderError(
            f"{len(declarations)} functions; OpenFaaS CE deploys at most {CE_MAX_FUNCTIONS}"
        )
    rendered = tuple(deployment_request(d, images, declarations) for d in declarations)
    notes = tuple(n for fn in rendered for n in fn.notes)
    return Rendering(rendered, gateway_timeouts(declarations), notes)


def chain_problems(rendering: Rendering, platform: GatewayTimeouts) -> list[str]:
    """Every broken link of the timeout chain, for the functions and a platform's timeouts."""
    problems = []
    for fn in rendering.functions:
        env = fn.request["envVars"]
        exec_s = parse_go_duration(env["exec_timeout"])
        read_s = parse_go_duration(env["read_timeout"])
        write_s = parse_go_duration(env["write_timeout"])
        if not exec_s <= min(read_s, write_s):
            problems.append(f"{fn.name}: exec_timeout {exec_s:g}s > its read/write timeouts")
        if not max(exec_s, write_s) <= platform.upstream_s:
            problems.append(
                f"{fn.name}: write_timeout {write_s:g}s > gateway upstream_timeout "
                f"{platform.upstream_s:g}s"
            )
    if not platform.upstream_s < min(platform.read_s, platform.write_s):
        problems.append(
            f"gateway upstream_timeout {platform.upstream_s:g}s is not below its read/write "
            f"timeouts ({platform.read_s:g}s/{platform.write_s:g}s)"
        )
    return problems


def dump_yaml(documents: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False, width=100)


def write(rendering: Rendering, out_dir: Path, values: Mapping[str, Any] | None = None) -> None:
    """functions.yaml (Function resources), deploy/<fn>.json (REST bodies), and the expected
    Deployments, for review or for `kubectl apply` on OpenFaaS Pro."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "functions.yaml").write_text(
        dump_yaml(function_resource(fn) for fn in rendering.functions)
    )
    (out_dir / "expected-deployments.yaml").write_text(
        dump_yaml(expected_deployment(fn, values) for fn in rendering.functions)
    )
    deploy = out_dir / "deploy"
    deploy.mkdir(exist_ok=True)
    for fn in rendering.functions:
        (deploy / f"{fn.name}.json").write_text(json.dumps(fn.request, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.backends.kind_manifests",
        description="Render the OpenFaaS manifests of manifests/functions.yaml.",
    )
    parser.add_argument("--tag", required=True, help="image tag from the build")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument(
        "--digests", type=Path, help='JSON {"function": "sha256:..."} (required unless --draft)'
    )
    parser.add_argument("--draft", action="store_true", help="allow refs without digests")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    digests = json.loads(args.digests.read_text()) if args.digests else {}
    images = ImageRefs(args.tag, args.registry, digests, require_digest=not args.draft)
    try:
        rendering = render(load().functions, images)
    except RenderError as exc:
        print(f"kind_manifests: {exc}", file=sys.stderr)
        return 2
    write(rendering, args.out)
    for note in rendering.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {len(rendering.functions)} functions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
