"""Offline checks of the cluster path's manifests (manifests/kind, openfaas, minio) and of the
function manifests rendered from manifests/functions.yaml.

Kubernetes-schema validation runs when `kubernetes_validate` (PyPI kubernetes-validate, which
ships the Kubernetes JSON schemas) is importable; otherwise it is skipped with that reason and
the structural checks below still run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.backends import kind as kb
from harness.backends import kind_manifests as km
from harness.functions import FunctionDeclaration, load

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OWN_DIRS = ("kind", "openfaas", "minio")
OPENAPI = ROOT.parent / "shared" / "specs" / "openfaas-gateway.openapi.yml"
PINNED_IMAGE = re.compile(r"^[^\s@]+:[A-Za-z0-9_.-]+@sha256:[0-9a-f]{64}$")
K8S_VERSION = "1.36.0"  # the kind node image's Kubernetes (manifests/kind/cluster.yaml)

#: Known apiVersion of every kind these manifests use.
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "Function": "openfaas.com/v1",
}
#: Fields of the Function CRD's spec (faas-netes artifacts/crds/openfaas.com_functions.yaml).
FUNCTION_SPEC_FIELDS = {
    "name": str,
    "image": str,
    "handler": str,
    "annotations": dict,
    "labels": dict,
    "environment": dict,
    "secrets": list,
    "constraints": list,
    "limits": dict,
    "requests": dict,
    "readOnlyRootFilesystem": bool,
}


def fake_digest(name: str) -> str:
    return "sha256:" + f"{abs(hash(name)) % (1 << 64):016x}" * 4


@pytest.fixture(scope="module")
def declarations() -> list[FunctionDeclaration]:
    return load().functions


@pytest.fixture(scope="module")
def images(declarations: list[FunctionDeclaration]) -> km.ImageRefs:
    digests = {d.name: fake_digest(d.name) for d in declarations}
    return km.ImageRefs("20250101-abc1234", "172.18.0.5:5000", digests)


@pytest.fixture(scope="module")
def rendering(declarations: list[FunctionDeclaration], images: km.ImageRefs) -> km.Rendering:
    return km.render(declarations, images)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return km.load_values()


def manifest_files() -> list[Path]:
    return sorted(p for d in OWN_DIRS for p in (MANIFESTS / d).glob("*.yaml"))


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            # kind's own config (kind.x-k8s.io) is not a Kubernetes object.
            if isinstance(doc, dict) and "kind" in doc and "x-k8s.io" not in doc["apiVersion"]:
                yield path, doc


def rendered_documents(rendering: km.Rendering, values: dict[str, Any]) -> list[dict[str, Any]]:
    docs = [km.function_resource(fn) for fn in rendering.functions]
    docs += [km.expected_deployment(fn, values) for fn in rendering.functions]
    return docs


# --------------------------------------------------------------------------------------------
# Every manifest parses, and is a well-formed Kubernetes object
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_kind_manifest_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


def test_kind_manifest_dirs_hold_what_the_backend_reads() -> None:
    for rel in [
        "kind/cluster.yaml",
        "kind/registry.yaml",
        "kind/local-registry-hosting.yaml",
        "openfaas/values.yaml",
        "openfaas/chart-pin.yaml",
        "openfaas/namespaces.yaml",
        "minio/namespace.yaml",
        "minio/minio.yaml",
        "minio/bootstrap-job.yaml",
    ]:
        assert (MANIFESTS / rel).is_file(), rel
    assert (MANIFESTS / "README.md").is_file()


def _check_object(doc: dict[str, Any], where: str) -> None:
    kind = doc["kind"]
    assert kind in API_VERSIONS, f"{where}: unexpected kind {kind}"
    assert doc["apiVersion"] == API_VERSIONS[kind], f"{where}: {kind} apiVersion"
    meta = doc.get("metadata") or {}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta.get("name", "")), where
    if kind != "Namespace":
        assert meta.get("namespace"), f"{where}: {kind}/{meta.get('name')} has no namespace"
    for key in (meta.get("labels") or {}) | (meta.get("annotations") or {}):
        prefix, _, name = key.rpartition("/")
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", name), key
        assert not prefix or re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", prefix), key
    for value in (meta.get("labels") or {}).values():
        assert isinstance(value, str) and len(value) <= 63, f"{where}: label value {value!r}"
    if kind in ("Deployment", "Job"):
        spec = doc["spec"]["template"]["spec"]
        assert spec["containers"], where
        volumes = {v["name"] for v in spec.get("volumes") or []}
        for c in spec["containers"]:
            for m in c.get("volumeMounts") or []:
                assert m["name"] in volumes, f"{where}: mount {m['name']} has no volume"
        if kind == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"{where}: selector does not match"


def test_kind_static_manifests_are_well_formed_objects() -> None:
    docs = list(k8s_documents())
    assert {d["kind"] for _, d in docs} >= {"Namespace", "Deployment", "Job", "Service"}
    for path, doc in docs:
        _check_object(doc, str(path.relative_to(MANIFESTS)))


def test_kind_rendered_manifests_are_well_formed_objects(
    rendering: km.Rendering, values: dict[str, Any]
) -> None:
    for doc in rendered_documents(rendering, values):
        _check_object(doc, f"rendered {doc['kind']}/{doc['metadata']['name']}")
        # Round trip through YAML: what `--out` writes is what we checked.
        assert yaml.safe_load(km.dump_yaml([doc])) == doc


def test_kind_manifests_validate_against_kubernetes_schemas(
    rendering: km.Rendering, values: dict[str, Any]
) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (PyPI, ships the Kubernetes JSON schemas) is not in the venv; "
        "structural checks ran instead",
    )
    docs = [d for _, d in k8s_documents()]
    docs += [km.expected_deployment(fn, values) for fn in rendering.functions]
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)


def test_kind_function_resources_match_the_crd_spec(rendering: km.Rendering) -> None:
    for fn in rendering.functions:
        spec = km.function_resource(fn)["spec"]
        assert {"name", "image"} <= spec.keys()
        for key, value in spec.items():
            assert key in FUNCTION_SPEC_FIELDS, f"{fn.name}: {key} is not a Function spec field"
            assert isinstance(value, FUNCTION_SPEC_FIELDS[key]), f"{fn.name}: {key} type"
        for key in ("limits", "requests"):
            assert set(spec[key]) <= {"cpu", "memory"}
            assert all(isinstance(v, str) for v in spec[key].values())
        for key in ("environment", "labels", "annotations"):
            assert all(isinstance(v, str) for v in spec[key].values()), f"{fn.name}: {key}"


# --------------------------------------------------------------------------------------------
# The deploy bodies against the gateway's OpenAPI spec
# --------------------------------------------------------------------------------------------


def _validate_openapi(value: Any, schema: dict[str, Any], spec: dict[str, Any], at: str) -> None:
    """The subset of OpenAPI 3.0 schemas the FunctionDeployment schema uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        _validate_openapi(value, spec["components"]["schemas"][name], spec, at)
        return
    if value is None:
        assert schema.get("nullable"), f"{at}: null"
        return
    for sub in schema.get("allOf") or []:
        _validate_openapi(value, sub, spec, at)
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if kind:
        assert isinstance(value, types[kind]), f"{at}: expected {kind}, got {value!r}"
    if kind == "object":
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            assert key in value, f"{at}: missing {key}"
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                assert not props[key].get("deprecated"), f"{at}.{key} is deprecated"
                _validate_openapi(item, props[key], spec, f"{at}.{key}")
            elif isinstance(extra, dict):
                _validate_openapi(item, extra, spec, f"{at}.{key}")
            else:
                assert props == {} or extra, f"{at}: unknown field {key}"
    if kind == "array":
        for i, item in enumerate(value):
            _validate_openapi(item, schema.get("items") or {}, spec, f"{at}[{i}]")


