"""Offline stand-in for rules_oci 2.x: oci_image, oci_image_index, oci_load, oci_push.

Same names and the subset of attributes vsearch's BUILD files use (platforms/README.md
has the table). Implemented in Starlark + oci/private/oci_tool.py (standard library Python),
so it runs on Debian's bazel-bootstrap 4.2.3 without crane, jq or zstd from GitHub. Outputs
follow rules_oci: an image or an index is an OCI image layout directory named after the target;
an index's layout holds one nested image index (as rules_oci writes it) with one manifest per
platform; oci_load's "tarball" output group is a `docker load` tarball.
"""

_TOOL = attr.label(
    default = Label("//oci/private:oci_tool"),
    executable = True,
    cfg = "exec",
)

def _tool_run(ctx, args, inputs, outputs, mnemonic):
    ctx.actions.run(
        executable = ctx.executable._tool,
        arguments = [args],
        inputs = inputs,
        outputs = outputs,
        mnemonic = mnemonic,
        progress_message = "%s %s" % (mnemonic, ctx.label),
        env = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"},
    )

# --- oci_image ----------------------------------------------------------------------------------

def _oci_image_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    config = {
        "entrypoint": ctx.attr.entrypoint,
        "cmd": ctx.attr.cmd,
        "env": ctx.attr.env,
        "labels": ctx.attr.labels_dict,
        "annotations": ctx.attr.annotations,
        "exposed_ports": ctx.attr.exposed_ports,
        "user": ctx.attr.user,
        "workdir": ctx.attr.workdir,
        "os": ctx.attr.os,
        "architecture": ctx.attr.architecture,
        "variant": ctx.attr.variant,
        "created": ctx.attr.created,
        "set_entrypoint": ctx.attr.set_entrypoint,
        "set_cmd": ctx.attr.set_cmd,
    }
    args = ctx.actions.args()
    args.add("image")
    args.add("--out", out.path)
    args.add("--config", json.encode(config))
    inputs = []
    if ctx.attr.base:
        base = ctx.files.base[0]
        args.add("--base", base.path)
        inputs.append(base)
    if ctx.file.labels_file:
        args.add("--labels-file", ctx.file.labels_file)
        inputs.append(ctx.file.labels_file)
    for t in ctx.attr.tars:
        for f in t.files.to_list():
            args.add("--layer", "%s=%s" % (f.path, t.label))
            inputs.append(f)
    _tool_run(ctx, args, inputs, [out], "OciImage")
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_oci_image = rule(
    implementation = _oci_image_impl,
    attrs = {
        "base": attr.label(allow_files = True),
        "tars": attr.label_list(allow_files = [".tar", ".tar.gz", ".tgz"]),
        "entrypoint": attr.string_list(),
        "set_entrypoint": attr.bool(),
        "cmd": attr.string_list(),
        "set_cmd": attr.bool(),
        "env": attr.string_dict(),
        "labels_dict": attr.string_dict(),
        "labels_file": attr.label(allow_single_file = True),
        "annotations": attr.string_dict(),
        "exposed_ports": attr.string_list(),
        "user": attr.string(),
        "workdir": attr.string(),
        "os": attr.string(),
        "architecture": attr.string(),
        "variant": attr.string(),
        "created": attr.string(),
        "_tool": _TOOL,
    },
)

def _or_default(x, default):
    return default if x == None else x

def oci_image(
        name,
        base = None,
        tars = [],
        entrypoint = None,
        cmd = None,
        env = None,
        labels = None,
        annotations = None,
        exposed_ports = None,
        user = None,
        workdir = None,
        os = None,
        architecture = None,
        variant = None,
        created = None,
        **kwargs):
    """rules_oci's oci_image: `labels` is a dict or a `key=value` file, like rules_oci 2.x."""
    if base == None and (os == None or architecture == None):
        fail("oci_image(%s): give `base`, or `os` and `architecture`" % name)
    is_dict = type(labels) == type({})
    v = _or_default
    _oci_image(
        name = name,
        base = base,
        tars = tars,
        entrypoint = v(entrypoint, []),
        set_entrypoint = entrypoint != None,
        cmd = v(cmd, []),
        set_cmd = cmd != None,
        env = v(env, {}),
        labels_dict = labels if is_dict else {},
        labels_file = None if is_dict else labels,
        annotations = v(annotations, {}),
        exposed_ports = v(exposed_ports, []),
        user = v(user, ""),
        workdir = v(workdir, ""),
        os = v(os, ""),
        architecture = v(architecture, ""),
        variant = v(variant, ""),
        created = v(created, ""),
        **kwargs
    )

# --- oci_image_index ----------------------------------------------------------------------------

