"""Layer rules of vsearch's images: deb_layer (Debian userland) and py_layer (wheels and code).

The same implementation serves both Bazel modes: the rules run platforms/tools/layer_tool.py
(standard library only) and emit one reproducible `.tar.gz` each, which oci_image takes in
`tars` (real rules_oci online, platforms/offline/repos/rules_oci offline). What differs between
the modes is only where the inputs come from:

- `@debs//:debs`, the target platform's pinned .debs: offline a cache repository filled by
  platforms/offline/fetch_deps.py; online a module extension (platforms/online/debs.bzl) that
  downloads the same platforms/bookworm.lock.json from snapshot.debian.org.
- `@wheels//:wheels`, the target platform's wheels: offline the same cache; online
  rules_python's pip.parse hub (`@pypi`), whose `whl` targets select the target platform's file.

Both rules pick the architecture from the target platform (//platforms:is_amd64 / is_arm64), so
they build per architecture under oci_image_index's platform transition.

Outputs: the layer (DefaultInfo) and a JSON report (output group "report": digests, sizes,
wheels, notes such as whether the numba cache was warmed).
"""

_ARCH = {
    "deb": select({
        str(Label("//platforms:is_amd64")): "amd64",
        str(Label("//platforms:is_arm64")): "arm64",
    }),
    "py": select({
        str(Label("//platforms:is_amd64")): "x86_64",
        str(Label("//platforms:is_arm64")): "aarch64",
    }),
}

_TOOL = {
    "_tool": attr.label(
        default = Label("//platforms/tools:layer_tool"),
        executable = True,
        cfg = "exec",
    ),
}

def _run(ctx, args, inputs, out, report, mnemonic):
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = inputs,
        outputs = [out, report],
        mnemonic = mnemonic,
        progress_message = "%s %s" % (mnemonic, ctx.label),
        env = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8", "TZ": "UTC"},
    )
    return [
        DefaultInfo(files = depset([out])),
        OutputGroupInfo(report = depset([report])),
    ]

def _deb_layer_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".tar.gz")
    report = ctx.actions.declare_file(ctx.label.name + ".layer.json")
    debs = ctx.files.debs
    args = ctx.actions.args()
    args.add("debs")
    args.add("--out", out)
    args.add("--report", report)
    args.add("--arch", ctx.attr.arch)
    args.add_all(debs, before_each = "--deb")
    args.add_all(ctx.attr.exclude, before_each = "--exclude")
    args.add_all(ctx.attr.keep, before_each = "--keep")
    args.add_all(["%s=%s" % kv for kv in sorted(ctx.attr.symlinks.items())], before_each = "--symlink")
    args.add_all(ctx.attr.users, before_each = "--user")
    if ctx.attr.compile_python:
        args.add("--compile")
    return _run(ctx, args, debs, out, report, "DebLayer")

_deb_layer = rule(
    implementation = _deb_layer_impl,
    doc = "A root filesystem layer from .debs (data members only; no maintainer scripts run).",
    attrs = dict(_TOOL, **{
        "debs": attr.label_list(mandatory = True, allow_files = [".deb"]),
        "arch": attr.string(mandatory = True, values = ["amd64", "arm64"]),
        "exclude": attr.string_list(doc = "Path globs left out ({triplet}: x86_64-linux-gnu...)"),
        "keep": attr.string_list(doc = "Globs kept although `exclude` matches"),
        "symlinks": attr.string_dict(doc = "link -> target, what update-alternatives would make"),
        "users": attr.string_list(doc = "name:uid:gid:home entries for /etc/passwd and /etc/group"),
        "compile_python": attr.bool(doc = "Precompile /usr/lib/python3.11 (unchecked-hash .pyc)"),
    }),
)

def deb_layer(name, **kwargs):
    """deb_layer(name, debs, exclude, keep, symlinks, users, compile_python)."""
    _deb_layer(name = name, arch = _ARCH["deb"], **kwargs)