def test_kind_deploy_bodies_match_the_gateway_openapi(rendering: km.Rendering) -> None:
    if not OPENAPI.exists():
        pytest.skip(f"{OPENAPI} is not here (shared/ sits beside the repository)")
    spec = yaml.safe_load(OPENAPI.read_text())
    schema = spec["components"]["schemas"]["FunctionDeployment"]
    for fn in rendering.functions:
        body = json.loads(json.dumps(fn.request))  # exactly what goes over the wire
        _validate_openapi(body, schema, spec, fn.name)


# --------------------------------------------------------------------------------------------
# Invariants of the rendered functions
# --------------------------------------------------------------------------------------------


def test_kind_function_set_equals_the_embedded_platforms(
    rendering: km.Rendering, declarations: list[FunctionDeclaration], tmp_path: Path
) -> None:
    from harness.embedded.platform import EmbeddedPlatform

    embedded = EmbeddedPlatform(tmp_path)  # constructing it starts nothing
    assert rendering.names == [d.name for d in embedded.declarations]
    assert rendering.names == [d.name for d in declarations]
    assert len(rendering.names) <= km.CE_MAX_FUNCTIONS


def test_kind_every_function_has_limits_requests_and_probes(
    rendering: km.Rendering, declarations: list[FunctionDeclaration], values: dict[str, Any]
) -> None:
    decls = {d.name: d for d in declarations}
    for fn in rendering.functions:
        decl = decls[fn.name]
        assert fn.request["limits"]["memory"] == decl.memory_limit
        assert fn.request["requests"]["memory"] == (decl.memory_request or decl.memory_limit)
        assert decl.memory_request_bytes <= decl.memory_limit_bytes
        assert re.fullmatch(r"\d+m", fn.request["requests"]["cpu"])
        if decl.cpu_limit is not None:
            assert fn.request["limits"]["cpu"] == f"{round(decl.cpu_limit * 1000)}m"
        container = km.expected_deployment(fn, values)["spec"]["template"]["spec"]["containers"][0]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/_/health", "port": 8080}, fn.name
        assert container["ports"][0]["containerPort"] == 8080
        assert fn.request["envVars"]["PORT"] == "8080"


