"""The platform builder: pins read from our wrapper modules, real go builds, cache reuse."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cluster import builder
from harness.cluster.builder import COMPONENTS, Component, PlatformBuildError


@pytest.mark.parametrize("name", sorted(n for n, c in COMPONENTS.items() if not c.source_dir))
def test_every_component_is_pinned_and_checked_by_go_sum(name: str) -> None:
    component = COMPONENTS[name]
    version = builder.pinned_version(component)
    assert builder.PSEUDO.match(version) or version.startswith("v"), version
    go_sum = (component.wrapper_dir / "go.sum").read_text()
    # go.sum holds both the module's zip hash and its go.mod hash for the pinned version.
    assert f"{component.module} {version} h1:" in go_sum
    assert f"{component.module} {version}/go.mod h1:" in go_sum


def test_our_provider_is_versioned_by_its_sources(tmp_path: Path) -> None:
    provider = COMPONENTS["faas-provider"]
    version = builder.pinned_version(provider)
    assert version == f"v0.0.0-src.{builder.source_digest(provider.wrapper_dir)[:12]}"
    flags = builder.ldflags(provider, version)
    assert f"-X main.Version={version}" in flags
    assert f"-X main.GitCommit={version[-12:]}" in flags
    copy = tmp_path / "provider"
    shutil.copytree(provider.wrapper_dir, copy)
    assert builder.source_digest(copy) == builder.source_digest(provider.wrapper_dir)
    (copy / "main.go").write_text((copy / "main.go").read_text() + "\n")
    assert builder.source_digest(copy) != builder.source_digest(provider.wrapper_dir)


def test_ldflags_carry_the_commit_of_a_pseudo_version() -> None:
    flags = builder.ldflags(COMPONENTS["minio"], "v0.0.0-20260212201848-7aac2a2c5b7c")
    assert "-X github.com/minio/minio/cmd.Version=2026-02-12T20:18:48Z" in flags
    assert "-X github.com/minio/minio/cmd.CommitID=7aac2a2c5b7c" in flags
    assert "-X github.com/minio/minio/cmd.ReleaseTag=DEVELOPMENT.2026-02-12T20-18-48Z" in flags
    assert flags.startswith("-s -w")


def test_kubernetes_binaries_are_stamped_with_the_pinned_release() -> None:
    origin = {"git_commit": "0123abcd" * 5, "source_date": "2026-02-10T12:53:36Z"}
    flags = builder.ldflags(COMPONENTS["kubectl"], "v1.34.4", origin)
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=34" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMajor=1" in flags
    assert f"-X k8s.io/component-base/version.gitCommit={'0123abcd' * 5}" in flags
    assert "-X k8s.io/client-go/pkg/version.buildDate=2026-02-10T12:53:36Z" in flags
    assert "$Format" not in flags and "{" not in flags
    with pytest.raises(ValueError, match="origin"):
        builder.ldflags(COMPONENTS["kube-apiserver"], "v1.34.4")


def _fake_go(tmp_path: Path, info: str, origin: str = "") -> str:
    """A `go` that answers `mod download -json` as the proxy's metadata would."""
    (tmp_path / "v.info").write_text(info)
    go = tmp_path / "go"
    go.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2 $3" = "mod download -json" ] || exit 2\n'
        "cat <<EOF\n"
        f'{{"Path": "k8s.io/kubernetes", "Version": "v1.34.4", "Info": "{tmp_path}/v.info",'
        f' "Sum": "h1:Yy6R4QB8C9kJPp25GFqEvX5XQwY5qzKeqD0Xx6oAcmk="{origin}}}\n'
        "EOF\n"
    )
    go.chmod(0o755)
    return str(go)


def test_module_origin_takes_the_proxy_commit_and_the_version_time(tmp_path: Path) -> None:
    go = _fake_go(
        tmp_path,
        '{"Version": "v1.34.4", "Time": "2026-02-10T13:53:36+01:00"}',
        ', "Origin": {"VCS": "git", "Hash": "' + "ab" * 20 + '"}',
    )
    got = builder.module_origin(COMPONENTS["kubelet"], "v1.34.4", go, tmp_path)
    assert got == {"git_commit": "ab" * 20, "source_date": "2026-02-10T12:53:36Z"}


def test_module_origin_without_a_commit_names_the_zip_it_built(tmp_path: Path) -> None:
    # What this machine's proxy serves for k8s.io/kubernetes v1.34.4: no Origin at all.
    go = _fake_go(tmp_path, '{"Version":"v1.34.4","Time":"2026-02-10T12:53:36Z"}')
    got = builder.module_origin(COMPONENTS["kubelet"], "v1.34.4", go, tmp_path)
    assert got["git_commit"] == "h1:Yy6R4QB8C9kJPp25GFqEvX5XQwY5qzKeqD0Xx6oAcmk="
    assert got["source_date"] == "2026-02-10T12:53:36Z"
    (tmp_path / "go").write_text("#!/bin/sh\necho 'not found' >&2\nexit 1\n")
    with pytest.raises(PlatformBuildError, match="not found"):
        builder.module_origin(COMPONENTS["kubelet"], "v1.34.4", str(tmp_path / "go"), tmp_path)


def _wrapper(tmp_path: Path, message: str = "hello") -> Component:
    """A wrapper module pinning a local 'third-party' module (replace: no network needed)."""
    dep = tmp_path / "hello"
    dep.mkdir()
    (dep / "go.mod").write_text("module example.com/hello\n\ngo 1.24\n")
    (dep / "main.go").write_text(
        'package main\n\nimport "fmt"\n\nvar Version = "unset"\n\n'
        f'func main() {{ fmt.Println("{message}", Version) }}\n'
    )
    modules = tmp_path / "modules"
    wrapper = modules / "hello"
    wrapper.mkdir(parents=True)
    (wrapper / "go.mod").write_text(
        "module vsearch.local/platform/hello\n\ngo 1.24\n\ntool example.com/hello\n\n"
        "require example.com/hello v1.2.3\n\nreplace example.com/hello => ../../hello\n"
    )
    (wrapper / "go.sum").write_text("")
    return Component(
        name="hello",
        module="example.com/hello",
        package="example.com/hello",
        x_flags=("main.Version={version}",),
        modules_dir=modules,
    )


