// Command faas-provider is the local platform's Kubernetes faas-provider: the OpenFaaS
// gateway's sidecar on localhost:8081 (as faas-netes is in OpenFaaS CE), serving the provider
// REST API from the faas-provider SDK over client-go.
//
// Environment: port (8081), function_namespace (openfaas-fn), read_timeout/write_timeout,
// basic_auth + secret_mount_path (faas-provider's), http_probe, set_nonroot_user,
// image_pull_policy (Always), resolver (clusterip|dns), cluster_domain (cluster.local),
// idle_check_interval (1s: how often the idler looks for functions to scale to zero),
// KUBECONFIG (else the in-cluster service account).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/openfaas/faas-provider"
	"github.com/openfaas/faas-provider/proxy"
	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"vsearch.local/platform/faas-provider/functions"
)

// Stamped by -X at build (harness/cluster/builder.py).
var (
	Version   = "dev"
	GitCommit = ""
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func kubeConfig() (*rest.Config, error) {
	if path := os.Getenv("KUBECONFIG"); path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	return rest.InClusterConfig()
}

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(logger); err != nil {
		logger.Error("provider_failed", "error", err.Error())
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	if os.Getenv("port") == "" {
		_ = os.Setenv("port", "8081")
	}
	faasConfig, err := types.ReadConfig{}.Read(types.OsEnv{})
	if err != nil {
		return err
	}
	restConfig, err := kubeConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	port, err := strconv.ParseInt(env("function_port", "8080"), 10, 32)
	if err != nil {
		return err
	}
	config := functions.Config{
		Namespace:       env("function_namespace", "openfaas-fn"),
		RuntimePort:     int32(port),
		HTTPProbe:       types.ParseBoolValue(os.Getenv("http_probe"), false),
		SetNonRootUser:  types.ParseBoolValue(os.Getenv("set_nonroot_user"), false),
		ImagePullPolicy: corev1.PullPolicy(env("image_pull_policy", string(corev1.PullAlways))),
	}
	interval, err := time.ParseDuration(env("idle_check_interval", "1s"))
	if err != nil || interval <= 0 {
		return fmt.Errorf("idle_check_interval %q is not a positive duration",
			os.Getenv("idle_check_interval"))
	}
	activity := functions.NewActivity(time.Now)
	provider := &functions.Provider{
		Client: client, Config: config, Log: logger,
		Name: "vsearch-faas-provider", Version: Version, SHA: GitCommit,
		Activity: activity,
	}
	if mode := env("resolver", "endpoints"); mode != "endpoints" && mode != "clusterip" &&
		mode != "dns" {
		return fmt.Errorf("resolver %q is not endpoints, clusterip or dns", mode)
	}
	resolver := functions.Resolver{
		Client: client, Config: config,
		Mode:          env("resolver", "endpoints"),
		ClusterDomain: env("cluster_domain", "cluster.local"),
	}
	handlers := provider.Handlers(activity.Wrap(proxy.NewHandlerFunc(*faasConfig, resolver, false)))
	logger.Info("provider_start", "port", *faasConfig.TCPPort, "namespace", config.Namespace,
		"version", Version, "commit", GitCommit, "host", restConfig.Host,
		"basic_auth", faasConfig.EnableBasicAuth, "idle_check_interval", interval.String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	idler := &functions.Idler{
		Client: client, Namespace: config.Namespace, Activity: activity, Log: logger,
	}
	go idler.Run(ctx, interval)
	bootstrap.Serve(ctx, handlers, faasConfig)
	return nil
}