def test_kind_timeout_chain_is_in_order(
    rendering: km.Rendering, declarations: list[FunctionDeclaration], values: dict[str, Any]
) -> None:
    platform = km.values_timeouts(values)
    assert km.chain_problems(rendering, platform) == []
    # The static values file already covers the longest function (helm --set recomputes it).
    needed = km.gateway_timeouts(declarations)
    assert platform.upstream_s >= needed.upstream_s
    assert min(platform.read_s, platform.write_s) >= needed.read_s
    longest = max(d.exec_timeout_s for d in declarations)
    assert longest <= needed.upstream_s < needed.read_s
    for fn in rendering.functions:
        env = fn.request["envVars"]
        exec_s = km.parse_go_duration(env["exec_timeout"])
        assert exec_s == {d.name: d for d in declarations}[fn.name].exec_timeout_s
        assert exec_s <= km.parse_go_duration(env["write_timeout"]) <= platform.upstream_s
        assert env["max_inflight"] == str({d.name: d for d in declarations}[fn.name].max_inflight)
        assert env["max_queued"] == str({d.name: d for d in declarations}[fn.name].max_queued)
    # The orchestrator holds a few requests when full: CE's gateway queues no synchronous call.
    assert {d.name: d for d in declarations}["orchestrator"].max_queued > 0


def test_kind_timeout_chain_problems_are_reported(rendering: km.Rendering) -> None:
    too_short = km.GatewayTimeouts(upstream_s=60, read_s=65, write_s=65)
    problems = km.chain_problems(rendering, too_short)
    assert any("orchestrator" in p and "upstream_timeout" in p for p in problems)
    inverted = km.GatewayTimeouts(upstream_s=1000, read_s=1000, write_s=1200)
    assert any("not below" in p for p in km.chain_problems(rendering, inverted))


def test_kind_helm_set_matches_gateway_timeouts(declarations: list[FunctionDeclaration]) -> None:
    t = km.gateway_timeouts(declarations)
    sets = dict(kv.split("=", 1) for kv in t.helm_set())
    assert km.parse_go_duration(sets["gateway.upstreamTimeout"]) == t.upstream_s
    assert sets["faasnetes.readTimeout"] == sets["gateway.readTimeout"]
    assert km.values_timeouts({"gateway": {k.split(".")[1]: v for k, v in sets.items() if
                                           k.startswith("gateway.")}}) == t  # fmt: skip


