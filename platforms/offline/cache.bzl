"""The offline dependency cache (platforms/offline/fetch_deps.py) as Bazel repositories.

`vsearch_cache_repository(name = "debs")` links $VSEARCH_BAZEL_CACHE/debs (default
~/.cache/vsearch-bazel/debs), which fetch_deps.py fills with the pinned files and a BUILD.bazel.
platforms/offline/bazel-test.sh also passes `--override_repository=NAME=<absolute path>`, which
wins over this rule and makes Bazel notice a re-fetch at once.
"""

def _impl(rctx):
    cache = rctx.os.environ.get("VSEARCH_BAZEL_CACHE") or (rctx.os.environ.get("HOME", "/root") + "/.cache/vsearch-bazel")
    src = rctx.path(cache + "/" + rctx.attr.name)
    if not src.exists or not rctx.path(cache + "/" + rctx.attr.name + "/BUILD.bazel").exists:
        rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.attr.name)
        rctx.file("missing.bzl", """
def missing(name):
    fail("@{repo} is empty: run `python3 platforms/offline/fetch_deps.py` (or platforms/offline/bazel-test.sh) first; looked in {src}")
""".format(repo = rctx.attr.name, src = src))
        rctx.file("BUILD.bazel", 'load(":missing.bzl", "missing")\nmissing("%s")\n' % rctx.attr.name)
        return
    for child in src.readdir():
        rctx.symlink(child, child.basename)

vsearch_cache_repository = repository_rule(
    implementation = _impl,
    local = True,
    environ = ["VSEARCH_BAZEL_CACHE", "HOME"],
)
