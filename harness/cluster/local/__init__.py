"""The host-process cluster: `./vsearch platform up|down|status` (one module per concern).

config (state dir, ports, addresses), pki (CA and certificates), processes (detached programs
with pid files, logs and readiness waits), control_plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubeconfigs), node (containerd, kubelet, kube-proxy,
CNI), images (our pause and CoreDNS images), addons (the registry, CoreDNS), cluster (up, down,
status in order).
"""
