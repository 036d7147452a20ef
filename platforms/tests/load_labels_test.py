"""The BUILD files work in both Bazel modes: they load only labels and names that both provide.

Every BUILD file of the main repository (and every .bzl of ours they load, transitively) is
parsed (Starlark is Python syntax). For each `load("@repo//pkg:file.bzl", "name")`:
- offline (WORKSPACE, Bazel 4.2.3): `repo` is declared in WORKSPACE and the stand-in file
  defines `name` (a `def` or an assignment at top level);
- online (MODULE.bazel, Bazel 8/9): `repo` is a bazel_dep or a use_repo() name of MODULE.bazel
  and `name` is in the public API of that module's version (ONLINE_API below, taken from
  rules_oci v2.2.6's oci/defs.bzl and rules_python 1.x's python/defs.bzl).
Loads of our own .bzl files (//platforms:...) are shared by both modes: the file must exist
and define the name. For calls of the rules_oci names, the keyword arguments used must be
attributes of both the real rule (ONLINE_API) and the stand-in. External repositories
referenced as labels (`@debs//:debs`) must exist in both modes, too.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import unittest
from pathlib import Path

#: Public names and attributes of the online modules (rules_oci 2.2.6, rules_python 1.x).
COMMON = {"name", "visibility", "tags", "testonly", "target_compatible_with", "compatible_with"}
ONLINE_API: dict[str, dict[str, set[str] | None]] = {
    "@rules_oci//oci:defs.bzl": {
        "oci_image": {
            "base", "tars", "entrypoint", "cmd", "env", "labels", "annotations",
            "exposed_ports", "volumes", "user", "workdir", "os", "architecture", "variant",
            "created", "resource_set",
        },
        "oci_image_index": {"images", "platforms"},
        "oci_load": {"image", "repo_tags", "format", "loader"},
        "oci_push": {"image", "repository", "repository_file", "remote_tags"},
        "oci_image_rule": None,
        "oci_image_index_rule": None,
        "oci_push_rule": None,
        "oci_tarball_rule": None,
    },
    "@rules_python//python:defs.bzl": {
        "py_binary": None,
        "py_library": None,
        "py_test": None,
        "py_runtime": None,
        "py_runtime_pair": None,
        "PyInfo": None,
        "PyRuntimeInfo": None,
    },
}  # fmt: skip


def workspace_root() -> Path:
    """The source tree (runfiles are symlinks into it)."""
    here = Path(os.path.realpath(__file__)).parent
    for candidate in [here, *here.parents]:
        if (candidate / "WORKSPACE").is_file() and (candidate / "MODULE.bazel").is_file():
            return candidate
    raise RuntimeError("no source tree with WORKSPACE and MODULE.bazel above " + str(here))


ROOT = workspace_root()


def build_files() -> list[Path]:
    ignored = [
        line.strip() for line in (ROOT / ".bazelignore").read_text().splitlines() if line.strip()
    ]
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [
            d for d in dirnames
            if os.path.normpath(os.path.join(rel, d)) not in ignored
            and not d.startswith("bazel-")
            and not (Path(dirpath) / d / "WORKSPACE").exists()  # another repository
        ]  # fmt: skip
        for name in ("BUILD", "BUILD.bazel"):
            if name in filenames:
                found.append(Path(dirpath) / name)
    return sorted(found)


def loads(tree: ast.AST) -> list[tuple[str, str, str]]:
    """(label, exported name, local name) of every load()."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load":
            label = node.args[0].value
            for arg in node.args[1:]:
                out.append((label, arg.value, arg.value))
            for kw in node.keywords:
                out.append((label, kw.value.value, kw.arg))
    return out


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "load"
        ):
            names.update(local for _, _, local in loads(node))
    return names


def parse_label(label: str, current_pkg: str) -> tuple[str, str, str]:
    m = re.match(r"^(?:@@?([\w.~+-]*))?//([^:]*):(.+)$", label)
    if m:
        return m.group(1) or "", m.group(2), m.group(3)
    if label.startswith(":"):
        return "", current_pkg, label[1:]
    raise ValueError(label)