def _platforms_transition_impl(settings, attr):
    if not attr.platforms:
        return {"native": {"//command_line_option:platforms": settings["//command_line_option:platforms"]}}
    return {
        "p%d" % i: {"//command_line_option:platforms": str(p)}
        for i, p in enumerate(attr.platforms)
    }

_platforms_transition = transition(
    implementation = _platforms_transition_impl,
    inputs = ["//command_line_option:platforms"],
    outputs = ["//command_line_option:platforms"],
)

def _oci_image_index_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add("index")
    args.add("--out", out.path)
    inputs = []
    keys = ["p%d" % i for i in range(len(ctx.attr.platforms))] or ["native"]
    for key in keys:
        for image in ctx.split_attr.images[key]:
            for f in image.files.to_list():
                args.add("--image", f.path)
                inputs.append(f)
    _tool_run(ctx, args, inputs, [out], "OciImageIndex")
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

oci_image_index = rule(
    implementation = _oci_image_index_impl,
    doc = "rules_oci's oci_image_index: `images` built once per entry of `platforms`.",
    attrs = {
        "images": attr.label_list(mandatory = True, cfg = _platforms_transition),
        "platforms": attr.label_list(),
        "_tool": _TOOL,
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)

# --- oci_load -----------------------------------------------------------------------------------

def _oci_load_impl(ctx):
    tarball = ctx.actions.declare_file(ctx.label.name + "/tarball.tar")
    layout = ctx.files.image[0]
    args = ctx.actions.args()
    args.add("load")
    args.add("--image", layout.path)
    args.add("--out", tarball)
    args.add("--format", ctx.attr.format)
    args.add_all(ctx.attr.repo_tags, before_each = "--tag")
    _tool_run(ctx, args, [layout], [tarball], "OciLoad")
    loader = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(
        loader,
        """#!/usr/bin/env bash
# Loads {tags} into the Docker engine of $DOCKER_HOST (bazel run {label}).
set -euo pipefail
tarball="${{RUNFILES_DIR:-$0.runfiles}}/{ws}/{tar}"
[ -f "$tarball" ] || tarball="$(dirname "$0")/{base}/tarball.tar"
exec "${{DOCKER:-docker}}" load --input "$tarball"
""".format(
            tags = " ".join(ctx.attr.repo_tags),
            label = ctx.label,
            ws = ctx.workspace_name,
            tar = tarball.short_path,
            base = ctx.label.name,
        ),
        is_executable = True,
    )
    return [
        DefaultInfo(executable = loader, runfiles = ctx.runfiles(files = [tarball])),
        OutputGroupInfo(tarball = depset([tarball])),
    ]

oci_load = rule(
    implementation = _oci_load_impl,
    doc = "rules_oci's oci_load: `bazel run` loads; output group `tarball` is the tarball.",
    executable = True,
    attrs = {
        "image": attr.label(mandatory = True, allow_files = True),
        "repo_tags": attr.string_list(),
        "format": attr.string(default = "docker", values = ["docker", "oci"]),
        "_tool": _TOOL,
    },
)

# --- oci_push -----------------------------------------------------------------------------------

def _oci_push_impl(ctx):
    layout = ctx.files.image[0]
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(
        script,
        """#!/usr/bin/env bash
# Pushes {label}'s image (an OCI layout) with skopeo: bazel run {label} [-- --dest-creds U:P]
# Offline stand-in of rules_oci's oci_push (which uses crane); every platform of an index goes.
set -euo pipefail
layout="${{RUNFILES_DIR:-$0.runfiles}}/{ws}/{layout}"
repository="${{OCI_REPOSITORY:-{repository}}}"
command -v skopeo >/dev/null || {{ echo "oci_push: install skopeo (apt-get install skopeo)" >&2; exit 2; }}
for tag in {tags}; do
  echo "pushing $repository:$tag" >&2
  skopeo copy --all --preserve-digests "$@" "oci:$layout" "docker://$repository:$tag"
done
""".format(
            label = ctx.label,
            ws = ctx.workspace_name,
            layout = layout.short_path,
            repository = ctx.attr.repository,
            tags = " ".join(ctx.attr.remote_tags) or "latest",
        ),
        is_executable = True,
    )
    return [DefaultInfo(executable = script, runfiles = ctx.runfiles(files = [layout]))]

oci_push = rule(
    implementation = _oci_push_impl,
    doc = "rules_oci's oci_push (repository + remote_tags), pushing with skopeo.",
    executable = True,
    attrs = {
        "image": attr.label(mandatory = True, allow_files = True),
        "repository": attr.string(mandatory = True),
        "remote_tags": attr.string_list(),
    },
)
