// Command pause is the first process of every pod sandbox on the vsearch host-process cluster.
//
// It holds the sandbox's namespaces open, reaps the zombies it inherits as PID 1 and exits 0 on
// SIGTERM or SIGINT. Built static (CGO_ENABLED=0) by harness/cluster/builder.py and shipped in a
// FROM-scratch image (harness/cluster/local/images.py).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause vsearch")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: %s, exiting\n", sig)
		os.Exit(0)
	}
}