def test_kind_image_refs_are_pinned(rendering: km.Rendering) -> None:
    for fn in rendering.functions:
        assert km.is_pinned(fn.image), fn.image
        assert PINNED_IMAGE.fullmatch(fn.image), fn.image
        assert fn.image.startswith(f"172.18.0.5:5000/vsearch/{fn.name}:20250101-abc1234@")


def test_kind_unpinned_refs_are_refused(declarations: list[FunctionDeclaration]) -> None:
    with pytest.raises(km.RenderError, match="must be pinned"):
        km.render(declarations, km.ImageRefs("v1"))
    with pytest.raises(km.RenderError, match="latest"):
        km.ImageRefs("latest")
    with pytest.raises(km.RenderError, match="digest"):
        km.ImageRefs("v1", digests={"search": "sha256:abc"})
    with pytest.raises(km.RenderError, match="registry"):
        km.ImageRefs("v1", registry="http://localhost:5001")
    draft = km.render(declarations, km.ImageRefs("v1", require_digest=False))
    assert all(not km.is_pinned(fn.image) for fn in draft.functions)


def test_kind_static_images_are_pinned_by_digest() -> None:
    images = []
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            images += [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
    cluster = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    images += [n["image"] for n in cluster["nodes"]]
    images.append(yaml.safe_load((MANIFESTS / "kind" / "registry.yaml").read_text())["image"])
    assert len(images) >= 4
    for image in images:
        assert PINNED_IMAGE.fullmatch(image), f"not pinned by digest: {image}"
        assert ":latest@" not in image


def test_kind_no_plaintext_secret_in_manifests_or_renderings(
    rendering: km.Rendering, values: dict[str, Any]
) -> None:
    for _, doc in k8s_documents():
        assert doc["kind"] != "Secret", "Secrets are generated at deploy time, never committed"
    texts = {str(p): p.read_text() for p in manifest_files()}
    texts["rendered"] = km.dump_yaml(rendered_documents(rendering, values))
    texts["bodies"] = json.dumps([fn.request for fn in rendering.functions])
    for where, text in texts.items():
        assert not re.search(r"(?i)(password|secret[_-]?key|access[_-]?key)\s*[:=]\s*\S{8,}", text)
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), where  # AWS-style key ids
        assert "minioadmin" not in text, where  # MinIO's well-known default
    for fn in rendering.functions:
        env = fn.request["envVars"]
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        assert env["AWS_ACCESS_KEY_ID_FILE"] == f"{km.SECRETS_MOUNT}/{km.S3_ACCESS_KEY_ITEM}"
        assert env["AWS_SECRET_ACCESS_KEY_FILE"] == f"{km.SECRETS_MOUNT}/{km.S3_SECRET_KEY_ITEM}"
        if fn.name == "orchestrator":
            # Only the orchestrator holds the gateway's credentials (prewarming), as files.
            assert fn.request["secrets"] == [km.S3_SECRET, km.GATEWAY_SECRET]
            assert env["GATEWAY_AUTH_USER_FILE"] == f"{km.SECRETS_MOUNT}/{km.GATEWAY_USER_ITEM}"
            assert env["GATEWAY_AUTH_PASSWORD_FILE"] == (
                f"{km.SECRETS_MOUNT}/{km.GATEWAY_PASSWORD_ITEM}"
            )
        else:
            assert fn.request["secrets"] == [km.S3_SECRET]
            assert not any(k.startswith("GATEWAY_AUTH") for k in env)


def test_kind_secrets_are_mounted_as_files(rendering: km.Rendering, values: dict[str, Any]) -> None:
    for fn in rendering.functions:
        spec = km.expected_deployment(fn, values)["spec"]["template"]["spec"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["readOnly"]]
        assert mount["mountPath"] == km.SECRETS_MOUNT
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        sources = volume["projected"]["sources"]
        assert [s["secret"]["name"] for s in sources] == fn.request["secrets"]
        for source in sources:
            items = source["secret"]["items"]
            assert [i["path"] for i in items] == list(km.SECRET_KEYS[source["secret"]["name"]])


