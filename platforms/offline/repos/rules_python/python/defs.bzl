"""rules_python's public names, served by Bazel 4.2.3's native rules (offline stand-in).

Online, MODULE.bazel brings the real rules_python (hermetic CPython 3.11, pip.parse); offline,
the interpreter is the machine's /usr/bin/python3 (Debian bookworm: 3.11), registered as the
toolchain //python:offline_py_toolchain from WORKSPACE.
"""

load("@bazel_tools//tools/python:toolchain.bzl", _py_runtime_pair = "py_runtime_pair")

py_binary = native.py_binary
py_library = native.py_library
py_test = native.py_test
py_runtime = native.py_runtime
py_runtime_pair = _py_runtime_pair

