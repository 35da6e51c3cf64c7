package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// invalidate asks a running gateway's admin API to forget a caller (or
// everything), on every replica sharing its Redis.
func invalidate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("invalidate", flag.ContinueOnError)
	fs.SetOutput(stdout)
	client := fs.String("client", "", "forget this client id")
	user := fs.String("user", "", "forget this user id (e.g. 'auth0|alice')")
	all := fs.Bool("all", false, "forget every cached caller")
	issuer := fs.String("issuer", "", "the caller's issuer (needed only when the metadata source serves several)")
	admin := fs.String("admin", envOr("GATEWAY_ADMIN_URL", "http://127.0.0.1:9090"), "the admin listener's URL (env GATEWAY_ADMIN_URL)")
	token := fs.String("token", "", "invalidation.admin_token (default: env GATEWAY_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	// The usage line, description and examples are in help.go, with
	// every other command's.
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{*client != "", *user != "", *all} {
		if set {
			n++
		}
	}
	if n != 1 {
		return &usageError{"invalidate: give exactly one of --client ID, --user ID or --all"}
	}
	if *token == "" {
		*token = os.Getenv("GATEWAY_ADMIN_TOKEN")
	}
	if *token == "" {
		return &usageError{"invalidate: the admin token is required: --token or GATEWAY_ADMIN_TOKEN"}
	}
	method, path, body := http.MethodDelete, "/admin/cache", []byte(nil)
	if !*all {
		kind, id := "client", *client
		if *user != "" {
			kind, id = "user", *user
		}
		method, path = http.MethodPost, "/admin/cache/invalidate"
		body, _ = json.Marshal(map[string]string{"kind": kind, "id": id, "issuer": *issuer})
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(*admin, "/")+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("invalidate: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		return fmt.Errorf("invalidate: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("invalidate: %s %s answered %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	fmt.Fprint(stdout, string(answer))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