def test_kind_manifest_secret_refs_are_the_generated_ones() -> None:
    refs = set()
    for _, doc in k8s_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        ns = doc["metadata"]["namespace"]
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((f"{ns}/{ref['name']}", ref["key"]))
    assert refs
    for secret, key in refs:
        assert key in kb.GENERATED_SECRETS.get(secret, ()), f"{secret}:{key} is never generated"


def test_kind_non_root_and_read_only_root(rendering: km.Rendering, values: dict[str, Any]) -> None:
    assert values["functions"]["setNonRootUser"] is True
    for fn in rendering.functions:
        spec = km.expected_deployment(fn, values)["spec"]["template"]["spec"]
        security = spec["containers"][0]["securityContext"]
        assert security["runAsUser"] == km.NON_ROOT_UID
        read_only = fn.name not in km.WRITABLE_ROOT
        assert fn.request["readOnlyRootFilesystem"] is read_only
        assert security["readOnlyRootFilesystem"] is read_only
        tmp = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert bool(tmp) is read_only, f"{fn.name}: a read-only root needs a writable /tmp"
        if tmp:
            (volume,) = [v for v in spec["volumes"] if v["name"] == tmp[0]["name"]]
            assert volume == {"name": "temp", "emptyDir": {}}
    assert set(km.WRITABLE_ROOT) <= set(rendering.names)
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["resources"]["limits"]["memory"]


def test_kind_ce_scaling_rules(declarations: list[FunctionDeclaration]) -> None:
    base = declarations[0].model_dump()
    cold = FunctionDeclaration.model_validate(
        {**base, "min_replicas": 0, "max_replicas": 9, "scale_to_zero_idle": 5}
    )
    (fn,) = km.render([cold], km.ImageRefs("v1", require_digest=False)).functions
    assert fn.labels["com.openfaas.scale.min"] == "1"
    assert fn.labels["com.openfaas.scale.max"] == str(km.CE_MAX_REPLICAS)
    assert fn.labels[km.SCALE_ZERO_LABEL] == "true"
    assert fn.labels[km.SCALE_ZERO_DURATION_LABEL] == "5s"
    assert len(fn.notes) == 3 and "needs an idler" in fn.notes[2]
    (warm,) = km.render(declarations[:1], km.ImageRefs("v1", require_digest=False)).functions
    assert not any(k.startswith(km.SCALE_ZERO_LABEL) for k in warm.labels)
    too_many = [
        FunctionDeclaration.model_validate({**base, "name": f"f{i}"})
        for i in range(km.CE_MAX_FUNCTIONS + 1)
    ]
    with pytest.raises(km.RenderError, match="at most 15"):
        km.render(too_many, km.ImageRefs("v1", require_digest=False))


def test_kind_declared_env_cannot_override_the_contract(
    declarations: list[FunctionDeclaration],
) -> None:
    bad = FunctionDeclaration.model_validate(
        {**declarations[0].model_dump(), "env": {"exec_timeout": "1s"}}
    )
    with pytest.raises(km.RenderError, match="exec_timeout"):
        km.render([bad], km.ImageRefs("v1", require_digest=False))


def test_kind_declared_env_and_in_cluster_endpoints(rendering: km.Rendering) -> None:
    transcribe = rendering.get("transcribe").request["envVars"]
    assert transcribe["WHISPER_CPU_THREADS"] == "1"
    orchestrator = rendering.get("orchestrator").request["envVars"]
    limits = dict(kv.split("=") for kv in orchestrator["FUNCTION_MEMORY_LIMITS"].split(","))
    assert set(limits) == set(rendering.names)
    # The endpoints name the Services these manifests create.
    minio = next(
        d for _, d in k8s_documents() if d["kind"] == "Service" and d["metadata"]["name"] == "minio"
    )
    port = minio["spec"]["ports"][0]["port"]
    assert (
        f"http://minio.{minio['metadata']['namespace']}.svc.cluster.local:{port}"
    ) == km.S3_ENDPOINT_IN_CLUSTER
    assert km.GATEWAY_IN_CLUSTER.startswith(f"http://gateway.{km.OPENFAAS_NAMESPACE}.svc")


