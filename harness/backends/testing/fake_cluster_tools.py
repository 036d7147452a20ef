"""Fake ``kind``, ``kubectl``, ``helm``, ``docker`` and ``skopeo`` for testing the kind backend.

:func:`install` writes one small executable per tool into a directory (put it first on PATH).
Each call appends ``{"tool", "argv", ...}`` to a JSON-lines log and answers like the real tool
from a shared JSON state file (a fake cluster: containers, secrets, pods, functions). Each call
also checks its command line against the real tools' syntax: an unknown subcommand or flag, or a
flag without its value, exits 64 and logs an ``error`` (tests assert there is none).

``kubectl port-forward`` really listens on the local ports it is given: remote 8080 is a fake
OpenFaaS CE gateway (basic auth, the CE rules: no replicas 0, scale.max <= 5, images fetched
anonymously so ``localhost`` registries are refused), 8082 its metrics, 9000 a MinIO health
endpoint, or a TCP relay to ``FAKE_KIND_S3`` (host:port) when set so uploads reach a real S3.

Stdin is never logged (secrets travel there); only the kinds and names of the objects it held.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOOLS = ("kind", "kubectl", "helm", "docker", "skopeo")
#: What the fake helm pull writes; tests pin the chart to its sha256.
FAKE_CHART_BYTES = b"fake openfaas chart archive\n"
FAKE_REGISTRY_IP = "172.18.0.5"
#: What the fake API server answers on /version.
FAKE_SERVER_VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.4",
    "gitCommit": "fake0000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-02-10T12:53:36Z",
    "platform": "linux/amd64",
}


class Usage(Exception):
    """The command line is not one the real tool accepts."""


# --------------------------------------------------------------------------------------------
# The real tools' syntax (the subset the backend may use), checked on every call
# --------------------------------------------------------------------------------------------

# name -> takes a value. Aliases map to one name.
_KUBECTL_GLOBAL = {"--kubeconfig": True, "--context": True, "--namespace": True, "-n": True}
SPECS: dict[str, dict[tuple[str, ...], dict[str, bool]]] = {
    "kind": {
        ("get", "clusters"): {},
        ("get", "nodes"): {"--name": True},
        ("create", "cluster"): {
            "--name": True,
            "--config": True,
            "--kubeconfig": True,
            "--wait": True,
            "--image": True,
            "--retain": False,
        },
        ("delete", "cluster"): {"--name": True, "--kubeconfig": True},
        ("export", "kubeconfig"): {"--name": True, "--kubeconfig": True, "--internal": False},
        ("version",): {},
    },
    "kubectl": {
        ("apply",): {"-f": True, "--filename": True},
        ("create",): {"-f": True, "--filename": True},
        ("replace",): {"-f": True, "--filename": True},
        ("get",): {
            "-o": True,
            "--output": True,
            "-l": True,
            "--selector": True,
            "--ignore-not-found": False,
            "--raw": True,
        },
        ("delete",): {
            "-l": True,
            "--selector": True,
            "--wait": True,
            "--ignore-not-found": False,
            "--grace-period": True,
            "-f": True,
            "--filename": True,
        },
        ("config", "current-context"): {},
        ("rollout", "status"): {"--timeout": True},
        ("wait",): {"--for": True, "--timeout": True},
        ("exec",): {"-c": True, "--container": True, "-i": False, "--stdin": False},
        ("port-forward",): {"--address": True},
        ("logs",): {
            "--all-containers": False,
            "--timestamps": False,
            "--previous": False,
            "-c": True,
            "--container": True,
        },
        ("describe",): {},
        ("scale",): {"--replicas": True},
        ("version",): {"--client": False, "-o": True, "--output": True},
    },
    "helm": {
        ("repo", "add"): {"--force-update": False},
        ("repo", "update"): {},
        ("pull",): {"--version": True, "--destination": True, "-d": True},
        ("upgrade",): {
            "--install": False,
            "-i": False,
            "--values": True,
            "-f": True,
            "--set": True,
            "--wait": False,
            "--timeout": True,
            "--create-namespace": False,
        },
        ("version",): {"--short": False},
        ("uninstall",): {"--wait": False},
    },
    "docker": {
        ("inspect",): {"--format": True, "-f": True},
        ("run",): {
            "--detach": False,
            "-d": False,
            "--restart": True,
            "--publish": True,
            "-p": True,
            "--network": True,
            "--name": True,
        },
        ("start",): {},
        ("rm",): {"--force": False, "-f": False},
        ("network", "connect"): {},
        ("exec",): {"--interactive": False, "-i": False},
        ("image", "inspect"): {"--format": True, "-f": True},
        ("push",): {},
        ("version",): {"--format": True, "-f": True},
    },
    "skopeo": {
        ("copy",): {"--all": False, "--dest-tls-verify": True},
        ("--version",): {},
    },
}
_GLOBAL = {
    "kind": {},
    "kubectl": _KUBECTL_GLOBAL,
    "helm": {"--kubeconfig": True, "--kube-context": True, "--namespace": True, "-n": True},
    "docker": {},
    "skopeo": {},
}
#: Tools whose flags stop at the first positional after the command (docker run/exec).
_POSITIONAL_STOPS = {("docker", "run"), ("docker", "exec")}


def parse(
    tool: str, argv: Sequence[str]
) -> tuple[tuple[str, ...], dict[str, list[str]], list[str]]:
    """(command path, flags, positionals); raises Usage for what the real tool would refuse."""
    commands = SPECS[tool]
    takes_value = {
        name for spec in [_GLOBAL[tool], *commands.values()] for name, v in spec.items() if v
    }
    # The command words: the leading non-flag tokens, skipping flags and their values (kubectl
    # and helm accept global flags before the command).
    words: list[tuple[int, str]] = []
    i = 0
    while i < len(argv) and len(words) < 2:
        token = argv[i]
        if token == "--":
            break
        if token.startswith("-"):
            if "=" not in token and token in takes_value:
                i += 1
        else:
            words.append((i, token))
        i += 1
    path: tuple[str, ...] | None = None
    used: set[int] = set()
    for n in (2, 1):
        candidate = tuple(w for _, w in words[:n])
        if len(candidate) == n and candidate in commands:
            path = candidate
            used = {j for j, _ in words[:n]}
            break
    if path is None:
        raise Usage(f"{tool}: unknown command {' '.join(w for _, w in words)!r}")
    allowed = {**_GLOBAL[tool], **commands[path]}
    flags: dict[str, list[str]] = {}
    positionals: list[str] = []
    rest = [a for j, a in enumerate(argv) if j not in used]
    i = 0
    stop = (tool, path[0]) in _POSITIONAL_STOPS
    while i < len(rest):
        token = rest[i]
        if token == "--":
            positionals.extend(rest[i:])
            break
        if token.startswith("-") and not (stop and positionals):
            name, eq, value = token.partition("=")
            if name not in allowed:
                raise Usage(f"{tool} {' '.join(path)}: unknown flag {name}")
            if allowed[name] and not eq:
                if i + 1 >= len(rest):
                    raise Usage(f"{tool} {' '.join(path)}: flag {name} needs a value")
                value = rest[i + 1]
                i += 1
            flags.setdefault(name, []).append(value if allowed[name] else "true")
        else:
            positionals.append(token)
            if stop:
                positionals.extend(rest[i + 1 :])
                break
        i += 1
    return path, flags, positionals


def flag(flags: dict[str, list[str]], *names: str, default: str | None = None) -> str | None:
    for name in names:
        if name in flags:
            return flags[name][-1]
    return default


# --------------------------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------------------------


def _paths() -> tuple[Path, Path]:
    return Path(os.environ["FAKE_KIND_STATE"]), Path(os.environ["FAKE_KIND_LOG"])


@contextlib.contextmanager
def state_lock() -> Iterator[dict[str, Any]]:
    state_path, _ = _paths()
    lock = state_path.with_suffix(".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            state = json.loads(state_path.read_text()) if state_path.exists() else {}
            yield state
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(state_path)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log(entry: dict[str, Any]) -> None:
    _, log_path = _paths()
    with log_path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _now() -> float:
    return time.time()


# --------------------------------------------------------------------------------------------
# The fake cluster's pods
# --------------------------------------------------------------------------------------------

#: New pods become ready this long after creation; replacements of deleted pods take longer
#: (long enough for the backend's cold check, like a real image pull and model load).
POD_READY_AFTER_S = 0.2
REPLACEMENT_READY_AFTER_S = 2.0
POD_GONE_AFTER_S = 0.3


def _new_pod(function: str, now: float, ready_after: float = POD_READY_AFTER_S) -> dict[str, Any]:
    return {
        "uid": uuid.uuid4().hex,
        "name": f"{function}-{uuid.uuid4().hex[:6]}",
        "function": function,
        "created": now,
        "ready_at": now + ready_after,
        "deleted": None,
        "oom": False,
    }


def _pods_of(state: dict[str, Any], function: str | None = None) -> list[dict[str, Any]]:
    now = _now()
    pods = [
        p
        for p in state.setdefault("pods", [])
        if p["deleted"] is None or now < p["deleted"] + POD_GONE_AFTER_S
    ]
    state["pods"] = pods
    return [p for p in pods if function is None or p["function"] == function]


def _reconcile(
    state: dict[str, Any], function: str, ready_after: float = POD_READY_AFTER_S
) -> None:
    """The Deployment controller: keep `replicas` live pods."""
    now = _now()
    fn = state["functions"][function]
    live = [p for p in _pods_of(state, function) if p["deleted"] is None]
    for _ in range(fn["replicas"] - len(live)):
        state["pods"].append(_new_pod(function, now, ready_after))
    for extra in live[fn["replicas"] :]:
        extra["deleted"] = now


def _pod_json(p: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    ready = p["deleted"] is None and now >= p["ready_at"]
    meta: dict[str, Any] = {
        "name": p["name"],
        "uid": p["uid"],
        "namespace": "openfaas-fn",
        "labels": {"faas_function": p["function"]},
        "creationTimestamp": _iso(p["created"]),
    }
    if p["deleted"] is not None:
        meta["deletionTimestamp"] = _iso(p["deleted"])
    last: dict[str, Any] = {}
    if p.get("oom"):
        # The kubelet reports one kill with one fixed time, however often the pod is listed.
        finished = p.setdefault("oom_at", now)
        last = {
            "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": _iso(finished)}
        }
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "startTime": _iso(p["created"]),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": _iso(p["ready_at"] if ready else p["created"]),
                }
            ],
            "containerStatuses": [
                {
                    "name": p["function"],
                    "restartCount": 1 if p.get("oom") else 0,
                    "state": {"running": {"startedAt": _iso(p["created"])}},
                    "lastState": last,
                }
            ],
        },
    }


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    selector = selector.strip()
    m = re.fullmatch(r"(\S+)\s+in\s+\(([^)]*)\)", selector)
    if m:
        return labels.get(m.group(1)) in [v.strip() for v in m.group(2).split(",")]
    key, eq, value = selector.partition("=")
    if not eq:
        return key in labels
    return labels.get(key) == value


def _deployment_json(name: str, fn: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What faas-netes CE makes of a deployment request (written from its deploy.go, not from
    the backend's own prediction, so the comparison means something)."""
    r = fn["request"]
    drift = state.get("drift", {})
    ro = bool(r.get("readOnlyRootFilesystem"))
    probe = {
        "httpGet": {"path": "/_/health", "port": 8080},
        "initialDelaySeconds": 2,
        "timeoutSeconds": 1,
        "periodSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    mounts = [{"name": "temp", "mountPath": "/tmp", "readOnly": False}] if ro else []
    if r.get("secrets"):
        mounts.append(
            {
                "name": f"{name}-projected-secrets",
                "readOnly": True,
                "mountPath": "/var/openfaas/secrets",
            }
        )
    limits = dict(r.get("limits") or {})
    if drift.get("drop_limits"):
        limits = {}
    container = {
        "name": name,
        "image": r["image"],
        "env": [{"name": k, "value": v} for k, v in sorted((r.get("envVars") or {}).items())],
        "resources": {"limits": limits, "requests": dict(r.get("requests") or {})},
        "livenessProbe": probe,
        "readinessProbe": dict(probe),
        "securityContext": {"readOnlyRootFilesystem": ro, "runAsUser": 12000},
        "volumeMounts": mounts,
    }
    return {
        "metadata": {"name": name, "labels": {"faas_function": name}},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _stdin_objects() -> list[dict[str, Any]]:
    text = sys.stdin.read()
    return [d for d in yaml.safe_load_all(text) if d]


def kind(path: tuple[str, ...], flags: dict[str, list[str]], pos: list[str]) -> int:
    with state_lock() as state:
        clusters = state.setdefault("clusters", [])
        name = flag(flags, "--name", default="kind")
        if path == ("get", "clusters"):
            print("\n".join(clusters) if clusters else "No kind clusters found.", end="\n")
            return 0
        if path == ("version",):
            print("kind v0.33.0 go1.25 linux/amd64 (fake)")
            return 0
        if path == ("create", "cluster"):
            if name in clusters:
                return _fail(f'ERROR: failed to create cluster: node(s) already exist for "{name}"')
            config = yaml.safe_load(Path(str(flag(flags, "--config"))).read_text())
            if config.get("kind") != "Cluster" or config.get("name") != name:
                return _fail("ERROR: bad cluster config")
            clusters.append(name)
            state.setdefault("networks", {})["kind"] = True
        elif name not in clusters:
            return _fail(f'ERROR: unknown cluster "{name}"')
        if path == ("get", "nodes"):
            print(f"{name}-control-plane")
        elif path == ("delete", "cluster"):
            clusters.remove(name)
        kubeconfig = flag(flags, "--kubeconfig")
        if kubeconfig and path in (("create", "cluster"), ("export", "kubeconfig")):
            Path(kubeconfig).write_text(f"# fake kubeconfig for kind-{name}\n")
        return 0


def docker(path: tuple[str, ...], flags: dict[str, list[str]], pos: list[str]) -> int:
    with state_lock() as state:
        containers = state.setdefault("containers", {})
        if path == ("version",):
            print("28.2.2")
            return 0
        if path == ("inspect",):
            fmt = flag(flags, "--format", "-f")
            c = containers.get(pos[0])
            if c is None:
                return _fail(f"Error: No such object: {pos[0]}")
            if fmt == "{{.State.Running}}":
                print("true" if c["running"] else "false")
            elif fmt == "{{json .NetworkSettings.Networks}}":
                print(json.dumps(c["networks"]))
            else:
                return _fail(f"fake docker: unsupported --format {fmt!r}", 64)
            return 0
        if path == ("run",):
            name = str(flag(flags, "--name"))
            if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", pos[0]):
                return _fail(f"fake docker: image not pinned by digest: {pos[0]}", 65)
            containers[name] = {
                "running": True,
                "image": pos[0],
                "networks": {"bridge": {"IPAddress": "172.17.0.2"}},
            }
            print(uuid.uuid4().hex)
            return 0
        if path == ("start",):
            containers[pos[0]]["running"] = True
            return 0
        if path == ("rm",):
            containers.pop(pos[0], None)
            return 0
        if path == ("network", "connect"):
            network, name = pos
            if not state.get("networks", {}).get(network):
                return _fail(f"Error response from daemon: network {network} not found")
            containers[name]["networks"][network] = {"IPAddress": FAKE_REGISTRY_IP}
            return 0
        if path == ("exec",):
            node, *command = pos
            files = state.setdefault("node_files", {}).setdefault(node, {})
            if command[:2] == ["mkdir", "-p"]:
                for directory in command[2:]:
                    files[directory + "/"] = ""
            elif command[:2] == ["cp", "/dev/stdin"]:
                if "--interactive" not in flags and "-i" not in flags:
                    return _fail("fake docker: cp /dev/stdin without --interactive reads nothing")
                files[command[2]] = sys.stdin.read()
            else:
                return _fail(f"fake docker exec: unexpected command {command}", 64)
            return 0
        if path == ("image", "inspect"):
            if flag(flags, "--format", "-f") != "{{json .RepoTags}}":
                return _fail("fake docker: unsupported image inspect --format", 64)
            local = state.get("local_images", [])
            for image in pos:
                if image in local:
                    print(json.dumps([image]))
            missing = [i for i in pos if i not in local]
            return _fail(f"Error: No such image: {missing[0]}") if missing else 0
        if path == ("push",):
            if pos[0] not in state.get("local_images", []):
                return _fail(f"An image does not exist locally with the tag: {pos[0]}")
            state.setdefault("pushed", {})[pos[0]] = (
                "sha256:" + hashlib.sha256(pos[0].encode()).hexdigest()
            )
            return 0
    return _fail(f"fake docker: unhandled {path}", 64)


def skopeo(path: tuple[str, ...], flags: dict[str, list[str]], pos: list[str]) -> int:
    if path == ("--version",):
        print("skopeo version 1.13.3 (fake)")
        return 0
    src, dst = pos
    if not src.startswith("oci:") or not dst.startswith("docker://"):
        return _fail("fake skopeo: expected oci:DIR docker://REF", 64)
    if not (Path(src[4:]) / "index.json").exists():
        return _fail(f"fake skopeo: no OCI layout at {src[4:]}")
    with state_lock() as state:
        ref = dst.removeprefix("docker://")
        # skopeo copies the layout's manifest byte for byte: the registry serves its digest.
        index = json.loads((Path(src[4:]) / "index.json").read_text())
        manifests = index.get("manifests") or []
        own = manifests[0]["digest"] if len(manifests) == 1 else None
        state.setdefault("pushed", {})[ref] = (
            own or "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        )
    return 0


def helm(path: tuple[str, ...], flags: dict[str, list[str]], pos: list[str]) -> int:
    with state_lock() as state:
        if path == ("version",):
            print("v3.18.4+gfake")
        elif path == ("repo", "add"):
            state.setdefault("helm_repos", {})[pos[0]] = pos[1]
        elif path == ("repo", "update"):
            if any(r not in state.get("helm_repos", {}) for r in pos):
                return _fail("Error: no repositories found matching the provided name")
        elif path == ("uninstall",):
            if state.get("helm_releases", {}).pop(pos[0], None) is None:
                return _fail(f"Error: uninstall: Release not loaded: {pos[0]}: release: not found")
        elif path == ("pull",):
            repo, _, chart = pos[0].partition("/")
            if repo not in state.get("helm_repos", {}):
                return _fail(f"Error: repo {repo} not found")
            version = flag(flags, "--version")
            dest = Path(str(flag(flags, "--destination", "-d", default=".")))
            (dest / f"{chart}-{version}.tgz").write_bytes(FAKE_CHART_BYTES)
        elif path == ("upgrade",):
            if "--install" not in flags and "-i" not in flags:
                return _fail("Error: UPGRADE FAILED: release has no deployed releases")
            release, chart = pos
            if not Path(chart).exists():
                return _fail(f"Error: path {chart} not found")
            for values in flags.get("--values", []) + flags.get("-f", []):
                yaml.safe_load(Path(values).read_text())
            if not flag(flags, "--kube-context"):
                return _fail("fake helm: refusing to install without --kube-context", 64)
            state.setdefault("helm_releases", {})[release] = {
                "chart": chart,
                "set": flags.get("--set", []),
            }
            secrets = state.setdefault("secrets", {})
            # The chart's pre-install hook: a generated password in openfaas/basic-auth.
            secrets.setdefault(
                "openfaas/basic-auth",
                {"basic-auth-user": _b64("admin"), "basic-auth-password": _b64(uuid.uuid4().hex)},
            )
    return 0


def kubectl(path: tuple[str, ...], flags: dict[str, list[str]], pos: list[str]) -> int:
    # `version --client` talks to no cluster; everything else must name ours.
    unnamed = flag(flags, "--context") is None or flag(flags, "--kubeconfig") is None
    if path == ("config", "current-context"):
        kubeconfig = flag(flags, "--kubeconfig")
        if kubeconfig is None or not Path(kubeconfig).exists():
            return _fail("error: current-context is not set")
        for line in Path(kubeconfig).read_text().splitlines():
            if line.startswith("current-context:"):
                print(line.split(":", 1)[1].strip())
                return 0
        return _fail("error: current-context is not set")
    if unnamed and not (path == ("version",) and "--client" in flags):
        return _fail("fake kubectl: every call must name --kubeconfig and --context", 64)
    ns = flag(flags, "--namespace", "-n", default="default")
    if path == ("port-forward",):
        return port_forward(str(ns), pos, flags)
    with state_lock() as state:
        secrets = state.setdefault("secrets", {})
        if path in (("apply",), ("create",), ("replace",)):
            source = flag(flags, "-f", "--filename")
            if source == "-":
                objects = _stdin_objects()
            else:
                objects = [d for d in yaml.safe_load_all(Path(str(source)).read_text()) if d]
            names = []
            for obj in objects:
                meta = obj["metadata"]
                key = f"{meta.get('namespace', ns)}/{meta['name']}"
                names.append(f"{obj['kind']}/{key}")
                if obj["kind"] == "Secret":
                    if path == ("apply",):
                        return _fail("fake kubectl: secrets must not be applied", 65)
                    exists = key in secrets
                    if path == ("create",) and exists:
                        return _fail(f'Error from server (AlreadyExists): secrets "{key}"')
                    if path == ("replace",) and not exists:
                        return _fail(f'Error from server (NotFound): secrets "{key}" not found')
                    data = {k: _b64(v) for k, v in (obj.get("stringData") or {}).items()}
                    secrets[key] = data
                namespaces = state.setdefault("namespaces", [])
                if obj["kind"] == "Namespace" and meta["name"] not in namespaces:
                    namespaces.append(meta["name"])
                if obj["kind"] == "Deployment" and key not in state.setdefault("deployments", []):
                    state["deployments"].append(key)
                if obj["kind"] == "Deployment" and meta["name"] == "gateway":
                    state["openfaas_gateway"] = "local"
                    state["gateway_deployment"] = obj
                state.setdefault("applied", []).append(f"{obj['kind']}/{key}")
            log({"tool": "kubectl", "objects": names})
            return 0
        if path == ("get",):
            raw = flag(flags, "--raw")
            if raw is not None:
                if raw != "/version":
                    return _fail(f"fake kubectl: get --raw {raw} not faked", 64)
                print(json.dumps(FAKE_SERVER_VERSION))
                return 0
            resource = pos[0]
            if resource == "namespace":
                if pos[1] not in state.get("namespaces", []):
                    return _fail(f'Error from server (NotFound): namespaces "{pos[1]}" not found')
                print(f"namespace/{pos[1]}")
                return 0
            if resource == "deployment" and ns == "openfaas" and pos[1:] == ["gateway"]:
                if not (state.get("openfaas_gateway") or state.get("helm_releases")):
                    return _fail('Error from server (NotFound): deployments "gateway" not found')
                if flag(flags, "-o", "--output") == "json":
                    print(json.dumps(state.get("gateway_deployment") or {"kind": "Deployment"}))
                else:
                    print("deployment.apps/gateway")
                return 0
            if resource == "deployment" and len(pos) == 2:
                if f"{ns}/{pos[1]}" not in state.get("deployments", []):
                    return _fail(f'Error from server (NotFound): deployments "{pos[1]}" not found')
                print(f"deployment.apps/{pos[1]}")
                return 0
            selector = flag(flags, "-l", "--selector")
            if resource == "secret":
                data = secrets.get(f"{ns}/{pos[1]}")
                if data is None:
                    return _fail(f'Error from server (NotFound): secrets "{pos[1]}" not found')
                print(json.dumps({"kind": "Secret", "data": data}))
                return 0
            if resource == "pods":
                items = []
                if ns == "openfaas-fn":
                    items = [
                        _pod_json(p)
                        for p in _pods_of(state)
                        if not selector
                        or _selector_matches(selector, {"faas_function": p["function"]})
                    ]
                elif ns in ("openfaas", "vsearch"):
                    items = [_pod_json(_new_pod("gateway" if ns == "openfaas" else "minio", 0))]
                print(json.dumps({"kind": "List", "items": items}))
                return 0
            if resource == "deployments":
                items = [
                    _deployment_json(name, fn, state)
                    for name, fn in state.get("functions", {}).items()
                ]
                print(json.dumps({"kind": "List", "items": items}))
                return 0
            if resource == "events":
                print(json.dumps({"kind": "List", "items": []}))
                return 0
            return _fail(f"fake kubectl: get {resource} not faked", 64)
        if path == ("delete",):
            source = flag(flags, "-f", "--filename")
            resource = pos[0] if pos else ""
            removed = [source] if source else pos
            if source and source != "-" and Path(str(source)).is_file():
                for obj in yaml.safe_load_all(Path(str(source)).read_text()):
                    if obj and obj.get("kind") == "Deployment":
                        key = f"{obj['metadata'].get('namespace', ns)}/{obj['metadata']['name']}"
                        with contextlib.suppress(ValueError):
                            state.get("deployments", []).remove(key)
            state.setdefault("deleted", []).append({"namespace": ns, "objects": removed})
            if resource == "namespace":
                state["namespaces"] = [n for n in state.get("namespaces", []) if n not in pos[1:]]
            if resource == "secret":
                secrets.pop(f"{ns}/{pos[1]}", None)
            for target in pos:
                kind_, _, name = target.partition("/")
                if kind_ == "deployment" and ns == "openfaas-fn":
                    state.get("functions", {}).pop(name, None)
            if resource == "pods":
                selector = str(flag(flags, "-l", "--selector"))
                now = _now()
                for p in _pods_of(state):
                    if p["deleted"] is None and _selector_matches(
                        selector, {"faas_function": p["function"]}
                    ):
                        p["deleted"] = now
                for function in state.get("functions", {}):
                    _reconcile(state, function, REPLACEMENT_READY_AFTER_S)
            return 0
        if path == ("scale",):
            # Only our provider leaves a Deployment at 0 (faas-netes scales it back to 1).
            replicas = int(str(flag(flags, "--replicas")))
            kind_, names = (pos[0].partition("/")[0], [pos[0].partition("/")[2]])
            if kind_ == "deployment" and not names[0]:
                names = pos[1:]
            functions = state.get("functions", {})
            if kind_ != "deployment" or ns != "openfaas-fn" or not names:
                return _fail(f"fake kubectl scale: {pos} in {ns} not faked", 64)
            for name in names:
                if name not in functions:
                    return _fail(f'Error from server (NotFound): deployments "{name}" not found')
                if state.get("openfaas_gateway") == "local" or replicas > 0:
                    functions[name]["replicas"] = replicas
                _reconcile(state, name)
            log({"tool": "kubectl", "scaled": names, "replicas": replicas})
            return 0
        if path == ("exec",):
            if pos[1:3] != ["--", "python3"] or "-c" not in pos:
                return _fail(f"fake kubectl exec: unexpected command {pos[1:4]}", 64)
            print(json.dumps(state.get("cgroup", {"peak": "104857600"})))
            return 0
        if path == ("logs",):
            print(f"fake log line of {pos[0]}")
            return 0
        if path == ("describe",):
            print(f"Name: fake pods in {ns}")
            return 0
        if path in (("rollout", "status"), ("wait",)):
            if path == ("wait",) and not str(flag(flags, "--for")).startswith("condition="):
                return _fail("fake kubectl wait: --for must be condition=...", 64)
            return 0
        if path == ("version",):
            print("Client Version: v1.36.0 (fake)")
            return 0
    return _fail(f"fake kubectl: unhandled {path}", 64)


# --------------------------------------------------------------------------------------------
# port-forward: a fake OpenFaaS CE gateway, its metrics, MinIO
# --------------------------------------------------------------------------------------------


def _status(state: dict[str, Any], name: str) -> dict[str, Any]:
    fn = state["functions"][name]
    r = fn["request"]
    pods = [p for p in _pods_of(state, name) if p["deleted"] is None]
    return {
        "name": name,
        "image": r["image"],
        "namespace": "openfaas-fn",
        "labels": r.get("labels") or {},
        "annotations": r.get("annotations") or {},
        "replicas": fn["replicas"],
        "availableReplicas": sum(1 for p in pods if _now() >= p["ready_at"]),
        "invocationCount": 0,
    }


class _Gateway(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any = None) -> None:
        data = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self, state: dict[str, Any]) -> bool:
        creds = state.get("secrets", {}).get("openfaas/basic-auth") or {}
        user = base64.b64decode(creds.get("basic-auth-user", "")).decode()
        password = base64.b64decode(creds.get("basic-auth-password", "")).decode()
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return bool(password) and self.headers.get("Authorization") == expected

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"OK")
            return
        with state_lock() as state:
            if not self._authorized(state):
                self._send(401, b"unauthorized")
                return
            functions = state.setdefault("functions", {})
            if self.path == "/system/info":
                # The local manifests run our provider; anything else is faas-netes CE.
                ours = state.get("openfaas_gateway") == "local"
                self._send(
                    200,
                    {
                        "provider": {
                            "provider": "vsearch-faas-provider" if ours else "faas-netes-ce (fake)",
                            "orchestration": "kubernetes",
                            "version": {"release": "0.18.13-fake", "sha": "f00d"},
                        },
                        "version": {"release": "0.27.13-fake", "sha": "beef"},
                        "arch": "x86_64",
                    },
                )
            elif self.path == "/system/functions":
                self._send(200, [_status(state, n) for n in functions])
            elif self.path.startswith("/system/function/"):
                name = self.path.split("/")[3].split("?")[0]
                if name in functions:
                    self._send(200, _status(state, name))
                else:
                    self._send(404, b"not found")
            else:
                self._send(404, b"no route")

    def do_POST(self) -> None:
        self._write("POST")

    def do_PUT(self) -> None:
        self._write("PUT")

    def _write(self, method: str) -> None:
        body = self._body()
        with state_lock() as state:
            if not self._authorized(state):
                self._send(401, b"unauthorized")
                return
            functions = state.setdefault("functions", {})
            if self.path == "/system/functions":
                error = _validate_deploy(state, body, method)
                if error:
                    log({"tool": "gateway", "refused": body.get("service"), "error": error})
                    self._send(400, error.encode())
                    return
                name = body["service"]
                labels = body.get("labels") or {}
                replicas = int(labels.get("com.openfaas.scale.min", 1))
                if (
                    state.get("openfaas_gateway") == "local"
                    and labels.get("com.openfaas.scale.zero") == "true"
                ):
                    # Our provider's idler, at its quickest: an idle function goes to 0 at once.
                    replicas = 0
                if method == "POST":
                    functions[name] = {"request": body, "replicas": replicas}
                else:
                    functions[name]["request"] = body
                _reconcile(state, name)
                log({"tool": "gateway", method.lower(): name})
                self._send(202)
            elif self.path.startswith("/system/scale-function/"):
                name = self.path.split("/")[3]
                if name not in functions:
                    self._send(404, b"not found")
                elif int(body.get("replicas", -1)) == 0:
                    self._send(400, b"replicas cannot be set to 0 in OpenFaaS CE")
                else:
                    functions[name]["replicas"] = min(5, int(body["replicas"]))
                    _reconcile(state, name)
                    log({"tool": "gateway", "scale": name, "replicas": body["replicas"]})
                    self._send(202)
            else:
                self._send(404, b"no route")


def _validate_deploy(state: dict[str, Any], body: Any, method: str) -> str | None:
    """faas-netes CE's checks (handlers/deploy.go, validate.go), as error messages."""
    if not isinstance(body, dict) or not body.get("service") or not body.get("image"):
        return "service and image are required"
    exists = body["service"] in state.get("functions", {})
    if method == "POST" and exists:
        return "function already exists"
    if method == "PUT" and not exists:
        return "function not found"
    if body.get("namespace", "openfaas-fn") != "openfaas-fn":
        return "namespace must be: openfaas-fn"
    host = body["image"].split("/")[0]
    faas_netes = not state.get("openfaas_gateway")  # the chart's; else a provider of ours
    if faas_netes and (host.startswith("localhost") or host.startswith("127.")):
        # The anonymous HEAD runs inside the faas-netes pod, where localhost is the pod itself.
        return "the Community Edition license agreement only allows public images"
    labels = body.get("labels") or {}
    for key in ("com.openfaas.scale.zero-duration", "com.openfaas.scale.target"):
        if faas_netes and key in labels:
            return f"{key} not available for Community Edition"
    if faas_netes and labels.get("com.openfaas.scale.zero") == "true":
        return "com.openfaas.scale.zero not available for Community Edition"
    for key in ("com.openfaas.scale.max", "com.openfaas.scale.min"):
        if int(labels.get(key, 1)) > 5:
            return f"{key} is set too high for Community Edition"
    if len(state.get("functions", {})) + (0 if exists else 1) > 15:
        return "unable to create function, maximum: 15"
    for secret in body.get("secrets") or []:
        if f"openfaas-fn/{secret}" not in state.get("secrets", {}):
            return f"Required secret '{secret}' was not found in the cluster"
    return None


class _Metrics(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with state_lock() as state:
            names = list(state.get("functions", {}))
        lines = [
            f'gateway_function_invocation_total{{code="200",function_name="{n}.openfaas-fn"}} 2'
            for n in names
        ]
        data = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _MinioHealth(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/minio/health/live" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _relay(local_port: int, upstream: str) -> None:
    host, _, port = upstream.rpartition(":")
    server = socket.create_server(("127.0.0.1", local_port))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    while True:
        client, _ = server.accept()
        first = client.recv(65536)
        if first.startswith(b"GET /minio/health/live "):
            # MinIO's health endpoint, which the S3 server behind the relay does not have.
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
            continue
        remote = socket.create_connection((host, int(port)))
        remote.sendall(first)
        threading.Thread(target=pipe, args=(client, remote), daemon=True).start()
        threading.Thread(target=pipe, args=(remote, client), daemon=True).start()


def port_forward(ns: str, pos: list[str], flags: dict[str, list[str]]) -> int:
    if flag(flags, "--address") != "127.0.0.1":
        return _fail("fake kubectl: port-forward must bind 127.0.0.1 only", 64)
    target, *mappings = pos
    if not re.fullmatch(r"(deployment|service|pod)/[a-z0-9-]+", target):
        return _fail(f"error: invalid resource name {target!r}", 64)
    with state_lock() as state:
        failures = state.get("port_forward_failures", 0)
        if failures:
            state["port_forward_failures"] = failures - 1
            print(f"error: unable to forward port because pod is not running (fake, {target})")
            sys.stdout.flush()
            return 1
    threads = []
    for mapping in mappings:
        local, _, remote = mapping.partition(":")
        handler: type[BaseHTTPRequestHandler] | None = {
            "8080": _Gateway,
            "8082": _Metrics,
            "9000": _MinioHealth,
        }.get(remote)
        if remote == "9000" and os.environ.get("FAKE_KIND_S3"):
            thread = threading.Thread(
                target=_relay, args=(int(local), os.environ["FAKE_KIND_S3"]), daemon=True
            )
        elif handler is not None:
            server = ThreadingHTTPServer(("127.0.0.1", int(local)), handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
        else:
            return _fail(f"fake kubectl: nothing listens on remote port {remote}", 64)
        thread.start()
        threads.append(thread)
        print(f"Forwarding from 127.0.0.1:{local} -> {remote}")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


# --------------------------------------------------------------------------------------------
# Entry point and installation
# --------------------------------------------------------------------------------------------

HANDLERS = {"kind": kind, "kubectl": kubectl, "helm": helm, "docker": docker, "skopeo": skopeo}


def main(tool: str, argv: Sequence[str]) -> int:
    entry: dict[str, Any] = {"tool": tool, "argv": list(argv), "t": _now()}
    try:
        path, flags, pos = parse(tool, argv)
    except Usage as exc:
        entry["error"] = str(exc)
        log(entry)
        print(str(exc), file=sys.stderr)
        return 64
    log(entry)
    code = HANDLERS[tool](path, flags, pos)
    if code == 64:
        log({"tool": tool, "argv": list(argv), "error": "unsupported by the fake"})
    return code


def install(bin_dir: Path, state: Path, log_path: Path) -> dict[str, str]:
    """Write the fake tools into ``bin_dir``; returns the environment to run them with."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[3]
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(root)!r})\n"
            "from harness.backends.testing.fake_cluster_tools import main\n"
            f"sys.exit(main({tool!r}, sys.argv[1:]))\n"
        )
        script.chmod(0o755)
    if not state.exists():
        state.write_text("{}")
    log_path.touch()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_KIND_STATE": str(state),
        "FAKE_KIND_LOG": str(log_path),
    }


def read_log(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
