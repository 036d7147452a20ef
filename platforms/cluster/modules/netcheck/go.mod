// Our own probe for the cluster tests: resolves names from inside a pod. No requirements.
module vsearch.local/platform/netcheck

go 1.24.0
