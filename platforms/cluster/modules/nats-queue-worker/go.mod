// Wrapper module: pins the OpenFaaS CE queue-worker for the cluster platform (built by harness/cluster).
module vsearch.local/platform/nats-queue-worker

go 1.24.0

tool github.com/openfaas/nats-queue-worker

require (
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/klauspost/compress v1.17.11 // indirect
	github.com/nats-io/nats.go v1.37.0 // indirect
	github.com/nats-io/nkeys v0.4.8 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/nats-io/stan.go v0.10.4 // indirect
	github.com/openfaas/faas-provider v0.25.4 // indirect
	github.com/openfaas/nats-queue-worker v0.0.0-20250415083406-ed5414157b54 // indirect
	golang.org/x/crypto v0.35.0 // indirect
	golang.org/x/sys v0.30.0 // indirect
)