# --------------------------------------------------------------------------------------------
# OpenFaaS values, kind config, registry, MinIO
# --------------------------------------------------------------------------------------------


def test_kind_openfaas_values(values: dict[str, Any]) -> None:
    assert values["basic_auth"] is True
    assert values["generateBasicAuth"] is True
    assert values["openfaasPro"] is False
    assert not (values.get("operator") or {}).get("create"), "the operator is Pro-only"
    assert values["functionNamespace"] == km.FUNCTION_NAMESPACE
    assert values["functions"]["httpProbe"] is True
    for probe in ("readinessProbe", "livenessProbe"):
        # CE hard-codes these; the file must say what actually runs.
        for key, number in values["functions"][probe].items():
            assert km.CE_PROBE[key] == number, f"{probe}.{key}"
    text = (MANIFESTS / "openfaas" / "values.yaml").read_text()
    assert "basic-auth-password" not in text and "password:" not in text


def test_kind_chart_pin() -> None:
    pin = yaml.safe_load((MANIFESTS / "openfaas" / "chart-pin.yaml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(pin["version"]))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", pin["digest"])
    assert pin["repository"].startswith("https://")
    assert pin["namespace"] == km.OPENFAAS_NAMESPACE


def test_kind_cluster_config_wires_the_local_registry() -> None:
    cluster = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster"
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    patch = "\n".join(cluster["containerdConfigPatches"])
    assert 'config_path = "/etc/containerd/certs.d"' in patch
    registry = yaml.safe_load((MANIFESTS / "kind" / "registry.yaml").read_text())
    assert f"localhost:{registry['host_port']}" == km.DEFAULT_REGISTRY
    hosting = yaml.safe_load((MANIFESTS / "kind" / "local-registry-hosting.yaml").read_text())
    assert hosting["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    spec = yaml.safe_load(hosting["data"]["localRegistryHosting.v1"])
    assert spec["host"] == km.DEFAULT_REGISTRY
    assert spec["hostFromContainerRuntime"] == f"{registry['name']}:{registry['container_port']}"


def test_kind_minio_manifests() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    deployment = docs[("Deployment", "minio")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    claim = deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert ("PersistentVolumeClaim", claim["claimName"]) in docs
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    job = docs[("Job", "minio-bootstrap")]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"]
    config = docs[("ConfigMap", "minio-bootstrap")]["data"]
    assert config["bucket"] == km.S3_BUCKET
    policy = json.loads(config["policy.json"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{km.S3_BUCKET}", f"arn:aws:s3:::{km.S3_BUCKET}/*"}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not any(a.startswith("admin:") or a in ("s3:*", "s3:CreateBucket") for a in actions)
    script = config["bootstrap.sh"]
    assert "anonymous set none" in script and "mb --ignore-existing" in script


def test_kind_go_durations() -> None:
    assert km.go_duration(905) == "905s"
    assert km.parse_go_duration("1m05s") == 65
    assert km.parse_go_duration("500ms") == 0.5
    for bad in ("", "5", "5 s", "1x"):
        with pytest.raises(ValueError):
            km.parse_go_duration(bad)


def test_kind_renderer_cli_writes_reviewable_files(tmp_path: Path) -> None:
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps({d.name: fake_digest(d.name) for d in load().functions}))
    code = km.main(["--tag", "v1", "--digests", str(digests), "--out", str(tmp_path / "out")])
    assert code == 0
    resources = list(yaml.safe_load_all((tmp_path / "out" / "functions.yaml").read_text()))
    assert [r["metadata"]["name"] for r in resources] == load().names
    assert (tmp_path / "out" / "deploy" / "search.json").exists()
    assert km.main(["--tag", "v1", "--out", str(tmp_path / "x")]) == 2  # no digests: refused