def workspace_repos() -> dict[str, Path | None]:
    """Repositories of WORKSPACE: local_repository paths; cache repositories as None."""
    tree = ast.parse((ROOT / "WORKSPACE").read_text())
    repos: dict[str, Path | None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kws = {k.arg: k.value for k in node.keywords}
            if "name" not in kws:
                continue
            name = kws["name"].value
            if node.func.id == "local_repository":
                path = Path(kws["path"].value)
                repos[name] = path if path.is_absolute() else ROOT / path
            else:
                repos[name] = None
    return repos


def module_repos() -> set[str]:
    """bazel_dep names and use_repo() names of MODULE.bazel."""
    tree = ast.parse((ROOT / "MODULE.bazel").read_text())
    repos = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kws = {k.arg: k.value for k in node.keywords}
            if node.func.id == "bazel_dep":
                repos.add((kws.get("repo_name") or kws["name"]).value)
            elif node.func.id == "use_repo":
                repos.update(a.value for a in node.args[1:] if isinstance(a, ast.Constant))
                repos.update(kws)
            elif node.func.id in ("local_repository", "http_file", "new_local_repository"):
                repos.add(kws["name"].value)
    return repos


def standin_attrs(path: Path, name: str) -> set[str] | None:
    """Keyword parameters of a stand-in macro, or attrs of a rule() assigned to `name`."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            if node.args.kwarg:
                return None
            return {a.arg for a in node.args.args + node.args.kwonlyargs}
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == name for t in node.targets
        ):
            call = node.value
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "rule":
                for kw in call.keywords:
                    if kw.arg == "attrs" and isinstance(kw.value, ast.Dict):
                        return {k.value for k in kw.value.keys if not k.value.startswith("_")}
    return None


class LoadLabelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.offline = workspace_repos()
        cls.online = module_repos()

    def files_to_check(self) -> list[Path]:
        todo = build_files()
        seen: list[Path] = []
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.append(f)
            pkg = os.path.relpath(f.parent, ROOT).replace(os.sep, "/").replace(".", "")
            for label, _, _ in loads(ast.parse(f.read_text())):
                repo, lpkg, name = parse_label(label, pkg)
                if repo in ("", "vsearch"):
                    todo.append(ROOT / lpkg / name)
        return seen

    def test_build_files_found(self) -> None:
        names = {os.path.relpath(f, ROOT) for f in build_files()}
        for must in ("BUILD", "base/BUILD", "stages/transcribe/BUILD", "orchestrator/BUILD"):
            self.assertIn(must, names)
        self.assertFalse(any(n.startswith("platforms/offline/repos/") for n in names))

    def test_loads_exist_in_both_modes(self) -> None:
        problems = []
        for f in self.files_to_check():
            rel = os.path.relpath(f, ROOT)
            pkg = os.path.dirname(rel)
            for label, symbol, _ in loads(ast.parse(f.read_text())):
                repo, lpkg, name = parse_label(label, pkg)
                if repo in ("", "vsearch"):
                    path = ROOT / lpkg / name
                    if not path.is_file() or symbol not in top_level_names(path):
                        problems.append(f"{rel}: {label} has no {symbol} (shared file)")
                    continue
                if repo == "bazel_tools":
                    continue  # built into every Bazel
                # offline
                if repo not in self.offline:
                    problems.append(f"{rel}: @{repo} is not declared in WORKSPACE")
                elif self.offline[repo] is not None:
                    path = self.offline[repo] / lpkg / name
                    if not path.is_file() or symbol not in top_level_names(path):
                        problems.append(f"{rel}: offline {label} has no {symbol}")
                # online
                if repo not in self.online:
                    problems.append(f"{rel}: @{repo} is not a repository of MODULE.bazel")
                key = f"@{repo}//{lpkg}:{name}"
                if key in ONLINE_API and symbol not in ONLINE_API[key]:
                    problems.append(f"{rel}: online {label} has no {symbol}")
                elif key not in ONLINE_API:
                    problems.append(f"{rel}: {label} is not in ONLINE_API (add it after checking)")
        self.assertEqual(problems, [])

    def test_rule_attributes_exist_in_both_modes(self) -> None:
        problems = []
        standin = self.offline["rules_oci"] / "oci" / "defs.bzl"
        for f in self.files_to_check():
            tree = ast.parse(f.read_text())
            local = {
                loc: sym for label, sym, loc in loads(tree) if label == "@rules_oci//oci:defs.bzl"
            }
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                symbol = local.get(node.func.id)
                if not symbol:
                    continue
                used = {k.arg for k in node.keywords if k.arg} - COMMON
                online = ONLINE_API["@rules_oci//oci:defs.bzl"][symbol] or set()
                offline = standin_attrs(standin, symbol)
                for attr in sorted(used):
                    if attr not in online:
                        problems.append(
                            f"{os.path.relpath(f, ROOT)}: {symbol}.{attr} not in rules_oci"
                        )
                    if offline is not None and attr not in offline:
                        problems.append(f"{os.path.relpath(f, ROOT)}: {symbol}.{attr} not offline")
        self.assertEqual(problems, [])

    def test_external_labels_exist_in_both_modes(self) -> None:
        problems = []
        for f in self.files_to_check():
            for m in re.finditer(r'"@([\w.-]+)//', f.read_text()):
                repo = m.group(1)
                if repo in ("bazel_tools",):
                    continue
                if repo not in self.offline and repo != "platforms":
                    problems.append(f"{os.path.relpath(f, ROOT)}: @{repo} missing offline")
                if repo not in self.online:
                    problems.append(f"{os.path.relpath(f, ROOT)}: @{repo} missing online")
        self.assertEqual(problems, [])


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
