"""function_image(): one OpenFaaS function's image set, the same in every stages/*/BUILD.

    base image (//base:image)            Debian userland + base/ runtime and its wheels
      + :wheels  (py_layer)              the function's own wheels, per architecture
      + :code    (py_layer)              the function's Python package under /app
    = :image (oci_image)  -> :index (oci_image_index, linux/amd64 + linux/arm64)
      :load (oci_load, `docker load` tarball of the build machine's architecture)
      :load_arm64 (the same for linux/arm64, run under qemu by //platforms/tests:image_run_test)
      :push (oci_push of the index)      :image_test (structure test of both architectures)

Everything loaded here exists in both Bazel modes: @rules_oci and @rules_python are the real
rule sets online (MODULE.bazel) and in-repo stand-ins offline (WORKSPACE);
//platforms/tests:load_labels_test checks it.
"""

load("@rules_oci//oci:defs.bzl", "oci_image", "oci_image_index", "oci_load", "oci_push")
load("@rules_python//python:defs.bzl", "py_test")
load("//platforms:layers.bzl", "py_layer")

#: Targets built in the host's configuration (not through the index's platform transition):
#: Linux hosts only. On macOS `bazel build //stages/...` skips them (rules_python's wheel
#: aliases have no macOS match) and builds the indexes; load an image there with :load_arm64.
LINUX_HOST_ONLY = ["@platforms//os:linux"]

IMAGE_PLATFORMS = [
    Label("//platforms:linux_amd64"),
    Label("//platforms:linux_arm64"),
]

#: Where oci_push sends images (override per run: OCI_REPOSITORY=... bazel run ...:push).
REGISTRY = "ghcr.io/vsearch"

#: Files no image may contain: compilers, package managers, shells, credentials.
FORBIDDEN = [
    "/usr/bin/gcc*",
    "/usr/bin/cc",
    "/usr/bin/c++",
    "/usr/bin/g++*",
    "/usr/bin/ld",
    "/usr/bin/as",
    "/usr/bin/make",
    "/usr/bin/apt*",
    "/usr/bin/dpkg*",
    "/usr/bin/pip*",
    "/usr/local/bin/pip*",
    "/bin/sh",
    "/bin/bash",
    "/bin/dash",
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/usr/bin/curl",
    "/usr/bin/wget",
    "*/.aws/credentials",
    "*/.docker/config.json",
    "*/.netrc",
    "*/.pypirc",
    "*/.git-credentials",
    "*/id_rsa",
    "*/id_ed25519",
    "*.pem.key",
]

def _to_platform_impl(settings, attr):
    # The same value the index's split transition sets, so both share one configuration (and
    # the arm64 image is built once, not once per consumer).
    return {"//command_line_option:platforms": str(attr.platform)}

_to_platform = transition(
    implementation = _to_platform_impl,
    inputs = [],
    outputs = ["//command_line_option:platforms"],
)

def _platform_image_impl(ctx):
    image = ctx.attr.image
    if type(image) == "list":  # Bazel 4 hands a transitioned label attribute over as a list
        image = image[0]
    files = image[DefaultInfo].files
    return [DefaultInfo(files = files, runfiles = ctx.runfiles(transitive_files = files))]

