// Our own pause program (the pod sandbox's first process): no third-party code, no requirements.
module vsearch.local/platform/pause

go 1.24.0