@pytest.fixture
def go() -> str:
    try:
        return builder.find_go()
    except PlatformBuildError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def gocache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Go build cache for these tests: the standard library is compiled once, not per test."""
    return tmp_path_factory.mktemp("go-build")


def test_build_then_reuse_then_rebuild_when_go_sum_changes(
    tmp_path: Path, go: str, gocache: Path
) -> None:
    component = _wrapper(tmp_path)
    cache = tmp_path / "cache"
    first = builder.build(component, cache=cache, go=go, gocache=gocache)
    assert not first.reused
    assert first.binary == cache / "example.com/hello@v1.2.3" / "hello"
    out = subprocess.run([str(first.binary)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "hello v1.2.3"  # the pinned version linked in by -X
    assert first.record.version == "v1.2.3" and first.record.go_version.startswith("go")
    assert builder.cached(component, cache=cache) == first.binary
    assert builder.cached(component, cache=tmp_path / "empty") is None

    again = builder.build(component, cache=cache, go=go, gocache=gocache)
    assert again.reused and again.record == first.record

    # A different go.sum is a different set of inputs: built again, not reused.
    (component.wrapper_dir / "go.sum").write_text("example.com/other v1.0.0/go.mod h1:x=\n")
    third = builder.build(component, cache=cache, go=go, gocache=gocache)
    assert not third.reused and third.record.go_sum_sha256 != first.record.go_sum_sha256


def test_a_tampered_binary_is_rebuilt(tmp_path: Path, go: str, gocache: Path) -> None:
    component = _wrapper(tmp_path)
    cache = tmp_path / "cache"
    first = builder.build(component, cache=cache, go=go, gocache=gocache)
    first.binary.write_bytes(b"#!/bin/sh\necho tampered\n")
    second = builder.build(component, cache=cache, go=go, gocache=gocache)
    assert not second.reused
    assert builder._sha256(second.binary) == first.record.binary_sha256


def test_a_failing_build_reports_go_and_leaves_no_binary(
    tmp_path: Path, go: str, gocache: Path
) -> None:
    component = _wrapper(tmp_path)
    (tmp_path / "hello" / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    cache = tmp_path / "cache"
    with pytest.raises(PlatformBuildError, match="undefined"):
        builder.build(component, cache=cache, go=go, gocache=gocache)
    assert not list((cache / "example.com/hello@v1.2.3").glob("hello*"))


def test_a_wrapper_without_go_sum_is_refused(tmp_path: Path, go: str, gocache: Path) -> None:
    component = _wrapper(tmp_path)
    (component.wrapper_dir / "go.sum").unlink()
    with pytest.raises(PlatformBuildError, match=r"go\.sum is missing"):
        builder.build(component, cache=tmp_path / "cache", go=go, gocache=gocache)


def test_go_is_found_for_the_builder() -> None:
    if shutil.which("go") is None and not Path(builder.DEFAULT_GO).is_file():
        pytest.skip("no Go toolchain on this machine")
    assert builder.go_version(builder.find_go()).startswith("go1.")


def test_a_library_package_is_refused_not_cached(tmp_path: Path, go: str, gocache: Path) -> None:
    component = _wrapper(tmp_path)
    (tmp_path / "hello" / "main.go").write_text("package hello\n\nfunc Hello() {}\n")
    cache = tmp_path / "cache"
    with pytest.raises(PlatformBuildError, match="not a main package"):
        builder.build(component, cache=cache, go=go, gocache=gocache)
    assert builder.cached(component, cache=cache) is None


@pytest.mark.parametrize("name", ["pause", "netcheck"])
def test_our_node_programs_are_versioned_by_their_sources(name: str, tmp_path: Path) -> None:
    component = COMPONENTS[name]
    go_mod = (component.wrapper_dir / "go.mod").read_text()
    assert not [line for line in go_mod.splitlines() if line.startswith("require")]
    version = builder.pinned_version(component)
    assert version == f"v0.0.0-src.{builder.source_digest(component.wrapper_dir)[:12]}"
    copy = tmp_path / name
    shutil.copytree(component.wrapper_dir, copy)
    (copy / "main.go").write_text((copy / "main.go").read_text() + "\n")
    assert builder.source_digest(copy) != builder.source_digest(component.wrapper_dir)


def test_queue_worker_is_stamped_and_matches_the_gateways_queue_client() -> None:
    worker = COMPONENTS["queue-worker"]
    version = builder.pinned_version(worker)
    flags = builder.ldflags(worker, version)
    assert f"-X github.com/openfaas/nats-queue-worker/version.Version={version}" in flags
    assert f"-X github.com/openfaas/nats-queue-worker/version.GitCommit={version[-12:]}" in flags
    # The gateway publishes with the handler package of the same module: one pin for both
    # ends of the queue, and the same NATS Streaming client.
    gateway_mod = (COMPONENTS["openfaas-gateway"].wrapper_dir / "go.mod").read_text()
    worker_mod = (worker.wrapper_dir / "go.mod").read_text()
    assert f"{worker.module} {version} " in gateway_mod
    stan = re.compile(r"github.com/nats-io/stan.go (\S+)")
    assert stan.findall(gateway_mod) == stan.findall(worker_mod) != []