def _py_layer_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".tar.gz")
    report = ctx.actions.declare_file(ctx.label.name + ".layer.json")
    args = ctx.actions.args()
    args.add("python")
    args.add("--out", out)
    args.add("--report", report)
    args.add("--arch", ctx.attr.arch)
    args.add("--deb-arch", ctx.attr.deb_arch)
    args.add("--prefix", ctx.attr.prefix)
    args.add("--site-packages", ctx.attr.site_packages)
    inputs = list(ctx.files.srcs)
    for f in ctx.files.srcs:
        args.add("--src", "%s=%s" % (f.short_path, f.path))
    if ctx.file.requirements:
        lock = ctx.file.lock_x86_64 if ctx.attr.arch == "x86_64" else ctx.file.lock_aarch64
        args.add("--lock", lock)
        args.add("--requirements", ctx.file.requirements)
        args.add_all(ctx.files.exclude_requirements, before_each = "--exclude-requirements")
        args.add_all(ctx.files.wheels, before_each = "--wheel")
        inputs += [lock, ctx.file.requirements] + ctx.files.exclude_requirements + ctx.files.wheels
    if ctx.attr.compile:
        args.add("--compile")
    args.add_all(ctx.attr.dirs, before_each = "--dir")
    if ctx.attr.warmup:
        args.add("--warmup", ctx.attr.warmup)
        args.add("--warmup-cache-dir", ctx.attr.warmup_cache_dir)
        args.add("--warmup-cache-owner", ctx.attr.warmup_cache_owner)
        args.add_all(["%s=%s" % kv for kv in sorted(ctx.attr.warmup_env.items())], before_each = "--warmup-env")
        for f in ctx.files.warmup_srcs:
            args.add("--warmup-src", "%s=%s" % (f.short_path, f.path))
        args.add_all(ctx.files.warmup_rootfs, before_each = "--warmup-rootfs")
        inputs += ctx.files.warmup_srcs + ctx.files.warmup_rootfs
    return _run(ctx, args, inputs, out, report, "PyLayer")

_py_layer = rule(
    implementation = _py_layer_impl,
    doc = "A layer of Python code (srcs under `prefix`) and/or the wheels a requirements.in needs.",
    attrs = dict(_TOOL, **{
        "srcs": attr.label_list(allow_files = True, doc = "Placed at prefix/<workspace path>"),
        "prefix": attr.string(default = "/app"),
        "requirements": attr.label(allow_single_file = True, doc = "requirements.in: its lock closure"),
        "exclude_requirements": attr.label_list(allow_files = True, doc = "closures left out (base's)"),
        "wheels": attr.label(allow_files = [".whl"], doc = "@wheels//:<package> (py_layer sets it)"),
        "lock_x86_64": attr.label(default = Label("//:requirements-x86_64.lock"), allow_single_file = True),
        "lock_aarch64": attr.label(default = Label("//:requirements-aarch64.lock"), allow_single_file = True),
        "site_packages": attr.string(default = "/usr/local/lib/python3.11/dist-packages"),
        "compile": attr.bool(default = True, doc = "unchecked-hash .pyc for every .py"),
        "dirs": attr.string_list(doc = "extra directories, path:uid.gid:mode"),
        "warmup": attr.string(doc = "Python run at build (target arch = build arch only)"),
        "warmup_srcs": attr.label_list(allow_files = True),
        "warmup_rootfs": attr.label_list(
            allow_files = [".tar.gz"],
            doc = "the image's root filesystem layers: the warmup runs their python3.11",
        ),
        "warmup_env": attr.string_dict(),
        "warmup_cache_dir": attr.string(default = "/var/cache/numba"),
        "warmup_cache_owner": attr.string(default = "0:0"),
        "arch": attr.string(mandatory = True, values = ["x86_64", "aarch64"]),
        "deb_arch": attr.string(mandatory = True, values = ["amd64", "arm64"]),
    }),
)

def py_layer(name, **kwargs):
    """py_layer(name, srcs, prefix, requirements, exclude_requirements, warmup...).

    With `requirements`, the wheels come from `@wheels//:<package>` (`stages/search` ->
    `:stages_search`): this package's closure with the base's, so online Bazel fetches only
    the wheels this function needs (platforms/tools/online_wheels.py writes those targets
    online, platforms/offline/fetch_deps.py offline).
    """
    if kwargs.get("requirements") and "wheels" not in kwargs:
        kwargs["wheels"] = "@wheels//:" + native.package_name().replace("/", "_")
    _py_layer(name = name, arch = _ARCH["py"], deb_arch = _ARCH["deb"], **kwargs)

def _image_labels_impl(ctx):
    """`key=value` lines for oci_image(labels = ...): the revision comes from stable status."""
    out = ctx.actions.declare_file(ctx.label.name + ".txt")
    lines = ["%s=%s" % kv for kv in sorted(ctx.attr.labels.items())]
    ctx.actions.run(
        executable = ctx.executable._stamp,
        arguments = [ctx.info_file.path, out.path] + lines,
        inputs = [ctx.info_file],
        outputs = [out],
        mnemonic = "ImageLabels",
    )
    return [DefaultInfo(files = depset([out]))]

image_labels = rule(
    implementation = _image_labels_impl,
    doc = """OCI labels file; `{KEY}` in a value is replaced by KEY of the stable workspace status
    (platforms/workspace_status.sh: STABLE_GIT_COMMIT), or by `unknown`.""",
    attrs = {
        "labels": attr.string_dict(mandatory = True),
        "_stamp": attr.label(
            default = Label("//platforms/tools:stamp"),
            executable = True,
            cfg = "exec",
        ),
    },
)
