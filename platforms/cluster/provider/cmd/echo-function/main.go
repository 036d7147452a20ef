// Command echo-function is the local platform's smoke function: an OpenFaaS function runtime in
// the smallest form (of-watchdog is not served by the Go module proxy). It answers
// /_/health, and any other request with a JSON document of what it received (method, path,
// body), so a request through the gateway, our provider's resolver, the Service and kube-proxy
// can be checked end to end. It writes /tmp/.lock, like the watchdogs, for exec probes.
package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

type echo struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	Body     string `json:"body"`
	Hostname string `json:"hostname"`
}

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := os.WriteFile("/tmp/.lock", []byte("ok\n"), 0o644); err != nil {
		logger.Warn("lock_file", "error", err.Error())
	}
	hostname, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/_/health", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("OK"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{r.Method, r.URL.Path, string(body), hostname})
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("echo_function_start", "port", port)
	if err := server.ListenAndServe(); err != nil {
		logger.Error("echo_function_failed", "error", err.Error())
		os.Exit(1)
	}
}
