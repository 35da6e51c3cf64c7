// Command tenant runs the Auth0 tenant emulator (internal/testenv/auth0emu)
// as its own process for the end-to-end benchmark's full-miss scenario,
// with the benchmark's clients (benche2e.ClientID, benche2e.ClientMetadata)
// and a Management API client for the gateway. Its rate limit is lifted:
// the scenario measures the gateway, not Auth0's budget. It prints the
// tenant's URL on the first line of stdout and runs until stdin closes or
// it gets SIGTERM.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/metagate/gateway/internal/benche2e"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

func main() {
	clients := flag.Int("clients", 10000, "number of clients")
	flag.Parse()
	env := &benche2e.Env{}
	defer env.Close()
	emu := auth0emu.New(env)
	emu.SetRateLimit(1<<30, 1e9)
	emu.AddClient(auth0emu.Client{ID: benche2e.M2MClientID, Secret: benche2e.M2MClientSecret, Name: "Gateway",
		Grants: map[string][]string{emu.MgmtAudience(): {"read:clients", "read:users"}}})
	for i := range *clients {
		emu.AddClient(auth0emu.Client{ID: benche2e.ClientID(i), Name: "Service " + benche2e.ClientID(i),
			Metadata: benche2e.ClientMetadata(i)})
	}
	fmt.Println(emu.URL())

	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
}
