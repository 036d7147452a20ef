// Command netcheck resolves each name given as an argument with the pure-Go resolver (the
// pod's /etc/resolv.conf, i.e. the cluster DNS) and prints one JSON object per name. It exits
// 0 when every name resolved, 1 otherwise. Used by harness/cluster/local's cluster tests.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"
)

type answer struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs,omitempty"`
	Error string   `json:"error,omitempty"`
}

func main() {
	resolver := &net.Resolver{PreferGo: true}
	failed := false
	for _, name := range os.Args[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addrs, err := resolver.LookupHost(ctx, name)
		cancel()
		a := answer{Name: name, Addrs: addrs}
		if err != nil {
			a.Error = err.Error()
			failed = true
		}
		line, _ := json.Marshal(a)
		fmt.Println(string(line))
	}
	if failed {
		os.Exit(1)
	}
}