platform_image = rule(
    implementation = _platform_image_impl,
    doc = "`image` built for one target `platform` (e.g. the arm64 image on an amd64 machine).",
    attrs = {
        "image": attr.label(mandatory = True, cfg = _to_platform),
        "platform": attr.label(mandatory = True),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)

def image_structure_test(name, index, expect_files = [], function = None, module = None, base_index = None, tags = [], **kwargs):
    """Checks an index: amd64 + arm64, config (entrypoint, user, env, port), files present/absent."""
    args = ["--index", "$(rootpath %s)" % index]
    data = [index, "//:manifests/functions.yaml"]
    if base_index:
        args += ["--base-index", "$(rootpath %s)" % base_index]
        data.append(base_index)
    args += ["--expect-file=%s" % f for f in expect_files]
    args += ["--forbid=%s" % f for f in FORBIDDEN]
    if function:
        args += ["--function", function, "--module", module, "--functions-yaml", "$(rootpath //:manifests/functions.yaml)"]
    py_test(
        name = name,
        srcs = [Label("//platforms/tests:image_structure_test.py")],
        main = Label("//platforms/tests:image_structure_test.py"),
        args = args,
        data = data,
        python_version = "PY3",
        size = "medium",
        tags = tags,
        **kwargs
    )

def function_image(
        name,
        module,
        srcs,
        exec_timeout,
        max_inflight = 1,
        env = {},
        requirements = "requirements.in",
        expect_files = [],
        warmup = None,
        warmup_env = {}):
    """The image set of function `name` (manifests/functions.yaml), entrypoint python3 -m module.

    exec_timeout, max_inflight and env must equal the function's entry in
    manifests/functions.yaml (the structure test compares them).
    """
    py_layer(
        name = "wheels",
        requirements = requirements,
        exclude_requirements = [Label("//base:requirements.in")],
        warmup = warmup,
        warmup_srcs = srcs + [Label("//base:srcs")] if warmup else [],
        # The warmup runs the image's own python3.11 (Debian's, from the base's rootfs layer).
        warmup_rootfs = [Label("//base:rootfs")] if warmup else [],
        warmup_env = warmup_env,
        warmup_cache_owner = "10001:10001",
        target_compatible_with = LINUX_HOST_ONLY,
    )
    py_layer(
        name = "code",
        srcs = srcs,
        target_compatible_with = LINUX_HOST_ONLY,
    )
    image_env = {
        "PORT": "8080",
        "exec_timeout": exec_timeout,
        "max_inflight": str(max_inflight),
        "PYTHONPATH": "/app",
    }
    image_env.update(warmup_env)
    image_env.update(env)
    oci_image(
        name = "image",
        base = Label("//base:image"),
        tars = [
            ":wheels",
            ":code",
        ],
        entrypoint = ["python3", "-m", module],
        env = image_env,
        exposed_ports = ["8080/tcp"],
        labels = Label("//:image_labels"),
        user = "10001:10001",
        workdir = "/home/app",
        visibility = ["//visibility:public"],
        target_compatible_with = LINUX_HOST_ONLY,
    )
    oci_image_index(
        name = "index",
        images = [":image"],
        platforms = IMAGE_PLATFORMS,
        visibility = ["//visibility:public"],
    )
    oci_load(
        name = "load",
        image = ":image",
        repo_tags = ["vsearch/%s:latest" % name],
        target_compatible_with = LINUX_HOST_ONLY,
    )
    native.filegroup(
        name = "tarball",
        srcs = [":load"],
        output_group = "tarball",
        visibility = ["//visibility:public"],
        # Linux hosts only through :load (Bazel 4's filegroup has no target_compatible_with).
    )
    platform_image(
        name = "image_arm64",
        image = ":image",
        platform = Label("//platforms:linux_arm64"),
    )
    oci_load(
        name = "load_arm64",
        image = ":image_arm64",
        repo_tags = ["vsearch/%s:latest-arm64" % name],
    )
    native.filegroup(
        name = "tarball_arm64",
        srcs = [":load_arm64"],
        output_group = "tarball",
        visibility = ["//visibility:public"],
    )
    oci_push(
        name = "push",
        image = ":index",
        remote_tags = ["latest"],
        repository = "%s/%s" % (REGISTRY, name),
        visibility = ["//visibility:public"],
    )
    image_structure_test(
        name = "image_test",
        index = ":index",
        function = name,
        module = module,
        base_index = "//base:index",
        expect_files = [
            "/usr/bin/python3",
            "/usr/bin/ffmpeg",
            "/app/%s/__main__.py" % module.replace(".", "/"),
        ] + expect_files,
    )
