"""Platform backends of the harness: implementations of :class:`harness.backend.Backend`.

- ``embedded`` (harness/backends/embedded.py): the embedded platform of harness/embedded.
- ``kind`` (harness/backends/kind.py): OpenFaaS CE in a local kind cluster, with manifests
  rendered from manifests/functions.yaml by harness/backends/kind_manifests.py.
- ``cluster/``: what any Kubernetes + OpenFaaS backend needs, by concern: running the tools
  (tools.py), the local registry's API (registry.py), port-forwards (port_forward.py), the
  gateway's REST API and metrics (openfaas_api.py), what is observed of pods (pods.py).
- ``testing/``: test doubles only (fake kind/kubectl/helm/docker/skopeo); product code never
  imports them (test_backend_layout.py).
"""
