"""Platform backends of the harness: implementations of :class:`harness.backend.Backend`.

- ``embedded`` (harness/backends/embedded.py): the embedded platform of harness/embedded.
- ``kind`` (harness/backends/kind.py): OpenFaaS CE in a local kind cluster, with manifests
  rendered from manifests/functions.yaml by harness/backends/kind_manifests.py.
"""
